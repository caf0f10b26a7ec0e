"""Byte-level access to one storage location: a directory tree or an S3 prefix.

Both backends speak keys relative to a root. Every single-object write is atomic:
a local file is written beside its target and renamed over it; an S3 object only
becomes visible when its (possibly multipart) upload completes.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path
from typing import Any, Protocol

from hanlin.storage.uri import StorageError, StorageURI

# S3 parts must be >= 5 MiB (except the last); 64 MiB keeps part counts small for
# multi-GB checkpoints while leaving small files as one PUT.
_DEFAULT_MULTIPART_BYTES = 64 * 1024 * 1024


class Backend(Protocol):
    """What every storage backend offers; keys are '/'-separated and relative."""

    def read_bytes(self, key: str) -> bytes: ...
    def write_bytes(self, key: str, data: bytes) -> None: ...
    def upload(self, path: Path, key: str) -> None: ...
    def download(self, key: str, path: Path) -> None: ...
    def list(self, prefix: str = "") -> list[str]: ...
    def exists(self, key: str) -> bool: ...
    def delete_prefix(self, prefix: str) -> None: ...


def _atomic_target(path: Path) -> tuple[int, str]:
    path.parent.mkdir(parents=True, exist_ok=True)
    return tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".partial")


class LocalBackend:
    """A directory tree (file:// and mounted pvc://)."""

    def __init__(self, root: Path, uri: str) -> None:
        self.root = root
        self.uri = uri

    def _path(self, key: str) -> Path:
        return self.root / key if key else self.root

    def read_bytes(self, key: str) -> bytes:
        try:
            return self._path(key).read_bytes()
        except FileNotFoundError as e:
            raise StorageError(f"{self.uri}/{key} does not exist") from e

    def write_bytes(self, key: str, data: bytes) -> None:
        fd, tmp = _atomic_target(self._path(key))
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, self._path(key))
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    def upload(self, path: Path, key: str) -> None:
        target = self._path(key)
        fd, tmp = _atomic_target(target)
        os.close(fd)
        try:
            shutil.copyfile(path, tmp)
            os.replace(tmp, target)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    def download(self, key: str, path: Path) -> None:
        source = self._path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        # No exists-then-copy: a republish may swap the directory between the two.
        try:
            shutil.copyfile(source, path)
        except (FileNotFoundError, IsADirectoryError):
            raise StorageError(f"{self.uri}/{key} does not exist") from None

    def list(self, prefix: str = "") -> list[str]:
        base = self._path(prefix)
        if base.is_file():
            return [prefix]
        if not base.is_dir():
            return []
        out = []
        for p in base.rglob("*"):
            if p.is_file() and not p.name.endswith(".partial"):
                out.append(p.relative_to(self.root).as_posix())
        return sorted(out)

    def exists(self, key: str) -> bool:
        return self._path(key).exists()

    def delete_prefix(self, prefix: str) -> None:
        target = self._path(prefix)
        if target.is_dir():
            shutil.rmtree(target)
        else:
            target.unlink(missing_ok=True)


class S3Backend:
    """An S3 prefix; endpoint and credentials come from the standard AWS env vars."""

    def __init__(self, bucket: str, prefix: str, uri: str, client: Any | None = None) -> None:
        import boto3
        from boto3.s3.transfer import TransferConfig
        from botocore.config import Config

        self.bucket = bucket
        self.prefix = prefix.strip("/")
        self.uri = uri
        if client is None:
            # Path-style addressing works with every S3-compatible server (MinIO,
            # versitygw, Ceph); virtual-host style needs wildcard DNS.
            client = boto3.client(
                "s3",
                endpoint_url=os.environ.get("AWS_ENDPOINT_URL") or None,
                config=Config(s3={"addressing_style": "path"}, retries={"max_attempts": 5}),
            )
        self.client = client
        part = int(os.environ.get("HANLIN_S3_MULTIPART_BYTES", _DEFAULT_MULTIPART_BYTES))
        self.transfer = TransferConfig(multipart_threshold=part, multipart_chunksize=part)

    def _key(self, key: str) -> str:
        return f"{self.prefix}/{key}".strip("/") if self.prefix else key

    def read_bytes(self, key: str) -> bytes:
        from botocore.exceptions import ClientError

        try:
            body = self.client.get_object(Bucket=self.bucket, Key=self._key(key))["Body"]
            data: bytes = body.read()
            return data
        except ClientError as e:
            raise StorageError(f"cannot read {self.uri}/{key}: {e}") from e

    def write_bytes(self, key: str, data: bytes) -> None:
        self.client.put_object(Bucket=self.bucket, Key=self._key(key), Body=data)

    def upload(self, path: Path, key: str) -> None:
        # upload_file switches to a multipart upload above the threshold; the object
        # appears only once CompleteMultipartUpload succeeds.
        self.client.upload_file(str(path), self.bucket, self._key(key), Config=self.transfer)

    def download(self, key: str, path: Path) -> None:
        from botocore.exceptions import ClientError

        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.partial")
        try:
            self.client.download_file(self.bucket, self._key(key), str(tmp), Config=self.transfer)
        except ClientError as e:
            tmp.unlink(missing_ok=True)
            raise StorageError(f"cannot download {self.uri}/{key}: {e}") from e
        os.replace(tmp, path)

    def list(self, prefix: str = "") -> list[str]:
        full = self._key(prefix)
        # A directory-like prefix must not match siblings that share its first letters.
        query = full if not full or full.endswith("/") else full + "/"
        out: list[str] = []
        paginator = self.client.get_paginator("list_objects_v2")
        for page in paginator.paginate(Bucket=self.bucket, Prefix=query):
            for item in page.get("Contents", []):
                out.append(item["Key"])
        if full and not out and self._head(full):
            out.append(full)
        strip = len(self.prefix) + 1 if self.prefix else 0
        return sorted(k[strip:] for k in out)

    def _head(self, full_key: str) -> bool:
        from botocore.exceptions import ClientError

        try:
            self.client.head_object(Bucket=self.bucket, Key=full_key)
            return True
        except ClientError:
            return False

    def exists(self, key: str) -> bool:
        return self._head(self._key(key)) or bool(self.list(key))

    def delete_prefix(self, prefix: str) -> None:
        keys = [self._key(k) for k in self.list(prefix)]
        for i in range(0, len(keys), 1000):
            chunk = [{"Key": k} for k in keys[i : i + 1000]]
            self.client.delete_objects(Bucket=self.bucket, Delete={"Objects": chunk})


def backend_for(uri: StorageURI) -> Backend:
    """The backend rooted at `uri`."""
    if uri.scheme == "s3":
        return S3Backend(uri.bucket, uri.key, str(uri))
    path = uri.local_path()
    if path is None:  # pragma: no cover - parse_uri admits only the three schemes
        raise StorageError(f"no backend for {uri}")
    return LocalBackend(path, str(uri))
