"""`hanlin serve --grpc-port` as a real process, driven by the generated gRPC client."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest

from hanlin.dev.processes import free_port, terminate
from hanlin.serve.proto import serve_pb2, serve_pb2_grpc

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

API_KEY = "grpc-key"
MODEL = "smol"
AUTH = (("authorization", f"Bearer {API_KEY}"),)


@pytest.fixture(scope="module")
def target(model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    port = free_port()
    log = tmp_path_factory.mktemp("grpc") / "server.log"
    cmd = [
        sys.executable, "-m", "hanlin.cli", "serve", "--model", str(model_dir), "--port", "0",
        "--grpc-port", str(port), "--served-model-name", MODEL, "--max-model-len", "128",
        "--max-seqs", "2", "--max-queue", "2", "--kv-cache-mib", "32",
    ]  # fmt: skip
    with log.open("w") as out:
        proc = subprocess.Popen(
            cmd, stdout=out, stderr=subprocess.STDOUT, env=dict(os.environ, HANLIN_API_KEY=API_KEY)
        )
    address = f"127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 180
        with grpc.insecure_channel(address) as channel:
            stub = serve_pb2_grpc.InferenceStub(channel)
            while True:
                if proc.poll() is not None:
                    raise RuntimeError(f"server exited: {log.read_text()[-3000:]}")
                try:
                    if stub.Health(serve_pb2.HealthRequest(), metadata=AUTH, timeout=2).serving:
                        break
                except grpc.RpcError:
                    pass
                if time.monotonic() > deadline:
                    raise RuntimeError(f"server did not start: {log.read_text()[-3000:]}")
                time.sleep(0.5)
        yield address
    finally:
        terminate(proc, timeout=30)


@pytest.fixture(scope="module")
def stub(target: str) -> Iterator[Any]:
    with grpc.insecure_channel(target) as channel:
        yield serve_pb2_grpc.InferenceStub(channel)


def test_unary_and_stream_agree(stub: Any) -> None:
    request = serve_pb2.GenerateRequest(
        model=MODEL, prompt="The capital of France is", max_tokens=10, temperature=0, logprobs=1
    )
    whole = stub.Generate(request, metadata=AUTH)
    assert whole.text and whole.completion_tokens == len(whole.token_ids)
    assert whole.finish_reason in ("length", "stop") and whole.prompt_tokens == 5
    assert len(whole.logprobs) == len(whole.token_ids)
    assert all(lp.logprob <= 0 for lp in whole.logprobs)
    chunks = list(stub.GenerateStream(request, metadata=AUTH))
    assert "".join(c.text for c in chunks) == whole.text
    assert [t for c in chunks for t in c.token_ids] == list(whole.token_ids)
    assert chunks[-1].finish_reason == whole.finish_reason
    assert all(not c.finish_reason for c in chunks[:-1])


def test_logits_processors(stub: Any) -> None:
    forced = 1000
    biased = serve_pb2.GenerateRequest(
        model=MODEL, prompt="The capital of France is", max_tokens=3, temperature=0,
        logit_bias={forced: 100.0},
    )  # fmt: skip
    assert list(stub.Generate(biased, metadata=AUTH).token_ids) == [forced] * 3
    count = {"model": MODEL, "prompt": "1, 2, 3, 4,", "max_tokens": 16, "temperature": 0}
    plain = stub.Generate(serve_pb2.GenerateRequest(**count), metadata=AUTH)
    penalized = stub.Generate(
        serve_pb2.GenerateRequest(**count, presence_penalty=2.0, repetition_penalty=1.2, min_p=0.1),
        metadata=AUTH,
    )
    assert penalized.text != plain.text
    with pytest.raises(grpc.RpcError) as err:
        stub.Generate(serve_pb2.GenerateRequest(**count, logit_bias={10**8: 1.0}), metadata=AUTH)
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "logit_bias" in (err.value.details() or "")


def test_structured_output(stub: Any) -> None:
    base = {"model": MODEL, "prompt": "The capital of Italy is", "max_tokens": 12, "temperature": 0}
    picked = stub.Generate(
        serve_pb2.GenerateRequest(**base, choice=["Rome", "Milan"]), metadata=AUTH
    )
    assert picked.text in ("Rome", "Milan") and picked.finish_reason == "stop"
    schema = '{"type": "object", "properties": {"city": {"type": "string", "maxLength": 10}}, "required": ["city"]}'
    obj = stub.Generate(
        serve_pb2.GenerateRequest(**base | {"max_tokens": 30}, json_schema=schema), metadata=AUTH
    )
    assert isinstance(json.loads(obj.text)["city"], str)
    for bad in ({"regex": "[a-z", "choice": []}, {"regex": "a+", "choice": ["a"]}):
        with pytest.raises(grpc.RpcError) as err:
            stub.Generate(serve_pb2.GenerateRequest(**base, **bad), metadata=AUTH)
        assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT


def test_error_codes(stub: Any) -> None:
    def code(request: Any, metadata: Any = AUTH) -> grpc.StatusCode:
        with pytest.raises(grpc.RpcError) as err:
            stub.Generate(request, metadata=metadata)
        return err.value.code()

    ok = {"model": MODEL, "prompt": "hi", "max_tokens": 4}
    assert code(serve_pb2.GenerateRequest(**ok), metadata=()) == grpc.StatusCode.UNAUTHENTICATED
    assert code(serve_pb2.GenerateRequest(**ok | {"temperature": -1})) == (
        grpc.StatusCode.INVALID_ARGUMENT
    )
    too_long = serve_pb2.GenerateRequest(model=MODEL, prompt="word " * 200, max_tokens=4)
    assert code(too_long) == grpc.StatusCode.INVALID_ARGUMENT
    assert code(serve_pb2.GenerateRequest(**ok | {"model": "other"})) == grpc.StatusCode.NOT_FOUND


def test_overload_is_resource_exhausted(target: str) -> None:
    async def burst() -> list[grpc.StatusCode]:
        async with grpc.aio.insecure_channel(target) as channel:
            aio_stub = serve_pb2_grpc.InferenceStub(channel)
            request = serve_pb2.GenerateRequest(model=MODEL, prompt="Hello", max_tokens=8)

            async def one() -> grpc.StatusCode:
                try:
                    await aio_stub.Generate(request, metadata=AUTH)
                    return grpc.StatusCode.OK
                except grpc.aio.AioRpcError as exc:
                    return exc.code()

            return list(await asyncio.gather(*(one() for _ in range(16))))

    codes = asyncio.run(burst())
    assert set(codes) <= {grpc.StatusCode.OK, grpc.StatusCode.RESOURCE_EXHAUSTED}
    assert grpc.StatusCode.RESOURCE_EXHAUSTED in codes and grpc.StatusCode.OK in codes
