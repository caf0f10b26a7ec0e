"""Status bookkeeping: conditions with stable transition times, phases that never regress."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

TERMINAL_PHASES = frozenset({"Succeeded", "Failed"})


def now() -> str:
    """The current time as the API server writes it."""
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def set_condition(
    conditions: list[dict[str, Any]],
    type_: str,
    status: bool | str,
    reason: str,
    message: str,
    generation: int | None,
) -> list[dict[str, Any]]:
    """A new list with `type_` set; lastTransitionTime moves only when status changes."""
    value = status if isinstance(status, str) else ("True" if status else "False")
    out = [dict(c) for c in conditions if c.get("type") != type_]
    previous = next((c for c in conditions if c.get("type") == type_), None)
    since = (
        previous.get("lastTransitionTime")
        if previous is not None and previous.get("status") == value
        else now()
    )
    entry = {
        "type": type_,
        "status": value,
        "reason": reason,
        "message": message,
        "lastTransitionTime": since,
    }
    if generation is not None:
        entry["observedGeneration"] = generation
    out.append(entry)
    return sorted(out, key=lambda c: str(c["type"]))


def condition(conditions: list[dict[str, Any]], type_: str) -> dict[str, Any] | None:
    """The condition of that type, if any."""
    return next((c for c in conditions if c.get("type") == type_), None)


def job_condition(job: dict[str, Any] | None, type_: str) -> dict[str, Any] | None:
    """A true condition of a batch/v1 Job (Complete, Failed, Suspended)."""
    for cond in ((job or {}).get("status") or {}).get("conditions") or []:
        if cond.get("type") == type_ and cond.get("status") == "True":
            return dict(cond)
    return None


def same_status(old: dict[str, Any], new: dict[str, Any]) -> bool:
    """True when patching `new` over `old` would change nothing."""
    return all(old.get(k) == v for k, v in new.items())
