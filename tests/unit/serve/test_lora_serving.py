"""Multi-LoRA serving: one batch mixes the base model and two adapters, each exact vs PEFT."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch

from hanlin.dev.model import make_lora_adapter
from hanlin.serve.config import EngineConfig
from hanlin.serve.engine import Engine
from hanlin.serve.errors import ErrorCode, RequestError
from hanlin.serve.llm import LLM
from hanlin.serve.params import SamplingParams

# Longer than a KV block (16 tokens): a prefix block shared across adapters would show.
PROMPT = (
    "The old lighthouse keeper climbed the winding stone stairs every single evening, "
    "just before sunset, to light the great lamp for the fishing boats, and"
)
NEW = 10


def _load(model_dir: Path) -> Any:
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32).eval()


@pytest.fixture(scope="module")
def adapters(model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Two real PEFT adapters that change the model (one adapts q and v only)."""
    root = tmp_path_factory.mktemp("adapters")
    return {
        "everything": make_lora_adapter(model_dir, root / "everything", seed=1),
        "qv-only": make_lora_adapter(
            model_dir, root / "qv-only", seed=2, targets=("q_proj", "v_proj")
        ),
    }


def _hf_greedy(model_dir: Path, adapter: Path | None, ids: list[int]) -> list[int]:
    model = _load(model_dir)
    if adapter is not None:
        from peft import PeftModel

        model = PeftModel.from_pretrained(model, adapter).eval()
    with torch.no_grad():
        out = model.generate(torch.tensor([ids]), max_new_tokens=NEW, do_sample=False)
    return [int(t) for t in out[0, len(ids) :]]


@pytest.mark.parametrize("tp", [1, 2], ids=["tp1", "tp2"])
def test_a_mixed_batch_of_base_and_adapters_matches_peft_token_for_token(
    model_dir: Path, adapters: dict[str, Path], tp: int
) -> None:
    # With tensor parallelism every rank holds its cut of each adapter.
    config = EngineConfig(model_dir, lora_adapters=adapters, num_blocks=64, tensor_parallel=tp)
    engine = Engine(config)
    ids = engine.tokenizer(PROMPT).input_ids
    assert len(ids) > engine.config.block_size
    want = {
        "base": _hf_greedy(model_dir, None, ids),
        "everything": _hf_greedy(model_dir, adapters["everything"], ids),
        "qv-only": _hf_greedy(model_dir, adapters["qv-only"], ids),
    }
    # The adapters really change the model, or this test would prove nothing.
    assert len({tuple(v) for v in want.values()}) == 3, want
    params = SamplingParams(max_tokens=NEW, temperature=0, ignore_eos=True)
    # Base first, so its prompt blocks are cached before the adapters' requests look.
    got: dict[str, list[int]] = {k: [] for k in want}
    engine.add_request("base", ids, params)
    for out in engine.step():
        got[out.request_id].extend(out.token_ids)
    for name in ("everything", "qv-only"):
        engine.add_request(name, ids, params, adapter=name)
    while engine.has_work():
        for out in engine.step():
            got[out.request_id].extend(out.token_ids)
    engine.shutdown()
    assert got == want


def test_the_python_api_takes_an_adapter(model_dir: Path, adapters: dict[str, Path]) -> None:
    llm = LLM(model_dir, lora_adapters={"qv-only": adapters["qv-only"]}, num_blocks=32)
    ids = llm.tokenizer(PROMPT).input_ids
    params = SamplingParams(max_tokens=4, temperature=0, ignore_eos=True)
    tuned = llm.generate(ids, params, adapter="qv-only")[0].outputs[0].token_ids
    assert tuned == _hf_greedy(model_dir, adapters["qv-only"], ids)[:4]
    assert llm.generate(ids, params)[0].outputs[0].token_ids == _hf_greedy(model_dir, None, ids)[:4]


def test_unknown_adapters_and_bad_configs_are_refused(
    model_dir: Path, adapters: dict[str, Path], tmp_path: Path
) -> None:
    engine = Engine(EngineConfig(model_dir, lora_adapters=adapters, num_blocks=16))
    with pytest.raises(RequestError) as err:
        engine.add_request("x", [1, 2, 3], SamplingParams(max_tokens=2), adapter="nope")
    assert err.value.code is ErrorCode.MODEL_NOT_FOUND and err.value.param == "model"
    with pytest.raises(ValueError, match="base model's name"):
        EngineConfig(model_dir, served_model_name="m", lora_adapters={"m": adapters["qv-only"]})
