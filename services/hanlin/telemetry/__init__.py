"""Telemetry the workloads share: progress reporting into the resource's status.

Usage in a workload (training: rank 0 only; eval: every shard; eval merge step)::

    from hanlin.telemetry import progress_reporter

    reporter = progress_reporter()     # configured from the env the operator sets
    for step in ...:
        reporter.update(step=step, total_steps=total, loss=loss,
                        tokens_per_second=tps, eta_seconds=eta)   # throttled
    reporter.artifact(uri=out_uri, sha256=digest, kind="adapter")  # training
    reporter.update(done=n, total=shard_total)                    # an eval shard
    reporter.results(merged_results, report_uri=uri)              # eval merge step
    reporter.flush()

Outside a cluster (no `HANLIN_PROGRESS_*` in the environment) every call is a
no-op; `HANLIN_PROGRESS_FILE` makes it write a JSON file instead (the local
runner). See `hanlin.telemetry.progress` for the mechanism.
"""

from hanlin.telemetry.progress import (
    ENV_CONFIGMAP,
    ENV_FILE,
    ENV_INTERVAL,
    ENV_KEY,
    ENV_NAMESPACE,
    Channel,
    ConfigMapChannel,
    FileChannel,
    NullChannel,
    ProgressReporter,
    channel_from_env,
    progress_reporter,
)

__all__ = [
    "ENV_CONFIGMAP",
    "ENV_FILE",
    "ENV_INTERVAL",
    "ENV_KEY",
    "ENV_NAMESPACE",
    "Channel",
    "ConfigMapChannel",
    "FileChannel",
    "NullChannel",
    "ProgressReporter",
    "channel_from_env",
    "progress_reporter",
]
