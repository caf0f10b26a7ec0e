"""`hanlin crds generate|check`: keep `crds/` in step with the API models."""

from __future__ import annotations

from pathlib import Path

import typer

app = typer.Typer(help="Generate or check the CRD YAML from the API models.", no_args_is_help=True)

DirOption = typer.Option(Path("crds"), "--dir", help="Directory holding the CRD files.")


@app.command()
def generate(directory: Path = DirOption) -> None:
    """Write one CRD file per kind into DIR."""
    from hanlin.api.crd import stale_crds, write_crds

    stale = stale_crds(directory)
    for path in write_crds(directory):
        changed = any(p.startswith(f"{path}:") for p in stale)
        typer.echo(f"{'wrote' if changed else 'unchanged'} {path}")


@app.command()
def check(directory: Path = DirOption) -> None:
    """Fail (exit 1) when DIR differs from what `generate` would write."""
    from hanlin.api.crd import stale_crds

    problems = stale_crds(directory)
    for problem in problems:
        typer.secho(problem, fg="red", err=True)
    if problems:
        typer.secho("CRDs are stale: run `hanlin crds generate`", fg="red", err=True)
        raise typer.Exit(1)
    typer.echo(f"{directory}: CRDs match the models")
