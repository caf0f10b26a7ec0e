"""The README's main job: `hanlin run -f examples/quickstart.yaml` runs the whole chain.

One session drives the real command twice:
1. without --exit-when-ready: train (LoRA on SmolLM2), evaluate, serve, start the agent
   and ask it the example task; while the services are up the `openai` client talks to
   the model; Ctrl-C then leaves no child process behind;
2. with --exit-when-ready: the finished training and evaluation are skipped, the
   services come up again and the runner exits.
"""

from __future__ import annotations

import os
import queue
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

# Training, evaluation and two service start-ups on 2 shared cores take longer than the
# default per-test timeout.
pytestmark = [pytest.mark.e2e, pytest.mark.slow, pytest.mark.timeout(1800)]

ROOT = Path(__file__).resolve().parents[2]
QUICKSTART = ROOT / "examples" / "quickstart.yaml"
RUN_TIMEOUT = 900.0


def _descendants(pid: int) -> set[int]:
    """Every live process below `pid` (children are in their own sessions, not their own trees)."""
    parents: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        parents[int(entry.name)] = int(stat.rsplit(")", 1)[1].split()[1])
    out: set[int] = set()
    frontier = [pid]
    while frontier:
        p = frontier.pop()
        for child, parent in parents.items():
            if parent == p and child not in out:
                out.add(child)
                frontier.append(child)
    return out


def _alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def _start(workdir: Path, *extra: str) -> tuple[subprocess.Popen[str], queue.Queue[str]]:
    env = {k: v for k, v in os.environ.items() if k != "HANLIN_PVC_ROOT"}
    env["COLUMNS"] = "160"
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "hanlin.cli",
            "run",
            "-f",
            str(QUICKSTART),
            "--workdir",
            str(workdir),
            *extra,
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=env,
    )
    lines: queue.Queue[str] = queue.Queue()

    def pump() -> None:
        assert proc.stdout is not None
        with proc.stdout:
            for line in proc.stdout:
                lines.put(line)
        lines.put("")  # EOF

    threading.Thread(target=pump, daemon=True).start()
    return proc, lines


def _read_until(lines: queue.Queue[str], marker: str | None) -> str:
    """Output up to the line containing `marker` (or to EOF when marker is None)."""
    out: list[str] = []
    deadline = time.monotonic() + RUN_TIMEOUT
    while time.monotonic() < deadline:
        try:
            line = lines.get(timeout=5)
        except queue.Empty:
            continue
        if line == "":
            if marker is None:
                return "".join(out)
            raise AssertionError(f"runner exited before {marker!r}:\n{''.join(out)}")
        out.append(line)
        if marker is not None and marker in line:
            return "".join(out)
    raise AssertionError(f"no {marker!r} within {RUN_TIMEOUT}s:\n{''.join(out)}")


def test_quickstart_chain_then_rerun_skips(model_dir: Path, tmp_path: Path) -> None:
    from openai import OpenAI

    workdir = tmp_path / "run"
    proc, lines = _start(workdir)
    try:
        shown = _read_until(lines, "Services are up")
        # The adapter is published and loads onto the base with peft.
        adapter = workdir / "pvc" / "artifacts" / "quickstart-sft" / "adapter"
        assert (adapter / "adapter_config.json").is_file(), shown
        from peft import PeftModel
        from transformers import AutoModelForCausalLM

        base = AutoModelForCausalLM.from_pretrained(model_dir)
        peft_model = PeftModel.from_pretrained(base, str(adapter))
        assert any("lora_A" in n for n, _ in peft_model.named_parameters())
        del peft_model, base
        # The summary: loss, the eval table with the benchmark, both endpoints, the agent.
        assert re.search(r"final loss \d+\.\d+", shown), shown
        assert "mmlu" in shown and "accuracy" in shown and "passed" in shown, shown
        rest = re.search(r"REST \(OpenAI\): (http://\S+)", shown)
        assert rest is not None, shown
        assert re.search(r"gRPC: +127\.0\.0\.1:\d+", shown), shown
        answer = re.search(r"answer: (.+)\(tools used: ([^)]*)\)", shown)
        if answer is not None:
            assert "calculator" in answer.group(2), shown
        else:
            failure = re.search(r"no answer \((\w+)\): (\S.*)", shown)
            assert failure is not None and failure.group(2).strip() not in ("", "None"), shown
        # The served model answers a real client.
        client = OpenAI(base_url=rest.group(1), api_key="unused")
        chat = client.chat.completions.create(
            model="quickstart",
            messages=[{"role": "user", "content": "What is the capital of France?"}],
            max_tokens=8,
            temperature=0,
        )
        assert chat.choices[0].message.content
        # Ctrl-C: the runner stops every child (servers, their workers) and exits cleanly.
        children = _descendants(proc.pid)
        assert len(children) >= 2, children  # the model server and the agent
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=60) == 0
        deadline = time.monotonic() + 10
        while any(_alive(p) for p in children) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not [p for p in children if _alive(p)]
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()

    # A rerun skips the finished jobs and exits once the services are ready.
    train_log = workdir / "quickstart-sft" / "train-0.log"
    starts_before = train_log.read_text().count("$ torchrun")
    proc, lines = _start(workdir, "--exit-when-ready", "--task", "")
    try:
        shown = _read_until(lines, None)
        assert proc.wait(timeout=60) == 0, shown
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert "skipped: already trained" in shown and "skipped: report exists" in shown, shown
    assert "REST (OpenAI)" in shown, shown
    assert train_log.read_text().count("$ torchrun") == starts_before
