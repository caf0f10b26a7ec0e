"""Where Hanlin's developer tooling keeps what it builds once and reuses."""

from __future__ import annotations

import os
from pathlib import Path

K8S_VERSION = os.environ.get("HANLIN_K8S_VERSION", "v1.36.3")


def cache_dir() -> Path:
    """The cache root: $HANLIN_CACHE, else ~/.cache/hanlin."""
    return Path(os.environ.get("HANLIN_CACHE", Path.home() / ".cache" / "hanlin"))


def bin_dir() -> Path:
    """Where scripts/build-binaries.sh puts etcd, kube-*, kubectl, helm and versitygw."""
    return cache_dir() / "k8s" / K8S_VERSION / "bin"


class MissingBinaryError(RuntimeError):
    """A control-plane or S3 binary has not been built yet."""


def binary(name: str) -> Path:
    """The path of a built binary, or an error that says how to build it."""
    path = bin_dir() / name
    if not path.is_file() or not os.access(path, os.X_OK):
        raise MissingBinaryError(
            f"{name} not found at {path}; build it once with `bash scripts/build-binaries.sh` "
            "(Go module proxy; several minutes cold, seconds warm)"
        )
    return path
