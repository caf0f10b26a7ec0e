"""PEFT LoRA adapters: read, or merged into the base weights at load time."""

from __future__ import annotations

import json
from pathlib import Path

import torch


def read_lora(adapter_dir: Path) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """A PEFT LoRA adapter directory as {base weight name: (A [r, in], B [out, r] * scale)}.

    Names are the base checkpoint's, without the leading ``model.``
    (``layers.0.self_attn.q_proj.weight``); the adapter's scale is folded into B.
    """
    from safetensors.torch import load_file

    config_path = adapter_dir / "adapter_config.json"
    weights_path = adapter_dir / "adapter_model.safetensors"
    if not config_path.exists() or not weights_path.exists():
        raise ValueError(
            f"adapter {adapter_dir}: needs adapter_config.json and adapter_model.safetensors"
        )
    config = json.loads(config_path.read_text())
    if config.get("peft_type", "LORA") != "LORA":
        raise ValueError(
            f"adapter {adapter_dir}: peft_type {config.get('peft_type')!r} is not LORA"
        )
    r = int(config["r"])
    scale = float(config.get("lora_alpha", r)) / r
    if config.get("use_rslora"):
        scale = float(config.get("lora_alpha", r)) / r**0.5
    tensors = load_file(str(weights_path))
    out: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}
    for name, a in tensors.items():
        if ".lora_A." not in name:
            continue
        b = tensors[name.replace(".lora_A.", ".lora_B.")]
        # base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight -> layers.0...q_proj.weight
        target = name.split(".lora_A.")[0].removeprefix("base_model.model.")
        target = target.removeprefix("model.") + ".weight"
        out[target] = (a.float(), b.float() * scale)
    if not out:
        raise ValueError(f"adapter {adapter_dir}: no lora_A/lora_B weights found")
    return out


def merge_adapters(state: dict[str, torch.Tensor], adapter_dir: Path) -> None:
    """Add ``B @ A * alpha / r`` of a PEFT LoRA adapter directory into `state` in place.

    `state` uses the base checkpoint's names without the leading ``model.``.
    """
    for target, (a, b) in read_lora(adapter_dir).items():
        if target not in state:
            raise ValueError(f"adapter {adapter_dir}: {target} is not a weight of the base model")
        state[target] = state[target] + b @ a
