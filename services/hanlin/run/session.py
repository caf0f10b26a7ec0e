"""One `hanlin run` session: load, order, run each stage, summarize, supervise, shut down."""

from __future__ import annotations

import os
import signal
import sys
import time
from pathlib import Path
from types import FrameType

from rich.console import Console
from rich.progress import BarColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

from hanlin.api import AgentService, EvalRun, ModelDeployment, TrainingJob
from hanlin.run.render import RenderError
from hanlin.run.resources import RunError, load_file, order, provision
from hanlin.run.stages import Outcome, Runner
from hanlin.run.state import GateFailed
from hanlin.run.summary import print_summary

PVC_DIR = "pvc"


def _interrupt(signum: int, frame: FrameType | None) -> None:
    # SIGTERM (e.g. from a test or a service manager) shuts down like Ctrl-C does.
    raise KeyboardInterrupt


def run_file(file: Path, workdir: Path, *, exit_when_ready: bool, task: str) -> int:
    """Run the file's resources; the process exit code (0 ok, 1 a stage failed, 2 bad input, 130 Ctrl-C)."""
    console = Console(stderr=False)
    workdir = workdir.resolve()
    workdir.mkdir(parents=True, exist_ok=True)
    # pvc://CLAIM/PATH resolves under HANLIN_PVC_ROOT, here and in every child.
    pvc_root = Path(os.environ.get("HANLIN_PVC_ROOT") or workdir / PVC_DIR)
    os.environ["HANLIN_PVC_ROOT"] = str(pvc_root)
    try:
        resources = order(load_file(file))
        provision(resources, pvc_root, file.resolve().parent)
    except RunError as err:
        console.print(f"[red]error:[/red] {err}")
        return 2
    previous = signal.signal(signal.SIGTERM, _interrupt)
    progress = Progress(
        SpinnerColumn(),
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        TextColumn("{task.completed}/{task.total}"),
        TextColumn("{task.fields[info]}"),
        TimeElapsedColumn(),
        console=console,
    )
    env = dict(os.environ)
    # `torchrun` and `hanlin` in the plans' commands must be this installation's.
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
    runner = Runner(workdir, progress, env)
    outcomes: list[Outcome] = []
    failure: str | None = None
    code = 0
    started = time.monotonic()
    try:
        with progress:
            for resource in resources:
                console.print(f"[dim]{resource.kind} {resource.metadata.name}: starting[/dim]")
                if isinstance(resource, TrainingJob):
                    outcomes.append(runner.training(resource))
                elif isinstance(resource, EvalRun):
                    outcomes.append(runner.evaluation(resource))
                elif isinstance(resource, ModelDeployment):
                    outcomes.append(runner.serving(resource))
                elif isinstance(resource, AgentService):
                    outcomes.append(runner.agent(resource, task))
    except GateFailed as err:
        failure, code = f"promotion gate: {err}", 1
    except (RunError, RenderError) as err:
        failure, code = str(err), 1
    except KeyboardInterrupt:
        failure, code = "interrupted", 130
    try:
        if code != 130:
            console.print(f"[dim]{time.monotonic() - started:.0f}s[/dim]")
            print_summary(console, outcomes, workdir, failure)
        if code == 0 and runner.services and not exit_when_ready:
            console.print("Services are up; press Ctrl-C to stop them.")
            _supervise(runner, console)
    except KeyboardInterrupt:
        code = 0 if code == 0 else code
    finally:
        runner.shutdown()
        signal.signal(signal.SIGTERM, previous)
    return code


def _supervise(runner: Runner, console: Console) -> None:
    """Wait for Ctrl-C; say so if a service exits on its own."""
    alive = list(runner.services)
    while alive:
        for child in list(alive):
            code = child.poll()
            if code is not None:
                alive.remove(child)
                console.print(
                    f"[red]{child.process.name} exited with {code}[/red]; log {child.log_path}"
                )
        time.sleep(0.5)
