"""The engine in a process of its own, with an asyncio face for the servers.

The engine core (scheduler, model, sampler, detokenizer) runs in a child
process, so its Python never waits for the server's GIL: HTTP parsing, JSON
and SSE framing run on another core while a step runs. Sharing one process
cost about half the throughput at 16 streams (the engine thread sat idle 40%
of the time, mostly waiting for the GIL the event loop held). The same
split is why vLLM runs its engine core apart from its API server.

Two pipes connect the processes. The server sends batches of messages (add,
abort, metrics) from one sender thread; the engine drains them between
steps and answers every step with one message: the step's outputs, the
scheduler's state and how many adds it has taken in. A reader thread hands
those outputs to each request's asyncio queue, one `call_soon_threadsafe`
per event loop. Admission is bounded here, before anything crosses:
beyond `max_queue` waiting requests `submit` raises OVERLOADED at once.
A dead engine (crash, kill) fails every open stream and turns /health to 503.
"""

from __future__ import annotations

import asyncio
import itertools
import multiprocessing
import queue
import signal
import sys
import threading
import traceback
from collections.abc import AsyncIterator
from dataclasses import dataclass
from multiprocessing.connection import Connection
from multiprocessing.process import BaseProcess
from typing import TYPE_CHECKING, Any

from hanlin.serve.config import EngineConfig
from hanlin.serve.errors import ErrorCode, RequestError
from hanlin.serve.metrics import ServerMetrics
from hanlin.serve.outputs import RequestLimits, RequestOutput
from hanlin.serve.params import SamplingParams

if TYPE_CHECKING:
    from hanlin.serve.engine import Engine

_ids = itertools.count()
_tokens = itertools.count()


@dataclass
class EngineState:
    """The scheduler's gauges after the engine's latest step."""

    running: int = 0
    waiting: int = 0
    kv_usage: float = 0.0


@dataclass(frozen=True)
class EngineInfo:
    """What the server learns from the engine once it has loaded the model."""

    limits: RequestLimits
    tokenizer_class: str  # module.qualname of the engine's tokenizer


class EngineDied(RuntimeError):
    """The engine process failed or exited."""


