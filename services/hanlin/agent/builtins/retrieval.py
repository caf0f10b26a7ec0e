"""The retrieval tool: BM25 over documents read from a storage URI."""

from __future__ import annotations

import json
import math
import re
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from hanlin import storage
from hanlin.agent.tooling import Tool, ToolError, function_tool

_TOKEN = re.compile(r"\w+", re.UNICODE)
_KNOWN = {"uri", "documentsUri", "topK"}


def tokenize(text: str) -> list[str]:
    """Lower-cased word tokens."""
    return _TOKEN.findall(text.lower())


@dataclass
class Passage:
    """One retrievable unit: a paragraph of a text file or one JSONL record."""

    id: str
    text: str


@dataclass
class BM25Index:
    """Okapi BM25 (k1=1.5, b=0.75) over passages."""

    passages: list[Passage]
    k1: float = 1.5
    b: float = 0.75
    _tf: list[Counter[str]] = field(default_factory=list, init=False)
    _idf: dict[str, float] = field(default_factory=dict, init=False)
    _avg_len: float = field(default=0.0, init=False)

    def __post_init__(self) -> None:
        self._tf = [Counter(tokenize(p.text)) for p in self.passages]
        df: Counter[str] = Counter()
        for tf in self._tf:
            df.update(tf.keys())
        n = len(self.passages)
        self._idf = {t: math.log((n - d + 0.5) / (d + 0.5) + 1.0) for t, d in df.items()}
        self._avg_len = sum(sum(tf.values()) for tf in self._tf) / max(n, 1)

    def search(self, query: str, top_k: int) -> list[tuple[float, Passage]]:
        """The `top_k` best passages for `query`, best first; passages scoring 0 are left out."""
        terms = tokenize(query)
        scored: list[tuple[float, int]] = []
        for i, tf in enumerate(self._tf):
            length = sum(tf.values())
            score = 0.0
            for t in terms:
                f = tf.get(t, 0)
                if f:
                    norm = f + self.k1 * (1 - self.b + self.b * length / (self._avg_len or 1.0))
                    score += self._idf[t] * f * (self.k1 + 1) / norm
            if score > 0:
                scored.append((score, i))
        scored.sort(key=lambda s: (-s[0], s[1]))
        return [(s, self.passages[i]) for s, i in scored[:top_k]]


def _passages(name: str, data: bytes) -> list[Passage]:
    text = data.decode("utf-8", errors="replace")
    if name.endswith(".jsonl"):
        out = []
        for n, line in enumerate(text.splitlines()):
            if line.strip():
                record = json.loads(line)
                body = record.get("text") or record.get("content") or ""
                title = record.get("title")
                out.append(
                    Passage(
                        str(record.get("id", f"{name}#{n}")), f"{title}\n{body}" if title else body
                    )
                )
        return out
    paragraphs = [p.strip() for p in re.split(r"\n\s*\n", text) if p.strip()]
    return [Passage(f"{name}#{n}", p) for n, p in enumerate(paragraphs)]


def load_passages(uri: str) -> list[Passage]:
    """Passages from one object, or from every .txt/.md/.jsonl object under a prefix."""
    keys = [k for k in storage.list_keys(uri) if k.endswith((".txt", ".md", ".jsonl"))]
    if keys:
        base = uri.rstrip("/")
        return [p for k in sorted(keys) for p in _passages(k, storage.read_bytes(f"{base}/{k}"))]
    name = uri.rstrip("/").rsplit("/", 1)[-1]
    return _passages(name, storage.read_bytes(uri))


def retrieval_tool(config: dict[str, Any] | None = None) -> Tool:
    """The retrieval tool over `config.uri` (file://, s3:// or pvc://)."""
    config = dict(config or {})
    unknown = sorted(set(config) - _KNOWN)
    if unknown:
        raise ValueError(
            f"tools[retrieval].config: unknown fields {unknown} (known: {sorted(_KNOWN)})"
        )
    uri = config.get("uri", config.get("documentsUri"))
    if not isinstance(uri, str) or not uri:
        raise ValueError("tools[retrieval].config.uri: required, the storage URI of the documents")
    default_k = int(config.get("topK", 3))
    passages = load_passages(uri)
    if not passages:
        raise ValueError(f"tools[retrieval].config.uri: no documents found at {uri}")
    index = BM25Index(passages)

    def retrieve(query: str, top_k: int = default_k) -> str:
        """Search the document collection and return the most relevant passages.

        Args:
            query: Keywords or a question to search for.
            top_k: How many passages to return.
        """
        if top_k < 1 or top_k > 20:
            raise ToolError("top_k must be between 1 and 20")
        hits = index.search(query, top_k)
        if not hits:
            raise ToolError(f"no passage matches {query!r}")
        return "\n\n".join(f"[{p.id}] (score {s:.2f}) {p.text}" for s, p in hits)

    return function_tool(retrieve, name="retrieval", source="builtin")
