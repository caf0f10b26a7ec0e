"""Operator settings, from the command line and the environment."""

from __future__ import annotations

import os
from dataclasses import dataclass, field

from hanlin_operator.builders.common import BuildSettings


@dataclass
class OperatorSettings:
    """How `hanlin operator run` behaves."""

    namespace: str | None = None
    """Watch only this namespace; None watches all of them."""
    metrics_host: str = "0.0.0.0"
    """Where /metrics and /healthz listen (in a pod: every interface; tests: 127.0.0.1)."""
    metrics_port: int = 8080
    """Port of /metrics and /healthz; 0 disables the server."""
    peering: str = "hanlin"
    """kopf peering object name shared by the replicas."""
    priority: int = 0
    """This replica's peering priority (the highest live one acts)."""
    standalone: bool = False
    """Run without peering (a single replica)."""
    workers: int = 16
    """Threads running reconciles concurrently."""
    build: BuildSettings = field(default_factory=BuildSettings)
    """What the builders need (image, storage secret)."""

    @classmethod
    def from_env(cls) -> OperatorSettings:
        """Defaults overridden by HANLIN_IMAGE, HANLIN_STORAGE_SECRET, HANLIN_OPERATOR_METRICS_PORT."""
        build = BuildSettings(
            image=os.environ.get("HANLIN_IMAGE") or BuildSettings.image,
            storage_secret=os.environ.get("HANLIN_STORAGE_SECRET") or None,
        )
        port = int(os.environ.get("HANLIN_OPERATOR_METRICS_PORT") or 8080)
        return cls(metrics_port=port, build=build)
