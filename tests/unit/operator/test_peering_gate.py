"""A paused replica does no queued work: kopf's peering rule, applied by the operator's queue."""

from __future__ import annotations

import datetime
from typing import Any, cast

from hanlin_operator.builders.common import BuildSettings
from hanlin_operator.handlers import Controller
from hanlin_operator.peering import higher_priority_peers
from hanlin_operator.reconcile import Reconciler


def _peer(priority: int, seconds_ago: float, lifetime: int = 60) -> dict[str, Any]:
    seen = datetime.datetime.now(datetime.UTC) - datetime.timedelta(seconds=seconds_ago)
    return {"priority": priority, "lifetime": lifetime, "lastseen": seen.isoformat()}


def test_only_live_peers_with_a_higher_priority_pause_a_replica() -> None:
    status = {
        "me": _peer(50, 0),
        "lower": _peer(10, 1),
        "equal": _peer(50, 1),
        "higher-dead": _peer(90, 120),
        "garbage": "not a peer",
        "no-lastseen": {"priority": 99},
    }
    assert higher_priority_peers(status, "me", 50) == []
    status["higher"] = _peer(90, 5)
    assert higher_priority_peers(status, "me", 50) == ["higher"]
    # Its own entry never counts, whatever its priority.
    assert higher_priority_peers({"me": _peer(99, 0)}, "me", 1) == []


def test_a_paused_controller_drops_work_and_forgets_its_stale_cache() -> None:
    reconciler = Reconciler(kube=cast(Any, None), settings=BuildSettings())
    controller = Controller(reconciler, active=lambda: False)
    body = {
        "apiVersion": "hanlin.dev/v1alpha1",
        "kind": "TrainingJob",
        "metadata": {"name": "a", "namespace": "ns", "generation": 1, "resourceVersion": "5"},
        "spec": {},
    }
    controller.resource_event("TrainingJob", None, body)
    assert len(controller.queue) == 1
    key = controller.queue.get()
    assert key is not None
    # With no API client a reconcile would raise: the paused controller must not try.
    controller.process(key)
    controller.queue.done(key)
    assert reconciler.cache.get("TrainingJob", "ns", "a") is None
    assert len(controller.queue) == 0
