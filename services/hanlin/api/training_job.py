"""TrainingJob: pretraining, continued pretraining and supervised fine-tuning.

Full fine-tuning, LoRA or QLoRA; one pod per node under torchrun.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, ClassVar, Literal

from pydantic import Field, model_validator

from hanlin.api.base import MAX_NAME, SpecModel, StatusModel, cel, validations
from hanlin.api.common import PrinterColumn, Resource, Resources, ResourceStatus
from hanlin.api.uri import OutputURI, SourceURI

Method = Literal["pretrain", "continue", "sft"]
DataFormat = Literal["text", "alpaca", "messages", "conversation"]
Precision = Literal["auto", "fp32", "bf16", "fp16"]
Sharding = Literal["none", "fsdp"]
FSDP_NEEDS_FULL = "spec.hyperparameters.sharding fsdp is only for full training; it is not allowed with spec.adapter"
TrainingPhase = Literal["Pending", "Running", "Suspended", "Succeeded", "Failed"]


class TrainingModelSource(SpecModel):
    """The model to train: existing weights (`uri`) or a fresh one (`config`)."""

    model_config = SpecModel.model_config | {
        "json_schema_extra": validations(
            cel(
                "has(self.uri) != has(self.config)",
                "spec.model: set exactly one of uri (existing weights) or config (a new model)",
            ),
            cel(
                "!has(self.tokenizer) || has(self.config)",
                "spec.model.tokenizer is only used with spec.model.config; with uri the tokenizer comes from the model",
            ),
        )
    }

    uri: SourceURI | None = None
    """Where the base model (a Hugging Face safetensors directory) is: s3://, pvc://, file:// or hf://."""
    config: dict[str, Any] | None = Field(
        default=None, json_schema_extra={"x-kubernetes-preserve-unknown-fields": True}
    )
    """A Hugging Face model config (the contents of config.json) to build a new, randomly initialised model from."""
    tokenizer: SourceURI | None = None
    """With `config`: where to take the tokenizer from (a directory holding tokenizer files)."""

    @model_validator(mode="after")
    def _one_source(self) -> TrainingModelSource:
        if (self.uri is None) == (self.config is None):
            raise ValueError(
                "spec.model: set exactly one of uri (existing weights) or config (a new model)"
            )
        if self.tokenizer is not None and self.config is None:
            raise ValueError("spec.model.tokenizer is only used with spec.model.config")
        return self


class DataSource(SpecModel):
    """One training dataset: a file or a directory of .jsonl/.txt files."""

    uri: SourceURI
    """Where the data is: s3://, pvc://, file:// or hf://."""
    format: DataFormat = "text"
    """How records are laid out. `text`: plain text or JSONL with a `text` field (pretraining).
`alpaca`: JSONL with instruction/input/output. `messages`: JSONL with OpenAI-style
`messages` (role/content, optional per-turn `loss`). `conversation`: JSONL with
`conversation` turns of system/input/output. Loss is on the assistant output only."""
    weight: Annotated[float, Field(gt=0, le=1000)] = 1.0
    """Relative sampling weight when several datasets are mixed."""


class Adapter(SpecModel):
    """A parameter-efficient adapter to train instead of all the weights."""

    model_config = SpecModel.model_config | {
        "json_schema_extra": validations(
            cel(
                "!has(self.bits) || self.type == 'qlora'",
                "spec.adapter.bits is only allowed when spec.adapter.type is qlora",
                field_path=".bits",
            ),
        )
    }

    type: Literal["lora", "qlora"] = "lora"
    """`lora`: low-rank adapters on full-precision weights. `qlora`: the same on
weights quantized to `bits` (4 unless set), so the base model takes a fraction of the memory."""
    r: Annotated[int, Field(ge=1, le=1024)] = 8
    """Rank of the low-rank update matrices."""
    alpha: Annotated[float, Field(gt=0, le=4096)] = 16.0
    """Scaling numerator: the update is multiplied by alpha / r."""
    dropout: Annotated[float, Field(ge=0, lt=1)] = 0.05
    """Dropout applied to the adapter's input during training."""
    target_modules: (
        Annotated[
            list[Annotated[str, Field(min_length=1, max_length=MAX_NAME)]],
            Field(min_length=1, max_length=64),
        ]
        | None
    ) = None
    """Names of the linear layers to adapt (e.g. q_proj, v_proj); unset adapts all attention and MLP projections."""
    bits: Literal[4, 8] | None = None
    """QLoRA only: bits per weight of the frozen, quantized base model (default 4)."""

    @model_validator(mode="after")
    def _bits_only_for_qlora(self) -> Adapter:
        if self.bits is not None and self.type != "qlora":
            raise ValueError("spec.adapter.bits is only allowed when spec.adapter.type is qlora")
        return self


