"""The engine on a background thread, with an asyncio face for the servers.

The model step runs on one thread (torch releases the GIL inside its kernels,
so the event loop stays responsive); requests and aborts cross over through a
lock-protected inbox; outputs come back to each request's asyncio queue with
`call_soon_threadsafe`. Admission is bounded: beyond `max_queue` waiting
requests, `generate` raises OVERLOADED at once instead of queueing.
"""

from __future__ import annotations

import asyncio
import itertools
import threading
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

from hanlin.serve.engine import Engine, RequestOutput
from hanlin.serve.errors import ErrorCode, RequestError
from hanlin.serve.params import SamplingParams

_ids = itertools.count()


@dataclass
class _Inbox:
    adds: list[tuple[str, list[int], SamplingParams, str | None]] = field(default_factory=list)
    aborts: list[str] = field(default_factory=list)


class AsyncEngine:
    """Thread-hosted `Engine` with `async generate(...)` streams."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._inbox = _Inbox()
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._streams: dict[str, tuple[asyncio.AbstractEventLoop, asyncio.Queue[object]]] = {}
        self._pending = 0
        self.error: BaseException | None = None
        self._thread = threading.Thread(target=self._loop, name="hanlin-engine", daemon=True)

    def start(self) -> None:
        """Start the engine thread."""
        self._thread.start()

    def stop(self) -> None:
        """Stop the engine thread and any tensor-parallel workers."""
        self._stop.set()
        self._wake.set()
        if self._thread.is_alive():
            self._thread.join(timeout=30)
        self.engine.shutdown()

    @property
    def healthy(self) -> bool:
        """False once the engine thread died."""
        return self.error is None and self._thread.is_alive()

    def _loop(self) -> None:
        try:
            while not self._stop.is_set():
                with self._lock:
                    inbox, self._inbox = self._inbox, _Inbox()
                    self._pending = 0
                for rid in inbox.aborts:
                    self.engine.abort(rid)
                for rid, ids, params, adapter in inbox.adds:
                    if rid in self._streams:
                        try:
                            self.engine.add_request(rid, ids, params, adapter)
                        except RequestError as exc:
                            self._deliver([(rid, exc)])
                if not self.engine.has_work():
                    self._wake.wait(timeout=0.5)
                    self._wake.clear()
                    continue
                self._deliver([(out.request_id, out) for out in self.engine.step()])
        except BaseException as exc:  # the engine is dead: fail every open stream
            self.error = exc
            self._deliver([(rid, exc) for rid in list(self._streams)])
            raise

    def _deliver(self, items: list[tuple[str, object]]) -> None:
        """Hand (request id, output or error) pairs over, one wake-up per event loop.

        A step's outputs go together: with 16 streams, 16 separate wake-ups per step
        kept the event loop (and the GIL) busy long enough to slow the next step down.
        """
        batches: dict[asyncio.AbstractEventLoop, list[tuple[asyncio.Queue[object], object]]] = {}
        for rid, item in items:
            stream = self._streams.get(rid)
            if stream is not None:
                batches.setdefault(stream[0], []).append((stream[1], item))
        for loop, pending in batches.items():
            try:
                loop.call_soon_threadsafe(_put_all, pending)
            except RuntimeError:  # the clients' loop is gone
                for rid, (other, _) in list(self._streams.items()):
                    if other is loop:
                        self._streams.pop(rid, None)

    def check(
        self, prompt_ids: list[int], params: SamplingParams, adapter: str | None = None
    ) -> None:
        """Validate a request without queueing it."""
        self.engine.check_request(prompt_ids, params, adapter)

    def submit(
        self,
        prompt_ids: list[int],
        params: SamplingParams,
        request_id: str | None = None,
        adapter: str | None = None,
    ) -> RequestStream:
        """Validate and queue a sequence now (raising `RequestError` at once); stream it later.

        `adapter`: a LoRA adapter served by name (None: the base model).
        """
        if not self.healthy:
            raise RequestError(ErrorCode.ENGINE_DEAD, f"the engine stopped: {self.error!r}")
        self.engine.check_request(prompt_ids, params, adapter)
        rid = request_id or f"req-{next(_ids)}"
        with self._lock:
            waiting = self.engine.num_waiting + self._pending
            if waiting >= self.engine.config.max_queue:
                self.engine.metrics.rejected.labels(ErrorCode.OVERLOADED.name).inc()
                raise RequestError(
                    ErrorCode.OVERLOADED,
                    f"the server is at capacity ({waiting} requests waiting); retry later",
                    retry_after_s=1.0,
                )
            queue: asyncio.Queue[object] = asyncio.Queue()
            self._streams[rid] = (asyncio.get_running_loop(), queue)
            self._inbox.adds.append((rid, list(prompt_ids), params, adapter))
            self._pending += 1
        self._wake.set()
        return RequestStream(self, rid, queue)

    def abort(self, request_id: str) -> None:
        """Abort a request (frees its blocks on the next engine iteration)."""
        self._streams.pop(request_id, None)
        with self._lock:
            self._inbox.aborts.append(request_id)
        self._wake.set()

    async def generate(
        self,
        prompt_ids: list[int],
        params: SamplingParams,
        request_id: str | None = None,
        adapter: str | None = None,
    ) -> AsyncIterator[RequestOutput]:
        """Stream outputs of one sequence; closing the iterator early aborts it."""
        async for out in self.submit(prompt_ids, params, request_id, adapter):
            yield out


class RequestStream:
    """The outputs of one submitted sequence; stopping early (or `abort()`) aborts it."""

    def __init__(self, engine: AsyncEngine, request_id: str, queue: asyncio.Queue[object]):
        self.engine = engine
        self.request_id = request_id
        self._queue = queue
        self.finished = False

    def abort(self) -> None:
        """Abort unless already finished."""
        if not self.finished:
            self.finished = True
            self.engine.abort(self.request_id)

    def __aiter__(self) -> AsyncIterator[RequestOutput]:
        return self._iterate()

    async def _iterate(self) -> AsyncIterator[RequestOutput]:
        try:
            while True:
                item = await self._queue.get()
                if isinstance(item, RequestError):
                    self.finished = True
                    raise item
                if isinstance(item, BaseException):
                    self.finished = True
                    raise RequestError(ErrorCode.ENGINE_DEAD, f"the engine failed: {item!r}")
                assert isinstance(item, RequestOutput)
                if item.finished:
                    self.finished = True
                yield item
                if item.finished:
                    return
        finally:
            self.abort()


def _put_all(items: list[tuple[asyncio.Queue[object], object]]) -> None:
    for queue, item in items:
        queue.put_nowait(item)
