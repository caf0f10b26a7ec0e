"""Detached background processes recorded in a state file, for `hanlin dev`.

Each started component writes its pid to `DIR/state.json`; `stop` reads it back.
Starting where a live state file exists is refused, so one directory never holds two
clusters; stopping where none exists is a no-op.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

# Children started by this process, kept so they are reaped (not left as zombies or
# reported as leaked by Popen's finalizer) when `stop` runs in the same process.
_CHILDREN: dict[int, subprocess.Popen[bytes]] = {}


class AlreadyRunningError(RuntimeError):
    """The directory already holds running components."""


def terminate(proc: subprocess.Popen[Any], timeout: float = 15.0) -> None:
    """Stop a child process: SIGTERM, then SIGKILL if it has not exited within `timeout`."""
    proc.terminate()
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def free_port() -> int:
    """A free TCP port on the loopback interface."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def alive(pid: int) -> bool:
    """Whether the process exists (a reaped zombie counts as gone)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie child of ours still answers kill(0); reap it so it reads as dead.
    child = _CHILDREN.get(pid)
    if child is not None and child.poll() is not None:
        del _CHILDREN[pid]
        return False
    return True


@dataclass
class ProcessGroup:
    """The components started in one directory."""

    directory: Path
    kind: str
    pids: dict[str, int] = field(default_factory=dict)
    info: dict[str, object] = field(default_factory=dict)

    @property
    def state_file(self) -> Path:
        return self.directory / "state.json"

    @property
    def log_dir(self) -> Path:
        return self.directory / "logs"

    def check_not_running(self) -> None:
        """Refuse to start a second set of components in the same directory."""
        if not self.state_file.exists():
            return
        state = json.loads(self.state_file.read_text())
        live = {name: pid for name, pid in state.get("pids", {}).items() if alive(pid)}
        if live:
            raise AlreadyRunningError(
                f"a {state.get('kind', self.kind)} is already running in {self.directory} "
                f"({', '.join(f'{n} pid {p}' for n, p in live.items())}); "
                f"stop it first with `hanlin dev {self.kind} stop --dir {self.directory}`"
            )
        self.state_file.unlink()

    def spawn(
        self,
        name: str,
        argv: Sequence[str | os.PathLike[str]],
        env: dict[str, str] | None = None,
    ) -> subprocess.Popen[bytes]:
        """Start a detached component whose output goes to logs/NAME.log."""
        self.log_dir.mkdir(parents=True, exist_ok=True)
        log = open(self.log_dir / f"{name}.log", "ab")  # noqa: SIM115 - handed to the child
        proc = subprocess.Popen(
            [os.fspath(a) for a in argv],
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
            cwd=self.directory,
            env=env,
        )
        log.close()
        _CHILDREN[proc.pid] = proc
        self.pids[name] = proc.pid
        self.save()
        return proc

    def save(self) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        tmp = self.state_file.with_suffix(".tmp")
        tmp.write_text(json.dumps({"kind": self.kind, "pids": self.pids, "info": self.info}))
        tmp.replace(self.state_file)

    def tail(self, name: str, lines: int = 30) -> str:
        path = self.log_dir / f"{name}.log"
        if not path.exists():
            return ""
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])


def stop(directory: Path, timeout: float = 15.0) -> list[str]:
    """Stop every component recorded in DIR/state.json; idempotent. Returns what was stopped."""
    state_file = Path(directory) / "state.json"
    if not state_file.exists():
        return []
    state = json.loads(state_file.read_text())
    pids: dict[str, int] = state.get("pids", {})
    stopped = []
    # Reverse start order: dependants (controller-manager) before what they need (etcd).
    for name, pid in reversed(list(pids.items())):
        if not alive(pid):
            continue
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        while alive(pid) and time.monotonic() < deadline:
            time.sleep(0.05)
        if alive(pid):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pid, signal.SIGKILL)
            while alive(pid):
                time.sleep(0.05)
        stopped.append(name)
    state_file.unlink(missing_ok=True)
    return stopped
