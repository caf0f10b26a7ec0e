"""Learning is real: a tiny model memorizes a small chat set (full, LoRA, QLoRA)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from train_fixtures import CHATS, TINY_LLAMA

from hanlin.train.loop import train


def _greedy(model, tok, question: str) -> str:  # type: ignore[no-untyped-def]
    prompt = tok.apply_chat_template(
        [{"role": "user", "content": question}], tokenize=False, add_generation_prompt=True
    )
    ids = torch.tensor([tok(prompt, add_special_tokens=False)["input_ids"]])
    with torch.no_grad():
        out = model.generate(
            input_ids=ids,
            max_new_tokens=12,
            do_sample=False,
            eos_token_id=tok.eos_token_id,
            pad_token_id=tok.pad_token_id,
        )
    return str(tok.decode(out[0, ids.shape[1] :], skip_special_tokens=True))


SETTINGS = {
    "full": (None, 3e-3, 25),
    "lora": ({"type": "lora", "r": 16, "alpha": 32, "dropout": 0.0}, 1e-2, 25),
    "qlora": ({"type": "qlora", "r": 16, "alpha": 32, "dropout": 0.0}, 1e-2, 25),
}


@pytest.mark.parametrize("method", ["full", "lora", "qlora"])
def test_memorizes_and_outputs_load(
    method: str, tiny_model: Path, chat_data: Path, job_factory, tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from hanlin.quant import QuantLinear

    adapter, lr, steps = SETTINGS[method]
    spec = {
        "method": "sft",
        "model": {"uri": f"file://{tiny_model}"},
        "data": [{"uri": f"file://{chat_data}", "format": "messages"}],
        "hyperparameters": {
            "maxSteps": steps,
            "learningRate": lr,
            "batchSize": 4,
            "seqLen": 96,
            "packing": False,
            "lrScheduler": "constant",
            "seed": 3,
        },
    }
    if adapter:
        spec["adapter"] = adapter
        spec["output"] = {"uri": f"file://{tmp_path}/out", "mergeAdapter": method == "lora"}
    quant_before = None
    if method == "qlora":
        # Snapshot what the 4-bit base holds right after quantization, to compare after.
        from hanlin.train.modeling import build_model

        built = build_model(job_factory(**spec).spec, tiny_model, None)
        quant_before = {n: b.clone() for n, b in built.model.named_buffers() if "qweight" in n}
    result = train(job_factory(**spec))
    assert result.final_loss is not None and result.final_loss < 0.15, result.final_loss
    assert result.model is not None
    trained = {n for n, p in result.model.named_parameters() if p.requires_grad}
    if adapter:
        assert trained and all("lora_" in n for n in trained)  # only the adapter learns
    if method == "qlora":
        quant = [m for m in result.model.modules() if isinstance(m, QuantLinear)]
        assert len(quant) == 2 * 7 and all(m.bits == 4 for m in quant)
        after = {n: b for n, b in result.model.named_buffers() if "qweight" in n}
        assert after.keys() == quant_before.keys()  # type: ignore[union-attr]
        assert all(
            after[n].dtype == torch.uint8 and torch.equal(after[n], quant_before[n]) for n in after
        )  # type: ignore[index]

    out = tmp_path / "out"
    tok = AutoTokenizer.from_pretrained(out / ("adapter" if adapter else "model"))
    assert tok.chat_template  # the template travels with the output
    if adapter:
        assert (out / "adapter" / "MANIFEST.json").exists()
        base = AutoModelForCausalLM.from_pretrained(tiny_model)
        original = {n: p.clone() for n, p in base.named_parameters()}
        model = PeftModel.from_pretrained(base, out / "adapter").eval()
        for n, p in model.get_base_model().named_parameters():
            if "lora_" not in n:
                key = n.replace(".base_layer", "")
                assert torch.equal(p, original[key]), n  # LoRA leaves the base untouched
    else:
        model = AutoModelForCausalLM.from_pretrained(out / "model").eval()
    answers = [_greedy(model, tok, q) for q, _ in CHATS]
    if method == "qlora":
        # The adapter was fitted to the 4-bit base: reproduce with that base.
        answers = [_greedy(result.model.eval(), tok, q) for q, _ in CHATS]
        model = PeftModel.from_pretrained(
            AutoModelForCausalLM.from_pretrained(tiny_model), out / "adapter"
        )
    assert answers == [a for _, a in CHATS]
    if method == "lora":
        from hanlin.storage import parse_uri
        from hanlin.train.output import load_output

        loaded, _ = load_output(parse_uri(f"file://{out}"), tmp_path / "cache")
        assert [_greedy(loaded.eval(), tok, q) for q, _ in CHATS] == answers
        merged = AutoModelForCausalLM.from_pretrained(out / "merged").eval()
        assert [_greedy(merged, tok, q) for q, _ in CHATS] == answers


def test_pretrain_from_config_learns_text(tmp_path: Path, job_factory) -> None:  # type: ignore[no-untyped-def]
    from transformers import AutoModelForCausalLM

    text = tmp_path / "corpus.txt"
    text.write_text("\n\n".join(["the quick brown fox jumps over the lazy dog"] * 20))
    job = job_factory(
        method="pretrain",
        model={"config": TINY_LLAMA},
        data=[{"uri": f"file://{text}", "format": "text"}],
        hyperparameters={
            "maxSteps": 40,
            "learningRate": 5e-3,
            "batchSize": 2,
            "seqLen": 64,
            "seed": 1,
        },
    )
    result = train(job)
    assert result.final_loss is not None and result.final_loss < 2.0  # from ln(259) = 5.6
    model = AutoModelForCausalLM.from_pretrained(tmp_path / "out" / "model")
    assert model.config.hidden_size == 64
