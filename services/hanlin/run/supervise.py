"""Child processes: each in its own process group, output to a log, JSON lines to a callback.

A workload may start children of its own (torchrun starts the trainer, the
agent starts sandboxes), so the runner signals the whole process group:
SIGTERM first, SIGKILL for whatever is left after a grace period.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from hanlin.run.render import LocalProcess

OnEvent = Callable[[dict[str, Any]], None]


@dataclass
class Child:
    """A started workload process."""

    process: LocalProcess
    popen: subprocess.Popen[bytes]
    log_path: Path
    _reader: threading.Thread | None = None
    events: list[dict[str, Any]] = field(default_factory=list)

    @property
    def pid(self) -> int:
        """The process id (also its process group id)."""
        return self.popen.pid

    def poll(self) -> int | None:
        """The exit code, or None while running."""
        return self.popen.poll()

    def wait(self) -> int:
        """Wait for exit (and for the output to be read to the end)."""
        code = self.popen.wait()
        if self._reader is not None:
            self._reader.join()
        return code

    def log_tail(self, lines: int = 20) -> str:
        """The last lines of the log, to show why something failed."""
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])


def _pump(stream: IO[bytes], log: IO[bytes], child: Child, on_event: OnEvent | None) -> None:
    # Every line goes to the log; lines that are JSON objects are the workload's progress protocol.
    for raw in iter(stream.readline, b""):
        log.write(raw)
        log.flush()
        line = raw.strip()
        if not line.startswith(b"{"):
            continue
        try:
            event = json.loads(line)
        except ValueError:
            continue
        if isinstance(event, dict):
            child.events.append(event)
            if on_event is not None:
                on_event(event)
    stream.close()
    log.close()


def start(
    process: LocalProcess,
    log_path: Path,
    base_env: Mapping[str, str],
    on_event: OnEvent | None = None,
) -> Child:
    """Start one process in a new session (its own process group), stdout+stderr to the log."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    env = {**base_env, **process.env}
    log = log_path.open("ab")
    log.write(f"$ {' '.join(process.argv)}\n".encode())
    log.flush()
    try:
        popen = subprocess.Popen(
            list(process.argv),
            cwd=process.cwd,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    except OSError:
        log.close()
        raise
    child = Child(process, popen, log_path)
    assert popen.stdout is not None  # stdout=PIPE
    child._reader = threading.Thread(
        target=_pump, args=(popen.stdout, log, child, on_event), daemon=True
    )
    child._reader.start()
    return child


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def stop(children: list[Child], grace_seconds: float = 10.0) -> None:
    """SIGTERM every child's process group, then SIGKILL what is still there after the grace."""
    for child in children:
        if _group_alive(child.pid):
            try:
                os.killpg(child.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
    deadline = time.monotonic() + grace_seconds
    for child in children:
        while child.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
    for child in children:
        # The leader may be gone while its children (e.g. torchrun's workers) linger.
        if _group_alive(child.pid):
            try:
                os.killpg(child.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        child.wait()
