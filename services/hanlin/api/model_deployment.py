"""ModelDeployment: serves a model over OpenAI-compatible REST and gRPC."""

from __future__ import annotations

from typing import Annotated, ClassVar, Literal

from pydantic import Field, model_validator

from hanlin.api.base import MAX_NAME, SpecModel, StatusModel, cel, validations
from hanlin.api.common import (
    LocalObjectReference,
    PrinterColumn,
    Resource,
    Resources,
    ResourceStatus,
    SecretKeyReference,
)
from hanlin.api.uri import SourceURI

DeploymentPhase = Literal["Pending", "Waiting", "Progressing", "Ready", "Degraded", "Failed"]
Quantization = Literal["none", "int8", "int4"]
ServeDType = Literal["auto", "fp32", "bf16", "fp16"]
ScalingMetric = Literal["inflightRequests", "queueDepth", "kvCacheUtilization", "cpu"]

ADAPTER_NAME_PATTERN = r"^[a-z0-9]([a-z0-9_.-]*[a-z0-9])?$"


class AdapterSource(SpecModel):
    """A LoRA adapter served next to the base model, selected by its name in requests."""

    model_config = SpecModel.model_config | {
        "json_schema_extra": validations(
            cel(
                "has(self.uri) != has(self.trainingJobRef)",
                "spec.model.adapters[]: set exactly one of uri or trainingJobRef",
            ),
        )
    }

    name: Annotated[str, Field(min_length=1, max_length=63, pattern=ADAPTER_NAME_PATTERN)]
    """The model name clients send to use this adapter. Unique in the list."""
    uri: SourceURI | None = None
    """An adapter directory (s3://, pvc://, file:// or hf://)."""
    training_job_ref: LocalObjectReference | None = None
    """A TrainingJob that trained an adapter; served once it Succeeded."""

    @model_validator(mode="after")
    def _one_source(self) -> AdapterSource:
        if (self.uri is None) == (self.training_job_ref is None):
            raise ValueError("spec.model.adapters[]: set exactly one of uri or trainingJobRef")
        return self


