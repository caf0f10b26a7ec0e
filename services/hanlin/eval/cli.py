"""`hanlin eval`: run an EvalRun's benchmarks (one shard of them) and merge the report.

    hanlin eval --spec evalrun.yaml [--shard 0/2]     score, then merge if all shards are done
    hanlin eval merge --spec evalrun.yaml             write results.json + summary.md

The model comes from the spec (`model.uri` or `model.endpoint`); the operator
resolves `deploymentRef` / `trainingJobRef` into the environment the planner
names (HANLIN_MODEL_URI, or HANLIN_MODEL_ENDPOINT + HANLIN_MODEL_NAME, and
HANLIN_API_KEY), which the matching flags read. Inside an Indexed Job the shard
defaults to `JOB_COMPLETION_INDEX` of `spec.workers`. Progress and the merged
results also go to the resource's status through `hanlin.telemetry`.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

if TYPE_CHECKING:
    from hanlin.api import EvalRun
    from hanlin.eval.backend import Backend
    from hanlin.eval.tasks import Task

app = typer.Typer(help="Run an EvalRun workload (ppl and gen benchmarks), or merge shards.")

_API_KEY_ENV = "HANLIN_API_KEY"


def _fail(message: str) -> None:
    typer.echo(f"hanlin eval: {message}", err=True)
    raise typer.Exit(2)


def load_spec(path: Path) -> EvalRun:
    """The EvalRun in `path` (a ResourceError names a bad field)."""
    from hanlin.api import EvalRun, load_resource

    return load_resource(path, EvalRun)


def tasks_for(run: EvalRun) -> list[Task]:
    """Every benchmark of the spec as a task, in spec order."""
    from hanlin.eval.tasks import build_task

    spec = run.spec
    out = []
    for b in spec.benchmarks:
        out.append(
            build_task(
                b.name,
                mode=b.mode,
                shots=b.shots,
                limit=b.limit,
                dataset_uri=str(b.dataset.uri) if b.dataset else None,
                dataset_format=b.dataset.format if b.dataset else None,
                metric=b.metric,
                chat=spec.apply_chat_template,
                max_new_tokens=spec.max_new_tokens,
            )
        )
    return out


def output_uri(run: EvalRun, override: str | None) -> str:
    """Where the samples and the report go."""
    if override:
        return override
    if run.spec.output is not None:
        return str(run.spec.output.uri)
    name = run.metadata.name if run.metadata is not None else "evalrun"
    return str(Path(f"hanlin-eval-{name}").absolute())


def model_name(run: EvalRun, endpoint_model: str | None, model_uri: str | None) -> str:
    """The model column of the summary table."""
    m = run.spec.model
    if endpoint_model or m.endpoint is not None:
        return endpoint_model or (m.endpoint.model if m.endpoint else "")
    uri = model_uri or (str(m.uri) if m.uri else "")
    if uri:
        return uri.rstrip("/").rsplit("/", 1)[-1]
    ref = m.deployment_ref or m.training_job_ref
    return ref.name if ref else "model"


def make_backend(
    run: EvalRun,
    model_uri: str | None,
    endpoint_url: str | None,
    endpoint_model: str | None,
    concurrency: int,
) -> Backend:
    """The backend for the spec's model, with command-line overrides from the operator."""
    m = run.spec.model
    name = model_name(run, endpoint_model, model_uri)
    if endpoint_url or m.endpoint is not None:
        url = endpoint_url or (m.endpoint.url if m.endpoint else "")
        from hanlin.eval.openai_backend import OpenAIBackend

        return OpenAIBackend(
            url,
            endpoint_model or (m.endpoint.model if m.endpoint else name),
            api_key=os.environ.get(_API_KEY_ENV),
            concurrency=concurrency,
        )
    uri = model_uri or (str(m.uri) if m.uri else None)
    if uri is None:
        which = "deploymentRef" if m.deployment_ref else "trainingJobRef"
        _fail(
            f"spec.model.{which} is resolved by the operator; run with --endpoint-url "
            "(a deployment) or --model-uri (a training artifact)"
        )
        raise AssertionError  # unreachable: _fail exits
    from hanlin.eval.hf_backend import HFBackend

    if uri.startswith("hf://"):
        local: Path | str = uri.removeprefix("hf://")
    else:
        from hanlin import storage

        local = storage.materialize(uri, Path(tempfile.gettempdir()) / "hanlin-eval-models")
    return HFBackend(Path(local), batch_size=run.spec.batch_size, name=name)


def _default_shard(run: EvalRun, text: str | None) -> Any:
    from hanlin.eval.results import Shard

    if text:
        return Shard.parse(text)
    index = os.environ.get("JOB_COMPLETION_INDEX")
    if index is not None:
        return Shard(int(index), run.spec.workers)
    return Shard(0, 1)