class AsyncEngine:
    """An `Engine` in a child process, with `submit(...)` streams for asyncio servers."""

    def __init__(self, config: EngineConfig, start_timeout: float = 900.0) -> None:
        self.config = config
        self.start_timeout = start_timeout
        self.metrics = ServerMetrics()
        self.state = EngineState()
        self.error: BaseException | None = None
        self.tokenizer: Any = None
        self._limits: RequestLimits | None = None
        self._proc: BaseProcess | None = None
        self._to_engine: Connection | None = None
        self._from_engine: Connection | None = None
        self._outbox: queue.SimpleQueue[tuple[Any, ...] | None] = queue.SimpleQueue()
        self._streams: dict[str, tuple[asyncio.AbstractEventLoop, asyncio.Queue[object]]] = {}
        self._metric_waiters: dict[
            int, tuple[asyncio.AbstractEventLoop, asyncio.Future[bytes]]
        ] = {}
        self._lock = threading.Lock()
        self._submitted = 0  # adds sent; the engine reports how many it has taken in
        self._taken = 0
        self._threads: list[threading.Thread] = []

    # -- lifecycle ----------------------------------------------------------------------------

    def start(self) -> None:
        """Start the engine process and wait until its model is loaded (raises if it fails)."""
        ctx = multiprocessing.get_context("spawn")
        from_engine, engine_out = ctx.Pipe(duplex=False)
        engine_in, to_engine = ctx.Pipe(duplex=False)
        # Not a daemon: a tensor-parallel engine starts worker processes of its own.
        proc = ctx.Process(
            target=_engine_main, args=(self.config, engine_in, engine_out), name="hanlin-engine"
        )
        proc.start()
        engine_in.close()
        engine_out.close()
        self._proc, self._to_engine, self._from_engine = proc, to_engine, from_engine
        if not from_engine.poll(self.start_timeout):
            self.stop()
            raise EngineDied(f"the engine did not load its model within {self.start_timeout:.0f} s")
        try:
            kind, payload = from_engine.recv()
        except EOFError:
            proc.join(timeout=10)
            raise EngineDied(
                f"the engine process exited ({proc.exitcode}) while starting"
            ) from None
        if kind != "ready":
            proc.join(timeout=30)
            raise EngineDied(f"the engine failed to start: {payload}")
        self._limits = payload.limits
        self.tokenizer = load_tokenizer(
            self.config.model, payload.tokenizer_class, self.config.trust_remote_code
        )
        for target, name in (
            (self._send_loop, "hanlin-engine-send"),
            (self._read_loop, "hanlin-engine-read"),
        ):
            thread = threading.Thread(target=target, name=name, daemon=True)
            thread.start()
            self._threads.append(thread)

    def stop(self) -> None:
        """Stop the engine process (and its tensor-parallel workers)."""
        proc = self._proc
        if proc is None:
            return
        self._outbox.put(("stop",))
        self._outbox.put(None)
        proc.join(timeout=30)
        if proc.is_alive():
            proc.terminate()
            proc.join(timeout=10)
        if proc.is_alive():
            proc.kill()
            proc.join()
        for conn in (self._to_engine, self._from_engine):
            if conn is not None:
                conn.close()
        for thread in self._threads:
            thread.join(timeout=5)
        self._proc = None

    @property
    def limits(self) -> RequestLimits:
        """Context length, vocabulary and served adapters of the started engine."""
        if self._limits is None:
            raise RuntimeError("the engine is not started")
        return self._limits

    @property
    def healthy(self) -> bool:
        """False once the engine process failed or exited."""
        return self.error is None and self._proc is not None and self._proc.is_alive()

    # -- the two pipe threads ---------------------------------------------------------------

    def _send_loop(self) -> None:
        """Send what `submit`/`abort` queued, as few messages as the engine can take."""
        conn = self._to_engine
        assert conn is not None
        while True:
            first = self._outbox.get()
            if first is None:
                return
            batch = [first]
            while True:
                try:
                    item = self._outbox.get_nowait()
                except queue.Empty:
                    break
                if item is None:
                    self._outbox.put(None)
                    break
                batch.append(item)
            try:
                conn.send(batch)
            except (OSError, ValueError):  # the engine is gone; the reader reports it
                return

    def _read_loop(self) -> None:
        conn = self._from_engine
        assert conn is not None
        while True:
            try:
                message = conn.recv()
            except (EOFError, OSError):
                code = self._proc.exitcode if self._proc is not None else None
                self._fail(EngineDied(f"the engine process exited (exit code {code})"))
                return
            kind = message[0]
            if kind == "out":
                _, items, state, taken = message
                self.state = state
                self._taken = taken
                self._deliver(items)
            elif kind == "metrics":
                _, token, text = message
                self._resolve_metrics(token, text)
            elif kind == "dead":
                self._fail(EngineDied(f"the engine failed:\n{message[1]}"))

    def _fail(self, error: BaseException) -> None:
        if self.error is None:
            self.error = error
        self._deliver([(rid, error) for rid in list(self._streams)])
        for token in list(self._metric_waiters):
            self._resolve_metrics(token, b"")

    def _deliver(self, items: list[tuple[str, object]]) -> None:
        """Hand (request id, output or error) pairs over, one wake-up per event loop."""
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

    def _resolve_metrics(self, token: int, text: bytes) -> None:
        waiter = self._metric_waiters.pop(token, None)
        if waiter is not None:
            loop, future = waiter
            try:
                loop.call_soon_threadsafe(_set_result, future, text)
            except RuntimeError:
                pass

    # -- requests ---------------------------------------------------------------------------

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
        self.limits.check(prompt_ids, params, adapter)
        rid = request_id or f"req-{next(_ids)}"
        with self._lock:
            waiting = self.state.waiting + self._submitted - self._taken
            if waiting >= self.config.max_queue:
                self.metrics.rejected.labels(ErrorCode.OVERLOADED.name).inc()
                raise RequestError(
                    ErrorCode.OVERLOADED,
                    f"the server is at capacity ({waiting} requests waiting); retry later",
                    retry_after_s=1.0,
                )
            self._submitted += 1
        queue_: asyncio.Queue[object] = asyncio.Queue()
        self._streams[rid] = (asyncio.get_running_loop(), queue_)
        self._outbox.put(("add", rid, list(prompt_ids), params, adapter))
        return RequestStream(self, rid, queue_)

    def release(self, request_id: str) -> None:
        """Forget a finished request's stream."""
        self._streams.pop(request_id, None)

    def abort(self, request_id: str) -> None:
        """Abort a request (the engine frees its blocks before its next step)."""
        if self._streams.pop(request_id, None) is not None:
            self._outbox.put(("abort", request_id))

    async def render_metrics(self, timeout: float = 10.0) -> bytes:
        """The Prometheus text of the server and of the engine (its part asked for now)."""
        text = self.metrics.render()
        if not self.healthy:
            return text
        token = next(_tokens)
        future: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()
        self._metric_waiters[token] = (asyncio.get_running_loop(), future)
        self._outbox.put(("metrics", token))
        try:
            return text + await asyncio.wait_for(future, timeout)
        except TimeoutError:
            self._metric_waiters.pop(token, None)
            return text


