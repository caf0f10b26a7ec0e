"""Spec -> workload plan, for each of the four kinds (one planner, two renderers).

References to other resources (`trainingJobRef`, `deploymentRef`, ...) are
resolved by the caller, which knows where the other resource lives (the
operator reads the cluster, the local runner its own state), and passed in as
`Resolved`. The planner turns them into environment variables the workloads
read next to their spec file:

- `HANLIN_MODEL_URI`: the model to load when the spec names a trainingJobRef.
- `HANLIN_ADAPTERS`: `name=uri,name=uri` for adapters given by trainingJobRef.
- `HANLIN_MODEL_ENDPOINT`, `HANLIN_MODEL_NAME`: the OpenAI base URL and model
  name when an EvalRun evaluates a deploymentRef.
- `HANLIN_LLM_URL`, `HANLIN_LLM_MODEL`: the same for an AgentService's deploymentRef.
- `HANLIN_API_KEY`: the serving API key, or the key for an EvalRun's external
  endpoint; `HANLIN_LLM_API_KEY`: the key an agent sends to its LLM endpoint.
  Always from a Secret by reference.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from hanlin.api import (
    AgentService,
    AnyResource,
    EvalRun,
    ModelDeployment,
    Resources,
    TrainingJob,
)
from hanlin.plan.model import (
    AGENT_PORT,
    GRPC_PORT,
    MASTER_PORT,
    METRICS_PORT,
    REST_PORT,
    SPEC_PATH,
    Compute,
    EnvVar,
    HttpProbe,
    IndexValue,
    LeaderAddress,
    Port,
    Scratch,
    SecretValue,
    WorkloadPlan,
)

HOME = "/home/hanlin"
#: The bind address of every listener inside a pod (a local runner makes it loopback).
ALL_INTERFACES = "0.0.0.0"


@dataclass(frozen=True)
class Resolved:
    """What the caller found behind the resource's references."""

    model_uri: str | None = None
    adapters: dict[str, str] = field(default_factory=dict)
    endpoint_url: str | None = None
    endpoint_model: str | None = None


def _compute(resources: Resources) -> Compute:
    return Compute(cpu=resources.cpu, memory=resources.memory, gpu=resources.gpu)


def _common_scratch(shm: bool = False) -> tuple[Scratch, ...]:
    # The root filesystem is read-only: everything a workload writes goes to one of these.
    out = [
        Scratch("tmp", "/tmp"),
        Scratch("home", HOME),
    ]
    if shm:
        out.append(Scratch("shm", "/dev/shm", memory=True))
    return tuple(out)


def _common_env(name: str, progress: bool) -> list[EnvVar]:
    env = [
        EnvVar("HOME", HOME),
        EnvVar("HF_HOME", f"{HOME}/.cache/huggingface"),
        EnvVar("HANLIN_RESOURCE_NAME", name),
        EnvVar("PYTHONUNBUFFERED", "1"),
    ]
    if progress:
        env.append(EnvVar("HANLIN_INDEX", IndexValue()))
    return env


def _metrics_env() -> list[EnvVar]:
    # Jobs serve /metrics for the PodMonitor; inside a pod that means every interface.
    return [
        EnvVar("HANLIN_METRICS_HOST", ALL_INTERFACES),
        EnvVar("HANLIN_METRICS_PORT", str(METRICS_PORT)),
    ]


