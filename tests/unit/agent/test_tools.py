"""Tools: schemas from signatures, the calculator, http and retrieval built-ins."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Literal

import pytest

from hanlin import storage
from hanlin.agent.builtins.calculator import calculator_tool
from hanlin.agent.builtins.http_tool import host_allowed, http_tool
from hanlin.agent.builtins.retrieval import BM25Index, Passage, retrieval_tool
from hanlin.agent.tooling import Toolbox, function_tool
from hanlin.agent.toolspecs import parse_tool_flag, tools_from_specs


def convert(amount: float, unit: Literal["km", "mi"], precise: bool = False) -> dict[str, float]:
    """Convert a distance.

    Longer explanation that is not part of the summary.

    Args:
        amount: How far.
        unit: The unit to convert
            from.
        precise: Keep all digits.
    """
    factor = 0.621371 if unit == "km" else 1.609344
    value = amount * factor
    return {"value": value if precise else round(value, 2)}


def buggy(x: int) -> str:
    """A tool with a bug."""
    return str(1 // (x - x))


def test_schema_comes_from_type_hints_and_docstring() -> None:
    t = function_tool(convert)
    assert t.description == "Convert a distance."
    assert t.parameters["required"] == ["amount", "unit"]
    props = t.parameters["properties"]
    assert props["amount"] == {"type": "number", "description": "How far."}
    assert props["unit"]["enum"] == ["km", "mi"]
    assert props["unit"]["description"] == "The unit to convert from."
    assert props["precise"]["default"] is False
    box = Toolbox.of([t])
    assert box.invoke("convert", {"amount": 10, "unit": "km"}).output == '{"value": 6.21}'
    bad = box.invoke("convert", {"amount": 10, "unit": "parsec"})
    assert not bad.ok and "unit" in bad.error
    extra = box.invoke("convert", {"amount": 1, "unit": "km", "speed": 3})
    assert not extra.ok and "speed" in extra.error


def test_bugs_propagate() -> None:
    box = Toolbox.of([function_tool(buggy)])
    with pytest.raises(ZeroDivisionError):
        box.invoke("buggy", {"x": 3})


def test_untyped_tools_are_refused() -> None:
    def untyped(x):  # type: ignore[no-untyped-def]
        """No hints."""

    with pytest.raises(TypeError, match="needs a type hint"):
        function_tool(untyped)


@pytest.mark.parametrize(
    ("expression", "expected"),
    [
        ("(3 + 4) * 2 / sqrt(16)", "3.5"),
        ("2 ** 10", "1024"),
        ("-7 // 2", "-4"),
        ("round(pi, 3)", "3.142"),
    ],
)
def test_calculator(expression: str, expected: str) -> None:
    assert (
        Toolbox.of([calculator_tool()]).invoke("calculator", {"expression": expression}).output
        == expected
    )


@pytest.mark.parametrize(
    "expression",
    [
        "__import__('os').system('true')",
        "9 ** 9 ** 9",
        "(10 ** 999) ** 999",
        "1 / 0",
        "x + 1",
        "[1] * 10",
    ],
)
def test_calculator_refuses_without_eval(expression: str) -> None:
    result = Toolbox.of([calculator_tool()]).invoke("calculator", {"expression": expression})
    assert not result.ok and result.error


@pytest.fixture
def web() -> Iterator[str]:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802
            if self.path == "/redirect-out":
                self.send_response(302)
                self.send_header("location", "http://example.invalid/")
                self.end_headers()
                return
            body = b"x" * 5000 if self.path == "/big" else b"hello from the web"
            if self.path == "/slow":
                threading.Event().wait(2)
            self.send_response(404 if self.path == "/missing" else 200)
            self.send_header("content-type", "text/plain")
            self.send_header("content-length", str(len(body)))
            self.end_headers()
            try:
                self.wfile.write(body)
            except OSError:
                pass  # the client gave up (the timeout case)

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(
        target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
    ).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_http_allowlist_size_and_time(web: str) -> None:
    box = Toolbox.of(
        [http_tool({"allowedHosts": ["127.0.0.1"], "maxBytes": 1000, "timeoutSeconds": 0.5})]
    )
    assert box.invoke("http", {"url": f"{web}/"}).output == "hello from the web"
    assert "larger than 1000" in box.invoke("http", {"url": f"{web}/big"}).error
    assert "timed out" in box.invoke("http", {"url": f"{web}/slow"}).error
    assert "HTTP 404" in box.invoke("http", {"url": f"{web}/missing"}).error
    assert "not allowed" in box.invoke("http", {"url": f"{web}/redirect-out"}).error
    denied = Toolbox.of([http_tool({"allowedHosts": ["example.com"]})]).invoke(
        "http", {"url": f"{web}/"}
    )
    assert not denied.ok and "'127.0.0.1' is not allowed" in denied.error
    with pytest.raises(ValueError, match="allowedHosts"):
        http_tool({})


def test_host_allowlist_wildcards() -> None:
    assert host_allowed("api.example.com", ["*.example.com"])
    assert host_allowed("example.com", ["*.example.com"])
    assert not host_allowed("evilexample.com", ["*.example.com"])
    assert not host_allowed("example.com.evil.io", ["example.com"])


def test_bm25_ranks_by_term_rarity() -> None:
    index = BM25Index(
        [
            Passage("a", "the cat sat on the mat"),
            Passage("b", "the dog chased the cat"),
            Passage("c", "dogs bark"),
        ]
    )
    assert [p.id for _, p in index.search("dog", 3)] == ["b"]
    assert [p.id for _, p in index.search("cat mat", 3)] == ["a", "b"]


def test_retrieval_reads_documents_through_storage(tmp_path: Path) -> None:
    docs = tmp_path / "docs"
    storage.write_bytes(
        f"file://{docs}/geo.txt", b"Paris is the capital of France.\n\nBerlin is in Germany."
    )
    storage.write_bytes(
        f"file://{docs}/k8s.jsonl", b'{"id": "pods", "text": "A pod runs containers."}\n'
    )
    box = Toolbox.of([retrieval_tool({"uri": f"file://{docs}", "topK": 1})])
    assert box.invoke("retrieval", {"query": "capital of France"}).output.startswith("[geo.txt#0]")
    assert "[pods]" in box.invoke("retrieval", {"query": "what runs containers", "top_k": 2}).output
    assert not box.invoke("retrieval", {"query": "zebra"}).ok
    with pytest.raises(ValueError, match="config.uri"):
        retrieval_tool({})


def test_tool_specs_name_the_bad_field() -> None:
    assert [t.name for t in tools_from_specs([{"builtin": "calculator"}])] == ["calculator"]
    with pytest.raises(ValueError, match=r"tools\[0\].builtin: unknown tool 'abacus'"):
        tools_from_specs([{"builtin": "abacus"}])
    with pytest.raises(ValueError, match=r"tools\[1\].remote.url"):
        tools_from_specs([{"builtin": "calculator"}, {"remote": {}}])
    assert parse_tool_flag('python:{"cpuSeconds": 2}') == {
        "builtin": "python",
        "config": {"cpuSeconds": 2},
    }
    assert parse_tool_flag("http://127.0.0.1:1") == {"remote": {"url": "http://127.0.0.1:1"}}
