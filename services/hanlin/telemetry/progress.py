"""Progress reporting from a workload to its resource's status.

The operator gives every job-like workload (TrainingJob, EvalRun) a progress
ConfigMap named `<resource>-progress` and a ServiceAccount whose Role may only
`get` and `patch` that one ConfigMap. Each worker writes one key of it (`rank-0`,
`shard-3`, `merge`) holding a JSON object; the operator watches these
ConfigMaps and folds them into `status.progress` (and, for an EvalRun's merge
step, `status.results`). The worker never writes the resource itself, so the
operator stays the only writer of status and several shards never race on
one field.

The environment the operator sets (the local runner sets the file variant):

- `HANLIN_PROGRESS_CONFIGMAP`, `HANLIN_PROGRESS_NAMESPACE`, `HANLIN_PROGRESS_KEY`:
  patch that key of that ConfigMap using the pod's ServiceAccount token.
- `HANLIN_PROGRESS_FILE` (and `HANLIN_PROGRESS_KEY`): write the JSON document
  `{key: payload}` to that file atomically (the local runner reads it).
- neither: every call is a no-op (a workload run by hand, or a unit test).

Reporting never fails the workload: an error is logged once per kind and the
reporter keeps going.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

log = logging.getLogger(__name__)

ENV_CONFIGMAP = "HANLIN_PROGRESS_CONFIGMAP"
ENV_NAMESPACE = "HANLIN_PROGRESS_NAMESPACE"
ENV_KEY = "HANLIN_PROGRESS_KEY"
ENV_FILE = "HANLIN_PROGRESS_FILE"
ENV_INTERVAL = "HANLIN_PROGRESS_INTERVAL_SECONDS"

#: One write at most this often from `update()`; the status must follow within 30 s.
DEFAULT_INTERVAL_SECONDS = 5.0

_SA_NAMESPACE_FILE = Path("/var/run/secrets/kubernetes.io/serviceaccount/namespace")


class Channel(Protocol):
    """Where a payload goes: one key of a ConfigMap, a file, or nowhere."""

    def publish(self, key: str, payload: Mapping[str, Any]) -> None:
        """Store `payload` (JSON-serialisable) under `key`, replacing what was there."""


class NullChannel:
    """Outside a cluster and without a progress file: drop everything."""

    def publish(self, key: str, payload: Mapping[str, Any]) -> None:
        return None


@dataclass
class FileChannel:
    """A JSON file holding `{key: payload}`; written atomically (temp file + rename)."""

    path: Path

    def publish(self, key: str, payload: Mapping[str, Any]) -> None:
        try:
            current = json.loads(self.path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            current = {}
        current[key] = dict(payload)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_name(f".{self.path.name}.{os.getpid()}.tmp")
        tmp.write_text(json.dumps(current, sort_keys=True), encoding="utf-8")
        tmp.replace(self.path)


@dataclass
class ConfigMapChannel:
    """One key of a ConfigMap, patched with a JSON merge patch (other keys untouched)."""

    namespace: str
    name: str
    api_client: Any = None
    """A `kubernetes.client.ApiClient`; None loads the in-cluster configuration on first use."""

    def _client(self) -> Any:
        if self.api_client is None:
            from kubernetes import client, config

            config.load_incluster_config()  # type: ignore[no-untyped-call]
            self.api_client = client.ApiClient()
        return self.api_client

    def publish(self, key: str, payload: Mapping[str, Any]) -> None:
        from kubernetes import client

        body = {"data": {key: json.dumps(dict(payload), sort_keys=True)}}
        client.CoreV1Api(self._client()).patch_namespaced_config_map(
            self.name, self.namespace, body
        )


def channel_from_env(env: Mapping[str, str] | None = None) -> Channel:
    """The channel the environment names (see the module docstring)."""
    env = os.environ if env is None else env
    if env.get(ENV_CONFIGMAP):
        namespace = env.get(ENV_NAMESPACE)
        if not namespace and _SA_NAMESPACE_FILE.is_file():
            namespace = _SA_NAMESPACE_FILE.read_text(encoding="utf-8").strip()
        if namespace:
            return ConfigMapChannel(namespace=namespace, name=env[ENV_CONFIGMAP])
        log.warning(
            "%s is set but the namespace is unknown: progress is not reported", ENV_CONFIGMAP
        )
    if env.get(ENV_FILE):
        return FileChannel(Path(env[ENV_FILE]))
    return NullChannel()


def _clean(fields: Mapping[str, Any]) -> dict[str, Any]:
    """camelCase keys, None dropped: the payload reads like the status it becomes."""
    out: dict[str, Any] = {}
    for name, value in fields.items():
        if value is None:
            continue
        head, *rest = name.split("_")
        out[head + "".join(p[:1].upper() + p[1:] for p in rest)] = value
    return out


@dataclass
class ProgressReporter:
    """Publishes one worker's progress; see the module docstring for where it goes.

    Public API (what train and eval call)::

        reporter = progress_reporter()            # from the environment; no-op outside
        reporter.update(step=10, total_steps=200, loss=2.31,
                        tokens_per_second=812.0, eta_seconds=540)   # training, rank 0
        reporter.update(done=40, total=100)       # an eval shard (its own share)
        reporter.flush()                          # force the last update out
        reporter.artifact(uri="s3://b/run", sha256="...", kind="adapter",
                          merged_uri="s3://b/run/merged")  # training, when published
        reporter.results([{"benchmark": "mmlu", "metric": "accuracy",
                           "value": 0.31, "samples": 100}],
                         report_uri="s3://b/evals/x/report.md")  # the eval merge step

    `update` is throttled (one write per `interval` seconds; the newest values
    win); `flush`, `artifact` and `results` write at once. Field names may be
    snake_case; they are published camelCase, like the status fields they fill.
    """

    channel: Channel
    key: str = "rank-0"
    interval: float = DEFAULT_INTERVAL_SECONDS
    clock: Callable[[], float] = time.monotonic
    _state: dict[str, Any] = field(default_factory=dict)
    _last_write: float | None = None
    _dirty: bool = False
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _warned: set[str] = field(default_factory=set)

    @property
    def enabled(self) -> bool:
        """False when reports go nowhere (the caller may skip computing them)."""
        return not isinstance(self.channel, NullChannel)

    def update(self, **fields: Any) -> None:
        """Merge these progress fields in; write if `interval` has passed since the last write."""
        with self._lock:
            self._state.setdefault("progress", {}).update(_clean(fields))
            self._dirty = True
            now = self.clock()
            if self._last_write is not None and now - self._last_write < self.interval:
                return
            self._write_locked(now)

    def flush(self) -> None:
        """Write pending progress now."""
        with self._lock:
            if self._dirty:
                self._write_locked(self.clock())

    def artifact(
        self,
        uri: str,
        sha256: str | None = None,
        kind: str = "model",
        merged_uri: str | None = None,
    ) -> None:
        """Publish the trained artifact (becomes `status.artifact`); writes at once."""
        with self._lock:
            self._state["artifact"] = _clean(
                {"uri": uri, "sha256": sha256, "kind": kind, "merged_uri": merged_uri}
            )
            self._write_locked(self.clock())

    def results(self, results: list[Mapping[str, Any]], report_uri: str | None = None) -> None:
        """Publish merged evaluation results (become `status.results`); writes at once.

        Each result has `benchmark`, `metric`, `value`, `samples` and optionally
        `stderr` and `mode`. The operator judges them against `spec.thresholds`.
        """
        with self._lock:
            self._state["results"] = [_clean(r) for r in results]
            if report_uri is not None:
                self._state["reportUri"] = report_uri
            self._write_locked(self.clock())

    def _write_locked(self, now: float) -> None:
        self._state["updatedAt"] = time.time()
        try:
            self.channel.publish(self.key, self._state)
        except Exception as err:  # noqa: BLE001 (reporting must never fail the workload)
            kind = type(err).__name__
            if kind not in self._warned:
                self._warned.add(kind)
                log.warning("progress report failed (%s: %s); continuing", kind, err)
        self._last_write = now
        self._dirty = False


def progress_reporter(
    key: str | None = None, env: Mapping[str, str] | None = None
) -> ProgressReporter:
    """A reporter for this process, configured from the environment the operator sets.

    `key` overrides `HANLIN_PROGRESS_KEY` (default `rank-0`).
    """
    env = os.environ if env is None else env
    interval = float(env.get(ENV_INTERVAL) or DEFAULT_INTERVAL_SECONDS)
    return ProgressReporter(
        channel=channel_from_env(env),
        key=key or env.get(ENV_KEY) or "rank-0",
        interval=interval,
    )
