"""Per-sample results under the output URI, written as each batch completes.

Layout under the output location:

    samples/shard-0000-of-0002.jsonl            file:// and pvc:// (appended, fsync'd)
    samples/shard-0000-of-0002/part-00000.jsonl s3:// (objects cannot be appended to)

A restarted worker reads what is there and skips those samples; a line cut
short by a kill is ignored. Records are keyed by benchmark/version/line, so
merging any number of files (or the same file twice) gives the same result.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hanlin import storage

SAMPLES_DIR = "samples"


@dataclass(frozen=True)
class Shard:
    """Shard `index` of `count` (0-based)."""

    index: int
    count: int

    @classmethod
    def parse(cls, text: str) -> Shard:
        """`"1/2"` -> Shard(1, 2); a ValueError names the expected form."""
        try:
            left, right = text.split("/")
            shard = cls(int(left), int(right))
        except ValueError:
            raise ValueError(f"--shard: expected I/N like 0/2, got {text!r}") from None
        if shard.count < 1 or not 0 <= shard.index < shard.count:
            raise ValueError(f"--shard: need 0 <= I < N, got {text!r}")
        return shard

    @property
    def stem(self) -> str:
        """The file name stem of this shard's results."""
        return f"shard-{self.index:04d}-of-{self.count:04d}"

    def take(self, n: int) -> range:
        """The indices 0..n-1 this shard owns: one contiguous, deterministic slice."""
        return range(self.index * n // self.count, (self.index + 1) * n // self.count)


def _parse_lines(data: bytes) -> list[dict[str, Any]]:
    records = []
    for line in data.decode("utf-8", errors="replace").splitlines():
        try:
            item = json.loads(line)
        except json.JSONDecodeError:
            continue  # a partial last line from a killed writer
        if isinstance(item, dict) and "key" in item:
            records.append(item)
    return records


def read_records(output: str) -> dict[str, dict[str, Any]]:
    """Every sample record under `output`, by key (later duplicates are ignored)."""
    root = storage.parse_uri(output).join(SAMPLES_DIR)
    try:
        keys = sorted(storage.list_keys(root))
    except storage.StorageError:
        return {}
    found: dict[str, dict[str, Any]] = {}
    for key in keys:
        if not key.endswith(".jsonl"):
            continue
        for rec in _parse_lines(storage.read_bytes(root.join(key))):
            found.setdefault(str(rec["key"]), rec)
    return found


class ResultLog:
    """Appends one shard's sample records to the output location."""

    def __init__(self, output: str, shard: Shard) -> None:
        self.root = storage.parse_uri(output).join(SAMPLES_DIR)
        self.shard = shard
        local = self.root.local_path()
        self.path: Path | None = local / f"{shard.stem}.jsonl" if local is not None else None
        self._part = 0
        if self.path is None:
            prefix = self.root.join(shard.stem)
            try:
                self._part = len(storage.list_keys(prefix))
            except storage.StorageError:
                self._part = 0

    def append(self, records: list[dict[str, Any]]) -> None:
        """Persist records before returning (fsync'd locally, one object on S3)."""
        if not records:
            return
        data = "".join(json.dumps(r, sort_keys=True) + "\n" for r in records).encode()
        if self.path is not None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with open(self.path, "ab") as fh:
                # Start on a fresh line if a killed writer left half of one.
                if fh.tell() > 0:
                    with open(self.path, "rb") as check:
                        check.seek(-1, os.SEEK_END)
                        if check.read(1) != b"\n":
                            fh.write(b"\n")
                fh.write(data)
                fh.flush()
                os.fsync(fh.fileno())
            return
        storage.write_bytes(self.root.join(self.shard.stem, f"part-{self._part:05d}.jsonl"), data)
        self._part += 1