class RequestStream:
    """The outputs of one submitted sequence; stopping early (or `abort()`) aborts it."""

    def __init__(self, engine: AsyncEngine, request_id: str, queue_: asyncio.Queue[object]):
        self.engine = engine
        self.request_id = request_id
        self._queue = queue_
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
                    raise RequestError(ErrorCode.ENGINE_DEAD, f"the engine failed: {item}")
                assert isinstance(item, RequestOutput)
                if item.finished:
                    self.finished = True
                    self.engine.release(self.request_id)
                yield item
                if item.finished:
                    return
        finally:
            self.abort()


def load_tokenizer(model_dir: object, engine_class: str, trust_remote_code: bool = False) -> Any:
    """The engine's tokenizer, loaded by its own class so this process needs no torch.

    `AutoTokenizer` imports torch (hundreds of MB in a process that never computes);
    the class it picked in the engine, imported by name from transformers, does not.
    Any other class (one the model directory ships, too) falls back to `AutoTokenizer`.
    """
    import transformers

    name = engine_class.rpartition(".")[2]
    cls = getattr(transformers, name, None)
    if cls is None or f"{cls.__module__}.{cls.__qualname__}" != engine_class:
        return transformers.AutoTokenizer.from_pretrained(
            model_dir, trust_remote_code=trust_remote_code
        )
    return cls.from_pretrained(model_dir)


def _put_all(items: list[tuple[asyncio.Queue[object], object]]) -> None:
    for queue_, item in items:
        queue_.put_nowait(item)


def _set_result(future: asyncio.Future[bytes], text: bytes) -> None:
    if not future.done():
        future.set_result(text)


# -- the engine process -------------------------------------------------------------------------


def _engine_main(config: EngineConfig, inbox: Connection, outbox: Connection) -> None:
    """Load the engine, then step it while requests run; exit on "stop" or when the server goes."""
    # Ctrl-C reaches the whole process group: the server stops the engine itself.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    from hanlin.serve.engine import Engine  # torch lives in this process only

    try:
        engine = Engine(config)
    except BaseException as exc:
        traceback.print_exc()  # the whole story in the server's log; the cause to the server
        outbox.send(("failed", "".join(traceback.format_exception_only(exc)).strip()))
        return
    sys.stderr.write(engine.describe() + "\n")
    sys.stderr.flush()
    kind = type(engine.tokenizer)
    outbox.send(("ready", EngineInfo(engine.limits, f"{kind.__module__}.{kind.__qualname__}")))
    try:
        _serve(engine, inbox, outbox)
    except (EOFError, BrokenPipeError):  # the server process is gone
        pass
    except BaseException:
        try:
            outbox.send(("dead", traceback.format_exc()))
        except OSError:
            pass
        raise
    finally:
        engine.shutdown()


def _serve(engine: Engine, inbox: Connection, outbox: Connection) -> None:
    taken = 0
    while True:
        items: list[tuple[str, object]] = []
        # Idle: block until a message comes. Busy: take what is there and step.
        wait: float | None = 0.0 if engine.has_work() else None
        while inbox.poll(wait):
            for message in inbox.recv():
                kind = message[0]
                if kind == "add":
                    _, rid, ids, params, adapter = message
                    taken += 1
                    try:
                        engine.add_request(rid, ids, params, adapter)
                    except RequestError as exc:
                        items.append((rid, exc))
                elif kind == "abort":
                    engine.abort(message[1])
                elif kind == "metrics":
                    outbox.send(("metrics", message[1], engine.metrics.render()))
                elif kind == "stop":
                    return
            wait = 0.0
        if engine.has_work():
            items.extend((out.request_id, out) for out in engine.step())
        state = EngineState(len(engine.scheduler.running), engine.num_waiting, engine.blocks.usage)
        outbox.send(("out", items, state, taken))
