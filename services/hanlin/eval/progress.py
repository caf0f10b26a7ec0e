"""Progress of one worker: JSON lines on stdout, a bar on stderr, Prometheus metrics."""

from __future__ import annotations

import json
import sys
import time
from dataclasses import dataclass, field
from typing import IO, TYPE_CHECKING, Any

if TYPE_CHECKING:
    from hanlin.telemetry import ProgressReporter

_BAR_WIDTH = 30


@dataclass
class Metrics:
    """The worker's Prometheus metrics (own registry, so tests can build several)."""

    registry: Any
    done: Any
    total: Any
    rate: Any

    @classmethod
    def create(cls) -> Metrics:
        """Fresh gauges/counters in a private registry."""
        from prometheus_client import CollectorRegistry, Counter, Gauge

        reg = CollectorRegistry()
        return cls(
            registry=reg,
            done=Counter("hanlin_eval_samples", "Samples scored by this worker", registry=reg),
            total=Gauge(
                "hanlin_eval_samples_planned", "Samples this worker must score", registry=reg
            ),
            rate=Gauge("hanlin_eval_samples_per_second", "Recent scoring throughput", registry=reg),
        )

    def serve(self, port: int) -> None:
        """Expose /metrics on 127.0.0.1:port... or all interfaces inside a pod (HANLIN_METRICS_HOST)."""
        import os

        from prometheus_client import start_http_server

        start_http_server(
            port, addr=os.environ.get("HANLIN_METRICS_HOST", "127.0.0.1"), registry=self.registry
        )


@dataclass
class Progress:
    """Counts samples and reports them; `skipped` are those a restart found done."""

    total: int
    skipped: int = 0
    out: IO[str] = field(default_factory=lambda: sys.stdout)
    bar: IO[str] | None = field(default_factory=lambda: sys.stderr)
    metrics: Metrics | None = None
    status: ProgressReporter | None = None
    """The resource's status channel (throttled there; every batch here)."""
    done: int = 0
    started: float = field(default_factory=time.monotonic)

    def __post_init__(self) -> None:
        self.done = self.skipped
        if self.metrics is not None:
            self.metrics.total.set(self.total)

    @property
    def rate(self) -> float:
        """Samples per second scored by this process (resumed ones excluded)."""
        elapsed = max(time.monotonic() - self.started, 1e-9)
        return (self.done - self.skipped) / elapsed

    def advance(self, n: int, benchmark: str) -> None:
        """Record n more samples and report."""
        self.done += n
        if self.metrics is not None:
            self.metrics.done.inc(n)
            self.metrics.rate.set(self.rate)
        event = {
            "event": "progress",
            "benchmark": benchmark,
            "done": self.done,
            "total": self.total,
            "samplesPerSecond": round(self.rate, 3),
        }
        self.out.write(json.dumps(event) + "\n")
        self.out.flush()
        if self.status is not None:
            self.status.update(
                done=self.done, total=self.total, samples_per_second=event["samplesPerSecond"]
            )
        self._draw()

    def _draw(self) -> None:
        if self.bar is None:
            return
        frac = self.done / self.total if self.total else 1.0
        filled = int(frac * _BAR_WIDTH)
        remaining = (self.total - self.done) / self.rate if self.rate > 0 else 0.0
        line = (
            f"\r[{'#' * filled}{'.' * (_BAR_WIDTH - filled)}] {self.done}/{self.total} "
            f"{frac * 100:5.1f}% {self.rate:6.2f} samples/s eta {remaining:5.0f}s"
        )
        self.bar.write(line + ("\n" if self.done >= self.total else ""))
        self.bar.flush()