class Hyperparameters(SpecModel):
    """How long and how fast to train."""

    model_config = SpecModel.model_config | {
        "json_schema_extra": validations(
            cel(
                "!(has(self.maxSteps) && has(self.epochs))",
                "spec.hyperparameters: set at most one of maxSteps and epochs",
            ),
            cel(
                "!has(self.maxSteps) || self.warmupSteps < self.maxSteps",
                "spec.hyperparameters.warmupSteps must be less than spec.hyperparameters.maxSteps",
                field_path=".warmupSteps",
            ),
        )
    }

    max_steps: Annotated[int, Field(ge=1, le=10_000_000)] | None = None
    """Stop after this many optimizer steps. Set this or `epochs`; neither means one epoch."""
    epochs: Annotated[int, Field(ge=1, le=1000)] | None = None
    """Passes over the data. Set this or `maxSteps`; neither means one epoch."""
    learning_rate: Annotated[float, Field(gt=0, le=1)] = 1e-4
    """Peak learning rate (AdamW)."""
    lr_scheduler: Literal["cosine", "linear", "constant"] = "cosine"
    """Learning-rate decay after warmup."""
    weight_decay: Annotated[float, Field(ge=0, le=1)] = 0.0
    """AdamW weight decay."""
    max_grad_norm: Annotated[float, Field(gt=0, le=1000)] = 1.0
    """Gradients are clipped to this global norm."""
    batch_size: Annotated[int, Field(ge=1, le=65536)] = 8
    """Sequences per micro-batch, per process."""
    gradient_accumulation: Annotated[int, Field(ge=1, le=4096)] = 1
    """Micro-batches accumulated per optimizer step (the global batch is batchSize x this x processes)."""
    seq_len: Annotated[int, Field(ge=8, le=1_048_576)] = 1024
    """Tokens per sequence; longer records are truncated."""
    packing: bool = True
    """Pack several short records into each sequence (much faster; attention does not cross records)."""
    warmup_steps: Annotated[int, Field(ge=0, le=10_000_000)] = 0
    """Steps of linear learning-rate warmup."""
    precision: Precision = "auto"
    """Compute precision. `auto`: bf16 on GPUs that support it, otherwise fp32."""
    seed: Annotated[int, Field(ge=0, le=2**31 - 1)] = 42
    """Random seed for initialisation, shuffling and dropout."""
    sharding: Sharding = "none"
    """How several processes split the work. `none`: every process holds the whole model,
optimizer state and gradients (DDP). `fsdp`: parameters, gradients and optimizer state are
sharded across processes (FSDP), so larger models fit; full training only (not with
`adapter`). One process trains the same either way."""


class TrainingResources(Resources):
    """Pods, processes and what each pod asks for."""

    model_config = Resources.model_config | {
        "json_schema_extra": validations(
            cel(
                "self.gpu == 0 || self.procsPerNode <= self.gpu",
                "spec.resources.procsPerNode must not exceed spec.resources.gpu (one process per GPU)",
                field_path=".procsPerNode",
            ),
        )
    }

    nodes: Annotated[int, Field(ge=1, le=1024)] = 1
    """Pods (one per node) in the torchrun job."""
    procs_per_node: Annotated[int, Field(ge=1, le=64)] = 1
    """Training processes per pod (usually one per GPU)."""

    @model_validator(mode="after")
    def _procs_fit_gpus(self) -> TrainingResources:
        if self.gpu and self.procs_per_node > self.gpu:
            raise ValueError(
                "spec.resources.procsPerNode must not exceed spec.resources.gpu (one process per GPU)"
            )
        return self


class Checkpointing(SpecModel):
    """When to save resumable checkpoints, and how many to keep."""

    every_steps: Annotated[int, Field(ge=1, le=10_000_000)] | None = None
    """Save a checkpoint every this many steps (and always at the end); unset saves only at the end."""
    keep: Annotated[int, Field(ge=1, le=1000)] = 2
    """Checkpoints kept; older ones are deleted. A restarted job resumes from the newest."""


