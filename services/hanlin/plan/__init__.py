"""The planner: a resource's spec -> the workload that carries it out.

One planner, two renderers: the operator renders a `WorkloadPlan` into
Kubernetes objects (`hanlin_operator.builders`), the local runner into
processes. A plan holds the argv (with `$(VAR)` references that both
renderers expand from the plan's env), the environment (with symbolic values
for the replica index, the leader's address and Secret keys), ports, probes,
compute requests and the writable scratch paths.

    from hanlin.plan import plan_resource, Resolved

    plan = plan_resource(job, Resolved(model_uri="s3://b/base"))
    plan.command   # ("torchrun", "--no-python", ..., "hanlin", "train", "--spec", SPEC_PATH)
"""

from hanlin.plan.model import (
    AGENT_PORT,
    GRPC_PORT,
    MASTER_PORT,
    METRICS_PORT,
    REST_PORT,
    SPEC_DIR,
    SPEC_FILE,
    SPEC_PATH,
    Compute,
    EnvValue,
    EnvVar,
    HttpProbe,
    IndexValue,
    LeaderAddress,
    Port,
    Scratch,
    SecretValue,
    WorkloadPlan,
)
from hanlin.plan.planner import (
    Resolved,
    plan_agent,
    plan_eval,
    plan_eval_merge,
    plan_resource,
    plan_serving,
    plan_training,
)

__all__ = [
    "AGENT_PORT",
    "GRPC_PORT",
    "MASTER_PORT",
    "METRICS_PORT",
    "REST_PORT",
    "SPEC_DIR",
    "SPEC_FILE",
    "SPEC_PATH",
    "Compute",
    "EnvValue",
    "EnvVar",
    "HttpProbe",
    "IndexValue",
    "LeaderAddress",
    "Port",
    "Resolved",
    "Scratch",
    "SecretValue",
    "WorkloadPlan",
    "plan_agent",
    "plan_eval",
    "plan_eval_merge",
    "plan_resource",
    "plan_serving",
    "plan_training",
]
