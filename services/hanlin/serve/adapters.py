"""PEFT LoRA adapters merged into the base weights at load time."""

from __future__ import annotations

import json
from pathlib import Path

import torch


def merge_adapters(state: dict[str, torch.Tensor], adapter_dir: Path) -> None:
    """Add ``B @ A * alpha / r`` of a PEFT LoRA adapter directory into `state` in place.

    `state` uses the base checkpoint's names without the leading ``model.``.
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
    merged = 0
    for name, a in tensors.items():
        if ".lora_A." not in name:
            continue
        b = tensors[name.replace(".lora_A.", ".lora_B.")]
        # base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight -> layers.0...q_proj.weight
        target = name.split(".lora_A.")[0].removeprefix("base_model.model.")
        target = target.removeprefix("model.") + ".weight"
        if target not in state:
            raise ValueError(f"adapter {adapter_dir}: {target} is not a weight of the base model")
        state[target] = state[target] + (b.float() @ a.float()) * scale
        merged += 1
    if merged == 0:
        raise ValueError(f"adapter {adapter_dir}: no lora_A/lora_B weights found")
