"""EvalRun: benchmarks a model (a deployment, a training result, weights or any endpoint)."""

from __future__ import annotations

import re
from datetime import datetime
from typing import Annotated, ClassVar, Literal

from pydantic import Field, model_validator

from hanlin.api.base import MAX_NAME, SpecModel, StatusModel, cel, validations
from hanlin.api.common import (
    EndpointSpec,
    LocalObjectReference,
    PrinterColumn,
    Resource,
    Resources,
    ResourceStatus,
)
from hanlin.api.uri import OutputURI, SourceURI

EvalMode = Literal["ppl", "gen"]
EvalPhase = Literal["Pending", "Waiting", "Running", "Succeeded", "Failed"]
Metric = Literal["accuracy", "exactMatch", "f1", "perplexity"]

BENCHMARK_NAME_PATTERN = r"^[a-z0-9]([a-z0-9_.-]*[a-z0-9])?$"
#: `<benchmark>/<metric>`
THRESHOLD_KEY_PATTERN = r"^[a-z0-9]([a-z0-9_.-]*[a-z0-9])?/[A-Za-z0-9_]+$"
#: `>=0.5`, `< 12.3`, `==1`
THRESHOLD_VALUE_PATTERN = r"^(>=|<=|>|<|==) ?-?[0-9]+(\.[0-9]+)?$"
_THRESHOLD_VALUE_RE = re.compile(r"^(>=|<=|>|<|==) ?(-?[0-9]+(?:\.[0-9]+)?)$")


class ModelUnderTest(SpecModel):
    """Which model to evaluate: exactly one of four sources."""

    model_config = SpecModel.model_config | {
        "json_schema_extra": validations(
            cel(
                "[has(self.deploymentRef), has(self.trainingJobRef), has(self.uri), has(self.endpoint)]"
                ".filter(x, x).size() == 1",
                "spec.model: set exactly one of deploymentRef, trainingJobRef, uri or endpoint",
            ),
        )
    }

    deployment_ref: LocalObjectReference | None = None
    """A ModelDeployment: evaluated through its OpenAI-compatible API once it is Ready."""
    training_job_ref: LocalObjectReference | None = None
    """A TrainingJob: its artifact is evaluated once the job Succeeded."""
    uri: SourceURI | None = None
    """A model directory (s3://, pvc://, file:// or hf://) loaded in the evaluation pods."""
    endpoint: EndpointSpec | None = None
    """Any OpenAI-compatible endpoint."""

    @model_validator(mode="after")
    def _one_source(self) -> ModelUnderTest:
        given = [self.deployment_ref, self.training_job_ref, self.uri, self.endpoint]
        if sum(x is not None for x in given) != 1:
            raise ValueError(
                "spec.model: set exactly one of deploymentRef, trainingJobRef, uri or endpoint"
            )
        return self


class DatasetSpec(SpecModel):
    """A custom evaluation dataset (JSONL)."""

    uri: SourceURI
    """Where the JSONL file is."""
    format: Literal["multiple-choice", "qa"]
    """`multiple-choice`: records with question, choices and answer (index or letter).
`qa`: records with question and answer (the reference text)."""


