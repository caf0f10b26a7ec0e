"""The decoder layer's small ops, as torch ops or as fused CPU kernels.

A decode step of a small model is bound by per-op overhead, not arithmetic:
each layer ran ~30 torch ops besides its four matmuls (norms, residual adds,
rotary embedding, the KV-cache writes, SiLU, the gather of paged contexts for
attention). `CppOps` fuses them into four C++ kernels (`csrc/cpu_kernels.cpp`):
add + RMS norm, rotary + cache write, SiLU * up, and decode attention that reads
keys and values straight from the paged cache (flash-decoding split when there
are fewer sequences than threads). `TorchOps` is the same interface in plain
torch: the reference, and what runs where the kernels cannot (CUDA, no C++
compiler).

The kernels are compiled on first use for this machine's CPU (`-march=native`;
their vector paths are AVX-512, so other CPUs keep the torch ops by default)
and cached under ``$HANLIN_CACHE/kernels`` (default ``~/.cache/hanlin``), keyed by
source, torch version and CPU flags; a compile takes ~30-40 s once. Images ship
a portable build instead (``python -m hanlin.serve.kernels --prebuild DIR``, for
any AVX-512 CPU: ``-march=x86-64-v4``), found through ``HANLIN_KERNELS_PREBUILT``,
so pods need no compiler. ``HANLIN_KERNELS``
picks: ``auto`` (default: use them; on a machine's first start the engine serves
with the torch ops while they compile in the background and switches at a step
boundary; a failed build leaves the torch ops with a warning), ``on`` (build
before serving; fail if they cannot be built), ``off`` (torch only).
"""

from __future__ import annotations

import argparse
import fcntl
import hashlib
import importlib.util
import logging
import os
import platform
import shutil
import sys
import tempfile
import threading
from pathlib import Path
from types import ModuleType
from typing import Any, Protocol

import torch
import torch.nn.functional as F

log = logging.getLogger(__name__)

SOURCE = Path(__file__).with_name("csrc") / "cpu_kernels.cpp"
CFLAGS = ["-O3", "-march=native", "-fopenmp", "-fno-math-errno"]
# For a build made on one machine and run on others (images): any AVX-512 CPU.
PORTABLE_CFLAGS = ["-O3", "-march=x86-64-v4", "-mtune=generic", "-fopenmp", "-fno-math-errno"]
MODULE = "hanlin_cpu_kernels"
MODES = ("auto", "on", "off")


class Norm(Protocol):
    """What the ops need of an RMS norm module."""

    @property
    def weight(self) -> torch.Tensor: ...

    @property
    def eps(self) -> float: ...