class ServedModel(SpecModel):
    """The model to serve: weights by URI or a TrainingJob's result, plus optional adapters."""

    model_config = SpecModel.model_config | {
        "json_schema_extra": validations(
            cel(
                "has(self.uri) != has(self.trainingJobRef)",
                "spec.model: set exactly one of uri or trainingJobRef",
            ),
        )
    }

    uri: SourceURI | None = None
    """A model directory (s3://, pvc://, file:// or hf://)."""
    training_job_ref: LocalObjectReference | None = None
    """A TrainingJob whose result is served once it Succeeded (a merged model if it trained an adapter)."""
    name: Annotated[str, Field(min_length=1, max_length=MAX_NAME)] | None = None
    """The model name clients send in requests; unset uses this resource's name."""
    adapters: Annotated[list[AdapterSource], Field(max_length=32)] | None = Field(
        default=None,
        json_schema_extra={"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["name"]},
    )
    """LoRA adapters served on top of the base model (multi-LoRA), each under its own model name."""

    @model_validator(mode="after")
    def _one_source(self) -> ServedModel:
        if (self.uri is None) == (self.training_job_ref is None):
            raise ValueError("spec.model: set exactly one of uri or trainingJobRef")
        names = [a.name for a in self.adapters or []]
        if len(set(names)) != len(names):
            raise ValueError("spec.model.adapters: names must be unique")
        return self


class Promotion(SpecModel):
    """A gate: serve only once an evaluation passed."""

    eval_run_ref: LocalObjectReference
    """An EvalRun; the deployment stays Waiting until its `status.passed` is true."""


class EngineSpec(SpecModel):
    """How the inference engine runs the model."""

    model_config = SpecModel.model_config | {
        "json_schema_extra": validations(
            cel(
                "self.maxBatchTokens >= self.maxSeqs",
                "spec.engine.maxBatchTokens must be at least spec.engine.maxSeqs (each running sequence decodes one token per step)",
                field_path=".maxBatchTokens",
            ),
        )
    }

    tensor_parallel: Annotated[int, Field(ge=1, le=64)] = 1
    """Processes the model is split across (tensor parallelism); with GPUs it must divide resources.gpu."""
    dtype: ServeDType = "auto"
    """Compute dtype of weights, activations and the KV cache (logits stay fp32). `auto`: bf16 on GPUs that support it, on CPUs with native bf16 (AVX512-BF16 or AMX) and whenever weights are quantized (the CPU int4/int8 kernels take bf16 activations); otherwise fp32."""
    quantization: Quantization = "none"
    """Weight-only quantization of the linear layers: `int8` or `int4` (group-wise), or `none`."""
    max_model_len: Annotated[int, Field(ge=16, le=1_048_576)] | None = None
    """Longest sequence (prompt + output) accepted; unset uses the model's context length."""
    max_batch_tokens: Annotated[int, Field(ge=16, le=1_048_576)] = 4096
    """Tokens processed in one engine step across all sequences (bounds prefill chunks)."""
    max_seqs: Annotated[int, Field(ge=1, le=4096)] = 64
    """Sequences batched together at most; more requests wait in the queue."""
    kv_cache_fraction: Annotated[float, Field(gt=0, le=1)] = 0.8
    """Fraction of the free memory (after loading weights) given to the paged KV cache: the container's memory limit less its usage, or the host's available memory if lower; capped at what maxSeqs sequences of maxModelLen tokens can use."""


class ScalingTarget(SpecModel):
    """The metric the autoscaler holds at a target value per replica."""

    metric: ScalingMetric = "inflightRequests"
    """`inflightRequests`: requests being served; `queueDepth`: requests waiting;
`kvCacheUtilization`: fraction of KV-cache blocks in use; `cpu`: CPU utilisation of the request."""
    value: Annotated[float, Field(gt=0, le=1_000_000)] = 8.0
    """Target per replica (a fraction for kvCacheUtilization, a percent of the request for cpu)."""


class Autoscaling(SpecModel):
    """Horizontal autoscaling between minReplicas and maxReplicas."""

    model_config = SpecModel.model_config | {
        "json_schema_extra": validations(
            cel(
                "self.minReplicas <= self.maxReplicas",
                "spec.autoscaling.minReplicas must be less than or equal to spec.autoscaling.maxReplicas",
                field_path=".minReplicas",
            ),
            cel(
                "self.target.metric != 'kvCacheUtilization' || self.target.value <= 1.0",
                "spec.autoscaling.target.value must be a fraction (at most 1) for kvCacheUtilization",
                field_path=".target.value",
            ),
        )
    }

    min_replicas: Annotated[int, Field(ge=1, le=1000)] = 1
    """Fewest replicas."""
    max_replicas: Annotated[int, Field(ge=1, le=1000)]
    """Most replicas."""
    target: ScalingTarget = Field(default_factory=ScalingTarget)
    """What to scale on."""

    @model_validator(mode="after")
    def _bounds(self) -> Autoscaling:
        if self.min_replicas > self.max_replicas:
            raise ValueError(
                "spec.autoscaling.minReplicas must be less than or equal to spec.autoscaling.maxReplicas"
            )
        if self.target.metric == "kvCacheUtilization" and self.target.value > 1.0:
            raise ValueError(
                "spec.autoscaling.target.value must be a fraction (at most 1) for kvCacheUtilization"
            )
        return self


class ApiSpec(SpecModel):
    """Which APIs are exposed, and whether they need a key."""

    model_config = SpecModel.model_config | {
        "json_schema_extra": validations(
            cel("self.rest || self.grpc", "spec.api: enable at least one of rest and grpc"),
        )
    }

    rest: bool = True
    """OpenAI-compatible REST (`/v1/chat/completions`, `/v1/completions`, `/v1/models`) on port 8000."""
    grpc: bool = True
    """The gRPC API (`services/hanlin/serve/proto/serve.proto`) on port 50051."""
    api_key_secret_ref: SecretKeyReference | None = None
    """A Secret key holding the API key clients must send; unset leaves the API open."""

    @model_validator(mode="after")
    def _one_api(self) -> ApiSpec:
        if not (self.rest or self.grpc):
            raise ValueError("spec.api: enable at least one of rest and grpc")
        return self


class ModelDeploymentSpec(SpecModel):
    """What to serve, how, and how many replicas."""

    model_config = SpecModel.model_config | {
        "json_schema_extra": validations(
            cel(
                "self.resources.gpu == 0 || self.resources.gpu % self.engine.tensorParallel == 0",
                "spec.engine.tensorParallel must divide spec.resources.gpu",
                field_path=".engine.tensorParallel",
            ),
            cel(
                "!(has(self.replicas) && has(self.autoscaling))",
                "spec.replicas and spec.autoscaling are mutually exclusive: with autoscaling, use minReplicas and maxReplicas",
                field_path=".replicas",
            ),
        )
    }

    model: ServedModel
    """The model (and adapters) to serve."""
    promotion: Promotion | None = None
    """Serve only once an EvalRun passed."""
    engine: EngineSpec = Field(default_factory=EngineSpec)
    """Inference engine settings."""
    replicas: Annotated[int, Field(ge=0, le=1000)] | None = None
    """Fixed number of replicas (default 1); 0 scales the deployment to zero. Not with autoscaling."""
    autoscaling: Autoscaling | None = None
    """Scale the replicas on load instead of a fixed count."""
    api: ApiSpec = Field(default_factory=ApiSpec)
    """Exposed APIs."""
    resources: Resources = Field(default_factory=Resources)
    """Per-replica resources."""
    image: Annotated[str, Field(min_length=1, max_length=MAX_NAME)] | None = None
    """Container image for the servers; unset uses the operator's runtime image."""

    @model_validator(mode="after")
    def _cross_field(self) -> ModelDeploymentSpec:
        if self.resources.gpu and self.resources.gpu % self.engine.tensor_parallel:
            raise ValueError("spec.engine.tensorParallel must divide spec.resources.gpu")
        if self.replicas is not None and self.autoscaling is not None:
            raise ValueError("spec.replicas and spec.autoscaling are mutually exclusive")
        if self.engine.max_batch_tokens < self.engine.max_seqs:
            raise ValueError(
                "spec.engine.maxBatchTokens must be at least spec.engine.maxSeqs"
                " (each running sequence decodes one token per step)"
            )
        return self


class Endpoints(StatusModel):
    """In-cluster addresses of the APIs."""

    rest: str | None = None
    """Base URL of the OpenAI-compatible REST API (`http://NAME.NAMESPACE.svc:8000/v1`)."""
    grpc: str | None = None
    """host:port of the gRPC API."""


class ModelDeploymentStatus(ResourceStatus):
    """Observed state of a ModelDeployment."""

    phase: DeploymentPhase | None = None
    """Pending, Waiting (for its model or promotion gate), Progressing, Ready, Degraded or Failed."""
    replicas: int | None = None
    """Replicas that exist."""
    ready_replicas: int | None = None
    """Replicas serving."""
    endpoints: Endpoints | None = None
    """Where to send requests."""
    served_model: str | None = None
    """The model name clients send."""
    model_uri: str | None = None
    """The weights being served (resolved from trainingJobRef when used)."""
    adapters: list[str] = Field(default_factory=list)
    """Adapter names loaded and being served."""


class ModelDeployment(Resource):
    """A served model: an OpenAI-compatible REST and gRPC API with continuous batching."""

    plural: ClassVar[str] = "modeldeployments"
    short_names: ClassVar[tuple[str, ...]] = ("md",)
    max_name_length: ClassVar[int] = 55
    name_is_dns_label: ClassVar[bool] = True
    name_reason: ClassVar[str] = "it names the Deployment and its Service"
    printer_columns: ClassVar[tuple[PrinterColumn, ...]] = (
        PrinterColumn(
            name="Phase",
            type="string",
            json_path=".status.phase",
            description="Whether it is serving",
        ),
        PrinterColumn(
            name="Ready",
            type="integer",
            json_path=".status.readyReplicas",
            description="Replicas serving",
        ),
        PrinterColumn(
            name="Replicas",
            type="integer",
            json_path=".status.replicas",
            description="Replicas that exist",
        ),
        PrinterColumn(
            name="Model",
            type="string",
            json_path=".status.servedModel",
            description="Model name for requests",
        ),
        PrinterColumn(
            name="URL",
            type="string",
            json_path=".status.endpoints.rest",
            description="REST base URL",
            priority=1,
        ),
        PrinterColumn(
            name="Age", type="date", json_path=".metadata.creationTimestamp", description="Age"
        ),
    )

    kind: Literal["ModelDeployment"] = "ModelDeployment"
    spec: ModelDeploymentSpec
    """What to serve."""
    status: ModelDeploymentStatus | None = None
    """What the operator observed."""