class Benchmark(SpecModel):
    """One benchmark: a built-in one by name, or a custom `dataset`."""

    model_config = SpecModel.model_config | {
        "json_schema_extra": validations(
            cel(
                "!has(self.metric) || has(self.dataset)",
                "spec.benchmarks[].metric is only allowed with spec.benchmarks[].dataset (built-in benchmarks have their own metrics)",
                field_path=".metric",
            ),
            cel(
                "!has(self.dataset) || self.dataset.format != 'multiple-choice' || !has(self.metric) || self.metric == 'accuracy'",
                "spec.benchmarks[].metric must be accuracy for a multiple-choice dataset",
                field_path=".metric",
            ),
            cel(
                "!has(self.metric) || self.metric != 'perplexity' || (has(self.mode) && self.mode == 'ppl')",
                "spec.benchmarks[].metric perplexity needs spec.benchmarks[].mode ppl",
                field_path=".mode",
            ),
            cel(
                "!has(self.metric) || !(self.metric in ['exactMatch', 'f1']) || !has(self.mode) || self.mode == 'gen'",
                "spec.benchmarks[].metric exactMatch and f1 need spec.benchmarks[].mode gen",
                field_path=".mode",
            ),
        )
    }

    name: Annotated[str, Field(min_length=1, max_length=63, pattern=BENCHMARK_NAME_PATTERN)]
    """A built-in benchmark's name (e.g. `mmlu`), or your name for a custom `dataset`. Unique in the list."""
    mode: EvalMode | None = None
    """`ppl`: score each choice by its likelihood (works with base models). `gen`: generate
an answer and score it. Unset: ppl for multiple choice, gen for open questions."""
    shots: Annotated[int, Field(ge=0, le=64)] = 0
    """In-context examples placed before each question."""
    limit: Annotated[int, Field(ge=1, le=1_000_000)] | None = None
    """Evaluate only the first this many samples; unset evaluates all."""
    dataset: DatasetSpec | None = None
    """A custom dataset instead of a built-in benchmark."""
    metric: Metric | None = None
    """With `dataset`: the metric to compute (default accuracy for multiple-choice, exactMatch for qa)."""

    @model_validator(mode="after")
    def _metric_needs_dataset(self) -> Benchmark:
        if self.metric is not None and self.dataset is None:
            raise ValueError(
                "spec.benchmarks[].metric is only allowed with spec.benchmarks[].dataset"
            )
        if (
            self.dataset is not None
            and self.dataset.format == "multiple-choice"
            and self.metric not in (None, "accuracy")
        ):
            raise ValueError(
                "spec.benchmarks[].metric must be accuracy for a multiple-choice dataset"
            )
        if self.metric == "perplexity" and self.mode != "ppl":
            raise ValueError("spec.benchmarks[].metric perplexity needs spec.benchmarks[].mode ppl")
        if self.metric in ("exactMatch", "f1") and self.mode not in (None, "gen"):
            raise ValueError(
                "spec.benchmarks[].metric exactMatch and f1 need spec.benchmarks[].mode gen"
            )
        return self


class EvalOutput(SpecModel):
    """Where the report goes."""

    uri: OutputURI
    """Directory for the results (results.json, a Markdown summary and per-sample records)."""


def parse_threshold(text: str) -> tuple[str, float]:
    """`">=0.5"` -> `(">=", 0.5)`; raise ValueError naming the grammar otherwise."""
    match = _THRESHOLD_VALUE_RE.match(text)
    if not match:
        raise ValueError(
            f"{text!r} is not a threshold: expected an operator and a number, like >=0.5"
        )
    return match.group(1), float(match.group(2))


