"""Building the model to train: from a config, from weights, with an adapter.

- `pretrain` with `model.config`: a randomly initialised model (seeded).
- `continue` / `sft` / `pretrain` with `model.uri`: existing HF weights.
- `adapter.type: lora`: PEFT LoRA on the full-precision base (base frozen).
- `adapter.type: qlora`: the base's linear layers are replaced by the frozen
  weight-only `hanlin.quant.QuantLinear` (the serving engine's own quantization,
  so it runs on CPU), and PEFT LoRA wraps them.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from hanlin.api.training_job import TrainingJobSpec

DEFAULT_TARGETS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
QLORA_GROUP_SIZE = 64


class ModelError(ValueError):
    """The model part of the spec cannot be built; the message names the field."""


@dataclass
class BuiltModel:
    """The model to train (maybe a PeftModel), its tokenizer, and what it is."""

    model: nn.Module
    tokenizer: Any
    kind: str  # "model" or "adapter"
    base_dir: Path | None  # local base weights (for merging an adapter)
    quant_bits: int | None = None


def load_tokenizer(path_or_id: str | Path, local_only: bool = True) -> Any:
    """The tokenizer at a local directory (or a cached hub id)."""
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(path_or_id), local_files_only=local_only)
    if tok.pad_token_id is None:
        tok.pad_token = tok.eos_token
    return tok


def _new_model(spec: TrainingJobSpec, tokenizer: Any) -> nn.Module:
    from transformers import AutoConfig, AutoModelForCausalLM

    config = dict(spec.model.config or {})
    model_type = config.pop("model_type", None)
    if not isinstance(model_type, str):
        raise ModelError("spec.model.config.model_type: required (e.g. llama)")
    try:
        cfg = AutoConfig.for_model(model_type, **config)
    except (ValueError, KeyError) as e:
        raise ModelError(f"spec.model.config: {e}") from e
    if getattr(cfg, "vocab_size", 0) < len(tokenizer):
        raise ModelError(
            f"spec.model.config.vocab_size: {cfg.vocab_size} is smaller than the "
            f"tokenizer's {len(tokenizer)} tokens"
        )
    torch.manual_seed(spec.hyperparameters.seed)
    model: nn.Module = AutoModelForCausalLM.from_config(cfg, dtype=torch.float32)  # type: ignore[no-untyped-call]
    return model


def _load_weights(source: str | Path, local_only: bool) -> nn.Module:
    from transformers import AutoModelForCausalLM

    model: nn.Module = AutoModelForCausalLM.from_pretrained(
        str(source), dtype=torch.float32, local_files_only=local_only
    )
    return model


def _lora_targets(model: nn.Module, wanted: list[str] | None) -> list[str]:
    from hanlin.quant import QuantLinear

    present = {
        name.rpartition(".")[2]
        for name, m in model.named_modules()
        if isinstance(m, nn.Linear | QuantLinear) and not name.endswith("lm_head")
    }
    if wanted:
        missing = sorted(set(wanted) - present)
        if missing:
            raise ModelError(
                f"spec.adapter.targetModules: {missing} not found; the model's linear "
                f"layers are {sorted(present)}"
            )
        return list(wanted)
    chosen = [t for t in DEFAULT_TARGETS if t in present]
    return chosen or sorted(present)


def _apply_adapter(model: nn.Module, spec: TrainingJobSpec) -> tuple[nn.Module, int | None]:
    from peft import LoraConfig, get_peft_model
    from peft.tuners.lora.layer import Linear as LoraLinear

    from hanlin.quant import QuantLinear, quantize_model

    adapter = spec.adapter
    assert adapter is not None
    bits = None
    if adapter.type == "qlora":
        bits = adapter.bits or 4
        # The quantized base is frozen by construction: QuantLinear keeps its weight
        # in buffers, which get no gradient and are not optimizer parameters.
        quantize_model(model, bits=bits, group_size=QLORA_GROUP_SIZE)
    targets = _lora_targets(model, adapter.target_modules)
    config = LoraConfig(
        r=adapter.r,
        lora_alpha=adapter.alpha,  # type: ignore[arg-type]  # peft accepts floats
        lora_dropout=adapter.dropout,
        target_modules=targets,
        task_type="CAUSAL_LM",
    )
    if bits is not None:
        # PEFT's own Linear LoRA layer wraps any x -> y module with in/out_features.
        config._register_custom_module({QuantLinear: LoraLinear})
    with warnings.catch_warnings():
        # PEFT warns that it does not know QuantLinear; the mapping above handles it.
        warnings.filterwarnings("ignore", message="Unsupported layer type")
        peft_model: nn.Module = get_peft_model(model, config)  # type: ignore[arg-type]
    return peft_model, bits


def build_model(
    spec: TrainingJobSpec, base_dir: Path | None, tokenizer_dir: Path | None
) -> BuiltModel:
    """The model and tokenizer a job trains, from local paths already fetched.

    `base_dir` holds `spec.model.uri`'s weights (None with `config`);
    `tokenizer_dir` holds `spec.model.tokenizer` (None: the byte-level default).
    """
    from hanlin.train.tokenizer import byte_tokenizer

    hf_id = (
        spec.model.uri[len("hf://") :]
        if spec.model.uri and spec.model.uri.startswith("hf://")
        else None
    )
    if spec.model.config is not None:
        tokenizer = load_tokenizer(tokenizer_dir) if tokenizer_dir else byte_tokenizer()
        model = _new_model(spec, tokenizer)
    else:
        source: str | Path = hf_id or base_dir or ""
        try:
            tokenizer = load_tokenizer(source)
            model = _load_weights(source, local_only=True)
        except OSError as e:
            raise ModelError(
                f"spec.model.uri: cannot load a model from {spec.model.uri}: {e}"
            ) from e
    if tokenizer.chat_template is None and spec.method == "sft":
        raise ModelError("spec.model: the tokenizer has no chat template, which sft needs")
    if spec.adapter is None:
        return BuiltModel(model, tokenizer, "model", base_dir)
    torch.manual_seed(spec.hyperparameters.seed)
    peft_model, bits = _apply_adapter(model, spec)
    return BuiltModel(peft_model, tokenizer, "adapter", base_dir, bits)


def trainable_state(model: nn.Module) -> dict[str, torch.Tensor]:
    """The parameters being trained (all of them, or just the adapter's)."""
    return {n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad}


def load_trainable_state(model: nn.Module, state: dict[str, torch.Tensor]) -> None:
    """Restore what `trainable_state` saved; every trained parameter must be there."""
    params = dict(model.named_parameters())
    missing = [n for n, p in params.items() if p.requires_grad and n not in state]
    if missing:
        raise RuntimeError(f"checkpoint lacks trained parameters, e.g. {missing[:3]}")
    with torch.no_grad():
        for name, value in state.items():
            params[name].copy_(value)