class TorchOps:
    """The layer's small ops as torch ops (any device)."""

    name = "torch"
    # Decode attention gathers padded context groups: the engine groups similar lengths
    # and the runner builds padding masks. The kernel needs neither.
    paged_decode = False
    # Standing in while the C++ kernels build in the background (see `upgrade`).
    upgradable = False

    def add_rms_norm(
        self, x: torch.Tensor, delta: torch.Tensor | None, norm: Norm
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(x + delta, rms_norm(x + delta) * weight); the norm in fp32 as HF does."""
        if delta is not None:
            x = x + delta
        h = F.rms_norm(x.float(), (x.shape[-1],), eps=norm.eps)
        return x, norm.weight * h.to(x.dtype)

    def rotary_cache(
        self,
        qkv: torch.Tensor,
        cos: torch.Tensor,
        sin: torch.Tensor,
        cache: tuple[torch.Tensor, torch.Tensor],
        slot_mapping: torch.Tensor,
        heads: int,
        kv_heads: int,
    ) -> torch.Tensor:
        """Rotate q and k, write k and v into the cache; return q [T, heads, D]."""
        t = qkv.shape[0]
        k_cache, v_cache = cache
        d = k_cache.shape[-1]
        qk_heads = heads + kv_heads
        # `sin` carries rotate_half's sign (-sin on the first half), so
        # roll(x) * sin == rotate_half(x) * sin exactly.
        qk = qkv[:, : qk_heads * d].view(t, qk_heads, d)
        qk = qk * cos + qk.roll(d // 2, -1) * sin
        v = qkv[:, qk_heads * d :].view(t, kv_heads, d)
        k_cache.index_copy_(0, slot_mapping, qk[:, heads:])
        v_cache.index_copy_(0, slot_mapping, v)
        return qk[:, :heads]

    def silu_mul(self, gate_up: torch.Tensor) -> torch.Tensor:
        """silu(gate) * up of a [T, 2 * inter] tensor."""
        inter = gate_up.shape[-1] // 2
        return F.silu(gate_up[:, :inter]) * gate_up[:, inter:]

    def decode_attention(
        self,
        q: torch.Tensor,
        cache: tuple[torch.Tensor, torch.Tensor],
        slots: torch.Tensor,
        lens: torch.Tensor,
        mask: torch.Tensor | None,
    ) -> torch.Tensor:
        """One query token per sequence (q [n, H, D]) over its context in the cache.

        Contexts (`slots` [n, W]) are gathered padded to the group's width W; `mask`
        hides the padding (None: no row is padded). `lens` is for the kernel.
        """
        b, heads, d = q.shape
        k_cache, v_cache = cache
        kv_heads = k_cache.shape[1]
        # index_select on the flat slots: a fraction of advanced indexing's overhead.
        flat = slots.reshape(-1)
        shape = (b, slots.shape[1], kv_heads, d)
        kd = k_cache.index_select(0, flat).view(shape).transpose(1, 2)  # [B, KV, L, D]
        vd = v_cache.index_select(0, flat).view(shape).transpose(1, 2)
        # Query heads sharing a key/value head become that head's G query rows: no
        # K/V expansion, and several times faster than enable_gqa on the CPU (bf16 most).
        qg = q.reshape(b, kv_heads, heads // kv_heads, d)
        out = F.scaled_dot_product_attention(qg, kd, vd, attn_mask=mask)
        return out.reshape(b, heads, d)


class CppOps(TorchOps):
    """The same ops as fused C++ kernels on CPU tensors (fp32 or bf16)."""

    name = "cpp"
    paged_decode = True

    def __init__(self, module: Any) -> None:
        self.m = module

    def add_rms_norm(
        self, x: torch.Tensor, delta: torch.Tensor | None, norm: Norm
    ) -> tuple[torch.Tensor, torch.Tensor]:
        # x is updated in place: it is the residual stream, owned by the forward pass.
        h: torch.Tensor = self.m.add_rms_norm(x, delta, norm.weight, norm.eps)
        return x, h

    def rotary_cache(
        self,
        qkv: torch.Tensor,
        cos: torch.Tensor,
        sin: torch.Tensor,
        cache: tuple[torch.Tensor, torch.Tensor],
        slot_mapping: torch.Tensor,
        heads: int,
        kv_heads: int,
    ) -> torch.Tensor:
        self.m.rotary_cache(qkv, cos, sin, cache[0], cache[1], slot_mapping, heads, kv_heads)
        d = cache[0].shape[-1]
        return qkv[:, : heads * d].view(qkv.shape[0], heads, d)

    def silu_mul(self, gate_up: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.m.silu_mul(gate_up)
        return out

    def decode_attention(
        self,
        q: torch.Tensor,
        cache: tuple[torch.Tensor, torch.Tensor],
        slots: torch.Tensor,
        lens: torch.Tensor,
        mask: torch.Tensor | None,
    ) -> torch.Tensor:
        # Each row reads its own `lens` slots straight from the cache: no padding, no mask.
        out: torch.Tensor = self.m.paged_decode_attention(q, cache[0], cache[1], slots, lens)
        return out


def mode() -> str:
    """``HANLIN_KERNELS``: auto, on or off."""
    value = os.environ.get("HANLIN_KERNELS", "auto").strip().lower() or "auto"
    if value not in MODES:
        raise ValueError(f"HANLIN_KERNELS must be one of {', '.join(MODES)}, got {value!r}")
    return value


def select(device: torch.device | str, dtype: torch.dtype) -> TorchOps:
    """The ops a model on `device` in `dtype` runs: the C++ kernels where they apply."""
    want = mode()
    applies = torch.device(device).type == "cpu" and dtype in (torch.float32, torch.bfloat16)
    if want == "off" or not applies:
        if want == "on" and not applies:
            log.warning("HANLIN_KERNELS=on: no C++ kernels for %s %s; torch ops", device, dtype)
        return TorchOps()
    if want == "auto" and "avx512f" not in _cpu_flags().split():
        # The kernels' vector paths are AVX-512; their scalar fallback would not beat
        # torch's own vectorized ops elsewhere.
        log.info("no AVX-512 on this CPU: running plain torch ops")
        return TorchOps()
    if want == "auto" and _module is None and not _built():
        # First start on this machine: serve with the torch ops now, build meanwhile,
        # and switch at a step boundary once the build is in (`upgrade`).
        _build_in_background()
        waiting = TorchOps()
        waiting.upgradable = True
        return waiting
    try:
        return CppOps(load())
    except Exception as exc:
        if want == "on":
            raise RuntimeError(
                f"HANLIN_KERNELS=on but the C++ kernels did not build: {exc}"
            ) from exc
        log.warning("fused CPU kernels unavailable (%s); running plain torch ops", exc)
        return TorchOps()


def upgrade(ops: TorchOps) -> TorchOps | None:
    """The kernels to switch to, once a background build `select` started has finished."""
    if not ops.upgradable or _module is None:
        return None
    return CppOps(_module)


_module: ModuleType | None = None
_background: threading.Thread | None = None


def _built() -> bool:
    """Whether a build for this machine is already on disk (or prebuilt for the image)."""
    prebuilt = os.environ.get("HANLIN_KERNELS_PREBUILT")
    if prebuilt and (Path(prebuilt) / f"{MODULE}.so").is_file():
        return True
    return (build_dir() / f"{MODULE}.so").is_file()


def _build_in_background() -> None:
    global _background
    if _background is not None:
        return

    def run() -> None:
        try:
            load()
            log.info("fused CPU kernels built: the engine switches to them")
        except Exception as exc:
            log.warning("fused CPU kernels unavailable (%s); running plain torch ops", exc)

    _background = threading.Thread(target=run, name="hanlin-kernels-build", daemon=True)
    _background.start()


def load() -> ModuleType:
    """Build (once per machine, cached) and import the C++ kernels."""
    global _module
    if _module is None:
        _module = _load_prebuilt() or _build()
    return _module


def _cpu_flags() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("flags"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor()


def _key(cflags: list[str], cpu: str) -> str:
    """What a build depends on: the source, torch, Python, the flags and the CPU."""
    parts = (SOURCE.read_text(), torch.__version__, sys.version, " ".join(cflags), cpu)
    return hashlib.sha256("\0".join(parts).encode()).hexdigest()[:16]


def build_dir() -> Path:
    """Where this machine's build lives: one folder per source, torch and CPU."""
    root = Path(os.environ.get("HANLIN_CACHE", Path.home() / ".cache" / "hanlin"))
    return root / "kernels" / _key(CFLAGS, _cpu_flags())


def _load_prebuilt() -> ModuleType | None:
    """The portable build under ``$HANLIN_KERNELS_PREBUILT``, if it fits this process."""
    directory = os.environ.get("HANLIN_KERNELS_PREBUILT")
    if not directory:
        return None
    library = Path(directory) / f"{MODULE}.so"
    key_file = Path(directory) / "key"
    if not library.is_file() or not key_file.is_file():
        log.warning("HANLIN_KERNELS_PREBUILT=%s holds no prebuilt kernels", directory)
        return None
    key, _, name = key_file.read_text().partition("\n")
    if key.strip() != _key(PORTABLE_CFLAGS, "portable"):
        log.warning("prebuilt kernels in %s are for another source or torch", directory)
        return None
    if "avx512f" not in _cpu_flags().split():
        return None  # built for AVX-512: it would stop at its first instruction here
    # The module's own name (a build in a process that had loaded another gets a suffix).
    spec = importlib.util.spec_from_file_location(name.strip() or MODULE, library)
    if spec is None or spec.loader is None:
        return None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def prebuild(directory: Path) -> Path:
    """Build the portable kernels into `directory` (for images); return the library."""
    directory.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        module = _compile(PORTABLE_CFLAGS, Path(tmp))
        library = directory / f"{MODULE}.so"
        shutil.copyfile(str(module.__file__), library)
    (directory / "key").write_text(f"{_key(PORTABLE_CFLAGS, 'portable')}\n{module.__name__}\n")
    return library


def _ninja_on_path() -> None:
    if shutil.which("ninja") is None:
        # The `ninja` wheel's binary sits beside the interpreter, which need not be on PATH.
        try:
            import ninja

            os.environ["PATH"] = f"{ninja.BIN_DIR}{os.pathsep}{os.environ.get('PATH', '')}"
        except ImportError:
            pass


def _build() -> ModuleType:
    directory = build_dir()
    directory.mkdir(parents=True, exist_ok=True)
    # torch's own build lock is a file that a killed build leaves behind, and every
    # later build then waits on it forever. An flock dies with its holder: whoever holds
    # it may clear a torch lock left over.
    with open(directory / "hanlin.lock", "w") as held:
        fcntl.flock(held, fcntl.LOCK_EX)
        (directory / "lock").unlink(missing_ok=True)
        return _compile(CFLAGS, directory)


def _compile(cflags: list[str], directory: Path) -> ModuleType:
    """Compile (or reuse an up-to-date build in `directory`) and import the kernels."""
    from torch.utils import cpp_extension

    _ninja_on_path()
    module: ModuleType = cpp_extension.load(
        name=MODULE,
        sources=[str(SOURCE)],
        extra_cflags=cflags,
        extra_ldflags=["-fopenmp"],
        build_directory=str(directory),
        verbose=False,
    )
    return module


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description="Build the fused CPU kernels ahead of time.")
    parser.add_argument("--prebuild", type=Path, required=True, help="directory for the build")
    built = prebuild(parser.parse_args().prebuild)
    sys.stdout.write(f"prebuilt kernels: {built}\n")
