"""file:// and pvc:// storage: objects, atomic publish, manifests, verification."""

from __future__ import annotations

import json
import threading
from pathlib import Path

import pytest

from hanlin import storage
from hanlin.storage import MANIFEST, StorageError, parse_uri


def test_parse_uris(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert parse_uri(f"file://{tmp_path}/x").local_path() == tmp_path / "x"
    assert parse_uri(tmp_path / "y").local_path() == tmp_path / "y"
    s3 = parse_uri("s3://bucket/a/b")
    assert (s3.bucket, s3.key, str(s3)) == ("bucket", "a/b", "s3://bucket/a/b")
    assert str(s3.join("c", "d")) == "s3://bucket/a/b/c/d"
    monkeypatch.setenv("HANLIN_PVC_ROOT", str(tmp_path))
    assert parse_uri("pvc://claim/models/m").local_path() == tmp_path / "claim" / "models/m"
    with pytest.raises(StorageError, match="scheme"):
        parse_uri("gs://b/k")
    with pytest.raises(StorageError, match="no bucket"):
        parse_uri("s3:///k")


def _artifact(root: Path, n: int = 3) -> Path:
    root.mkdir(parents=True)
    for i in range(n):
        (root / f"f{i}.bin").write_bytes(bytes([i]) * (1000 + i))
    (root / "sub").mkdir()
    (root / "sub" / "cfg.json").write_text('{"a": 1}')
    return root


@pytest.mark.parametrize("scheme", ["file", "pvc"])
def test_publish_fetch_roundtrip(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, scheme: str
) -> None:
    monkeypatch.setenv("HANLIN_PVC_ROOT", str(tmp_path / "pvcroot"))
    src = _artifact(tmp_path / "src")
    uri = f"file://{tmp_path}/out/model" if scheme == "file" else "pvc://claim/out/model"
    assert not storage.is_published(uri)
    manifest = storage.publish_dir(src, uri, metadata={"kind": "model"})
    assert storage.is_published(uri)
    assert set(manifest.files) == {"f0.bin", "f1.bin", "f2.bin", "sub/cfg.json"}
    assert manifest.files["f1.bin"]["sha256"] == storage.file_sha256(src / "f1.bin")
    back = storage.read_manifest(uri)
    assert back.sha256 == manifest.sha256 and back.metadata == {"kind": "model"}
    dest = tmp_path / "fetched"
    storage.fetch_dir(uri, dest)
    for rel in manifest.files:
        assert (dest / rel).read_bytes() == (src / rel).read_bytes()
    # Republishing replaces the content whole: files that are gone stay gone.
    (src / "f2.bin").unlink()
    storage.publish_dir(src, uri)
    assert "f2.bin" not in storage.list_keys(uri)
    assert storage.materialize(uri, tmp_path / "cache") == parse_uri(uri).local_path()


def test_fetch_detects_corruption(tmp_path: Path) -> None:
    src = _artifact(tmp_path / "src")
    uri = f"file://{tmp_path}/pub"
    storage.publish_dir(src, uri)
    (tmp_path / "pub" / "f0.bin").write_bytes(b"tampered")
    with pytest.raises(StorageError, match="f0.bin: sha256 mismatch"):
        storage.fetch_dir(uri, tmp_path / "dest")


def test_unpublished_artifact_is_refused(tmp_path: Path) -> None:
    _artifact(tmp_path / "half")  # files but no manifest: a publish that died midway
    with pytest.raises(StorageError, match="no published artifact"):
        storage.fetch_dir(f"file://{tmp_path}/half", tmp_path / "dest")
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / MANIFEST).write_text("{not json")
    with pytest.raises(StorageError, match="not a valid manifest"):
        storage.read_manifest(f"file://{tmp_path}/bad")


def test_readers_never_see_half_an_artifact(tmp_path: Path) -> None:
    """A reader racing many republishes always sees a complete, matching set of files."""
    uri = f"file://{tmp_path}/pub"
    versions = []
    for v in range(2):
        d = tmp_path / f"v{v}"
        d.mkdir()
        for i in range(20):
            (d / f"part{i}").write_text(f"{v}" * 5000)
        versions.append(d)
    storage.publish_dir(versions[0], uri)
    stop = threading.Event()
    seen: list[set[str]] = []

    def read() -> None:
        n = 0
        while not stop.is_set():
            dest = tmp_path / f"reader{n}"
            n += 1
            try:
                m = storage.fetch_dir(uri, dest)
            except StorageError:
                continue  # the instant of the rename: not published, retry
            seen.append({(dest / rel).read_text()[0] for rel in m.files})

    reader = threading.Thread(target=read)
    reader.start()
    for k in range(30):
        storage.publish_dir(versions[k % 2], uri)
    stop.set()
    reader.join()
    assert seen and all(len(s) == 1 for s in seen)


def test_objects(tmp_path: Path) -> None:
    uri = f"file://{tmp_path}/dir/obj.json"
    storage.write_bytes(uri, json.dumps({"x": 1}).encode())
    assert json.loads(storage.read_bytes(uri)) == {"x": 1}
    assert storage.exists(uri)
    assert not list((tmp_path / "dir").glob("*.partial"))
    big = tmp_path / "big.bin"
    big.write_bytes(b"z" * 100_000)
    storage.upload_file(big, f"file://{tmp_path}/dir/big.bin")
    storage.download_file(f"file://{tmp_path}/dir/big.bin", tmp_path / "copy.bin")
    assert (tmp_path / "copy.bin").read_bytes() == big.read_bytes()
    assert storage.list_keys(f"file://{tmp_path}/dir") == ["big.bin", "obj.json"]
    storage.delete(uri)
    assert not storage.exists(uri)
    with pytest.raises(StorageError, match="does not exist"):
        storage.read_bytes(uri)
