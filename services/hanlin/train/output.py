"""Writing the result: an HF model or PEFT adapter, tokenizer, template, manifest.

Layout under `spec.output.uri`:
  model/        full training: safetensors weights + config + tokenizer (with chat template)
  adapter/      LoRA/QLoRA: adapter_config.json + adapter_model.safetensors + tokenizer
  merged/       with mergeAdapter: the base with the adapter merged in (a plain model)
  checkpoints/  resumable checkpoints
  artifact.json {uri, sha256, kind, mergedUri}: what status.artifact reports
Each directory is published with a sha256 manifest (write, then publish).
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Any

import torch
from torch import nn

from hanlin import storage
from hanlin.api.training_job import TrainingJobSpec
from hanlin.storage import StorageURI
from hanlin.train.modeling import BuiltModel, load_tokenizer


def _unwrap(model: nn.Module) -> Any:
    return model.module if hasattr(model, "module") else model


def _merge(built: BuiltModel, spec: TrainingJobSpec, adapter_dir: Path, out: Path) -> None:
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    # Merge into the full-precision base (also for QLoRA): the adapter learned a
    # correction on top of the quantized weights, which approximate these.
    source = str(built.base_dir) if built.base_dir else (spec.model.uri or "")[len("hf://") :]
    base = AutoModelForCausalLM.from_pretrained(source, dtype=torch.float32, local_files_only=True)
    merged = PeftModel.from_pretrained(base, str(adapter_dir)).merge_and_unload()
    merged.save_pretrained(out, safe_serialization=True)
    built.tokenizer.save_pretrained(out)


def write_outputs(
    built: BuiltModel,
    spec: TrainingJobSpec,
    output: StorageURI,
    state_dict: dict[str, torch.Tensor] | None = None,
) -> dict[str, Any]:
    """Save and publish the trained result; returns the artifact description.

    `state_dict`: the full weights when the model in memory is sharded (FSDP).
    """
    model = _unwrap(built.model)
    meta: dict[str, Any] = {"method": spec.method, "baseModel": spec.model.uri}
    with tempfile.TemporaryDirectory(prefix="hanlin-out-") as tmp:
        root = Path(tmp)
        name = "adapter" if built.kind == "adapter" else "model"
        out = root / name
        if built.kind == "adapter":
            model.save_pretrained(out)
            config_path = out / "adapter_config.json"
            config = json.loads(config_path.read_text())
            config["base_model_name_or_path"] = spec.model.uri
            config_path.write_text(json.dumps(config, indent=2))
            if built.quant_bits:
                meta["quantization"] = {"bits": built.quant_bits, "method": "hanlin.quant"}
        else:
            model.save_pretrained(out, safe_serialization=True, state_dict=state_dict)
        built.tokenizer.save_pretrained(out)
        manifest = storage.publish_dir(out, output.join(name), metadata={"kind": name, **meta})
        artifact: dict[str, Any] = {
            "uri": str(output.join(name)),
            "sha256": manifest.sha256,
            "kind": name,
        }
        if built.kind == "adapter" and spec.output.merge_adapter:
            merged = root / "merged"
            _merge(built, spec, out, merged)
            storage.publish_dir(merged, output.join("merged"), metadata={"kind": "model", **meta})
            artifact["mergedUri"] = str(output.join("merged"))
    storage.write_bytes(output.join("artifact.json"), json.dumps(artifact, indent=2).encode())
    return artifact


def load_output(output: StorageURI, cache: Path) -> tuple[nn.Module, Any]:
    """Load a published result back (model, or base + adapter) for evaluation."""
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    info = json.loads(storage.read_bytes(output.join("artifact.json")))
    local = storage.materialize(info["uri"], cache)
    tokenizer = load_tokenizer(local)
    if info["kind"] == "model":
        return AutoModelForCausalLM.from_pretrained(local, dtype=torch.float32), tokenizer
    base_uri = json.loads((local / "adapter_config.json").read_text())["base_model_name_or_path"]
    base_dir = storage.materialize(base_uri, cache, require_manifest=False)
    base = AutoModelForCausalLM.from_pretrained(base_dir, dtype=torch.float32)
    return PeftModel.from_pretrained(base, str(local)), tokenizer
