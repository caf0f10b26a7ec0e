"""A namespaced install (rbac.scope=namespace): a Role in the watched namespace, nothing cluster-wide.

The chart renders and passes a server-side dry run; installed, its
ServiceAccount may do exactly the namespaced part of the cluster-wide list in
the watched namespace and nothing anywhere else (`kubectl auth can-i --list`);
and the real operator, run with `--namespace` under a token of that
ServiceAccount, reconciles an example there without an RBAC denial.
"""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from kubernetes import client
from test_helm_chart import CHART, helm, render
from test_helm_rbac import (
    EXPECTED,
    _token_kubeconfig,
    can_i_list,
    rbac_denials,
    reconcile_example,
)
from test_operator_kinds import crds  # noqa: F401 (a fixture)

from hanlin.dev.fixtures import K8s
from hanlin.dev.processes import free_port, terminate

pytestmark = pytest.mark.integration
RELEASE = "nsrbac"
CLUSTER_ONLY = {
    "clusterkopfpeerings.kopf.dev",
    "namespaces",
    "customresourcedefinitions.apiextensions.k8s.io",
}
EXPECTED_NAMESPACED = {r: v for r, v in EXPECTED.items() if r not in CLUSTER_ONLY}


def _values(watched: str) -> list[str]:
    return [
        "--set", "rbac.scope=namespace",
        "--set", f"operator.watchNamespace={watched}",
        "--set", "crds.install=false",
    ]  # fmt: skip


def _namespace(core: client.CoreV1Api, prefix: str) -> str:
    name = f"{prefix}-{uuid.uuid4().hex[:8]}"
    core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=name)))
    return name


@pytest.fixture(scope="module")
def installed(k8s: K8s, crds: None) -> Iterator[tuple[str, str, str]]:  # noqa: F811
    """The chart installed namespaced; yields (release namespace, watched namespace, SA)."""
    core = client.CoreV1Api(k8s.api)
    home, watched = _namespace(core, "nsop"), _namespace(core, "team")
    helm(k8s, "install", RELEASE, str(CHART), "--namespace", home, *_values(watched))
    try:
        yield home, watched, f"{RELEASE}-hanlin"
    finally:
        helm(k8s, "uninstall", RELEASE, "--namespace", home, check=False)
        core.delete_namespace(home)
        core.delete_namespace(watched)


def test_renders_a_role_and_nothing_cluster_scoped(k8s: K8s) -> None:
    docs = render(k8s, "--namespace", "hanlin-system", *_values("team-a"))
    rbac = {(d["kind"], d["metadata"].get("namespace")) for d in docs if "Role" in d["kind"]}
    assert rbac == {("Role", "team-a"), ("RoleBinding", "team-a")}
    cluster_scoped = {"ClusterRole", "ClusterRoleBinding", "CustomResourceDefinition"}
    assert not cluster_scoped & {d["kind"] for d in docs}
    (deployment,) = [d for d in docs if d["kind"] == "Deployment"]
    assert "--namespace=team-a" in deployment["spec"]["template"]["spec"]["containers"][0]["args"]
    # without the namespace to grant in, the chart refuses, naming the value
    result = helm(k8s, "template", "x", str(CHART), "--set", "rbac.scope=namespace", check=False)
    assert result.returncode != 0 and "operator.watchNamespace" in result.stderr


def test_server_side_dry_run(k8s: K8s) -> None:
    core = client.CoreV1Api(k8s.api)
    home, watched = _namespace(core, "nsdry"), _namespace(core, "nsdry")
    try:
        docs = render(k8s, "--namespace", home, *_values(watched))
        # kubectl -n refuses objects of another namespace: the Role's go to its own
        for where in (home, watched):
            batch = [d for d in docs if d["metadata"].get("namespace", home) == where]
            result = k8s.kubectl(
                "apply", "--server-side", "--dry-run=server", "--field-manager=helm-test",
                "-n", where, "-f", "-", input=yaml.safe_dump_all(batch), check=False,
            )  # fmt: skip
            assert result.returncode == 0, result.stderr
            assert result.stdout.count("(server dry run)") == len(batch) > 0
    finally:
        core.delete_namespace(home)
        core.delete_namespace(watched)


def _ours(k8s: K8s, namespace: str, home: str, sa: str) -> dict[str, set[str]]:
    """can-i --list for the ServiceAccount in NAMESPACE, less what any identity may do."""
    granted = can_i_list(k8s, namespace, f"system:serviceaccount:{home}:{sa}")
    baseline = can_i_list(k8s, namespace, f"system:serviceaccount:{home}:nobody")
    return {r: v - baseline.get(r, set()) for r, v in granted.items() if v - baseline.get(r, set())}


def test_service_account_can_do_exactly_the_namespaced_list(
    k8s: K8s, installed: tuple[str, str, str]
) -> None:
    home, watched, sa = installed
    assert _ours(k8s, watched, home, sa) == EXPECTED_NAMESPACED
    assert _ours(k8s, home, home, sa) == {}  # not even where it runs
    assert _ours(k8s, "default", home, sa) == {}


def test_operator_reconciles_in_its_namespace_without_a_denial(
    k8s: K8s, installed: tuple[str, str, str], tmp_path: Path
) -> None:
    home, watched, sa = installed
    kubeconfig = _token_kubeconfig(k8s, home, sa, tmp_path / "sa.kubeconfig")
    log = tmp_path / "operator.log"
    env = {**os.environ, "KUBECONFIG": str(kubeconfig), "HANLIN_IMAGE": "hanlin/runtime:test"}
    cmd = [
        sys.executable, "-m", "hanlin.cli", "operator", "run", "--namespace", watched,
        "--metrics-host", "127.0.0.1", "--metrics-port", str(free_port()),
        "--peering", f"ns-{uuid.uuid4().hex[:6]}",  # a KopfPeering in the watched namespace
    ]  # fmt: skip
    with log.open("wb") as out:
        proc = subprocess.Popen(cmd, env=env, stdout=out, stderr=subprocess.STDOUT)
    try:
        reconcile_example(k8s, watched)
        custom = client.CustomObjectsApi(k8s.api)
        peerings = custom.list_namespaced_custom_object("kopf.dev", "v1", watched, "kopfpeerings")
        assert peerings["items"], "the replicas peer in the watched namespace"
    finally:
        terminate(proc)
    text = log.read_text()
    denials = rbac_denials(text, home, sa)
    assert not denials, "\n".join(denials[:20])
    assert "Not enough permissions" not in text, text[-4000:]
