"""`hanlin run -f FILE.yaml`: the resources a cluster runs, as local processes.

    hanlin run -f examples/quickstart.yaml [--workdir DIR] [--exit-when-ready]

Resources run in reference order (TrainingJob -> EvalRun -> ModelDeployment ->
AgentService, as the operator orders them). Jobs run to completion; services
stay up until Ctrl-C, or stop once ready with --exit-when-ready.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

app = typer.Typer(help="Run resources (the same YAML you kubectl apply) as local processes.")

DEFAULT_TASK = "Use the calculator to compute 12.5 * (3 + 4.2). Reply with the number."


@app.callback(invoke_without_command=True)
def run(
    file: Annotated[
        Path, typer.Option("-f", "--file", help="YAML file with one or more Hanlin resources.")
    ],
    workdir: Annotated[
        Path,
        typer.Option(help="Logs, specs, and the file:// and pvc:// storage of this run."),
    ] = Path("hanlin-run"),
    exit_when_ready: Annotated[
        bool, typer.Option("--exit-when-ready", help="Stop the services once all are ready.")
    ] = False,
    task: Annotated[
        str, typer.Option(help="What to ask the agent once it is up (empty: ask nothing).")
    ] = DEFAULT_TASK,
) -> None:
    """Run every resource in FILE in reference order; services stay up until Ctrl-C."""
    from hanlin.run.session import run_file

    raise typer.Exit(run_file(file, workdir, exit_when_ready=exit_when_ready, task=task))
