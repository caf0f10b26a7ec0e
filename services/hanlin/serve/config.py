"""Engine settings (built by the CLI or the Python API and passed in)."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch

# Spellings accepted for the compute dtype (the CLI's and the ModelDeployment's).
DTYPE_NAMES = {
    "auto": "auto",
    "float32": "float32",
    "fp32": "float32",
    "bfloat16": "bfloat16",
    "bf16": "bfloat16",
    "float16": "float16",
    "fp16": "float16",
}


@dataclass
class EngineConfig:
    """How the engine loads the model and sizes its cache and batches."""

    model: Path
    """HF safetensors directory (config.json, tokenizer, weights)."""
    served_model_name: str | None = None
    """The `model` id clients send; defaults to the directory name."""
    adapters: list[Path] = field(default_factory=list)
    """PEFT LoRA adapter directories merged into the weights at load."""
    lora_adapters: dict[str, Path] = field(default_factory=dict)
    """PEFT LoRA adapters served under their own model names (multi-LoRA), name -> directory;
    with tensor parallelism each rank holds its share, cut as the base weights are."""
    quantization: str | None = None
    """None, "int8" or "int4": weight-only quantization of the linear layers and the head."""
    dtype: str = "float32"
    """Compute dtype: "float32", "bfloat16", "float16" or "auto" (see `resolve_dtype`).
    Weights, activations and the KV cache use it; norms, rotary tables and logits stay fp32."""
    tensor_parallel: int = 1
    """Processes that shard the model (gloo on CPU)."""
    block_size: int = 16
    """Tokens per KV block."""
    kv_cache_bytes: int = 512 * 2**20
    """Memory for the KV cache (per rank); sets the number of blocks."""
    kv_cache_fraction: float | None = None
    """If set, overrides `kv_cache_bytes`: this fraction of the memory available after
    loading the weights (see `hanlin.serve.kv_cache.available_memory`), capped at what `max_seqs` sequences
    of the longest allowed length can use."""
    num_blocks: int | None = None
    """Overrides `kv_cache_bytes` (tests force preemption with a tiny cache)."""
    max_model_len: int | None = None
    """Prompt + output limit; defaults to the model's context, capped by the cache."""
    trust_remote_code: bool = False
    """Let transformers run tokenizer code shipped in the model directory."""
    max_batch_tokens: int = 512
    """Token budget of one step (decode tokens plus prefill chunks)."""
    max_seqs: int = 64
    """Sequences running at once."""
    max_queue: int = 256
    """Requests waiting beyond the running ones; more are refused (429)."""
    prefix_caching: bool = True
    """Share KV blocks of identical prompt prefixes."""
    num_threads: int | None = None
    """torch intra-op threads for the engine (None: torch's default)."""
    device: str = "auto"
    """Where the model runs: "cpu", "cuda", "cuda:N", or "auto" (CUDA when torch sees a
    GPU, else the CPU). With tensor parallelism on CUDA, rank r takes GPU r (NCCL)."""

    def __post_init__(self) -> None:
        if self.dtype not in DTYPE_NAMES:
            raise ValueError(f"dtype must be one of {sorted(set(DTYPE_NAMES))}, got {self.dtype!r}")
        self.dtype = DTYPE_NAMES[self.dtype]
        if not re.fullmatch(r"auto|cpu|cuda(:\d+)?", self.device):
            raise ValueError(f"device must be auto, cpu, cuda or cuda:N, got {self.device!r}")
        if self.kv_cache_fraction is not None and not 0 < self.kv_cache_fraction <= 1:
            raise ValueError(f"kv_cache_fraction must be in (0, 1], got {self.kv_cache_fraction}")
        if self.name in self.lora_adapters:
            raise ValueError(f"LoRA adapter name {self.name!r} is the base model's name")

    @property
    def name(self) -> str:
        """The served model id."""
        return self.served_model_name or Path(self.model).name

    def torch_dtype(self) -> torch.dtype:
        """The compute dtype, with "auto" resolved for this machine."""
        return resolve_dtype(self.dtype, self.quantization, self.torch_device().type)

    def torch_device(self, rank: int = 0) -> torch.device:
        """The device of tensor-parallel rank `rank`, with "auto" resolved for this machine."""
        import torch

        name = self.device
        if name == "auto":
            name = "cuda" if torch.cuda.is_available() else "cpu"
        if name.startswith("cuda") and not torch.cuda.is_available():
            raise ValueError(f"device {self.device!r}: torch sees no CUDA GPU here")
        if name == "cuda":
            name = f"cuda:{rank % torch.cuda.device_count()}"
        elif name.startswith("cuda:") and rank:
            name = f"cuda:{(int(name[5:]) + rank) % torch.cuda.device_count()}"
        return torch.device(name)


def cpu_has_native_bf16() -> bool:
    """Whether the CPU computes in bf16 natively (AVX512-BF16 or AMX), from /proc/cpuinfo."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("flags"):
                    flags = set(line.split(":", 1)[1].split())
                    return bool(flags & {"avx512_bf16", "amx_bf16"})
    except OSError:
        pass
    return False


def resolve_dtype(
    name: str, quantization: str | None = None, device: str | None = None
) -> torch.dtype:
    """The torch dtype for a dtype name; "auto" picks the fast one for this machine.

    "auto" is bf16 where bf16 runs natively (CUDA GPUs with bf16; CPUs with
    AVX512-BF16 or AMX, where bf16 matmuls run about twice as fast as fp32 and
    read half the bytes) and whenever weights are quantized (the CPU int4/int8
    kernels take bf16 activations); otherwise fp32, the exact reference.
    """
    import torch

    canonical = DTYPE_NAMES.get(name)
    if canonical is None:
        raise ValueError(f"dtype must be one of {sorted(set(DTYPE_NAMES))}, got {name!r}")
    if canonical != "auto":
        return {
            "float32": torch.float32,
            "bfloat16": torch.bfloat16,
            "float16": torch.float16,
        }[canonical]
    on_cuda = device == "cuda" if device is not None else torch.cuda.is_available()
    if on_cuda:
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float32
    if (quantization or "none") != "none" or cpu_has_native_bf16():
        return torch.bfloat16
    return torch.float32
