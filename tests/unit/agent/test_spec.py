"""An AgentService resource becomes agent settings; the repository's example is the input."""

from __future__ import annotations

from pathlib import Path

import pytest

from hanlin.agent.builtins.python_tool import limits_from_config
from hanlin.agent.spec import settings_from_spec

EXAMPLE = Path(__file__).resolve().parents[3] / "examples" / "agentservice.yaml"


def test_example_maps_to_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("HANLIN_LLM_URL", raising=False)
    monkeypatch.delenv("HANLIN_LLM_MODEL", raising=False)
    monkeypatch.setenv("HANLIN_LLM_API_KEY", "k-123")
    settings = settings_from_spec(EXAMPLE)
    assert settings.name == "analyst"
    assert (settings.llm_url, settings.model) == ("http://smollm2:8000/v1", "smollm2")
    assert settings.strategy == "react" and settings.max_steps == 8
    assert settings.wall_seconds == 120.0 and settings.api_key == "k-123"
    assert "careful analyst" in settings.system_prompt
    assert settings.tools == [
        {"builtin": "calculator", "config": {}},
        {"builtin": "python", "config": {"timeoutSeconds": 10}},
        {"remote": {"url": "http://company-tools:8080"}},
    ]
    assert limits_from_config(settings.tools[1]["config"]).wall_seconds == 10


def test_overrides_and_bad_specs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HANLIN_LLM_URL", "http://10.0.0.7:8000")
    settings = settings_from_spec(EXAMPLE, model="served-name")
    assert (settings.llm_url, settings.model) == ("http://10.0.0.7:8000", "served-name")
    bad = tmp_path / "bad.yaml"
    bad.write_text(EXAMPLE.read_text().replace("strategy: react", "strategy: tree-of-thought"))
    with pytest.raises(ValueError, match="strategy"):
        settings_from_spec(bad)
