"""Shared fixtures: a real control plane, a real S3 server and a real small model."""

pytest_plugins = ["hanlin.dev.fixtures"]
