"""`hanlin dev`: a real control plane, a real S3 server and the test model."""

from __future__ import annotations

from pathlib import Path

import typer

app = typer.Typer(help="Developer tooling for tests: real control plane, real S3, real model.")
cluster_app = typer.Typer(help="A real Kubernetes control plane on loopback.")
s3_app = typer.Typer(help="A real S3-compatible server (versitygw) on loopback.")
app.add_typer(cluster_app, name="cluster")
app.add_typer(s3_app, name="s3")

DirOption = typer.Option(..., "--dir", help="Directory for state, logs and credentials.")


def _fail(exc: Exception) -> None:
    typer.secho(f"error: {exc}", fg="red", err=True)
    raise typer.Exit(1)


@cluster_app.command("start")
def cluster_start(directory: Path = DirOption) -> None:
    """Start etcd, kube-apiserver, kube-controller-manager and kube-scheduler; write DIR/kubeconfig."""
    from hanlin.dev import cluster
    from hanlin.dev.paths import MissingBinaryError
    from hanlin.dev.processes import AlreadyRunningError

    try:
        started = cluster.start(directory)
    except (AlreadyRunningError, MissingBinaryError, cluster.StartupError) as exc:
        _fail(exc)
        return
    typer.echo(f"cluster ready at {started.server}")
    typer.echo(f"export KUBECONFIG={started.kubeconfig}")


@cluster_app.command("stop")
def cluster_stop(directory: Path = DirOption) -> None:
    """Stop the control plane in DIR (a no-op when none runs)."""
    from hanlin.dev.processes import stop

    stopped = stop(directory)
    typer.echo(f"stopped {', '.join(stopped)}" if stopped else "nothing running")


@s3_app.command("start")
def s3_start(directory: Path = DirOption) -> None:
    """Start versitygw with fresh credentials; write DIR/s3.env."""
    from hanlin.dev import s3
    from hanlin.dev.paths import MissingBinaryError
    from hanlin.dev.processes import AlreadyRunningError

    try:
        started = s3.start(directory)
    except (AlreadyRunningError, MissingBinaryError, s3.StartupError) as exc:
        _fail(exc)
        return
    typer.echo(f"s3 ready at {started.endpoint}; credentials in {started.directory / 's3.env'}")


@s3_app.command("stop")
def s3_stop(directory: Path = DirOption) -> None:
    """Stop the S3 server in DIR (a no-op when none runs)."""
    from hanlin.dev.processes import stop

    stopped = stop(directory)
    typer.echo(f"stopped {', '.join(stopped)}" if stopped else "nothing running")


@app.command("model")
def model(
    directory: Path = typer.Argument(..., help="Where to write the model directory."),
) -> None:
    """Write SmolLM2-135M-Instruct as an HF safetensors directory (cached; idempotent)."""
    from hanlin.dev.model import ensure_model

    path = ensure_model(directory)
    typer.echo(str(path))