class TrainingOutput(SpecModel):
    """Where the trained model goes."""

    uri: OutputURI
    """Directory for the result (a Hugging Face model or adapter directory) and checkpoints: s3://, pvc:// or file://. Immutable."""
    merge_adapter: bool = False
    """With an adapter: also write the base model with the adapter merged in (a plain model directory)."""


class TrainingJobSpec(SpecModel):
    """What to train, on what data, how, and where the result goes."""

    model_config = SpecModel.model_config | {
        "json_schema_extra": validations(
            cel(
                "!has(self.adapter) || self.adapter.type != 'qlora' || self.method == 'sft'",
                "spec.adapter.type qlora is only allowed with spec.method sft",
                field_path=".adapter.type",
            ),
            cel(
                "!has(self.adapter) || has(self.model.uri)",
                "spec.adapter needs spec.model.uri: an adapter trains on top of existing weights",
                field_path=".adapter",
            ),
            cel(
                "self.method != 'continue' || has(self.model.uri)",
                "spec.model.uri is required when spec.method is continue",
                field_path=".model.uri",
            ),
            cel(
                "!self.output.mergeAdapter || has(self.adapter)",
                "spec.output.mergeAdapter is only allowed with spec.adapter",
                field_path=".output.mergeAdapter",
            ),
            cel(
                "!has(self.adapter) || !has(self.hyperparameters) || "
                "!has(self.hyperparameters.sharding) || self.hyperparameters.sharding != 'fsdp'",
                FSDP_NEEDS_FULL,
                field_path=".hyperparameters.sharding",
            ),
            cel(
                "self.method == oldSelf.method",
                "spec.method is immutable",
                field_path=".method",
            ),
            cel(
                "self.model == oldSelf.model",
                "spec.model is immutable",
                field_path=".model",
            ),
            cel(
                "has(self.adapter) == has(oldSelf.adapter) && (!has(self.adapter) || self.adapter == oldSelf.adapter)",
                "spec.adapter is immutable",
                field_path=".adapter",
            ),
            cel(
                "self.data == oldSelf.data",
                "spec.data is immutable",
                field_path=".data",
            ),
            cel(
                "self.output.uri == oldSelf.output.uri",
                "spec.output.uri is immutable (the checkpoints a restarted job resumes from live there)",
                field_path=".output.uri",
            ),
        )
    }

    method: Method
    """`pretrain`: next-token loss on raw text, usually from `model.config`. `continue`:
continued pretraining of existing weights. `sft`: supervised fine-tuning on
instruction or chat data (loss on the responses only). Immutable."""
    model: TrainingModelSource
    """The starting point. Immutable."""
    data: Annotated[list[DataSource], Field(min_length=1, max_length=64)]
    """Datasets, mixed by weight. Immutable."""
    adapter: Adapter | None = None
    """Train a LoRA/QLoRA adapter instead of all weights; unset is full training. Immutable."""
    hyperparameters: Hyperparameters = Field(default_factory=Hyperparameters)
    """Optimisation settings."""
    resources: TrainingResources = Field(default_factory=TrainingResources)
    """Nodes, processes per node and per-pod resources."""
    checkpoint: Checkpointing = Field(default_factory=Checkpointing)
    """Checkpoint frequency and retention."""
    output: TrainingOutput
    """Where the result is written."""
    image: Annotated[str, Field(min_length=1, max_length=MAX_NAME)] | None = None
    """Container image for the workload; unset uses the operator's runtime image."""
    suspend: bool = False
    """Pause the job (pods are removed) until set back to false; it resumes from the newest checkpoint."""
    backoff_limit: Annotated[int, Field(ge=0, le=100)] = 3
    """Retries before the job is marked Failed; each retry resumes from the newest checkpoint."""
    active_deadline_seconds: Annotated[int, Field(ge=1)] | None = None
    """Fail the job if it runs longer than this."""
    ttl_seconds_after_finished: Annotated[int, Field(ge=0)] | None = None
    """Delete the finished job's pods this long after it succeeds or fails (the resource and its artifact stay)."""

    @model_validator(mode="after")
    def _cross_field(self) -> TrainingJobSpec:
        if self.adapter is not None:
            if self.adapter.type == "qlora" and self.method != "sft":
                raise ValueError("spec.adapter.type qlora is only allowed with spec.method sft")
            if self.model.uri is None:
                raise ValueError(
                    "spec.adapter needs spec.model.uri: an adapter trains on top of existing weights"
                )
        if self.method == "continue" and self.model.uri is None:
            raise ValueError("spec.model.uri is required when spec.method is continue")
        if self.output.merge_adapter and self.adapter is None:
            raise ValueError("spec.output.mergeAdapter is only allowed with spec.adapter")
        hp = self.hyperparameters
        if hp.sharding == "fsdp" and self.adapter is not None:
            raise ValueError(FSDP_NEEDS_FULL)
        if hp.max_steps is not None and hp.epochs is not None:
            raise ValueError("spec.hyperparameters: set at most one of maxSteps and epochs")
        if hp.max_steps is not None and hp.warmup_steps >= hp.max_steps:
            raise ValueError(
                "spec.hyperparameters.warmupSteps must be less than spec.hyperparameters.maxSteps"
            )
        return self


