"""Run untrusted Python in a separate, limited process.

What is contained depends on what the host permits, and every run reports it:

- always: a fresh empty working directory, a scrubbed environment (no secrets of
  the agent), rlimits on CPU time, address space, file size and process count, a
  wall-clock timeout after which the whole process tree is killed, bounded output,
  `no_new_privs`, and death with the agent (`PDEATHSIG`);
- as root (a dev machine, a privileged pod): a per-run unprivileged uid (so
  RLIMIT_NPROC really binds, the agent's files and `/proc/<agent>/environ` are out
  of reach, and every leftover process can be found and killed), a new network
  namespace with no interfaces up, and a private mount namespace where `/tmp`,
  `/var/tmp`, `/dev/shm` and `/run/lock` are fresh size-limited tmpfs;
- unprivileged with user namespaces allowed: the same namespaces without the uid;
- otherwise (a typical restricted pod): network is refused by an audit hook in the
  child that blocks sockets, ctypes and exec of other programs; an audit hook is
  a speed bump against Python code, not a wall, so say so in the report.

The launcher is a tiny Python script that runs as the agent's user, applies the
containment, drops privileges and execs the interpreter that runs the code: doing
this in a separate process (not `preexec_fn`) keeps it safe in a threaded server.
"""

from __future__ import annotations

import io
import json
import os
import random
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, cast

from hanlin.agent.sandbox_scripts import LAUNCHER, PRELUDE


@dataclass
class SandboxLimits:
    """Resource limits for one run of untrusted code."""

    cpu_seconds: int = 5
    """CPU time (RLIMIT_CPU); SIGXCPU then SIGKILL when spent."""
    memory_bytes: int = 512 * 1024**2
    """Address space (RLIMIT_AS); allocations beyond it raise MemoryError."""
    file_bytes: int = 16 * 1024**2
    """Largest file the code may write (RLIMIT_FSIZE), also the size of each private tmpfs."""
    processes: int = 16
    """Processes/threads the code may have at once (RLIMIT_NPROC)."""
    wall_seconds: float = 10.0
    """Wall-clock budget; the whole tree is killed when it runs out."""
    output_bytes: int = 64 * 1024
    """Bytes kept from each of stdout and stderr; the rest is dropped."""


@dataclass
class Containment:
    """What one run was actually contained by on this host."""

    network: str = "none"
    """'netns' (a new, empty network namespace), 'audit-hook', or 'none'."""
    filesystem: str = "workdir"
    """'private-tmp' (fresh tmpfs over world-writable dirs) or 'workdir' (cwd only)."""
    user: str = "same"
    """'uid N' when the code ran as a separate unprivileged uid, else 'same'."""
    processes: str = "process-group"
    """How leftover processes are reaped: 'pid-namespace' (all die with the run),
    'uid' (found and killed by uid), or 'process-group' (forking is refused instead)."""
    interpreter: str = ""
    notes: list[str] = field(default_factory=list)


@dataclass
class SandboxResult:
    """The outcome of running code: exit status, bounded output, and why it stopped."""

    exit_code: int | None
    stdout: str
    stderr: str
    killed: str | None
    duration_s: float
    containment: Containment


def _world_usable(path: Path) -> bool:
    """True when a user with no special rights can execute `path` (every parent traversable)."""
    try:
        resolved = path.resolve()
        if not resolved.stat().st_mode & stat.S_IXOTH:
            return False
        return all(p.stat().st_mode & stat.S_IXOTH for p in resolved.parents)
    except OSError:
        return False


def _pick_interpreter(separate_uid: bool) -> str:
    # A separate uid can only exec an interpreter every user can reach (a pyenv under a
    # private home is not); prefer the agent's own, then the system's.
    candidates = [sys.executable]
    for name in ("python3", "python"):
        found = shutil.which(name, path="/usr/local/bin:/usr/bin:/bin")
        if found:
            candidates.append(found)
    for candidate in candidates:
        if not separate_uid or _world_usable(Path(candidate)):
            return candidate
    return ""


def _tasks_of_uid(uid: int) -> tuple[list[int], int]:
    """Pids whose real uid is `uid`, and their total thread count (what RLIMIT_NPROC counts)."""
    pids: list[int] = []
    threads = 0
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            status = Path(f"/proc/{entry}/status").read_text()
        except OSError:
            continue
        fields = dict(line.split(":", 1) for line in status.splitlines() if ":" in line)
        # Zombies hold no resources and cannot be killed; their parent (or init) reaps them.
        if fields.get("State", "").strip().startswith("Z"):
            continue
        if int(fields.get("Uid", "-1 0").split()[0]) == uid:
            pids.append(int(entry))
            threads += int(fields.get("Threads", "1").strip())
    return pids, threads


def _kill_uid(uid: int) -> None:
    # Forked children may have left the process group (setsid); with a uid of their
    # own they can still all be found. RLIMIT_NPROC bounds how many can be racing us.
    for _ in range(200):
        pids, _threads = _tasks_of_uid(uid)
        if not pids:
            return
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        time.sleep(0.01)


class _CappedReader(threading.Thread):
    """Drains a pipe, keeping only the first `limit` bytes, so a flood cannot fill memory."""

    def __init__(self, stream: io.BufferedReader, limit: int) -> None:
        super().__init__(daemon=True)
        self.stream, self.limit = stream, limit
        self.data = bytearray()
        self.dropped = 0

    def run(self) -> None:
        while chunk := self.stream.read1(65536):
            room = self.limit - len(self.data)
            self.data += chunk[: max(room, 0)]
            self.dropped += max(len(chunk) - max(room, 0), 0)

    def text(self) -> str:
        out = self.data.decode("utf-8", errors="replace")
        return out + (f"\n[... {self.dropped} bytes dropped]" if self.dropped else "")