class EvalRunSpec(SpecModel):
    """Which model, which benchmarks, the pass criteria, and where the report goes."""

    model_config = SpecModel.model_config | {
        "json_schema_extra": validations(
            cel(
                "!has(self.thresholds) || self.thresholds.all(k, k.matches('^[a-z0-9]([a-z0-9_.-]*[a-z0-9])?/[A-Za-z0-9_]+$'))",
                "spec.thresholds: keys must be <benchmark>/<metric>, e.g. mmlu/accuracy",
                field_path=".thresholds",
            ),
            cel(
                "!has(self.thresholds) || self.thresholds.all(k, self.benchmarks.exists(b, k.startsWith(b.name + '/')))",
                "spec.thresholds: every key must be <benchmark>/<metric> with a benchmark listed in spec.benchmarks",
                field_path=".thresholds",
            ),
            cel(
                "self.model == oldSelf.model",
                "spec.model is immutable",
                field_path=".model",
            ),
            cel(
                "self.benchmarks == oldSelf.benchmarks",
                "spec.benchmarks is immutable",
                field_path=".benchmarks",
            ),
            cel(
                "has(self.thresholds) == has(oldSelf.thresholds) && (!has(self.thresholds) || self.thresholds == oldSelf.thresholds)",
                "spec.thresholds is immutable (the verdict must match the criteria it was computed for)",
                field_path=".thresholds",
            ),
        )
    }

    model: ModelUnderTest
    """The model to evaluate. Immutable."""
    benchmarks: Annotated[list[Benchmark], Field(min_length=1, max_length=64)] = Field(
        json_schema_extra={"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["name"]}
    )
    """Benchmarks to run. Immutable."""
    workers: Annotated[int, Field(ge=1, le=256)] = 1
    """Pods the samples are sharded over; results are merged exactly as one worker would compute them."""
    batch_size: Annotated[int, Field(ge=1, le=4096)] = 8
    """Requests (gen) or sequences (ppl) processed together per worker."""
    max_new_tokens: Annotated[int, Field(ge=1, le=65536)] = 256
    """Longest answer generated in gen mode."""
    apply_chat_template: bool = False
    """Wrap each prompt in the model's chat template (for instruction-tuned models)."""
    thresholds: (
        Annotated[
            dict[
                Annotated[str, Field(max_length=128, pattern=THRESHOLD_KEY_PATTERN)],
                Annotated[str, Field(max_length=32, pattern=THRESHOLD_VALUE_PATTERN)],
            ],
            Field(max_length=64),
        ]
        | None
    ) = None
    """Pass criteria, `<benchmark>/<metric>: <op><number>` (e.g. `mmlu/accuracy: ">=0.5"`);
`status.passed` is true only when every one holds. A ModelDeployment can wait for it. Immutable."""
    output: EvalOutput | None = None
    """Where to write the report; unset keeps only the summary in status."""
    resources: Resources = Field(default_factory=Resources)
    """Per-worker resources."""
    image: Annotated[str, Field(min_length=1, max_length=MAX_NAME)] | None = None
    """Container image for the workers; unset uses the operator's runtime image."""
    backoff_limit: Annotated[int, Field(ge=0, le=100)] = 2
    """Retries of a failed worker before the run is marked Failed."""
    active_deadline_seconds: Annotated[int, Field(ge=1)] | None = None
    """Fail the run if it takes longer than this."""

    @model_validator(mode="after")
    def _thresholds_name_benchmarks(self) -> EvalRunSpec:
        names = [b.name for b in self.benchmarks]
        if len(set(names)) != len(names):
            raise ValueError("spec.benchmarks: names must be unique")
        for key, value in (self.thresholds or {}).items():
            if not re.match(THRESHOLD_KEY_PATTERN, key):
                raise ValueError(
                    f"spec.thresholds[{key!r}]: keys must be <benchmark>/<metric>, e.g. mmlu/accuracy"
                )
            if key.split("/", 1)[0] not in names:
                raise ValueError(
                    f"spec.thresholds[{key!r}]: every key must be <benchmark>/<metric> with a "
                    "benchmark listed in spec.benchmarks"
                )
            try:
                parse_threshold(value)
            except ValueError as err:
                raise ValueError(f"spec.thresholds[{key!r}]: {err}") from None
        return self


class EvalProgress(StatusModel):
    """How many samples are done."""

    done: int = 0
    """Samples scored."""
    total: int | None = None
    """Samples to score."""
    percent: int | None = None
    """done / total, in percent."""


class BenchmarkResult(StatusModel):
    """One number: a metric of a benchmark."""

    benchmark: str
    """The benchmark's name."""
    metric: str
    """The metric (accuracy, exactMatch, ...)."""
    value: float
    """The score."""
    samples: int
    """Samples it was computed on."""
    stderr: float | None = None
    """Standard error of the score."""
    mode: EvalMode | None = None
    """How it was computed."""


class EvalRunStatus(ResourceStatus):
    """Observed state of an EvalRun."""

    phase: EvalPhase | None = None
    """Pending, Waiting (for the model), Running, Succeeded or Failed."""
    progress: EvalProgress | None = None
    """Samples done, updated while it runs."""
    results: list[BenchmarkResult] = Field(default_factory=list)
    """Scores, once Succeeded."""
    passed: bool | None = None
    """Whether every threshold held (true when there are none); set once Succeeded."""
    summary: str | None = None
    """The results in one line, e.g. `mmlu/accuracy=0.41`."""
    report_uri: str | None = None
    """Where the full report was written."""
    start_time: datetime | None = None
    """When the workers started."""
    completion_time: datetime | None = None
    """When it Succeeded or Failed."""


class EvalRun(Resource):
    """An evaluation: benchmarks a model and records the scores and the pass/fail verdict in status."""

    plural: ClassVar[str] = "evalruns"
    short_names: ClassVar[tuple[str, ...]] = ("er",)
    max_name_length: ClassVar[int] = 50
    name_is_dns_label: ClassVar[bool] = False
    name_reason: ClassVar[str] = "it names the Job and its pods"
    printer_columns: ClassVar[tuple[PrinterColumn, ...]] = (
        PrinterColumn(
            name="Phase", type="string", json_path=".status.phase", description="Where the run is"
        ),
        PrinterColumn(
            name="Progress",
            type="integer",
            json_path=".status.progress.percent",
            description="Percent of samples scored",
        ),
        PrinterColumn(
            name="Passed",
            type="boolean",
            json_path=".status.passed",
            description="Whether every threshold held",
        ),
        PrinterColumn(
            name="Summary", type="string", json_path=".status.summary", description="The scores"
        ),
        PrinterColumn(
            name="Report",
            type="string",
            json_path=".status.reportUri",
            description="The full report",
            priority=1,
        ),
        PrinterColumn(
            name="Age", type="date", json_path=".metadata.creationTimestamp", description="Age"
        ),
    )

    kind: Literal["EvalRun"] = "EvalRun"
    spec: EvalRunSpec
    """What to evaluate."""
    status: EvalRunStatus | None = None
    """What the operator observed."""
