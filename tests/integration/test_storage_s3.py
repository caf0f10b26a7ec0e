"""hanlin.storage against a real S3 server (versitygw): publish, fetch, multipart, verify."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from hanlin import storage
from hanlin.storage import MANIFEST, StorageError

pytestmark = pytest.mark.integration


def _artifact(root: Path) -> Path:
    root.mkdir()
    (root / "weights.bin").write_bytes(os.urandom(12 * 1024 * 1024))  # > 2 parts of 5 MiB
    (root / "config.json").write_text('{"hidden": 64}')
    (root / "sub").mkdir()
    (root / "sub" / "tok.json").write_text("{}")
    return root


def test_publish_fetch_multipart_roundtrip(
    s3, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setenv("HANLIN_S3_MULTIPART_BYTES", str(5 * 1024 * 1024))
    src = _artifact(tmp_path / "src")
    uri = f"s3://{s3.bucket}/models/m1"
    assert not storage.is_published(uri)
    manifest = storage.publish_dir(src, uri, metadata={"kind": "model"})
    keys = {o["Key"] for o in s3.client.list_objects_v2(Bucket=s3.bucket)["Contents"]}
    assert keys == {
        f"models/m1/{k}" for k in ("weights.bin", "config.json", "sub/tok.json", MANIFEST)
    }
    # A multipart upload's ETag is "<md5 of part md5s>-<parts>".
    etag = s3.client.head_object(Bucket=s3.bucket, Key="models/m1/weights.bin")["ETag"]
    assert etag.strip('"').endswith("-3")
    assert storage.read_manifest(uri).sha256 == manifest.sha256
    dest = tmp_path / "dest"
    storage.fetch_dir(uri, dest)
    for rel in manifest.files:
        assert (dest / rel).read_bytes() == (src / rel).read_bytes()
    # Republishing drops files that are gone; the prefix holds exactly the new artifact.
    (src / "sub" / "tok.json").unlink()
    storage.publish_dir(src, uri)
    assert storage.list_keys(uri) == [MANIFEST, "config.json", "weights.bin"]
    assert storage.materialize(uri, tmp_path / "cache").joinpath("config.json").exists()


def test_corruption_and_half_artifacts_are_refused(s3, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    src = _artifact(tmp_path / "src")
    uri = f"s3://{s3.bucket}/a"
    storage.publish_dir(src, uri)
    s3.client.put_object(Bucket=s3.bucket, Key="a/config.json", Body=b"tampered")
    with pytest.raises(StorageError, match="config.json: sha256 mismatch"):
        storage.fetch_dir(uri, tmp_path / "dest")
    # Files without a manifest (an upload that died before publishing) are not an artifact.
    s3.client.put_object(Bucket=s3.bucket, Key="half/weights.bin", Body=b"x")
    with pytest.raises(StorageError, match="no published artifact"):
        storage.fetch_dir(f"s3://{s3.bucket}/half", tmp_path / "d2")
    # ...but a dataset or a user's upload can still be read as plain objects.
    single = storage.materialize(
        f"s3://{s3.bucket}/half/weights.bin", tmp_path / "c", require_manifest=False
    )
    assert single.read_bytes() == b"x"


def test_objects(s3, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    uri = f"s3://{s3.bucket}/dir/obj.json"
    storage.write_bytes(uri, b'{"x": 1}')
    assert storage.read_bytes(uri) == b'{"x": 1}' and storage.exists(uri)
    # A key sharing a prefix with a "directory" is not inside it.
    storage.write_bytes(f"s3://{s3.bucket}/dirt", b"no")
    assert storage.list_keys(f"s3://{s3.bucket}/dir") == ["obj.json"]
    path = tmp_path / "f.bin"
    path.write_bytes(b"abc" * 1000)
    storage.upload_file(path, f"s3://{s3.bucket}/dir/f.bin")
    storage.download_file(f"s3://{s3.bucket}/dir/f.bin", tmp_path / "back.bin")
    assert (tmp_path / "back.bin").read_bytes() == path.read_bytes()
    storage.delete(f"s3://{s3.bucket}/dir")
    assert storage.list_keys(f"s3://{s3.bucket}/dir") == []
    with pytest.raises(StorageError, match="cannot read"):
        storage.read_bytes(uri)
