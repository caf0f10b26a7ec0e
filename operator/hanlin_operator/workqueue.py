"""A de-duplicating work queue of resource keys, drained by a fixed set of threads.

The queue Kubernetes controllers use (client-go's workqueue), for the same reasons:

- a key waiting in the queue is not queued again: a burst of events for one
  resource (its children appearing, its status changing) costs one reconcile,
  and a thousand resources never mean thousands of queued event bodies;
- a key is never reconciled by two threads at once; a key added while it is
  being reconciled runs once more afterwards, so no event is lost;
- `add_after` schedules a retry (backoff after an error, the slow resync of a
  waiting resource) on one timer thread instead of a thread or task per key.

Watch events only enqueue keys; the reconcile reads the cache, so it always sees
the newest state (level-triggered), however many events came in between.
"""

from __future__ import annotations

import heapq
import itertools
import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Hashable

log = logging.getLogger(__name__)


class WorkQueue:
    """Keys to process, each at most once in the queue and once in flight."""

    def __init__(self) -> None:
        self._queue: deque[Hashable] = deque()
        self._dirty: set[Hashable] = set()
        self._processing: set[Hashable] = set()
        self._delayed: list[tuple[float, int, Hashable]] = []
        self._order = itertools.count()
        self._cond = threading.Condition()
        self._closed = False

    def add(self, key: Hashable) -> None:
        """Queue `key` unless it is already waiting."""
        with self._cond:
            if self._closed or key in self._dirty:
                return
            self._dirty.add(key)
            if key not in self._processing:
                self._queue.append(key)
                self._cond.notify()

    def add_after(self, key: Hashable, delay: float) -> None:
        """Queue `key` in `delay` seconds."""
        with self._cond:
            if self._closed:
                return
            heapq.heappush(self._delayed, (time.monotonic() + delay, next(self._order), key))
            self._cond.notify_all()

    def get(self) -> Hashable | None:
        """The next key (now marked in flight), or None once the queue is closed."""
        with self._cond:
            while True:
                if self._closed:
                    return None
                self._promote_due()
                if self._queue:
                    key = self._queue.popleft()
                    self._dirty.discard(key)
                    self._processing.add(key)
                    return key
                timeout = self._delayed[0][0] - time.monotonic() if self._delayed else None
                self._cond.wait(timeout)

    def done(self, key: Hashable) -> None:
        """`key` is processed; if it was added meanwhile, queue it again."""
        with self._cond:
            self._processing.discard(key)
            if key in self._dirty:
                self._queue.append(key)
                self._cond.notify()

    def _promote_due(self) -> None:
        now = time.monotonic()
        while self._delayed and self._delayed[0][0] <= now:
            _, _, key = heapq.heappop(self._delayed)
            if key not in self._dirty:
                self._dirty.add(key)
                if key not in self._processing:
                    self._queue.append(key)

    def __len__(self) -> int:
        with self._cond:
            return len(self._queue)

    def close(self) -> None:
        """Wake every waiting `get` with None; later adds are ignored."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()


def start_workers(
    queue: WorkQueue, process: Callable[[Hashable], None], count: int
) -> list[threading.Thread]:
    """`count` daemon threads running `process` on each key until the queue closes."""

    def loop() -> None:
        while (key := queue.get()) is not None:
            try:
                process(key)
            except Exception:  # a bug in one reconcile must not stop the worker
                log.exception("processing %s failed", key)
            finally:
                queue.done(key)

    threads = [
        threading.Thread(target=loop, name=f"reconcile-{i}", daemon=True) for i in range(count)
    ]
    for thread in threads:
        thread.start()
    return threads
