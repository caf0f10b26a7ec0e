"""`hanlin operator run [--namespace NS]` and `hanlin operator peering-crds`."""

from __future__ import annotations

import typer

app = typer.Typer(help="The Hanlin operator: reconciles the four resources into workloads.")


@app.command()
def run(
    namespace: str | None = typer.Option(None, help="Watch only this namespace (default: all)."),
    metrics_port: int | None = typer.Option(
        None,
        help="Port of /metrics and /healthz (env HANLIN_OPERATOR_METRICS_PORT, default 8080; 0: off).",
    ),
    metrics_host: str = typer.Option("0.0.0.0", help="Address /metrics and /healthz bind to."),
    peering: str = typer.Option("hanlin", help="kopf peering name shared by the replicas."),
    priority: int | None = typer.Option(
        None, help="Peering priority; the highest live replica acts (default: random)."
    ),
    standalone: bool = typer.Option(False, help="No peering: a single replica."),
    workers: int = typer.Option(16, help="Concurrent reconciles."),
) -> None:
    """Run the operator until interrupted (kubeconfig from KUBECONFIG or in-cluster)."""
    from hanlin_operator.peering import default_priority
    from hanlin_operator.runtime import run_operator
    from hanlin_operator.settings import OperatorSettings

    settings = OperatorSettings.from_env()
    settings.namespace = namespace
    if metrics_port is not None:
        settings.metrics_port = metrics_port
    settings.metrics_host = metrics_host
    settings.peering = peering
    settings.priority = priority if priority is not None else default_priority()
    settings.standalone = standalone
    settings.workers = workers
    run_operator(settings)


@app.command("peering-crds")
def peering_crds() -> None:
    """Print the CRDs kopf's peering needs (pipe into `kubectl apply -f -`)."""
    import yaml

    from hanlin_operator.peering import peering_crds as crds

    typer.echo(yaml.safe_dump_all(crds(), sort_keys=False))