def plan_training(job: TrainingJob, resolved: Resolved | None = None) -> WorkloadPlan:
    """TrainingJob -> one indexed replica per node, each running torchrun over `hanlin train`."""
    spec = job.spec
    res = spec.resources
    env = _common_env(job.metadata.name, progress=True)
    env += [
        EnvVar("NNODES", str(res.nodes)),
        EnvVar("NPROC_PER_NODE", str(res.procs_per_node)),
        EnvVar("NODE_RANK", IndexValue()),
        EnvVar("MASTER_ADDR", LeaderAddress()),
        EnvVar("MASTER_PORT", str(MASTER_PORT)),
        EnvVar("HANLIN_PROGRESS_KEY", "rank-$(HANLIN_INDEX)"),
        *_metrics_env(),
    ]
    if resolved is not None and resolved.model_uri:
        env.append(EnvVar("HANLIN_MODEL_URI", resolved.model_uri))
    command = (
        "torchrun",
        "--no-python",
        "--nnodes=$(NNODES)",
        "--nproc-per-node=$(NPROC_PER_NODE)",
        "--node-rank=$(NODE_RANK)",
        "--master-addr=$(MASTER_ADDR)",
        "--master-port=$(MASTER_PORT)",
        "hanlin",
        "train",
        "--spec",
        SPEC_PATH,
    )
    return WorkloadPlan(
        name=job.metadata.name,
        role="train",
        shape="job",
        command=command,
        env=tuple(env),
        replicas=res.nodes,
        ports=(Port("rendezvous", MASTER_PORT), Port("metrics", METRICS_PORT, per_replica=True)),
        compute=_compute(res),
        scratch=_common_scratch(shm=True),
        image=spec.image,
        progress_key="rank-{index}",
    )


def _endpoint_env(url_var: str, model_var: str, resolved: Resolved | None) -> list[EnvVar]:
    if resolved is None or not resolved.endpoint_url:
        return []
    env = [EnvVar(url_var, resolved.endpoint_url)]
    if resolved.endpoint_model:
        env.append(EnvVar(model_var, resolved.endpoint_model))
    return env


def plan_eval(run: EvalRun, resolved: Resolved | None = None) -> WorkloadPlan:
    """EvalRun -> one indexed replica per shard, each running `hanlin eval --shard I/N`."""
    spec = run.spec
    env = _common_env(run.metadata.name, progress=True)
    env.append(EnvVar("HANLIN_PROGRESS_KEY", "shard-$(HANLIN_INDEX)"))
    env += _metrics_env()
    if resolved is not None and resolved.model_uri:
        env.append(EnvVar("HANLIN_MODEL_URI", resolved.model_uri))
    env += _endpoint_env("HANLIN_MODEL_ENDPOINT", "HANLIN_MODEL_NAME", resolved)
    if spec.model.endpoint is not None and spec.model.endpoint.api_key_secret_ref is not None:
        ref = spec.model.endpoint.api_key_secret_ref
        env.append(EnvVar("HANLIN_API_KEY", SecretValue(ref.name, ref.key)))
    return WorkloadPlan(
        name=run.metadata.name,
        role="eval",
        shape="job",
        command=(
            "hanlin",
            "eval",
            "--spec",
            SPEC_PATH,
            "--shard",
            f"$(HANLIN_INDEX)/{spec.workers}",
        ),
        env=tuple(env),
        replicas=spec.workers,
        ports=(Port("metrics", METRICS_PORT, per_replica=True),),
        compute=_compute(spec.resources),
        scratch=_common_scratch(),
        image=spec.image,
        progress_key="shard-{index}",
    )


def plan_eval_merge(run: EvalRun) -> WorkloadPlan:
    """The final EvalRun step: merge the shards' results (`hanlin eval merge`)."""
    env = _common_env(run.metadata.name, progress=False)
    env.append(EnvVar("HANLIN_PROGRESS_KEY", "merge"))
    return WorkloadPlan(
        name=f"{run.metadata.name}-merge",
        role="eval-merge",
        shape="job",
        command=("hanlin", "eval", "merge", "--spec", SPEC_PATH),
        env=tuple(env),
        replicas=1,
        compute=Compute(cpu="500m", memory="512Mi"),
        scratch=_common_scratch(),
        image=run.spec.image,
        progress_key="merge",
    )


