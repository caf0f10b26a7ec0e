"""`hanlin dev cluster|s3 start|stop`: clear errors, no second instance, idempotent stop."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from hanlin.dev import s3
from hanlin.dev.fixtures import K8s

pytestmark = pytest.mark.integration


def hanlin(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "hanlin.cli", *args],
        capture_output=True,
        text=True,
        timeout=180,
        env=env,
    )


def test_s3_start_twice_refused_and_stop_idempotent(tmp_path: Path) -> None:
    first = hanlin("dev", "s3", "start", "--dir", str(tmp_path))
    assert first.returncode == 0, first.stderr
    env = s3.read_env(tmp_path)
    port = int(env["AWS_ENDPOINT_URL"].rsplit(":", 1)[1])
    try:
        second = hanlin("dev", "s3", "start", "--dir", str(tmp_path))
        assert second.returncode == 1
        assert "already running" in second.stderr and "stop" in second.stderr
        # Still exactly the first server: same credentials file.
        assert s3.read_env(tmp_path) == env
    finally:
        stopped = hanlin("dev", "s3", "stop", "--dir", str(tmp_path))
    assert stopped.returncode == 0 and "versitygw" in stopped.stdout
    again = hanlin("dev", "s3", "stop", "--dir", str(tmp_path))
    assert again.returncode == 0 and "nothing running" in again.stdout
    # The port is free again.
    with socket.socket() as sock:
        assert sock.connect_ex(("127.0.0.1", port)) != 0


def test_cluster_start_twice_in_one_dir_is_refused(k8s: K8s) -> None:
    before = k8s.kubeconfig.read_text()
    second = hanlin("dev", "cluster", "start", "--dir", str(k8s.kubeconfig.parent))
    assert second.returncode == 1
    assert "already running" in second.stderr and "kube-apiserver" in second.stderr
    assert k8s.kubeconfig.read_text() == before


def test_cluster_stop_where_nothing_runs(tmp_path: Path) -> None:
    out = hanlin("dev", "cluster", "stop", "--dir", str(tmp_path))
    assert out.returncode == 0 and "nothing running" in out.stdout


@pytest.mark.parametrize("kind", ["cluster", "s3"])
def test_missing_binary_says_how_to_build(tmp_path: Path, kind: str) -> None:
    env = dict(os.environ, HANLIN_CACHE=str(tmp_path / "empty-cache"))
    out = hanlin("dev", kind, "start", "--dir", str(tmp_path / "d"), env=env)
    assert out.returncode == 1
    assert "not found" in out.stderr and "scripts/build-binaries.sh" in out.stderr
    assert not (tmp_path / "d" / "state.json").exists()
