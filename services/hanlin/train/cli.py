"""`hanlin train --spec FILE`: run a TrainingJob workload."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import typer

app = typer.Typer(help="Run a TrainingJob (pretrain, continue, SFT; full, LoRA, QLoRA).")


@app.command()
def main(
    spec: Path = typer.Option(..., "--spec", help="The TrainingJob resource (YAML)."),
    workdir: Path | None = typer.Option(
        None, "--workdir", help="Scratch space for downloads (default: a temp dir)."
    ),
) -> None:
    """Train as the spec says; resume from the newest checkpoint if there is one."""
    from hanlin.api import load_resource
    from hanlin.api.loading import ResourceError
    from hanlin.api.training_job import TrainingJob

    try:
        job = load_resource(spec, TrainingJob)
    except ResourceError as e:
        typer.echo(f"error: {e}", err=True)
        raise typer.Exit(2) from None
    from hanlin.train.distributed import launch_layout, torchrun_argv, under_torchrun

    nodes, procs = launch_layout(job.spec.resources.nodes, job.spec.resources.procs_per_node)
    if not under_torchrun() and nodes * procs > 1:
        argv = torchrun_argv(str(spec), nodes, procs)
        if workdir is not None:
            argv += ["--workdir", str(workdir)]
        raise typer.Exit(subprocess.call(argv, env=os.environ.copy()))

    from hanlin.train.loop import train
    from hanlin.train.modeling import ModelError
    from hanlin.train.records import DataError

    try:
        train(job, workdir)
    except (DataError, ModelError) as e:
        # One write per line: every process of the job shares this stdout.
        sys.stdout.write(json.dumps({"event": "error", "message": str(e)}) + "\n")
        sys.stdout.flush()
        typer.echo(f"error: {e}", err=True)
        raise typer.Exit(1) from None
    sys.stdout.flush()
