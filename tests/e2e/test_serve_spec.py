"""`hanlin serve --spec FILE`: a ModelDeployment resource (int4 weights) served for real."""

from __future__ import annotations

from pathlib import Path

import openai
import pytest

from hanlin.dev.fixtures import hanlin_server

pytestmark = [pytest.mark.e2e, pytest.mark.slow]


def test_spec_file_sets_model_name_limits_and_quantization(model_dir: Path, tmp_path: Path) -> None:
    spec = tmp_path / "md.yaml"
    spec.write_text(
        f"""apiVersion: hanlin.dev/v1alpha1
kind: ModelDeployment
metadata:
  name: smol-int4
spec:
  model:
    uri: file://{model_dir}
  engine:
    quantization: int4
    maxModelLen: 96
    maxBatchTokens: 128
    maxSeqs: 4
  api:
    rest: true
    grpc: false
"""
    )
    with hanlin_server(["serve", "--spec", str(spec)], tmp_path / "server.log") as url:
        client = openai.OpenAI(base_url=f"{url}/v1", api_key="unused", max_retries=0)
        assert [m.id for m in client.models.list().data] == ["smol-int4"]
        res = client.completions.create(
            model="smol-int4", prompt="1, 2, 3, 4,", max_tokens=6, temperature=0
        )
        # SmolLM2 ships on a 4-bit grid, so int4 serving still counts on.
        assert res.choices[0].text.startswith(" 5, 6")
        with pytest.raises(openai.BadRequestError, match="maximum context length is 96"):
            client.completions.create(model="smol-int4", prompt="word " * 100, max_tokens=1)
