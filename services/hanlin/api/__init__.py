"""The Hanlin API: the four custom resources as typed pydantic v2 models.

Group `hanlin.dev`, version `v1alpha1`, all namespaced. This package is the
contract between users, the operator and the workloads; it imports nothing heavy
(no torch) and is what `crds/` is generated from.

Module layout:

- `hanlin.api.base`: base classes (`SpecModel` strict, `StatusModel` tolerant),
  camelCase wire names, the `cel()` helper for CEL rules, `Quantity`, `Name`.
- `hanlin.api.uri`: `parse_uri` and `ParsedURI` for `s3://bucket/key`,
  `pvc://claim/path`, `file:///abs/path`, `hf://org/name`; the pydantic field
  types `SourceURI` (any scheme) and `OutputURI` (writable schemes).
- `hanlin.api.common`: shared types: `LocalObjectReference`, `SecretKeyReference`,
  `EndpointSpec`, `Resources`, `Toleration`, `Condition`, `ResourceStatus`,
  `ObjectMeta`, and the `Resource` base of the four kinds.
- `hanlin.api.training_job`: `TrainingJob`, `TrainingJobSpec`, `TrainingJobStatus`, ...
- `hanlin.api.eval_run`: `EvalRun`, `EvalRunSpec`, `EvalRunStatus`, `parse_threshold`, ...
- `hanlin.api.model_deployment`: `ModelDeployment`, `ModelDeploymentSpec`, ...
- `hanlin.api.agent_service`: `AgentService`, `AgentServiceSpec`, ...
- `hanlin.api.loading`: `load_resource` / `load_resources` (YAML -> typed
  resource, dispatching on `kind`), `ResourceError`, `KINDS`.
- `hanlin.api.crd`: the CRD generator (models -> CustomResourceDefinitions).
- `hanlin.api.cli`: `hanlin crds generate|check`.

Python attributes are snake_case (`spec.hyperparameters.learning_rate`); YAML and
the CRDs use camelCase (`learningRate`). `resource.to_dict()` gives the wire form.

Typical use in a workload::

    from hanlin.api import TrainingJob, load_resource

    job = load_resource(spec_path, TrainingJob)   # ResourceError names a bad field
    lr = job.spec.hyperparameters.learning_rate
"""

from hanlin.api.agent_service import (
    AgentService,
    AgentServiceSpec,
    AgentServiceStatus,
    LLMSource,
    RemoteTool,
    ServiceReference,
    ToolSpec,
)
from hanlin.api.base import API_GROUP, API_VERSION, GROUP_VERSION, SpecModel, StatusModel
from hanlin.api.common import (
    Condition,
    EndpointSpec,
    LocalObjectReference,
    ObjectMeta,
    Resource,
    Resources,
    ResourceStatus,
    SecretKeyReference,
    Toleration,
)
from hanlin.api.eval_run import (
    Benchmark,
    BenchmarkResult,
    DatasetSpec,
    EvalOutput,
    EvalProgress,
    EvalRun,
    EvalRunSpec,
    EvalRunStatus,
    ModelUnderTest,
    parse_threshold,
)
from hanlin.api.loading import (
    KINDS,
    AnyResource,
    ResourceError,
    load_resource,
    load_resources,
    validate_resource,
)
from hanlin.api.model_deployment import (
    AdapterSource,
    ApiSpec,
    Autoscaling,
    Endpoints,
    EngineSpec,
    ModelDeployment,
    ModelDeploymentSpec,
    ModelDeploymentStatus,
    Promotion,
    ScalingTarget,
    ServedModel,
)
from hanlin.api.training_job import (
    Adapter,
    Artifact,
    Checkpointing,
    DataSource,
    Hyperparameters,
    TrainingJob,
    TrainingJobSpec,
    TrainingJobStatus,
    TrainingModelSource,
    TrainingOutput,
    TrainingProgress,
    TrainingResources,
)
from hanlin.api.uri import OutputURI, ParsedURI, SourceURI, URIError, parse_uri

__all__ = [
    "API_GROUP",
    "API_VERSION",
    "GROUP_VERSION",
    "KINDS",
    "Adapter",
    "AdapterSource",
    "AgentService",
    "AgentServiceSpec",
    "AgentServiceStatus",
    "AnyResource",
    "ApiSpec",
    "Artifact",
    "Autoscaling",
    "Benchmark",
    "BenchmarkResult",
    "Checkpointing",
    "Condition",
    "DataSource",
    "DatasetSpec",
    "EndpointSpec",
    "Endpoints",
    "EngineSpec",
    "EvalOutput",
    "EvalProgress",
    "EvalRun",
    "EvalRunSpec",
    "EvalRunStatus",
    "Hyperparameters",
    "LLMSource",
    "LocalObjectReference",
    "ModelDeployment",
    "ModelDeploymentSpec",
    "ModelDeploymentStatus",
    "ModelUnderTest",
    "ObjectMeta",
    "OutputURI",
    "ParsedURI",
    "Promotion",
    "RemoteTool",
    "Resource",
    "ResourceError",
    "ResourceStatus",
    "Resources",
    "ScalingTarget",
    "SecretKeyReference",
    "ServedModel",
    "ServiceReference",
    "SourceURI",
    "SpecModel",
    "StatusModel",
    "Toleration",
    "ToolSpec",
    "TrainingJob",
    "TrainingJobSpec",
    "TrainingJobStatus",
    "TrainingModelSource",
    "TrainingOutput",
    "TrainingProgress",
    "TrainingResources",
    "URIError",
    "load_resource",
    "load_resources",
    "parse_threshold",
    "parse_uri",
    "validate_resource",
]
