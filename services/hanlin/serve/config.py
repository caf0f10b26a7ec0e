"""Engine settings (built by the CLI or the Python API and passed in)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path


@dataclass
class EngineConfig:
    """How the engine loads the model and sizes its cache and batches."""

    model: Path
    """HF safetensors directory (config.json, tokenizer, weights)."""
    served_model_name: str | None = None
    """The `model` id clients send; defaults to the directory name."""
    adapters: list[Path] = field(default_factory=list)
    """PEFT LoRA adapter directories merged into the weights at load."""
    quantization: str | None = None
    """None, "int8" or "int4": weight-only quantization of the decoder's linear layers."""
    tensor_parallel: int = 1
    """Processes that shard the model (gloo on CPU)."""
    block_size: int = 16
    """Tokens per KV block."""
    kv_cache_bytes: int = 512 * 2**20
    """Memory for the KV cache (per rank); sets the number of blocks."""
    num_blocks: int | None = None
    """Overrides `kv_cache_bytes` (tests force preemption with a tiny cache)."""
    max_model_len: int | None = None
    """Prompt + output limit; defaults to the model's context, capped by the cache."""
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

    @property
    def name(self) -> str:
        """The served model id."""
        return self.served_model_name or Path(self.model).name
