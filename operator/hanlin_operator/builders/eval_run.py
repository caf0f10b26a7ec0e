"""EvalRun -> spec ConfigMap, progress channel, the shard Job, then the merge Job."""

from __future__ import annotations

from typing import Any

from hanlin.api import EvalRun
from hanlin.plan import Resolved, plan_eval, plan_eval_merge
from hanlin_operator.builders.common import (
    BuildSettings,
    indexed_job,
    progress_objects,
    spec_configmap,
)


def build(
    run: EvalRun, settings: BuildSettings, resolved: Resolved | None = None
) -> list[dict[str, Any]]:
    """The children that exist from the start: one Job with a pod per shard."""
    spec = run.spec
    return [
        spec_configmap(run),
        *progress_objects(run),
        indexed_job(
            run,
            plan_eval(run, resolved),
            settings,
            spec.resources,
            backoff_limit=spec.backoff_limit,
            active_deadline_seconds=spec.active_deadline_seconds,
        ),
    ]


def build_merge(run: EvalRun, settings: BuildSettings) -> dict[str, Any]:
    """The merge step, created once every shard has succeeded."""
    return indexed_job(run, plan_eval_merge(run), settings, run.spec.resources, backoff_limit=2)
