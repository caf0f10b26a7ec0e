"""Storage shared by every workload: file://, s3:// and pvc:// URIs.

Single objects: `read_bytes`, `write_bytes` (atomic), `upload_file`,
`download_file`, `list_keys`, `exists`, `delete`. Whole artifacts (a model, an
adapter, a checkpoint, a report): `publish_dir` writes files then a sha256
manifest (the publish step), `fetch_dir` downloads and verifies, `materialize`
gives a local directory either way. No torch here: the operator imports this.
"""

from __future__ import annotations

from pathlib import Path

from hanlin.storage.artifacts import (
    MANIFEST,
    Manifest,
    build_manifest,
    fetch_dir,
    file_sha256,
    is_published,
    materialize,
    publish_dir,
    read_manifest,
)
from hanlin.storage.backends import Backend, LocalBackend, S3Backend, backend_for
from hanlin.storage.uri import StorageError, StorageURI, parse_uri

__all__ = [
    "MANIFEST",
    "Backend",
    "LocalBackend",
    "Manifest",
    "S3Backend",
    "StorageError",
    "StorageURI",
    "backend_for",
    "build_manifest",
    "delete",
    "download_file",
    "exists",
    "fetch_dir",
    "file_sha256",
    "is_published",
    "list_keys",
    "materialize",
    "parse_uri",
    "publish_dir",
    "read_bytes",
    "read_manifest",
    "upload_file",
    "write_bytes",
]


def _split(uri: str | Path | StorageURI) -> tuple[Backend, str]:
    """The backend of the parent location and the object's name within it."""
    parsed = parse_uri(uri)
    key = parsed.key.rstrip("/")
    parent, _, name = key.rpartition("/")
    if not name:
        raise StorageError(f"{parsed} does not name an object")
    if parsed.scheme == "file" and not parent:
        parent = "/"
    return backend_for(StorageURI(parsed.scheme, parsed.bucket, parent)), name


def read_bytes(uri: str | Path | StorageURI) -> bytes:
    """The whole content of one object."""
    backend, name = _split(uri)
    return backend.read_bytes(name)


def write_bytes(uri: str | Path | StorageURI, data: bytes) -> None:
    """Write one object atomically (readers see the old or the new content)."""
    backend, name = _split(uri)
    backend.write_bytes(name, data)


def upload_file(path: Path, uri: str | Path | StorageURI) -> None:
    """Upload a local file to one object (multipart on S3 above the threshold)."""
    backend, name = _split(uri)
    backend.upload(Path(path), name)


def download_file(uri: str | Path | StorageURI, path: Path) -> None:
    """Download one object to a local file."""
    backend, name = _split(uri)
    backend.download(name, Path(path))


def list_keys(uri: str | Path | StorageURI) -> list[str]:
    """Every object under a location, as keys relative to it."""
    return backend_for(parse_uri(uri)).list()


def exists(uri: str | Path | StorageURI) -> bool:
    """True when an object, or anything under a prefix, exists at `uri`."""
    backend, name = _split(uri)
    return backend.exists(name)


def delete(uri: str | Path | StorageURI) -> None:
    """Delete an object or everything under a prefix."""
    backend, name = _split(uri)
    backend.delete_prefix(name)
