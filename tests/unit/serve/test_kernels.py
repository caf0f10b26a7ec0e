"""The fused C++ CPU kernels equal the torch ops they replace (`hanlin.serve.kernels`)."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from hanlin.serve import kernels
from hanlin.serve.engine import _table_slots

DTYPES = [torch.float32, torch.bfloat16]
# fp32: rounding only; bf16: the kernels round once where torch rounds after every op.
ATOL = {torch.float32: 2e-5, torch.bfloat16: 3e-2}


@pytest.fixture(scope="module")
def cpp() -> kernels.CppOps:
    # Built for real (cached under $HANLIN_CACHE/kernels): gcc and ninja are dependencies.
    return kernels.CppOps(kernels.load())


@dataclass
class Norm:
    weight: torch.Tensor
    eps: float


def close(a: torch.Tensor, b: torch.Tensor, dtype: torch.dtype) -> None:
    scale = max(1.0, float(b.float().abs().max()))
    torch.testing.assert_close(a.float(), b.float(), atol=ATOL[dtype] * scale, rtol=0)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("rows", [1, 5, 300])
def test_add_rms_norm(cpp: kernels.CppOps, dtype: torch.dtype, rows: int) -> None:
    g = torch.Generator().manual_seed(rows)
    x = torch.randn(rows, 576, generator=g).to(dtype)
    delta = torch.randn(rows, 576, generator=g).to(dtype)
    norm = Norm(torch.randn(576, generator=g).to(dtype), 1e-5)
    ref_x, ref_h = kernels.TorchOps().add_rms_norm(x, delta, norm)
    got_x, got_h = cpp.add_rms_norm(x.clone(), delta, norm)
    # The residual add is exact in either dtype; the norm agrees to rounding.
    assert torch.equal(got_x, ref_x)
    close(got_h, ref_h, dtype)
    _, plain = cpp.add_rms_norm(x.clone(), None, norm)
    close(plain, kernels.TorchOps().add_rms_norm(x, None, norm)[1], dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("rows", [1, 7, 64])
@pytest.mark.parametrize("inter", [1536, 100])  # 100: a scalar tail after the vector lanes
def test_silu_mul(cpp: kernels.CppOps, dtype: torch.dtype, rows: int, inter: int) -> None:
    # Gate values from -90 to 90: the exp approximation's clamps are exercised too.
    gate = torch.linspace(-90, 90, rows * inter).reshape(rows, inter)
    up = torch.randn(rows, inter, generator=torch.Generator().manual_seed(1))
    gu = torch.cat((gate, up), dim=1).to(dtype)
    close(cpp.silu_mul(gu), kernels.TorchOps().silu_mul(gu), dtype)


def rope_tables(positions: torch.Tensor, d: int, dtype: torch.dtype) -> tuple[torch.Tensor, ...]:
    inv = 1.0 / (10000 ** (torch.arange(0, d, 2).float() / d))
    freqs = positions[:, None].float() * inv[None]
    emb = torch.cat((freqs, freqs), -1)
    sign = torch.ones(d)
    sign[: d // 2] = -1
    return emb.cos().to(dtype)[:, None, :], (emb.sin() * sign).to(dtype)[:, None, :]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize(("heads", "kv_heads", "d"), [(9, 3, 64), (4, 4, 128), (8, 2, 32)])
def test_rotary_cache(
    cpp: kernels.CppOps, dtype: torch.dtype, heads: int, kv_heads: int, d: int
) -> None:
    rows, num_slots = 11, 64
    g = torch.Generator().manual_seed(heads * d)
    qkv = torch.randn(rows, (heads + 2 * kv_heads) * d, generator=g).to(dtype)
    cos, sin = rope_tables(torch.randint(0, 4000, (rows,), generator=g), d, dtype)
    slots = torch.randperm(num_slots, generator=g)[:rows]
    ref_cache = (
        torch.zeros(num_slots, kv_heads, d, dtype=dtype),
        torch.zeros(num_slots, kv_heads, d, dtype=dtype),
    )
    got_cache = (torch.zeros_like(ref_cache[0]), torch.zeros_like(ref_cache[0]))
    ref_q = kernels.TorchOps().rotary_cache(qkv, cos, sin, ref_cache, slots, heads, kv_heads)
    got_q = cpp.rotary_cache(qkv.clone(), cos, sin, got_cache, slots, heads, kv_heads)
    close(got_q, ref_q, dtype)
    close(got_cache[0], ref_cache[0], dtype)
    assert torch.equal(got_cache[1], ref_cache[1])  # v is copied, not computed
    # Only the written slots changed.
    untouched = torch.ones(num_slots, dtype=torch.bool)
    untouched[slots] = False
    assert not got_cache[0][untouched].any() and not got_cache[1][untouched].any()


def reference_attention(
    q: torch.Tensor, cache: tuple[torch.Tensor, torch.Tensor], slots: torch.Tensor, lens: list[int]
) -> torch.Tensor:
    """fp32 SDPA per sequence, each over exactly its own context."""
    heads, d = q.shape[1], q.shape[2]
    kv_heads = cache[0].shape[1]
    out = []
    for i, n in enumerate(lens):
        k = cache[0][slots[i, :n]].transpose(0, 1).float()
        v = cache[1][slots[i, :n]].transpose(0, 1).float()
        qg = q[i].float().reshape(kv_heads, heads // kv_heads, d)
        out.append(F.scaled_dot_product_attention(qg, k, v).reshape(heads, d))
    return torch.stack(out)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize(
    "lens",
    [[1], [100], [1500], [600] * 8, [3, 40, 700, 41, 1200, 17]],
    ids=["one-token", "short", "long-split", "even", "uneven"],
)
@pytest.mark.parametrize(
    ("heads", "kv_heads", "d"), [(9, 3, 64), (4, 2, 40)], ids=["vector", "scalar-head-dim"]
)
def test_paged_decode_attention(
    cpp: kernels.CppOps, dtype: torch.dtype, lens: list[int], heads: int, kv_heads: int, d: int
) -> None:
    # head_dim 40 is no multiple of the 16 vector lanes: the scalar path, as on CPUs
    # without AVX-512.
    block = 16
    g = torch.Generator().manual_seed(len(lens) * 7 + lens[0])
    num_blocks = sum(math.ceil(n / block) for n in lens) + 8
    cache = (
        torch.randn(num_blocks * block, kv_heads, d, generator=g).to(dtype),
        torch.randn(num_blocks * block, kv_heads, d, generator=g).to(dtype),
    )
    # Each sequence's blocks scattered over the cache, as the block manager leaves them.
    order = torch.randperm(num_blocks, generator=g).tolist()
    tables = []
    for n in lens:
        count = math.ceil(n / block)
        tables.append(order[:count])
        order = order[count:]
    slots = _table_slots(tables, block)[:, : max(lens)].contiguous()
    # q as the layer passes it: a strided view of the fused qkv rows.
    qkv = torch.randn(len(lens), (heads + 2 * kv_heads) * d, generator=g).to(dtype)
    q = qkv[:, : heads * d].view(len(lens), heads, d)
    got = cpp.decode_attention(q, cache, slots, torch.tensor(lens), None)
    assert got.dtype == dtype and got.shape == (len(lens), heads, d)
    close(got, reference_attention(q, cache, slots, lens), dtype)


def test_kernels_refuse_bad_input(cpp: kernels.CppOps) -> None:
    cache = (torch.zeros(32, 3, 64), torch.zeros(32, 3, 64))
    q = torch.zeros(2, 9, 64)
    with pytest.raises(RuntimeError, match="lens must be in"):
        cpp.decode_attention(
            q, cache, torch.zeros(2, 4, dtype=torch.long), torch.tensor([5, 1]), None
        )
    with pytest.raises(RuntimeError, match="slot out of range"):
        cpp.decode_attention(q, cache, torch.full((2, 4), 99), torch.tensor([4, 1]), None)
    with pytest.raises(RuntimeError, match="float32 or bfloat16"):
        cpp.silu_mul(torch.zeros(2, 8, dtype=torch.float16))
    with pytest.raises(RuntimeError, match="slot_mapping out of range"):
        cpp.rotary_cache(
            torch.zeros(1, 15 * 64),
            *rope_tables(torch.zeros(1), 64, torch.float32),
            cache,
            torch.tensor([32]),
            9,
            3,
        )


def test_mode_is_read_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HANLIN_KERNELS", "off")
    assert kernels.select("cpu", torch.float32).name == "torch"
    monkeypatch.setenv("HANLIN_KERNELS", "on")
    assert kernels.select("cpu", torch.float32).name == "cpp"
    # No kernels for other dtypes: the torch ops serve them.
    assert kernels.select("cpu", torch.float16).name == "torch"
    monkeypatch.setenv("HANLIN_KERNELS", "fast")
    with pytest.raises(ValueError, match="HANLIN_KERNELS must be one of auto, on, off"):
        kernels.select("cpu", torch.float32)


def test_prebuilt_kernels_load_without_a_compiler(tmp_path: Path) -> None:
    """An image's portable build loads where nothing can compile (as in the runtime image)."""
    library = kernels.prebuild(tmp_path / "prebuilt")
    assert library.is_file() and (tmp_path / "prebuilt" / "key").is_file()
    script = (
        "import torch\n"
        "from hanlin.serve import kernels\n"
        "ops = kernels.select('cpu', torch.float32)\n"
        "assert ops.name == 'cpp', ops.name\n"
        "print(ops.m.__file__)\n"
        "x = torch.randn(3, 2 * 64)\n"
        "torch.testing.assert_close(ops.silu_mul(x), kernels.TorchOps().silu_mul(x))\n"
    )
    env = {
        **os.environ,
        "HANLIN_KERNELS_PREBUILT": str(tmp_path / "prebuilt"),
        "HANLIN_CACHE": str(tmp_path / "cache"),  # empty: a build would land here
        "CXX": "/bin/false",  # and would fail
        "HANLIN_KERNELS": "on",
    }
    out = subprocess.run(
        [sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip() == str(library)
    assert not (tmp_path / "cache").exists()
    # A build for another source or torch is passed over (then built here as usual).
    (tmp_path / "prebuilt" / "key").write_text("stale\n")
    env["HANLIN_KERNELS"] = "auto"
    out = subprocess.run(
        [sys.executable, "-c", "from hanlin.serve import kernels; kernels.load()"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert "are for another source or torch" in out.stderr


def test_first_start_serves_while_the_kernels_build(
    tmp_path: Path, model_dir: Path, hf_greedy: dict[str, list[int]], prompts: list[str]
) -> None:
    """No build on disk: torch ops at once, the kernels from a later step, same tokens.

    The build directory also holds a lock file a killed build left behind, which
    must not stall the build.
    """
    script = f"""
import json
from hanlin.serve import kernels
from hanlin.serve.llm import LLM
from hanlin.serve.params import SamplingParams

stale = kernels.build_dir()
stale.mkdir(parents=True)
(stale / "lock").write_text("")
llm = LLM({str(model_dir)!r})
first = llm.engine.runner.model.ops
params = SamplingParams(max_tokens=16, temperature=0, ignore_eos=True)
before = llm.generate({prompts[1]!r}, params)[0].outputs[0].token_ids
kernels._background.join(timeout=400)
after = llm.generate({prompts[1]!r}, params)[0].outputs[0].token_ids
print(json.dumps([first.name, first.upgradable, llm.engine.runner.model.ops.name, before, after]))
"""
    env = {**os.environ, "HANLIN_CACHE": str(tmp_path / "cache")}
    env.pop("HANLIN_KERNELS", None)
    env.pop("HANLIN_KERNELS_PREBUILT", None)
    out = subprocess.run(
        [sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=500
    )
    assert out.returncode == 0, out.stderr[-2000:]
    first, upgradable, then, before, after = json.loads(out.stdout.strip().splitlines()[-1])
    assert (first, upgradable, then) == ("torch", True, "cpp")
    assert before == after == hf_greedy[prompts[1]]