def plan_serving(md: ModelDeployment, resolved: Resolved | None = None) -> WorkloadPlan:
    """ModelDeployment -> replicas of `hanlin serve` (REST + metrics on 8000, gRPC on 50051)."""
    spec = md.spec
    env = _common_env(md.metadata.name, progress=False)
    if resolved is not None and resolved.model_uri:
        env.append(EnvVar("HANLIN_MODEL_URI", resolved.model_uri))
    if resolved is not None and resolved.adapters:
        joined = ",".join(f"{k}={v}" for k, v in sorted(resolved.adapters.items()))
        env.append(EnvVar("HANLIN_ADAPTERS", joined))
    if spec.api.api_key_secret_ref is not None:
        ref = spec.api.api_key_secret_ref
        env.append(EnvVar("HANLIN_API_KEY", SecretValue(ref.name, ref.key)))
    # The HTTP port always exists: /health and /metrics live there even when REST is off.
    ports = [Port("http", REST_PORT)]
    if spec.api.grpc:
        ports.append(Port("grpc", GRPC_PORT))
    replicas = spec.replicas if spec.replicas is not None else 1
    if spec.autoscaling is not None:
        replicas = spec.autoscaling.min_replicas
    return WorkloadPlan(
        name=md.metadata.name,
        role="serve",
        shape="service",
        # Bind every interface inside the pod; the ports are the plan's (probes, Service).
        command=(
            "hanlin",
            "serve",
            "--spec",
            SPEC_PATH,
            "--host",
            ALL_INTERFACES,
            "--port",
            str(REST_PORT),
            *(("--grpc-port", str(GRPC_PORT)) if spec.api.grpc else ()),
        ),
        env=tuple(env),
        replicas=replicas,
        ports=tuple(ports),
        compute=_compute(spec.resources),
        scratch=_common_scratch(shm=spec.engine.tensor_parallel > 1),
        # Loading weights takes a while: readiness gates traffic, liveness only catches hangs.
        readiness=HttpProbe("/health", REST_PORT, initial_delay_seconds=5, period_seconds=5),
        liveness=HttpProbe(
            "/health", REST_PORT, initial_delay_seconds=60, period_seconds=20, failure_threshold=6
        ),
        image=spec.image,
    )


def plan_agent(agent: AgentService, resolved: Resolved | None = None) -> WorkloadPlan:
    """AgentService -> replicas of `hanlin agent` (REST on 8080)."""
    spec = agent.spec
    env = _common_env(agent.metadata.name, progress=False)
    env += _endpoint_env("HANLIN_LLM_URL", "HANLIN_LLM_MODEL", resolved)
    if spec.llm.endpoint is not None and spec.llm.endpoint.api_key_secret_ref is not None:
        ref = spec.llm.endpoint.api_key_secret_ref
        # The agent's own API is not keyed; this is the key it sends to its LLM.
        env.append(EnvVar("HANLIN_LLM_API_KEY", SecretValue(ref.name, ref.key)))
    return WorkloadPlan(
        name=agent.metadata.name,
        role="agent",
        shape="service",
        command=(
            "hanlin",
            "agent",
            "--spec",
            SPEC_PATH,
            "--host",
            ALL_INTERFACES,
            "--port",
            str(AGENT_PORT),
        ),
        env=tuple(env),
        replicas=spec.replicas,
        ports=(Port("http", AGENT_PORT),),
        compute=_compute(spec.resources),
        scratch=_common_scratch(),
        readiness=HttpProbe("/health", AGENT_PORT, initial_delay_seconds=2, period_seconds=5),
        liveness=HttpProbe("/health", AGENT_PORT, initial_delay_seconds=30, period_seconds=20),
        image=spec.image,
    )


def plan_resource(resource: AnyResource, resolved: Resolved | None = None) -> WorkloadPlan:
    """The main workload of any resource (an EvalRun's merge step is `plan_eval_merge`)."""
    if isinstance(resource, TrainingJob):
        return plan_training(resource, resolved)
    if isinstance(resource, EvalRun):
        return plan_eval(resource, resolved)
    if isinstance(resource, ModelDeployment):
        return plan_serving(resource, resolved)
    return plan_agent(resource, resolved)
