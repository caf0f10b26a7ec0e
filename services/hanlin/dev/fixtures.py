"""Pytest fixtures over the real control plane, S3 server and model (a pytest plugin).

Session-scoped: one control plane and one S3 server per test session, started on
first use and stopped at the end. `tests/conftest.py` registers this module with
`pytest_plugins`, so any test may ask for `k8s`, `s3_server`, `s3` or `model_dir`.
"""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest


@dataclass
class K8s:
    """A running control plane and clients for it."""

    kubeconfig: Path
    server: str
    bin: Path
    api: Any  # kubernetes.client.ApiClient

    def kubectl(
        self, *args: str, check: bool = True, input: str | None = None
    ) -> subprocess.CompletedProcess[str]:
        """Run the built kubectl against this cluster."""
        return subprocess.run(
            [str(self.bin / "kubectl"), f"--kubeconfig={self.kubeconfig}", *args],
            check=check,
            capture_output=True,
            text=True,
            input=input,
            timeout=120,
        )

    def install_crds(self, directory: Path, extra: str | None = None) -> None:
        """Apply the CRDs in `directory` (and `extra` YAML) and wait until all are Established.

        Server-side apply with --force-conflicts: the chart's tests leave the same CRDs
        owned by Helm's field manager, and a test must still be able to (re)install them.
        """
        self.kubectl("apply", "--server-side", "--force-conflicts", "-f", str(directory))
        if extra is not None:
            self.kubectl("apply", "--server-side", "--force-conflicts", "-f", "-", input=extra)
        self.kubectl("wait", "--for=condition=Established", "crd", "--all", "--timeout=60s")


@dataclass
class S3Bucket:
    """A boto3 client and a fresh, empty bucket."""

    client: Any  # botocore S3 client
    bucket: str
    env: dict[str, str]


@pytest.fixture(scope="session")
def k8s(tmp_path_factory: pytest.TempPathFactory) -> Iterator[K8s]:
    from kubernetes import config

    from hanlin.dev import cluster
    from hanlin.dev.paths import bin_dir

    directory = tmp_path_factory.mktemp("cluster")
    started = cluster.start(directory)
    previous = os.environ.get("KUBECONFIG")
    os.environ["KUBECONFIG"] = str(started.kubeconfig)
    api = config.new_client_from_config(config_file=str(started.kubeconfig))  # type: ignore[no-untyped-call]
    try:
        yield K8s(kubeconfig=started.kubeconfig, server=started.server, bin=bin_dir(), api=api)
    finally:
        api.close()
        cluster.stop(directory)
        if previous is None:
            os.environ.pop("KUBECONFIG", None)
        else:
            os.environ["KUBECONFIG"] = previous


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    """A running versitygw; its client environment is exported for the session."""
    from hanlin.dev import s3

    directory = tmp_path_factory.mktemp("s3")
    started = s3.start(directory)
    saved = {k: os.environ.get(k) for k in started.env}
    os.environ.update(started.env)
    try:
        yield started.env
    finally:
        s3.stop(directory)
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


@pytest.fixture
def s3(s3_server: dict[str, str]) -> Iterator[S3Bucket]:
    """A boto3 client and a fresh bucket, emptied and removed after the test."""
    import boto3
    from botocore.config import Config

    client = boto3.client(
        "s3",
        endpoint_url=s3_server["AWS_ENDPOINT_URL"],
        aws_access_key_id=s3_server["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=s3_server["AWS_SECRET_ACCESS_KEY"],
        region_name=s3_server["AWS_DEFAULT_REGION"],
        # SigV4 everywhere, presigned URLs included: the legacy V2 scheme is refused.
        config=Config(signature_version="s3v4"),
    )
    bucket = "test-" + secrets.token_hex(6)
    client.create_bucket(Bucket=bucket)
    try:
        yield S3Bucket(client=client, bucket=bucket, env=s3_server)
    finally:
        paginator = client.get_paginator("list_objects_v2")
        for page in paginator.paginate(Bucket=bucket):
            for obj in page.get("Contents", []):
                client.delete_object(Bucket=bucket, Key=obj["Key"])
        client.delete_bucket(Bucket=bucket)
        client.close()


@pytest.fixture(scope="session")
def model_dir() -> Path:
    """SmolLM2-135M-Instruct as an HF directory (the shared cache copy: do not modify)."""
    from hanlin.dev.model import ensure_model

    return ensure_model()


@contextmanager
def hanlin_server(
    args: list[str],
    log: Path,
    *,
    env: dict[str, str] | None = None,
    timeout: float = 180.0,
) -> Iterator[str]:
    """Run `hanlin ARGS --port P` on a free loopback port until its /health answers.

    Yields the base URL (`http://127.0.0.1:P`); the server's output goes to `log`
    (quoted in the error if it exits or never becomes healthy). Stopped on exit.
    """
    import httpx

    from hanlin.dev.processes import free_port, terminate

    port = free_port()
    cmd = [sys.executable, "-m", "hanlin.cli", *args, "--port", str(port)]
    with log.open("w") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=env)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + timeout
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"hanlin {args[0]} exited: {log.read_text()[-3000:]}")
            try:
                if httpx.get(f"{url}/health", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"hanlin {args[0]} did not start: {log.read_text()[-3000:]}")
            time.sleep(0.5)
        yield url
    finally:
        terminate(proc, timeout=30)


@contextmanager
def hanlin_openai(args: list[str], log: Path, env: dict[str, str] | None = None) -> Iterator[Any]:
    """`hanlin_server(args)` without an API key, and an `openai.OpenAI` client on it.

    `env` defaults to this process's environment; HANLIN_API_KEY is always dropped,
    so the server runs open and the client's dummy key is never checked.
    """
    import openai

    base = os.environ if env is None else env
    clean = {k: v for k, v in base.items() if k != "HANLIN_API_KEY"}
    with hanlin_server(args, log, env=clean) as url:
        with openai.OpenAI(base_url=f"{url}/v1", api_key="unused", max_retries=0) as client:
            yield client
