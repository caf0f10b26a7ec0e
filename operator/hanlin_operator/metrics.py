"""Operator metrics and health on one small HTTP server: /metrics and /healthz."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

KINDS = ("TrainingJob", "EvalRun", "ModelDeployment", "AgentService")


class _PhaseCollector(Collector):
    def __init__(self, objects: Callable[[str], list[dict[str, Any]]]) -> None:
        self.objects = objects

    def collect(self) -> Iterator[GaugeMetricFamily]:
        family = GaugeMetricFamily(
            "hanlin_operator_resources", "Resources by kind and phase.", labels=["kind", "phase"]
        )
        for kind in KINDS:
            counts: dict[str, int] = {}
            for obj in self.objects(kind):
                phase = (obj.get("status") or {}).get("phase") or "Unknown"
                counts[phase] = counts.get(phase, 0) + 1
            for phase, count in sorted(counts.items()):
                family.add_metric([kind, phase], count)
        yield family


class OperatorMetrics:
    """Reconciles by kind and result, reconcile duration, resources by kind and phase."""

    def __init__(self, objects: Callable[[str], list[dict[str, Any]]]) -> None:
        self.registry = CollectorRegistry()
        self.reconciles = Counter(
            "hanlin_operator_reconciles",
            "Reconciles by kind and result (ok, waiting, gated, gone, error).",
            ["kind", "result"],
            registry=self.registry,
        )
        self.duration = Histogram(
            "hanlin_operator_reconcile_duration_seconds",
            "Time one reconcile took.",
            ["kind"],
            registry=self.registry,
        )
        self.registry.register(_PhaseCollector(objects))
        self.healthy: Callable[[], bool] = lambda: True

    def observe(self, kind: str, result: str, seconds: float) -> None:
        """Record one reconcile."""
        self.reconciles.labels(kind, result).inc()
        self.duration.labels(kind).observe(seconds)

    def serve(self, host: str, port: int) -> ThreadingHTTPServer:
        """Serve /metrics and /healthz in a daemon thread; returns the server."""
        metrics = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 (the stdlib's name)
                if self.path.startswith("/metrics"):
                    body, code = generate_latest(metrics.registry), 200
                    ctype = "text/plain; version=0.0.4; charset=utf-8"
                elif self.path.startswith("/healthz"):
                    ok = metrics.healthy()
                    body, code, ctype = (
                        (b"ok" if ok else b"unhealthy"),
                        200 if ok else 503,
                        "text/plain",
                    )
                else:
                    body, code, ctype = b"not found", 404, "text/plain"
                self.send_response(code)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                return None

        server = ThreadingHTTPServer((host, port), Handler)
        threading.Thread(target=server.serve_forever, name="metrics", daemon=True).start()
        return server
