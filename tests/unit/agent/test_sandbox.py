"""The python tool contains escape attempts; each fails or is killed and the agent survives."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from hanlin.agent.builtins.python_tool import limits_from_config, python_tool
from hanlin.agent.runtime import Agent, AgentSettings
from hanlin.agent.sandbox import Sandbox, SandboxLimits, _tasks_of_uid, _world_usable
from hanlin.agent.tooling import Toolbox

LIMITS = SandboxLimits(cpu_seconds=2, wall_seconds=4.0, processes=8, memory_bytes=512 * 1024**2)
# The CPU limit must trip before the wall clock even on a busy shared machine.
CPU_BOUND = SandboxLimits(cpu_seconds=1, wall_seconds=30.0, processes=8)


@pytest.fixture(scope="module")
def sandbox() -> Sandbox:
    return Sandbox(LIMITS)


def test_runs_code_in_an_empty_dir_with_a_scrubbed_env(sandbox: Sandbox) -> None:
    os.environ["HANLIN_TEST_SECRET"] = "s3cr3t-value"
    try:
        result = sandbox.run(
            "import os\nprint(sorted(os.listdir('.')))\nprint(sorted(os.environ))\n"
            "print(os.environ.get('HANLIN_TEST_SECRET'))"
        )
    finally:
        del os.environ["HANLIN_TEST_SECRET"]
    assert result.exit_code == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0] == "['main.py']"
    assert "HANLIN_TEST_SECRET" not in lines[1] and lines[2] == "None"
    assert "s3cr3t-value" not in result.stdout


def test_cannot_read_the_agents_environment_through_proc(sandbox: Sandbox) -> None:
    os.environ["HANLIN_TEST_SECRET"] = "s3cr3t-value"
    try:
        code = (
            "import os\n"
            "for pid in (os.getppid(), PID):\n"
            "    try:\n"
            "        print(open(f'/proc/{pid}/environ', 'rb').read())\n"
            "    except OSError as e:\n"
            "        print('denied', type(e).__name__)\n"
        ).replace("PID", str(os.getpid()))
        result = sandbox.run(code)
    finally:
        del os.environ["HANLIN_TEST_SECRET"]
    assert "s3cr3t-value" not in result.stdout + result.stderr
    if result.containment.user != "same":
        assert result.stdout.count("denied") == 2


def test_socket_is_refused(sandbox: Sandbox) -> None:
    code = (
        "import socket\n"
        "s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)\n"
        "s.settimeout(2)\n"
        "s.connect(('127.0.0.1', %d))\n"
        "print('connected')\n"
    )
    # A listener the agent owns: reachable from here, must not be from the sandbox.
    import socket

    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        result = sandbox.run(code % server.getsockname()[1])
    assert result.exit_code != 0 and "connected" not in result.stdout
    assert result.containment.network in ("netns", "audit-hook")


def test_audit_hook_fallback_refuses_sockets_and_exec() -> None:
    box = Sandbox(LIMITS, namespaces=False)
    result = box.run("import socket\nsocket.socket()\n")
    assert result.exit_code != 0 and "not allowed here" in result.stderr
    assert result.containment.network == "audit-hook"
    result = box.run("import subprocess\nsubprocess.run(['true'])\n")
    assert result.exit_code != 0 and "subprocess.Popen" in result.stderr
    # Without a PID namespace a forked child could outlive the run, so fork is refused.
    result = box.run("import os\nos.fork()\n")
    assert result.exit_code != 0 and "os.fork" in result.stderr


UNPRIVILEGED_AGENT = """
import json, sys
sys.path.insert(0, SERVICES)
from hanlin.agent.sandbox import Sandbox, SandboxLimits
box = Sandbox(SandboxLimits(cpu_seconds=2, wall_seconds=4.0, processes=8))
out = {}
for name, code in CASES.items():
    r = box.run(code)
    out[name] = {"exit": r.exit_code, "killed": r.killed, "stdout": r.stdout, "stderr": r.stderr[-300:]}
