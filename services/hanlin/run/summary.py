"""The final summary a person reads after `hanlin run`: loss, eval table, endpoints, agent answer."""

from __future__ import annotations

from pathlib import Path

from rich.console import Console, Group
from rich.markdown import Markdown
from rich.panel import Panel
from rich.text import Text

from hanlin.run.stages import Outcome


def _training(o: Outcome) -> list[Text]:
    loss = o.details.get("loss")
    artifact = o.details.get("artifact") or {}
    lines = [
        Text.assemble(
            ("Training ", "bold"),
            f"{o.name}: ",
            f"final loss {loss:.4f}" if loss is not None else "final loss unknown",
            " (skipped: already trained)" if o.skipped else "",
        )
    ]
    if artifact:
        lines.append(Text(f"  {artifact.get('kind', 'artifact')}: {artifact.get('uri')}"))
        if artifact.get("mergedUri"):
            lines.append(Text(f"  merged model: {artifact['mergedUri']}"))
    return lines


def render_summary(outcomes: list[Outcome], workdir: Path, failure: str | None) -> Group:
    """The summary as one rich renderable."""
    parts: list[Text | Markdown] = []
    for o in outcomes:
        if o.kind == "TrainingJob":
            parts += _training(o)
        elif o.kind == "EvalRun":
            verdict = {True: "passed", False: "FAILED", None: "no thresholds"}[o.details["passed"]]
            parts.append(
                Text.assemble(
                    ("Evaluation ", "bold"),
                    f"{o.name}: {verdict}",
                    " (skipped: report exists)" if o.skipped else "",
                )
            )
            if o.details.get("table"):
                parts.append(Markdown(o.details["table"]))
        elif o.kind == "ModelDeployment":
            parts.append(
                Text.assemble(("Serving ", "bold"), f"{o.name} as model {o.details['model']!r}")
            )
            parts.append(Text(f"  REST (OpenAI): {o.details['rest']}"))
            if o.details.get("grpc"):
                parts.append(Text(f"  gRPC:          {o.details['grpc']}"))
        elif o.kind == "AgentService":
            d = o.details
            parts.append(Text.assemble(("Agent ", "bold"), f"{o.name}: {d['url']}/v1/runs"))
            parts.append(Text(f"  task:   {d['task']}"))
            tools = ", ".join(d.get("tools") or []) or "none"
            if d.get("status") == "succeeded":
                parts.append(Text(f"  answer: {d.get('answer')}  (tools used: {tools})"))
            else:
                parts.append(
                    Text(f"  no answer ({d.get('status')}): {d.get('reason')}", style="yellow")
                )
    if failure:
        parts.append(Text(f"Stopped: {failure}", style="bold red"))
    parts.append(Text(f"Logs and state: {workdir}", style="dim"))
    return Group(*parts)


def print_summary(
    console: Console, outcomes: list[Outcome], workdir: Path, failure: str | None
) -> None:
    """Print the summary in a panel."""
    console.print(
        Panel(render_summary(outcomes, workdir, failure), title="hanlin run", expand=False)
    )
