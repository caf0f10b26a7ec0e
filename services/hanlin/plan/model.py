"""The workload plan: what to run for a resource, independent of where it runs.

A plan says which command each replica runs, with which environment, ports,
resources and scratch paths. Two renderers read it: the operator turns it into
Kubernetes objects; the local runner starts the same commands as processes.
Values that differ between the two worlds are symbolic here (`IndexValue`,
`LeaderAddress`, `SecretValue`) and each renderer resolves them its own way.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

#: Where the resource (as YAML) is mounted; every workload reads `--spec` from here.
SPEC_DIR = "/etc/hanlin"
SPEC_FILE = "spec.yaml"
SPEC_PATH = f"{SPEC_DIR}/{SPEC_FILE}"

REST_PORT = 8000
GRPC_PORT = 50051
AGENT_PORT = 8080
MASTER_PORT = 29500
METRICS_PORT = 9090


@dataclass(frozen=True)
class IndexValue:
    """The replica's index (a Job's completion index; the process number locally)."""


@dataclass(frozen=True)
class LeaderAddress:
    """The address replica 0 is reachable at (pod 0's stable DNS name; 127.0.0.1 locally)."""


@dataclass(frozen=True)
class SecretValue:
    """A value read from a Secret key; never written into a spec, status or log."""

    secret: str
    key: str


EnvValue = str | IndexValue | LeaderAddress | SecretValue


@dataclass(frozen=True)
class EnvVar:
    """One environment variable of the workload's container/process."""

    name: str
    value: EnvValue


@dataclass(frozen=True)
class Port:
    """A port the workload listens on."""

    name: str
    port: int
    per_replica: bool = False
    """Each replica listens on its own (a pod has its own network; local processes
    of one workload need one port each). False: the replicas share it (rendezvous)."""


@dataclass(frozen=True)
class HttpProbe:
    """An HTTP GET that answers 200 when the workload is healthy/ready."""

    path: str
    port: int
    initial_delay_seconds: int = 5
    period_seconds: int = 10
    failure_threshold: int = 3


@dataclass(frozen=True)
class Scratch:
    """A writable path; an emptyDir in a pod (the root filesystem is read-only), a temp dir locally."""

    name: str
    path: str
    memory: bool = False
    """Backed by memory (for `/dev/shm`, which torch's data loaders and NCCL use)."""
    size_limit: str | None = None


@dataclass(frozen=True)
class Compute:
    """What each replica asks for."""

    cpu: str | None = None
    memory: str | None = None
    gpu: int = 0


@dataclass(frozen=True)
class WorkloadPlan:
    """One workload: a batch of indexed replicas (job) or a long-running service."""

    name: str
    """Base name of the objects/processes (the resource's name, or `<name>-merge`)."""
    role: Literal["train", "eval", "eval-merge", "serve", "agent"]
    shape: Literal["job", "service"]
    command: tuple[str, ...]
    """argv, may contain `$(VAR)` references to `env` (expanded by Kubernetes and by the runner)."""
    env: tuple[EnvVar, ...] = ()
    replicas: int = 1
    """job: number of indexed replicas (nodes / shards); service: desired replicas."""
    ports: tuple[Port, ...] = ()
    compute: Compute = field(default_factory=Compute)
    scratch: tuple[Scratch, ...] = ()
    readiness: HttpProbe | None = None
    liveness: HttpProbe | None = None
    image: str | None = None
    """The container image the resource names (None: the operator's default)."""
    progress_key: str | None = None
    """Telemetry key per replica: `{index}` is replaced by the replica index."""
    secret_env_from: tuple[str, ...] = ()
    """Secrets whose keys all become environment variables (storage credentials)."""

    def env_dict(self) -> dict[str, EnvValue]:
        """Environment as a mapping (later entries win)."""
        return {e.name: e.value for e in self.env}