class Sandbox:
    """Runs Python source in a contained child process; thread-safe."""

    def __init__(
        self,
        limits: SandboxLimits | None = None,
        *,
        base_dir: str | None = None,
        namespaces: bool = True,
        separate_uid: bool = True,
    ) -> None:
        """`namespaces`/`separate_uid` False turn those layers off (to test the fallbacks)."""
        self.limits = limits or SandboxLimits()
        self.base_dir = base_dir or tempfile.gettempdir()
        self.namespaces = namespaces
        want_uid = separate_uid and os.geteuid() == 0
        self.interpreter = _pick_interpreter(want_uid)
        self.separate_uid = want_uid and bool(self.interpreter)
        if not self.interpreter:
            self.interpreter = sys.executable

    def _uid(self) -> int:
        # A uid of its own per run (not a shared `nobody`): the process-count limit then
        # counts only this run, and cleanup can kill exactly this run's processes.
        return random.randrange(1_000_000, 2_000_000)

    def run(self, code: str) -> SandboxResult:
        """Run `code` as a script; never raises for anything the code does."""
        limits = self.limits
        workdir = Path(tempfile.mkdtemp(prefix="hanlin-sbx-", dir=self.base_dir))
        uid = self._uid() if self.separate_uid else os.getuid()
        nproc = limits.processes
        if not self.separate_uid and os.geteuid() != 0:
            # The limit counts every task of the real uid, the agent's threads included.
            nproc += _tasks_of_uid(uid)[1] + 2  # + the launcher and the sandbox's init
        try:
            (workdir / "main.py").write_text(code)
            if self.separate_uid:
                for p in (workdir, workdir / "main.py"):
                    os.chown(p, uid, uid)
            os.chmod(workdir, 0o700)
            report_r, report_w = os.pipe()
            config = {
                "workdir": str(workdir),
                "uid": uid if self.separate_uid else None,
                "interpreter": self.interpreter,
                "report_fd": report_w,
                "parent_pid": os.getpid(),
                "limits": asdict(limits),
                "nproc": nproc,
                "namespaces": self.namespaces,
                "prelude": PRELUDE,
            }
            env = {"PATH": "/usr/local/bin:/usr/bin:/bin", "LANG": "C.UTF-8"}
            start = time.monotonic()
            proc = subprocess.Popen(
                [sys.executable, "-I", "-S", "-c", LAUNCHER, json.dumps(config)],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                cwd=workdir,
                env=env,
                start_new_session=True,
                pass_fds=(report_w,),
            )
            os.close(report_w)
            assert proc.stdout is not None and proc.stderr is not None
            readers = [
                _CappedReader(cast(io.BufferedReader, s), limits.output_bytes)
                for s in (proc.stdout, proc.stderr)
            ]
            for r in readers:
                r.start()
            killed: str | None = None
            try:
                proc.wait(timeout=limits.wall_seconds)
            except subprocess.TimeoutExpired:
                killed = f"wall-clock limit of {limits.wall_seconds:g} s"
            self._kill_tree(proc, uid)
            duration = time.monotonic() - start
            for r in readers:
                r.join(timeout=2.0)
            proc.stdout.close()
            proc.stderr.close()
            with os.fdopen(report_r, "rb") as report_file:
                report = json.loads(report_file.read() or b"{}")
            if not report:
                # The launcher failed before running the code: a platform problem, not the
                # model's, so it is an error of the agent and propagates.
                raise RuntimeError(f"sandbox launcher failed: {readers[1].text()[-1000:]}")
            code_ = proc.returncode
            if killed is None and code_ is not None and code_ < 0:
                sig = signal.Signals(-code_)
                killed = {
                    signal.SIGXCPU: f"CPU time limit of {limits.cpu_seconds} s",
                    signal.SIGXFSZ: f"file size limit of {limits.file_bytes} bytes",
                }.get(sig, f"signal {signal.Signals(sig).name}")
                if sig == signal.SIGKILL and duration < limits.wall_seconds:
                    killed = f"SIGKILL (CPU time limit of {limits.cpu_seconds} s or out of memory)"
            notes = list(report.get("notes", []))
            if not self.separate_uid and uid == 0:
                notes.append("runs as root: RLIMIT_NPROC is not enforced, processes are unbounded")
            containment = Containment(
                network=report.get("network", "none"),
                filesystem=report.get("filesystem", "workdir"),
                user=f"uid {uid}" if self.separate_uid else "same",
                processes="pid-namespace"
                if report.get("pid_namespace")
                else "uid"
                if self.separate_uid
                else "process-group",
                interpreter=self.interpreter,
                notes=notes,
            )
            return SandboxResult(
                exit_code=code_,
                stdout=readers[0].text(),
                stderr=readers[1].text(),
                killed=killed,
                duration_s=duration,
                containment=containment,
            )
        finally:
            shutil.rmtree(workdir, ignore_errors=True)

    def _kill_tree(self, proc: subprocess.Popen[bytes], uid: int) -> None:
        if proc.poll() is None:
            # The launcher stops its PID namespace and reaps it; then the group is killed
            # for what is left (code run without a namespace ignores or outlives SIGTERM).
            proc.terminate()
            try:
                proc.wait(timeout=2.0)
            except subprocess.TimeoutExpired:
                pass
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        proc.wait()
        if self.separate_uid:
            _kill_uid(uid)

    def probe(self) -> Containment:
        """What this host lets the sandbox contain (runs a trivial program once)."""
        return self.run("pass").containment


def containment_summary(c: Containment) -> dict[str, Any]:
    """The containment report as plain JSON."""
    return asdict(c)