def _emit_report(report: dict[str, Any], output: str) -> None:
    event = {
        "event": "summary",
        "results": report["results"],
        "passed": report["passed"],
        "summary": report["summary"],
        "reportUri": output,
    }
    typer.echo(json.dumps(event))
    typer.echo(report["table"], err=True)


@app.callback(invoke_without_command=True)
def main(
    ctx: typer.Context,
    spec: Annotated[
        Path | None, typer.Option("--spec", help="The EvalRun resource (YAML).")
    ] = None,
    shard: Annotated[str | None, typer.Option(help="Run shard I of N, e.g. 0/2.")] = None,
    output: Annotated[str | None, typer.Option(help="Override spec.output.uri.")] = None,
    model_uri: Annotated[
        str | None,
        typer.Option(help="Evaluate this model directory or URI.", envvar="HANLIN_MODEL_URI"),
    ] = None,
    endpoint_url: Annotated[
        str | None,
        typer.Option(help="Evaluate this OpenAI-compatible API.", envvar="HANLIN_MODEL_ENDPOINT"),
    ] = None,
    endpoint_model: Annotated[
        str | None,
        typer.Option(help="Model name sent to the endpoint.", envvar="HANLIN_MODEL_NAME"),
    ] = None,
    concurrency: Annotated[int, typer.Option(help="Concurrent requests to an endpoint.")] = 8,
    metrics_port: Annotated[
        int | None,
        typer.Option(help="Serve Prometheus metrics on this port.", envvar="HANLIN_METRICS_PORT"),
    ] = None,
    bar: Annotated[bool, typer.Option(help="Draw a progress bar on stderr.")] = True,
    threads: Annotated[int | None, typer.Option(help="torch threads (default: torch's).")] = None,
) -> None:
    """Score the samples of one shard, then write the report if every shard is done."""
    ctx.obj = {
        "spec": spec,
        "output": output,
        "endpoint_model": endpoint_model,
        "model_uri": model_uri,
    }
    if ctx.invoked_subcommand is not None:
        return
    if spec is None:
        _fail("--spec FILE is required")
        return
    from hanlin.api import ResourceError
    from hanlin.eval.datasets import DatasetError
    from hanlin.eval.progress import Metrics, Progress
    from hanlin.eval.results import read_records
    from hanlin.eval.runner import WorkerConfig, planned, run_worker, shard_rows, try_merge
    from hanlin.eval.tasks import TaskError
    from hanlin.telemetry import progress_reporter

    try:
        run = load_spec(spec)
        tasks = tasks_for(run)
        the_shard = _default_shard(run, shard)
    except (ResourceError, DatasetError, TaskError, ValueError) as err:
        _fail(str(err))
        return
    out = output_uri(run, output)
    cfg = WorkerConfig(tasks, out, the_shard, run.spec.batch_size)
    done = read_records(out)
    total = planned(tasks, the_shard)
    left = sum(1 for t in tasks for r in shard_rows(t, the_shard) if t.key(r) not in done)
    metrics = Metrics.create()
    if metrics_port is not None:
        metrics.serve(metrics_port)
    status = progress_reporter()
    progress = Progress(
        total=total,
        skipped=total - left,
        bar=sys.stderr if bar else None,
        metrics=metrics,
        status=status,
    )
    status.update(done=total - left, total=total)
    if left:
        if threads is not None:
            import torch

            torch.set_num_threads(threads)
        backend = make_backend(run, model_uri, endpoint_url, endpoint_model, concurrency)
        try:
            run_worker(backend, cfg, progress)
        finally:
            backend.close()
            status.flush()
    report = try_merge(tasks, out, model_name(run, endpoint_model, model_uri), run.spec.thresholds)
    if report is not None:
        _emit_report(report, out)
        status.results(report["results"], report_uri=out)


@app.command()
def merge(
    ctx: typer.Context,
    spec: Annotated[
        Path | None, typer.Option("--spec", help="The EvalRun resource (YAML).")
    ] = None,
    output: Annotated[str | None, typer.Option(help="Override spec.output.uri.")] = None,
) -> None:
    """Write results.json and summary.md from every shard's samples (idempotent)."""
    from hanlin.eval.runner import try_merge

    opts = dict(ctx.obj or {})
    opts.update({k: v for k, v in (("spec", spec), ("output", output)) if v is not None})
    if opts.get("spec") is None:
        _fail("--spec FILE is required (before `merge`)")
    run = load_spec(opts["spec"])
    tasks = tasks_for(run)
    out = output_uri(run, opts.get("output"))
    report = try_merge(
        tasks,
        out,
        model_name(run, opts.get("endpoint_model"), opts.get("model_uri")),
        run.spec.thresholds,
    )
    if report is None:
        from hanlin.eval.results import read_records
        from hanlin.eval.summary import missing_samples

        n = missing_samples(tasks, read_records(out))
        _fail(f"{n} samples have no result yet under {out}: run the remaining shards first")
        return
    _emit_report(report, out)
    from hanlin.telemetry import progress_reporter

    progress_reporter().results(report["results"], report_uri=out)
