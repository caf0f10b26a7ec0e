"""Hanlin: the whole life of a large language model on Kubernetes."""

__version__ = "0.1.0"
