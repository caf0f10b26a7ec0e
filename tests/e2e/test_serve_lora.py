"""Multi-LoRA through `hanlin serve --lora NAME=DIR` with the official `openai` client."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import openai
import pytest
import torch

from hanlin.dev.fixtures import hanlin_openai
from hanlin.dev.model import make_lora_adapter

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

PROMPT = "Once upon a time, in a village by the sea, there lived"


@pytest.fixture(scope="module")
def adapter(model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_lora_adapter(model_dir, tmp_path_factory.mktemp("lora") / "pirate", seed=7)


@pytest.fixture(scope="module")
def client(
    model_dir: Path, adapter: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[openai.OpenAI]:
    args = [
        "serve", "--model", str(model_dir), "--served-model-name", "smol", "--dtype", "float32",
        "--lora", f"pirate={adapter}", "--max-model-len", "256", "--kv-cache-mib", "32",
    ]  # fmt: skip
    with hanlin_openai(args, tmp_path_factory.mktemp("serve") / "server.log") as c:
        yield c


def test_models_lists_the_adapter_on_its_base(client: openai.OpenAI) -> None:
    models = {m.id: m for m in client.models.list().data}
    assert set(models) == {"smol", "pirate"}
    assert getattr(models["pirate"], "parent", None) == "smol"


def test_the_adapter_answers_as_peft_does_and_the_base_as_itself(
    client: openai.OpenAI, model_dir: Path, adapter: Path
) -> None:
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(model_dir)
    ids = tok(PROMPT, return_tensors="pt").input_ids
    base = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32).eval()
    with torch.no_grad():
        plain = base.generate(ids, max_new_tokens=12, do_sample=False)[0, ids.shape[1] :]
        tuned_model = PeftModel.from_pretrained(base, adapter).eval()
        tuned = tuned_model.generate(ids, max_new_tokens=12, do_sample=False)[0, ids.shape[1] :]
    assert plain.tolist() != tuned.tolist()
    for model, want in (("pirate", tuned), ("smol", plain)):
        r = client.completions.create(model=model, prompt=PROMPT, max_tokens=12, temperature=0)
        assert r.choices[0].text == tok.decode(want), model


def test_an_unknown_model_is_a_404_naming_what_is_served(client: openai.OpenAI) -> None:
    with pytest.raises(openai.NotFoundError) as err:
        client.completions.create(model="parrot", prompt="hi", max_tokens=2)
    assert "pirate" in str(err.value) and "smol" in str(err.value)


def test_a_spec_serves_named_adapters_and_merges_its_models_own(
    client: openai.OpenAI, model_dir: Path, adapter: Path, tmp_path: Path
) -> None:
    """spec.model.adapters by uri and by trainingJobRef (resolved into HANLIN_ADAPTERS), and
    the adapter of spec.model.trainingJobRef itself merged into the served model."""
    spec = tmp_path / "md.yaml"
    spec.write_text(
        f"""apiVersion: hanlin.dev/v1alpha1
kind: ModelDeployment
metadata: {{name: tuned}}
spec:
  model:
    trainingJobRef: {{name: sft}}
    adapters:
      - {{name: by-uri, uri: "file://{adapter}"}}
      - {{name: by-ref, trainingJobRef: {{name: other-sft}}}}
  engine: {{dtype: fp32, maxModelLen: 128}}
"""
    )
    env = {
        **os.environ,
        # What the operator's resolver hands the pod: the base model and both refs' adapters.
        "HANLIN_MODEL_URI": f"file://{model_dir}",
        "HANLIN_ADAPTERS": f"by-ref={adapter},sft={adapter}",
    }
    with hanlin_openai(["serve", "--spec", str(spec)], tmp_path / "s.log", env=env) as c:
        assert {m.id for m in c.models.list().data} == {"tuned", "by-uri", "by-ref"}
        texts = {
            m: c.completions.create(model=m, prompt=PROMPT, max_tokens=8, temperature=0)
            .choices[0]
            .text
            for m in ("tuned", "by-uri", "by-ref")
        }
    # The served model has its own adapter merged: it answers as base + adapter does (the
    # other server's `pirate`); the named adapters apply on top of that, both alike.
    pirate = client.completions.create(model="pirate", prompt=PROMPT, max_tokens=8, temperature=0)
    assert texts["tuned"] == pirate.choices[0].text
    assert texts["by-uri"] == texts["by-ref"] != texts["tuned"]
