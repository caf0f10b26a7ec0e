"""The runner's renderer: a `WorkloadPlan` -> the argv and environment of local processes.

The operator renders the same plan into pod specs (`hanlin_operator.builders`).
Here every symbolic value gets its local equivalent:

- `$(VAR)` in argv and env values expands from the plan's env, as Kubernetes does
  (`$$` is a literal `$`; an unknown reference stays as written).
- `IndexValue` is the replica number, `LeaderAddress` is 127.0.0.1, and a
  `SecretValue` reads the environment variable `<SECRET>_<KEY>` (upper case,
  `-`/`.` as `_`), since there is no Secret store on a laptop.
- The spec mount (`SPEC_PATH`) is a file in the workload's directory; each
  scratch path is a directory there too (except memory-backed `/dev/shm`).
- Container ports become free local ports: env values naming a plan port are
  rewritten, and services get `--host/--port/--grpc-port` appended, because the
  container images rely on fixed ports the workloads' defaults do not all bind.
"""

from __future__ import annotations

import re
import socket
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from hanlin.plan import (
    SPEC_PATH,
    EnvValue,
    IndexValue,
    LeaderAddress,
    SecretValue,
    WorkloadPlan,
)
from hanlin.plan.planner import ALL_INTERFACES

_REF = re.compile(r"\$\$|\$\(([A-Za-z_][A-Za-z0-9_]*)\)")
LOCALHOST = "127.0.0.1"


class RenderError(Exception):
    """A plan value has no local equivalent (e.g. a Secret key not in the environment)."""


@dataclass(frozen=True)
class LocalProcess:
    """One replica as a local process."""

    name: str
    argv: tuple[str, ...]
    env: dict[str, str]
    """Only the variables the plan and the runner set; the parent's environment is added at start."""
    cwd: Path
    index: int = 0


@dataclass
class LocalPorts:
    """Container port -> the free local port that stands in for it, per workload."""

    mapping: dict[tuple[int, int], int] = field(default_factory=dict)

    def local(self, port: int, replica: int = 0) -> int:
        """The local port for a container port (allocated on first use).

        `replica` tells apart the replicas of a per-replica port (each pod has one;
        local processes must not share it); shared ports always use replica 0.
        """
        if (port, replica) not in self.mapping:
            self.mapping[(port, replica)] = free_port()
        return self.mapping[(port, replica)]


def free_port() -> int:
    """A TCP port nothing listens on right now (on 127.0.0.1)."""
    with socket.socket() as s:
        s.bind((LOCALHOST, 0))
        return int(s.getsockname()[1])


def expand(text: str, env: Mapping[str, str]) -> str:
    """Kubernetes' `$(VAR)` expansion: known names are replaced, `$$` is `$`."""

    def sub(m: re.Match[str]) -> str:
        if m.group(0) == "$$":
            return "$"
        name = m.group(1)
        return env[name] if name in env else m.group(0)

    return _REF.sub(sub, text)


def secret_env_name(secret: str, key: str) -> str:
    """The environment variable that holds a Secret key locally."""
    return re.sub(r"[^A-Za-z0-9]", "_", f"{secret}_{key}").upper()


def _value(
    value: EnvValue, index: int, environ: Mapping[str, str], scratch: Mapping[str, str]
) -> str:
    if isinstance(value, IndexValue):
        return str(index)
    if isinstance(value, LeaderAddress):
        return LOCALHOST
    if isinstance(value, SecretValue):
        var = secret_env_name(value.secret, value.key)
        if var not in environ:
            raise RenderError(
                f"Secret {value.secret!r} key {value.key!r}: set the environment variable {var}"
            )
        return environ[var]
    # Paths inside the container's scratch volumes live in the workload's directory.
    for container_path, local_path in scratch.items():
        if value == container_path or value.startswith(container_path + "/"):
            return local_path + value[len(container_path) :]
    return value


def local_scratch(plan: WorkloadPlan, workdir: Path) -> dict[str, str]:
    """Container scratch path -> local directory (created); memory-backed ones stay as they are."""
    out: dict[str, str] = {}
    for s in plan.scratch:
        if s.memory:
            continue
        local = workdir / "scratch" / s.name
        local.mkdir(parents=True, exist_ok=True)
        out[s.path] = str(local)
    return out


def render(
    plan: WorkloadPlan,
    spec_file: Path,
    workdir: Path,
    ports: LocalPorts,
    environ: Mapping[str, str],
    extra_args: tuple[str, ...] = (),
) -> list[LocalProcess]:
    """One local process per replica of the plan (a service runs one replica locally)."""
    scratch = local_scratch(plan, workdir)
    replicas = plan.replicas if plan.shape == "job" else 1
    out = []
    for index in range(replicas):
        port_values = {
            str(p.port): str(ports.local(p.port, index if p.per_replica else 0)) for p in plan.ports
        }
        # A pod binds every interface; a local process binds loopback only.
        port_values[ALL_INTERFACES] = LOCALHOST
        env: dict[str, str] = {}
        for var in plan.env:
            raw = _value(var.value, index, environ, scratch)
            value = expand(raw, env)
            env[var.name] = port_values.get(value, value)
        if "/tmp" in scratch:
            env["TMPDIR"] = scratch["/tmp"]
        argv = [expand(a, env) for a in plan.command]
        argv = [str(spec_file) if a == SPEC_PATH else a for a in argv]
        argv += [expand(a, env) for a in extra_args]
        out.append(LocalProcess(plan.name, tuple(argv), env, workdir, index))
    return out


def service_args(plan: WorkloadPlan, ports: LocalPorts) -> tuple[str, ...]:
    """The local bind flags of `hanlin serve` / `hanlin agent`: loopback and the mapped ports."""
    args = ["--host", LOCALHOST]
    for p in plan.ports:
        if p.name == "http":
            args += ["--port", str(ports.local(p.port))]
        elif p.name == "grpc":
            args += ["--grpc-port", str(ports.local(p.port))]
    return tuple(args)
