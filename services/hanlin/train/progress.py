"""Progress reports: JSON lines on stdout, Prometheus gauges, a file, a bar.

Every report is one JSON object per line (`step`, `totalSteps`, `loss`, `lr`,
`tokensPerSecond`, `etaSeconds`, `epoch`, `tokens` so far, `elapsedSeconds`), which the local runner and log
scrapers parse. With HANLIN_METRICS_PORT set, the same numbers are served as
`hanlin_train_*` Prometheus metrics. The same report goes to the resource's
status through `hanlin.telemetry` (the operator's progress channel; with
HANLIN_PROGRESS_FILE, a JSON file under the worker's key instead; neither set:
nowhere). When stdout is a terminal a rich progress bar is drawn as well.
"""

from __future__ import annotations

import json
import os
import sys
import time
from dataclasses import dataclass, field
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, start_http_server

from hanlin.telemetry import ProgressReporter, progress_reporter


@dataclass
class Metrics:
    """The training gauges, in their own registry (one per job)."""

    registry: CollectorRegistry = field(default_factory=CollectorRegistry)

    def __post_init__(self) -> None:
        r = self.registry
        self.step = Gauge("hanlin_train_step", "Optimizer steps done", registry=r)
        self.total = Gauge("hanlin_train_total_steps", "Optimizer steps planned", registry=r)
        self.loss = Gauge("hanlin_train_loss", "Training loss of the last step", registry=r)
        self.lr = Gauge("hanlin_train_learning_rate", "Current learning rate", registry=r)
        self.tps = Gauge(
            "hanlin_train_tokens_per_second",
            "Training tokens per second, all processes",
            registry=r,
        )
        self.eta = Gauge(
            "hanlin_train_eta_seconds", "Estimated seconds to the last step", registry=r
        )
        self.tokens = Counter("hanlin_train_tokens", "Training tokens processed", registry=r)
        self.checkpoints = Counter("hanlin_train_checkpoints", "Checkpoints published", registry=r)


class Reporter:
    """Turns step results into reports; only the main process reports."""

    def __init__(self, total_steps: int, start_step: int, enabled: bool) -> None:
        self.total = total_steps
        self.enabled = enabled
        self.metrics = Metrics()
        self.metrics.total.set(total_steps)
        self.started = time.monotonic()
        self.start_step = start_step
        self.tokens = 0
        # Only the main process publishes to the status channel: one writer per key.
        self.status: ProgressReporter | None = progress_reporter() if enabled else None
        self._bar: Any = None
        self._task: Any = None
        self._server: Any = None
        port = os.environ.get("HANLIN_METRICS_PORT")
        if enabled and port:
            host = os.environ.get("HANLIN_METRICS_HOST", "127.0.0.1")
            self._server = start_http_server(int(port), addr=host, registry=self.metrics.registry)
        if enabled and sys.stdout.isatty():
            from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

            self._bar = Progress(
                TextColumn("[bold]train"),
                BarColumn(),
                TextColumn("{task.completed}/{task.total} loss {task.fields[loss]}"),
                TimeRemainingColumn(),
            )
            self._task = self._bar.add_task(
                "train", total=total_steps, completed=start_step, loss="-"
            )
            self._bar.start()

    def report(
        self, step: int, loss: float, lr: float, tokens: int, seconds: float, epoch: float
    ) -> dict[str, Any]:
        """Publish one step's numbers; returns the JSON object printed."""
        tps = tokens / seconds if seconds > 0 else 0.0
        done = step - self.start_step
        elapsed = time.monotonic() - self.started
        self.tokens += tokens
        eta = int(elapsed / done * (self.total - step)) if done > 0 else None
        line = {
            "step": step,
            "totalSteps": self.total,
            "loss": round(loss, 6),
            "lr": lr,
            "tokensPerSecond": round(tps, 2),
            "etaSeconds": eta,
            "epoch": round(epoch, 4),
            "tokens": self.tokens,
            "elapsedSeconds": round(elapsed, 3),
        }
        if not self.enabled:
            return line
        m = self.metrics
        m.step.set(step)
        m.loss.set(loss)
        m.lr.set(lr)
        m.tps.set(tps)
        m.eta.set(eta or 0)
        m.tokens.inc(tokens)
        self.emit(line)
        if self.status is not None:
            self.status.update(
                step=step,
                total_steps=self.total,
                loss=line["loss"],
                tokens_per_second=line["tokensPerSecond"],
                eta_seconds=eta,
            )
        if self._bar is not None:
            self._bar.update(self._task, completed=step, loss=f"{loss:.4f}")
        return line

    def emit(self, obj: dict[str, Any]) -> None:
        """Print one JSON line (above the bar, if any); only the main process prints.

        Every process of a job shares one stdout, so the others stay quiet, and the
        line goes out in one write: two writers must never splice their lines.
        """
        if not self.enabled:
            return
        text = json.dumps(obj)
        if self._bar is not None:
            self._bar.console.print(text, markup=False, highlight=False, soft_wrap=True)
        else:
            sys.stdout.write(text + "\n")
            sys.stdout.flush()

    def artifact(self, artifact: dict[str, Any]) -> None:
        """Publish the finished artifact (it becomes `status.artifact`)."""
        if self.status is not None:
            self.status.artifact(
                uri=artifact["uri"],
                sha256=artifact.get("sha256"),
                kind=artifact.get("kind", "model"),
                merged_uri=artifact.get("mergedUri"),
            )

    def close(self) -> None:
        """Flush the status channel, stop the bar and the metrics server."""
        if self.status is not None:
            self.status.flush()
        if self._bar is not None:
            self._bar.stop()
        if isinstance(self._server, tuple):  # prometheus_client >= 0.17: (server, thread)
            server, thread = self._server
            server.shutdown()
            server.server_close()
            thread.join(timeout=5)
