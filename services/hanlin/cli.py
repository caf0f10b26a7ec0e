"""The `hanlin` command line.

Each subcommand lives in its own module and is imported only when it runs, so
`hanlin operator run` never pays for (or needs) torch, and `hanlin --help` is fast.
"""

from __future__ import annotations

import importlib
import sys

import typer

# name -> (module holding a typer app called `app`, one-line help)
COMMANDS: dict[str, tuple[str, str]] = {
    "operator": ("hanlin_operator.cli", "Run the kopf operator that reconciles Hanlin resources."),
    "train": (
        "hanlin.train.cli",
        "Run a TrainingJob workload (pretrain, continue, SFT; full/LoRA/QLoRA).",
    ),
    "eval": (
        "hanlin.eval.cli",
        "Run an EvalRun workload (ppl and gen benchmarks), or merge shards.",
    ),
    "serve": ("hanlin.serve.cli", "Serve a model: OpenAI REST + gRPC, continuous batching, TP."),
    "agent": (
        "hanlin.agent.cli",
        "Run an AgentService: ReAct / ReWOO / plan-execute agents over HTTP.",
    ),
    "tools": ("hanlin.agent.tools_cli", "Serve tools over HTTP with an OpenAPI document."),
    "run": ("hanlin.run.cli", "Run resources from a YAML file as local processes (no cluster)."),
    "crds": ("hanlin.api.cli", "Generate or check the CRD YAML from the API models."),
    "dev": (
        "hanlin.dev.cli",
        "Developer tooling: a real control plane, an S3 server, the test model.",
    ),
}


def _usage() -> str:
    lines = ["Usage: hanlin COMMAND [ARGS]...", "", "Commands:"]
    width = max(len(n) for n in COMMANDS)
    for name, (_, text) in COMMANDS.items():
        lines.append(f"  {name.ljust(width)}  {text}")
    lines += ["", "Run `hanlin COMMAND --help` for a command's options."]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    """Entry point of the `hanlin` console script."""
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] in ("-h", "--help", "help"):
        print(_usage())  # noqa: T201
        raise SystemExit(0 if args else 2)
    if args[0] in ("--version", "version"):
        from hanlin import __version__

        print(__version__)  # noqa: T201
        raise SystemExit(0)
    name, rest = args[0], args[1:]
    if name not in COMMANDS:
        print(f"hanlin: unknown command {name!r}\n\n{_usage()}", file=sys.stderr)  # noqa: T201
        raise SystemExit(2)
    module = importlib.import_module(COMMANDS[name][0])
    app: typer.Typer = module.app
    app(args=rest, prog_name=f"hanlin {name}")


if __name__ == "__main__":
    main()
