"""Artifacts: directories published whole, with a sha256 manifest.

"Write then publish": the manifest (`MANIFEST.json`) is written last and is the
only thing that makes an artifact visible. Readers look for the manifest first,
so they never see half an artifact, and every file they fetch is checked against
its recorded digest. On a filesystem the whole directory is staged beside the
target and renamed into place; on S3 the files go up first, the manifest after.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hanlin.storage.backends import backend_for
from hanlin.storage.uri import StorageError, StorageURI, parse_uri

MANIFEST = "MANIFEST.json"
_CHUNK = 1024 * 1024


@dataclass
class Manifest:
    """What a published artifact holds: relative path -> (sha256, size), plus metadata."""

    files: dict[str, dict[str, Any]]
    metadata: dict[str, Any] = field(default_factory=dict)
    created: float = 0.0

    @property
    def sha256(self) -> str:
        """One digest for the whole artifact: the hash of its sorted file list."""
        canonical = json.dumps(self.files, sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(canonical.encode()).hexdigest()

    def to_json(self) -> str:
        """Serialize (with the artifact digest, so a reader can quote it)."""
        body = {
            "version": 1,
            "sha256": self.sha256,
            "created": self.created,
            "files": self.files,
            "metadata": self.metadata,
        }
        return json.dumps(body, indent=2, sort_keys=True)

    @classmethod
    def from_json(cls, text: str, where: str) -> Manifest:
        """Parse a manifest, naming `where` if it is malformed."""
        try:
            body = json.loads(text)
            files = body["files"]
        except (ValueError, KeyError, TypeError) as e:
            raise StorageError(f"{where}/{MANIFEST} is not a valid manifest: {e}") from e
        return cls(files=files, metadata=body.get("metadata", {}), created=body.get("created", 0))


def file_sha256(path: Path) -> str:
    """The sha256 hex digest of a file, read in chunks."""
    h = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(_CHUNK):
            h.update(chunk)
    return h.hexdigest()


def build_manifest(local_dir: Path, metadata: dict[str, Any] | None = None) -> Manifest:
    """Hash every file under `local_dir` (the manifest itself excluded)."""
    files: dict[str, dict[str, Any]] = {}
    for p in sorted(local_dir.rglob("*")):
        rel = p.relative_to(local_dir).as_posix()
        if p.is_file() and rel != MANIFEST:
            files[rel] = {"sha256": file_sha256(p), "size": p.stat().st_size}
    return Manifest(files=files, metadata=dict(metadata or {}), created=time.time())


def publish_dir(
    local_dir: Path, uri: str | StorageURI, metadata: dict[str, Any] | None = None
) -> Manifest:
    """Publish a local directory at `uri` atomically; returns its manifest."""
    local_dir = Path(local_dir)
    if not local_dir.is_dir():
        raise StorageError(f"cannot publish {local_dir}: not a directory")
    target = parse_uri(uri)
    manifest = build_manifest(local_dir, metadata)
    path = target.local_path()
    if path is not None:
        _publish_local(local_dir, path, manifest)
        return manifest
    backend = backend_for(target)
    # Unpublish first: while files are replaced, no reader may trust the old manifest.
    backend.delete_prefix(MANIFEST)
    for rel in manifest.files:
        backend.upload(local_dir / rel, rel)
    for stale in set(backend.list()) - set(manifest.files) - {MANIFEST}:
        backend.delete_prefix(stale)
    backend.write_bytes(MANIFEST, manifest.to_json().encode())
    return manifest


def _publish_local(local_dir: Path, path: Path, manifest: Manifest) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tag = uuid.uuid4().hex[:8]
    staging = path.with_name(f".{path.name}.staging-{tag}")
    shutil.copytree(local_dir, staging)
    (staging / MANIFEST).write_text(manifest.to_json())
    old = path.with_name(f".{path.name}.old-{tag}")
    if path.exists():
        os.replace(path, old)
    os.replace(staging, path)
    shutil.rmtree(old, ignore_errors=True)


def read_manifest(uri: str | StorageURI) -> Manifest:
    """The manifest of a published artifact, or StorageError if it is not published."""
    target = parse_uri(uri)
    backend = backend_for(target)
    if not backend.exists(MANIFEST):
        raise StorageError(f"no published artifact at {target} (no {MANIFEST})")
    return Manifest.from_json(backend.read_bytes(MANIFEST).decode(), str(target))


def is_published(uri: str | StorageURI) -> bool:
    """True when `uri` holds a complete artifact."""
    return backend_for(parse_uri(uri)).exists(MANIFEST)


def fetch_dir(uri: str | StorageURI, local_dir: Path, verify: bool = True) -> Manifest:
    """Download a published artifact into `local_dir`, checking every sha256.

    If the artifact is republished while we read, a digest stops matching and the
    manifest has changed: start over (a few times) rather than keep a mixed set.
    """
    target = parse_uri(uri)
    for _ in range(5):
        manifest = read_manifest(target)
        bad = _fetch_files(target, manifest, Path(local_dir), verify)
        if bad is None:
            (Path(local_dir) / MANIFEST).write_text(manifest.to_json())
            return manifest
        if read_manifest(target).sha256 == manifest.sha256:
            raise StorageError(f"{target}/{bad}: sha256 mismatch against {MANIFEST}")
    raise StorageError(f"{target} kept changing while being read")


def _fetch_files(
    target: StorageURI, manifest: Manifest, local_dir: Path, verify: bool
) -> str | None:
    """Download every file; the first whose digest is wrong, or None."""
    backend = backend_for(target)
    for rel, info in manifest.files.items():
        dest = local_dir / rel
        if dest.is_file() and dest.stat().st_size == info["size"]:
            if file_sha256(dest) == info["sha256"]:
                continue
        try:
            backend.download(rel, dest)
        except StorageError:
            return rel  # gone: republished under us, or corrupt; the caller decides
        if verify and file_sha256(dest) != info["sha256"]:
            return rel
    return None


def materialize(uri: str | StorageURI, cache: Path, require_manifest: bool = True) -> Path:
    """A local path with the content at `uri`: the path itself for file:// and
    pvc:// (no copy), else a download under `cache`.

    Artifacts we published are fetched and verified through their manifest.
    Without `require_manifest`, a location with no manifest (a dataset or a base
    model someone uploaded) is downloaded as is: a single object becomes a file,
    a prefix a directory.
    """
    target = parse_uri(uri)
    path = target.local_path()
    if path is not None:
        if not path.exists():
            raise StorageError(f"{target} does not exist")
        return path
    digest = hashlib.sha256(str(target).encode()).hexdigest()[:16]
    dest = Path(cache) / digest
    if require_manifest or is_published(target):
        fetch_dir(target, dest)
        return dest
    backend = backend_for(target)
    keys = backend.list()
    if not keys:
        raise StorageError(f"{target} does not exist")
    if keys == [""]:
        single = dest / target.key.rstrip("/").rpartition("/")[2]
        backend.download("", single)
        return single
    for key in keys:
        backend.download(key, dest / key)
    return dest
