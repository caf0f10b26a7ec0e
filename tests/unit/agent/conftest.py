"""Fixtures for agent tests: a scripted OpenAI-compatible LLM server on 127.0.0.1."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from scripted_llm import ScriptedLLM, serve_scripted


@pytest.fixture
def llm() -> Iterator[ScriptedLLM]:
    """A scripted chat-completions server; call `.script(...)` then point an agent at `.url`."""
    with serve_scripted() as server:
        yield server
