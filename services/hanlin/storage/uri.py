"""Storage URIs: `file:///abs/path`, `s3://bucket/key`, `pvc://claim/path`.

A `pvc://claim/path` URI names a PersistentVolumeClaim the operator mounts at
`$HANLIN_PVC_ROOT/claim` (default `/mnt/pvc/claim`), so inside a pod it is a
plain directory tree; `file://` is the same thing without the claim indirection.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse

SCHEMES = ("file", "s3", "pvc")


class StorageError(RuntimeError):
    """A storage operation failed; the message names the URI."""


@dataclass(frozen=True)
class StorageURI:
    """A parsed storage location: scheme, bucket (s3) or claim (pvc), key/path."""

    scheme: str
    bucket: str
    key: str

    def __str__(self) -> str:
        if self.scheme == "file":
            return f"file://{self.key}"
        return f"{self.scheme}://{self.bucket}/{self.key}".rstrip("/")

    def join(self, *parts: str) -> StorageURI:
        """A child location, e.g. `uri.join("checkpoints", "step-10")`."""
        tail = "/".join(p.strip("/") for p in parts if p.strip("/"))
        key = f"{self.key.rstrip('/')}/{tail}" if self.key.strip("/") else tail
        if self.scheme == "file" and not key.startswith("/"):
            key = "/" + key
        return StorageURI(self.scheme, self.bucket, key)

    def local_path(self) -> Path | None:
        """The filesystem path for file:// and pvc:// URIs; None for object stores."""
        if self.scheme == "file":
            return Path(self.key)
        if self.scheme == "pvc":
            root = Path(os.environ.get("HANLIN_PVC_ROOT", "/mnt/pvc"))
            return root / self.bucket / self.key
        return None


def parse_uri(uri: str | Path | StorageURI) -> StorageURI:
    """Parse a URI (a bare path counts as file://) or raise StorageError naming it."""
    if isinstance(uri, StorageURI):
        return uri
    text = str(uri)
    if isinstance(uri, Path) or "://" not in text:
        return StorageURI("file", "", str(Path(text).absolute()))
    parsed = urlparse(text)
    scheme = parsed.scheme.lower()
    if scheme not in SCHEMES:
        raise StorageError(f"unsupported storage URI {text!r}: scheme must be one of {SCHEMES}")
    if scheme == "file":
        if parsed.netloc not in ("", "localhost"):
            raise StorageError(f"file URI {text!r} must be file:///absolute/path")
        return StorageURI("file", "", parsed.path or "/")
    if not parsed.netloc:
        name = "bucket" if scheme == "s3" else "claim"
        raise StorageError(f"storage URI {text!r} has no {name}")
    return StorageURI(scheme, parsed.netloc, parsed.path.lstrip("/"))
