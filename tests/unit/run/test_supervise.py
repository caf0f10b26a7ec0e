"""Children run in their own process groups; stopping them leaves nothing behind."""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

from hanlin.run.render import LocalProcess
from hanlin.run.supervise import start, stop

# A parent that ignores SIGTERM and has a grandchild that ignores it too: only the
# group-wide SIGKILL after the grace period ends both.
STUBBORN = """
import os, signal, subprocess, sys, time
signal.signal(signal.SIGTERM, signal.SIG_IGN)
child = subprocess.Popen([sys.executable, "-c",
    "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); time.sleep(600)"])
print('{"event": "started", "grandchild": %d}' % child.pid, flush=True)
time.sleep(600)
"""


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie is gone for our purposes (its parent has not reaped it yet).
    stat = Path(f"/proc/{pid}/stat").read_text()
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def test_stop_kills_the_whole_group(tmp_path: Path) -> None:
    events: list[dict[str, object]] = []
    proc = LocalProcess("stubborn", (sys.executable, "-c", STUBBORN), {}, tmp_path)
    child = start(proc, tmp_path / "s.log", dict(os.environ), events.append)
    deadline = time.monotonic() + 30
    while not events and time.monotonic() < deadline:
        time.sleep(0.05)
    assert events and events[0]["event"] == "started"
    grandchild = int(str(events[0]["grandchild"]))
    assert os.getpgid(grandchild) == child.pid
    stop([child], grace_seconds=0.5)
    assert child.poll() is not None
    deadline = time.monotonic() + 5
    while _alive(grandchild) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not _alive(grandchild)
    assert "$ " in (tmp_path / "s.log").read_text()


def test_json_lines_reach_the_callback_and_text_reaches_the_log(tmp_path: Path) -> None:
    code = 'print("hello"); print(\'{"step": 1, "loss": 2.5}\'); print("{not json")'
    events: list[dict[str, object]] = []
    proc = LocalProcess("p", (sys.executable, "-c", code), {"X": "1"}, tmp_path)
    child = start(proc, tmp_path / "p.log", dict(os.environ), events.append)
    assert child.wait() == 0
    assert events == [{"step": 1, "loss": 2.5}]
    log = (tmp_path / "p.log").read_text()
    assert "hello" in log and "{not json" in log
    assert child.log_tail(1) == "{not json"