class TrainingProgress(StatusModel):
    """How far the training has got."""

    step: int = 0
    """Optimizer steps done."""
    total_steps: int | None = None
    """Optimizer steps planned."""
    epoch: float | None = None
    """Fractional epoch reached."""
    percent: int | None = None
    """step / totalSteps, in percent."""
    loss: float | None = None
    """Training loss, averaged over the last logging interval."""
    tokens_per_second: float | None = None
    """Training throughput over the last logging interval, all processes together."""
    eta_seconds: int | None = None
    """Estimated seconds until the last step."""


class Artifact(StatusModel):
    """A produced model (or adapter) directory."""

    uri: str
    """Where it is."""
    sha256: str | None = None
    """Digest of its manifest (the sorted file names and their sha256), to tell versions apart."""
    kind: Literal["model", "adapter"] = "model"
    """A full model directory, or an adapter to load on top of `spec.model.uri`."""
    merged_uri: str | None = None
    """With `spec.output.mergeAdapter`: the merged model directory."""


class TrainingJobStatus(ResourceStatus):
    """Observed state of a TrainingJob."""

    phase: TrainingPhase | None = None
    """Pending, Running, Suspended, Succeeded or Failed."""
    progress: TrainingProgress | None = None
    """Step, loss, throughput and ETA, updated while it runs."""
    artifact: Artifact | None = None
    """The result, once Succeeded."""
    start_time: datetime | None = None
    """When the first pod started."""
    completion_time: datetime | None = None
    """When it Succeeded or Failed."""
    restarts: int | None = None
    """Times the workload was restarted (from the newest checkpoint)."""


class TrainingJob(Resource):
    """A training run: `kubectl apply` it, watch `status.progress`, find the result in `status.artifact`."""

    plural: ClassVar[str] = "trainingjobs"
    short_names: ClassVar[tuple[str, ...]] = ("tj",)
    max_name_length: ClassVar[int] = 50
    name_is_dns_label: ClassVar[bool] = True
    name_reason: ClassVar[str] = "it names the Job, its pods and the headless Service"
    printer_columns: ClassVar[tuple[PrinterColumn, ...]] = (
        PrinterColumn(
            name="Method", type="string", json_path=".spec.method", description="Training method"
        ),
        PrinterColumn(
            name="Phase", type="string", json_path=".status.phase", description="Where the job is"
        ),
        PrinterColumn(
            name="Progress",
            type="integer",
            json_path=".status.progress.percent",
            description="Percent of steps done",
        ),
        PrinterColumn(
            name="Loss",
            type="number",
            json_path=".status.progress.loss",
            description="Recent training loss",
        ),
        PrinterColumn(
            name="ETA",
            type="integer",
            json_path=".status.progress.etaSeconds",
            description="Seconds left",
            priority=1,
        ),
        PrinterColumn(
            name="Artifact",
            type="string",
            json_path=".status.artifact.uri",
            description="The result",
            priority=1,
        ),
        PrinterColumn(
            name="Age", type="date", json_path=".metadata.creationTimestamp", description="Age"
        ),
    )

    kind: Literal["TrainingJob"] = "TrainingJob"
    spec: TrainingJobSpec
    """What to train."""
    status: TrainingJobStatus | None = None
    """What the operator observed."""