out["containment"] = r.containment.__dict__
print(json.dumps(out))
"""


@pytest.mark.skipif(
    os.geteuid() != 0 or shutil.which("setpriv") is None,
    reason="needs root and setpriv to run the agent as an unprivileged user (as in a pod)",
)
def test_unprivileged_agent_keeps_the_sandbox() -> None:
    """The agent as a non-root user, as in a pod: user namespaces or the audit hook contain it."""
    cases = {
        "socket": "import socket\nsocket.create_connection(('127.0.0.1', 9), timeout=1)\nprint('connected')",
        "fork": "import os, time\nfor i in range(200):\n    os.fork()\ntime.sleep(60)",
        "hello": "print('ok')",
    }
    services = str(Path(__file__).resolve().parents[3] / "services")
    script = UNPRIVILEGED_AGENT.replace("SERVICES", repr(services)).replace("CASES", repr(cases))
    python = next(p for p in (sys.executable, "/usr/bin/python3") if _world_usable(Path(p)))
    done = subprocess.run(
        ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", python, "-c", script],
        capture_output=True,
        text=True,
        timeout=120,
        cwd="/",
    )
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout)
    assert out["hello"]["stdout"] == "ok\n"
    assert "connected" not in out["socket"]["stdout"] and out["socket"]["exit"] != 0
    assert out["fork"]["exit"] != 0
    containment = out["containment"]
    assert containment["network"] in ("netns", "audit-hook")
    assert containment["processes"] in ("pid-namespace", "process-group")
    assert subprocess.run(["pgrep", "-u", "65534"], capture_output=True).stdout == b""


def test_fork_bomb_is_bounded_and_cleaned_up(sandbox: Sandbox) -> None:
    code = (
        "import os, time\n"
        "n = 0\n"
        "while n < 10000:\n"
        "    try:\n"
        "        os.fork()\n"
        "        n += 1\n"
        "    except OSError:\n"
        "        break\n"
        "print('stopped', n, flush=True)\n"
        "time.sleep(60)\n"
    )
    result = sandbox.run(code)
    assert result.killed is not None and "wall-clock" in result.killed
    assert "stopped" in result.stdout
    uid_text = result.containment.user
    if uid_text != "same":
        time.sleep(0.2)
        assert _tasks_of_uid(int(uid_text.split()[1]))[0] == []


def test_four_gigabytes_cannot_be_allocated(sandbox: Sandbox) -> None:
    result = sandbox.run("x = bytearray(4 * 1024**3)\nprint('allocated')")
    assert result.exit_code != 0 and "MemoryError" in result.stderr


def test_infinite_loop_is_killed_by_cpu_limit() -> None:
    result = Sandbox(CPU_BOUND).run("while True:\n    pass\n")
    assert result.killed is not None and "CPU" in result.killed


def test_sleeping_forever_is_killed_by_wall_clock(sandbox: Sandbox) -> None:
    result = sandbox.run("import time\ntime.sleep(600)")
    assert result.killed is not None and "wall-clock" in result.killed
    assert result.duration_s < LIMITS.wall_seconds + 2


def test_writes_outside_its_dir_fail_or_stay_private(sandbox: Sandbox, tmp_path: Path) -> None:
    target = tmp_path / "escape.txt"
    os.chmod(tmp_path, 0o777)  # even a world-writable dir of the agent must stay untouched
    marker = Path("/tmp") / f"hanlin-sbx-escape-{os.getpid()}"
    code = (
        "import os\n"
        f"for path in ({str(target)!r}, '/etc/hanlin-escape', {str(marker)!r}, '../escape'):\n"
        "    try:\n"
        "        open(path, 'w').write('x')\n"
        "        print('wrote', path)\n"
        "    except OSError as e:\n"
        "        print('refused', path, type(e).__name__)\n"
        "open('big', 'wb').write(b'x' * (64 * 1024**2))\n"
    )
    result = sandbox.run(code)
    assert not Path("/etc/hanlin-escape").exists()
    assert not Path(tmp_path.parent / "escape").exists()
    if result.containment.filesystem == "private-tmp":
        assert not target.exists() and not marker.exists()
    assert "File too large" in result.stderr or result.killed is not None


def test_agent_survives_every_escape_attempt(llm) -> None:
    attempts = [
        "import socket; socket.create_connection(('1.1.1.1', 80), timeout=1)",
        "while True: pass",
        "x = bytearray(4 * 1024**3)",
    ]
    script = [
        "Thought: try\nAction: python\nAction Input: " + json.dumps({"code": c}) for c in attempts
    ]
    script.append("Final Answer: contained")
    llm.script(*script)
    settings = AgentSettings(llm_url=llm.url, model="m", strategy="react", max_steps=5)
    agent = Agent(settings, [python_tool(sandbox=Sandbox(CPU_BOUND))])
    result = agent.run("break out")
    assert result.status == "succeeded" and result.answer == "contained"
    observations = [s for s in result.steps if s.kind == "observation"]
    assert len(observations) == 3 and not any(o.ok for o in observations)
    assert "killed: CPU time limit" in observations[1].content


def test_python_tool_returns_output_and_errors_as_data() -> None:
    box = Toolbox.of([python_tool(sandbox=Sandbox(LIMITS))])
    assert box.invoke("python", {"code": "print(6 * 7)"}).output == "42\n"
    failed = box.invoke("python", {"code": "raise ValueError('nope')"})
    assert not failed.ok and "ValueError: nope" in failed.error


def test_limits_config_names_the_field() -> None:
    assert limits_from_config({"cpuSeconds": 3}).cpu_seconds == 3
    with pytest.raises(ValueError, match="tools\\[python\\].config: unknown fields \\['cpu'\\]"):
        limits_from_config({"cpu": 3})
    with pytest.raises(ValueError, match="wallSeconds"):
        limits_from_config({"wallSeconds": -1})
