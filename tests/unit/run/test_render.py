"""Local equivalents of the plan's symbolic values."""

from __future__ import annotations

from pathlib import Path

import pytest

from hanlin.plan import EnvVar, IndexValue, LeaderAddress, Port, Scratch, SecretValue, WorkloadPlan
from hanlin.run.render import LocalPorts, RenderError, expand, render, secret_env_name


def test_expand_like_kubernetes() -> None:
    env = {"A": "1", "B": "x"}
    assert expand("$(A)-$(B)", env) == "1-x"
    assert expand("$$(A)", env) == "$(A)"
    assert expand("$(MISSING)", env) == "$(MISSING)"


def _plan(env: tuple[EnvVar, ...], replicas: int = 2) -> WorkloadPlan:
    return WorkloadPlan(
        name="w",
        role="eval",
        shape="job",
        command=("hanlin", "eval", "--spec", "/etc/hanlin/spec.yaml", "--shard", "$(I)/2"),
        env=env,
        replicas=replicas,
        ports=(Port("p", 29500),),
        scratch=(Scratch("home", "/home/hanlin"), Scratch("shm", "/dev/shm", memory=True)),
    )


def test_index_leader_scratch_port_and_secret(tmp_path: Path) -> None:
    plan = _plan(
        (
            EnvVar("I", IndexValue()),
            EnvVar("KEY", "shard-$(I)"),
            EnvVar("LEADER", LeaderAddress()),
            EnvVar("HF_HOME", "/home/hanlin/.cache/hf"),
            EnvVar("PORT", "29500"),
            EnvVar("TOKEN", SecretValue("api-key", "token")),
        )
    )
    ports = LocalPorts()
    procs = render(plan, tmp_path / "spec.yaml", tmp_path, ports, {"API_KEY_TOKEN": "s3cret"})
    assert [p.argv[-1] for p in procs] == ["0/2", "1/2"]
    assert all(p.argv[3] == str(tmp_path / "spec.yaml") for p in procs)
    assert procs[1].env["KEY"] == "shard-1"
    assert procs[0].env["LEADER"] == "127.0.0.1"
    assert procs[0].env["HF_HOME"] == str(tmp_path / "scratch" / "home" / ".cache" / "hf")
    assert (tmp_path / "scratch" / "home").is_dir()
    assert not (tmp_path / "scratch" / "shm").exists()
    assert procs[0].env["PORT"] == str(ports.local(29500)) != "29500"
    assert procs[0].env["TOKEN"] == "s3cret"


def test_missing_secret_names_the_variable(tmp_path: Path) -> None:
    plan = _plan((EnvVar("TOKEN", SecretValue("api-key", "token")),))
    assert secret_env_name("api-key", "token") == "API_KEY_TOKEN"
    with pytest.raises(RenderError, match="API_KEY_TOKEN"):
        render(plan, tmp_path / "s.yaml", tmp_path, LocalPorts(), {})
