"""`hanlin serve --spec FILE`: a ModelDeployment resource (int4 weights) served for real."""

from __future__ import annotations

from pathlib import Path

import openai
import pytest

from hanlin.dev.fixtures import hanlin_server

pytestmark = [pytest.mark.e2e, pytest.mark.slow]


def test_spec_file_sets_model_name_limits_quantization_and_dtype(
    model_dir: Path, tmp_path: Path
) -> None:
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
    dtype: auto
    kvCacheFraction: 0.5
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
    # auto is bf16 with quantized weights; the cache is a fraction of free memory, capped
    # at maxSeqs sequences of maxModelLen tokens: 4 x 96 = 384 tokens = 24 blocks.
    log = (tmp_path / "server.log").read_text()
    assert "dtype bfloat16, quantization int4, KV cache 24 blocks x 16 tokens" in log


def test_cli_dtype_flag_and_bad_dtype(model_dir: Path, tmp_path: Path) -> None:
    import subprocess
    import sys

    args = ["serve", "--model", str(model_dir), "--dtype", "bfloat16", "--quantization", "int8"]
    args += ["--kv-cache-mib", "3", "--max-seqs", "4"]
    with hanlin_server(args, tmp_path / "server.log") as url:
        client = openai.OpenAI(base_url=f"{url}/v1", api_key="unused", max_retries=0)
        model = client.models.list().data[0].id
        res = client.completions.create(
            model=model, prompt="1, 2, 3, 4,", max_tokens=6, temperature=0
        )
        assert res.choices[0].text.startswith(" 5, 6")
    # bf16 halves the cache's bytes per token (30 layers x 3 heads x 64 x K,V x 2 bytes):
    # 3 MiB holds 136 tokens, 8 blocks of 16.
    assert (
        "dtype bfloat16, quantization int8, KV cache 8 blocks"
        in (tmp_path / "server.log").read_text()
    )
    bad = subprocess.run(
        [sys.executable, "-m", "hanlin.cli", "serve", "--model", str(model_dir), "--dtype", "fp64"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert bad.returncode != 0 and "dtype must be one of" in bad.stderr
