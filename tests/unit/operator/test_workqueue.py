"""The reconcile work queue: de-duplication, no concurrent runs of a key, delayed adds."""

from __future__ import annotations

import threading
import time
from collections.abc import Hashable

from hanlin_operator.workqueue import WorkQueue, start_workers


def test_a_queued_key_is_not_queued_twice() -> None:
    q = WorkQueue()
    for _ in range(5):
        q.add("a")
    q.add("b")
    assert len(q) == 2
    assert q.get() == "a"
    assert q.get() == "b"


def test_a_key_added_while_in_flight_runs_again_after_done_not_concurrently() -> None:
    q = WorkQueue()
    q.add("a")
    assert q.get() == "a"
    q.add("a")  # an event while "a" is reconciling
    assert len(q) == 0  # not handed to a second worker meanwhile
    q.done("a")
    assert len(q) == 1 and q.get() == "a"
    q.done("a")
    assert len(q) == 0


def test_add_after_waits_then_dedupes_with_a_plain_add() -> None:
    q = WorkQueue()
    q.add_after("late", 0.3)
    q.add_after("later", 0.5)
    start = time.monotonic()
    assert q.get() == "late"
    assert time.monotonic() - start >= 0.29
    q.done("late")
    q.add("later")  # queued now; when its timer fires it must not be queued a second time
    time.sleep(0.6)
    q.add("x")
    assert q.get() == "later"
    assert q.get() == "x"
    assert len(q) == 0


def test_close_wakes_waiting_workers() -> None:
    q = WorkQueue()
    got: list[Hashable | None] = []
    t = threading.Thread(target=lambda: got.append(q.get()))
    t.start()
    time.sleep(0.1)
    q.close()
    t.join(timeout=5)
    assert got == [None]
    q.add("ignored")
    assert len(q) == 0


def test_workers_never_run_one_key_concurrently_and_miss_no_add() -> None:
    q = WorkQueue()
    running: set[Hashable] = set()
    overlaps: list[Hashable] = []
    runs: dict[Hashable, int] = {}
    guard = threading.Lock()

    def process(key: Hashable) -> None:
        with guard:
            if key in running:
                overlaps.append(key)
            running.add(key)
            runs[key] = runs.get(key, 0) + 1
        time.sleep(0.002)
        with guard:
            running.discard(key)

    threads = start_workers(q, process, 8)
    for _ in range(50):
        for k in range(10):
            q.add(k)
    deadline = time.monotonic() + 10
    while (len(q) or any(k not in runs for k in range(10))) and time.monotonic() < deadline:
        time.sleep(0.01)
    time.sleep(0.05)
    q.close()
    for t in threads:
        t.join(timeout=5)
    assert not overlaps
    assert set(runs) == set(range(10))
    # Far fewer runs than adds: bursts collapse.
    assert sum(runs.values()) < 500


def test_a_failing_process_does_not_stop_its_worker() -> None:
    q = WorkQueue()
    seen: list[Hashable] = []

    def process(key: Hashable) -> None:
        seen.append(key)
        if key == "bad":
            raise RuntimeError("boom")

    threads = start_workers(q, process, 1)
    q.add("bad")
    q.add("good")
    deadline = time.monotonic() + 5
    while "good" not in seen and time.monotonic() < deadline:
        time.sleep(0.01)
    q.close()
    threads[0].join(timeout=5)
    assert seen == ["bad", "good"]
