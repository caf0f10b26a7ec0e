"""The chart's RBAC is exactly what the operator needs, proven by running it under that identity.

`kubectl auth can-i --list` for the chart's ServiceAccount must equal the list
below (beyond what every authenticated user may do), and the real operator,
authenticated with a token of that ServiceAccount, must reconcile an example
(children, the per-workload Role it grants, status, events, kopf peering)
without a single RBAC denial. Its /metrics must expose the operator series the
alerts and dashboards use.

The operator runs cluster-wide, as the chart runs it, so it also sees other
tests' namespaces; a namespace being deleted answers writes with a 403 too
("unable to create new content in namespace ... because it is being
terminated"). That is not a missing permission, so only the API server's RBAC
denial of this ServiceAccount counts; the test proves on the live API that a
real denial reads that way.
"""

from __future__ import annotations

import base64
import os
import re
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client
from test_helm_chart import CHART, helm
from test_helm_promql import promql_expressions, series_names

from hanlin.dev.fixtures import K8s
from hanlin.dev.processes import free_port, terminate

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]
RELEASE = "rbac"

# resource -> verbs, as `kubectl auth can-i --list` prints them.
EXPECTED: dict[str, set[str]] = {
    **{f"{p}.hanlin.dev": {"get", "list", "watch"} for p in
       ("trainingjobs", "evalruns", "modeldeployments", "agentservices")},
    **{f"{p}.hanlin.dev/status": {"patch"} for p in
       ("trainingjobs", "evalruns", "modeldeployments", "agentservices")},
    "configmaps": {"get", "list", "watch", "create", "patch"},
    "services": {"create", "patch"},
    "serviceaccounts": {"create", "patch"},
    "roles.rbac.authorization.k8s.io": {"create", "patch"},
    "rolebindings.rbac.authorization.k8s.io": {"create", "patch"},
    "jobs.batch": {"list", "watch", "create", "patch"},
    "deployments.apps": {"list", "watch", "create", "patch"},
    "horizontalpodautoscalers.autoscaling": {"create", "patch", "delete"},
    "events": {"create"},
    "clusterkopfpeerings.kopf.dev": {"get", "list", "watch", "create", "patch"},
    "kopfpeerings.kopf.dev": {"get", "list", "watch", "create", "patch"},
    "namespaces": {"list", "watch"},
    "customresourcedefinitions.apiextensions.k8s.io": {"list", "watch"},
}  # fmt: skip

_ROW = re.compile(r"^(\S+)\s+\[(.*?)\]\s+\[(.*?)\]\s+\[(.*)\]$")


def rbac_denials(text: str, namespace: str, sa: str) -> list[str]:
    """The lines of `text` where the API server refused the ServiceAccount for lack of RBAC."""
    user = re.escape(f"system:serviceaccount:{namespace}:{sa}")
    # The API's message, as logged: inside a JSON or repr'd body its quotes come escaped.
    denial = re.compile(rf'is forbidden: User \\*"{user}\\*" cannot ')
    return [line for line in text.splitlines() if denial.search(line)]


def can_i_list(k8s: K8s, namespace: str, user: str) -> dict[str, set[str]]:
    """`kubectl auth can-i --list` as resource -> verbs (resource-name-less rows only)."""
    out = k8s.kubectl("auth", "can-i", "--list", f"--as={user}", "-n", namespace).stdout
    rows: dict[str, set[str]] = {}
    for line in out.splitlines()[1:]:
        if line[:1].isspace():
            continue  # a non-resource URL row: the Resources column is empty
        match = _ROW.match(line.strip())
        assert match, f"unparsed can-i row: {line!r}"
        resource, urls, names, verbs = match.groups()
        if urls or names:
            continue
        rows.setdefault(resource, set()).update(verbs.split())
    return rows


@pytest.fixture(scope="module")
def installed(k8s: K8s) -> Iterator[tuple[str, str]]:
    """The chart installed in a fresh namespace; yields (namespace, service account)."""
    core = client.CoreV1Api(k8s.api)
    namespace = "rbac-" + uuid.uuid4().hex[:8]
    core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=namespace)))
    helm(k8s, "install", RELEASE, str(CHART), "--namespace", namespace, "--take-ownership")
    k8s.kubectl("wait", "--for=condition=Established", "crd", "--all", "--timeout=60s")
    try:
        yield namespace, f"{RELEASE}-hanlin"
    finally:
        helm(k8s, "uninstall", RELEASE, "--namespace", namespace, check=False)
        core.delete_namespace(namespace)


def test_service_account_can_do_exactly_the_expected(k8s: K8s, installed: tuple[str, str]) -> None:
    namespace, sa = installed
    granted = can_i_list(k8s, namespace, f"system:serviceaccount:{namespace}:{sa}")
    # What every authenticated identity may do (discovery, self reviews) is not ours.
    baseline = can_i_list(k8s, namespace, f"system:serviceaccount:{namespace}:nobody")
    ours = {
        resource: verbs - baseline.get(resource, set())
        for resource, verbs in granted.items()
        if verbs - baseline.get(resource, set())
    }
    assert ours == EXPECTED


def _token_kubeconfig(k8s: K8s, namespace: str, sa: str, path: Path) -> Path:
    """A kubeconfig that authenticates as the ServiceAccount with a real bound token."""
    token = k8s.kubectl("create", "token", sa, "-n", namespace, "--duration=1h").stdout.strip()
    admin = yaml.safe_load(k8s.kubeconfig.read_text())
    cluster = admin["clusters"][0]["cluster"]
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "c", "cluster": cluster}],
        "users": [{"name": sa, "user": {"token": token}}],
        "contexts": [{"name": "c", "context": {"cluster": "c", "user": sa}}],
        "current-context": "c",
    }
    path.write_text(yaml.safe_dump(config))
    # the CA really is the cluster's: a request with it succeeds
    assert base64.b64decode(cluster["certificate-authority-data"])
    return path


def _wait(predicate: Any, timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.3)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


def reconcile_example(k8s: K8s, namespace: str) -> None:
    """Apply the LoRA example in `namespace`; wait for its Job, progress RoleBinding and phase."""
    example = yaml.safe_load((ROOT / "examples" / "trainingjob-sft-lora.yaml").read_text())
    name = example["metadata"]["name"]
    custom = client.CustomObjectsApi(k8s.api)
    custom.create_namespaced_custom_object(
        "hanlin.dev", "v1alpha1", namespace, "trainingjobs", example
    )
    batch = client.BatchV1Api(k8s.api)
    rbac = client.RbacAuthorizationV1Api(k8s.api)
    _wait(
        lambda: (
            batch.list_namespaced_job(namespace).items
            and rbac.list_namespaced_role_binding(
                namespace, label_selector="app.kubernetes.io/managed-by=hanlin-operator"
            ).items
        ),
        60,
        "the Job and the progress RoleBinding",
    )
    phase = _wait(
        lambda: (
            custom.get_namespaced_custom_object(
                "hanlin.dev", "v1alpha1", namespace, "trainingjobs", name
            )
            .get("status", {})
            .get("phase")
        ),
        60,
        "a status phase",
    )
    assert phase in {"Pending", "Running"}


def test_operator_reconciles_under_the_chart_identity(
    k8s: K8s, installed: tuple[str, str], tmp_path: Path
) -> None:
    namespace, sa = installed
    kubeconfig = _token_kubeconfig(k8s, namespace, sa, tmp_path / "sa.kubeconfig")
    log = tmp_path / "operator.log"
    port = free_port()
    env = {"KUBECONFIG": str(kubeconfig), "HANLIN_IMAGE": "hanlin/runtime:test"}
    cmd = [
        sys.executable, "-m", "hanlin.cli", "operator", "run",
        "--metrics-host", "127.0.0.1", "--metrics-port", str(port),
        # cluster-wide with peering, as the chart runs it (namespaces, CRDs, peering verbs)
        "--peering", f"rbac-{uuid.uuid4().hex[:6]}",
    ]  # fmt: skip
    with log.open("wb") as out:
        proc = subprocess.Popen(
            cmd, env={**os.environ, **env}, stdout=out, stderr=subprocess.STDOUT
        )
    try:
        reconcile_example(k8s, namespace)
        body = _wait(
            lambda: (
                (text := _scrape(port))
                and 'hanlin_operator_reconciles_total{kind="TrainingJob",result="ok"}' in text
                and text
            ),
            30,
            "a successful reconcile in /metrics",
        )
        exposed = {
            line.split("{")[0].split(" ")[0]
            for line in body.splitlines()
            if line and not line.startswith("#")
        }
        used = {s for expr in promql_expressions() for s in series_names(expr)}
        operator_series = {s for s in used if s.startswith("hanlin_operator_")}
        assert operator_series and operator_series <= exposed, operator_series - exposed
    finally:
        terminate(proc)
    text = log.read_text()
    denials = rbac_denials(text, namespace, sa)
    assert not denials, "\n".join(denials[:20])


def test_only_rbac_denials_count(k8s: K8s, installed: tuple[str, str], tmp_path: Path) -> None:
    """The pattern matches the API's RBAC refusal of this identity, not a terminating namespace's."""
    namespace, sa = installed
    from kubernetes import config

    kubeconfig = _token_kubeconfig(k8s, namespace, sa, tmp_path / "sa.kubeconfig")
    api = config.new_client_from_config(str(kubeconfig))  # type: ignore[no-untyped-call]
    core, as_sa = client.CoreV1Api(k8s.api), client.CoreV1Api(api)
    # A namespace kept terminating by a finalizer, as another test's may be.
    doomed = "doomed-" + uuid.uuid4().hex[:8]
    core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=doomed)))
    hold = client.V1ConfigMap(
        metadata=client.V1ObjectMeta(name="hold", finalizers=["hanlin.dev/test-hold"])
    )
    core.create_namespaced_config_map(doomed, hold)
    core.delete_namespace(doomed)
    try:
        with pytest.raises(client.ApiException) as refused:
            as_sa.list_namespaced_secret(namespace)  # not in the ClusterRole
        assert refused.value.status == 403
        # as the API says it and as a logged exception (a repr'd body: escaped quotes)
        assert rbac_denials(str(refused.value.body), namespace, sa)
        assert rbac_denials(repr(str(refused.value.body)), namespace, sa)

        def terminating_refusal() -> str:
            try:  # the SA may create ConfigMaps anywhere; the namespace refuses new content
                as_sa.create_namespaced_config_map(
                    doomed, client.V1ConfigMap(metadata=client.V1ObjectMeta(generate_name="x-"))
                )
            except client.ApiException as err:
                return str(err.body) if err.status == 403 else ""
            return ""

        body = _wait(terminating_refusal, 30, "a 403 from the terminating namespace")
        assert "being terminated" in body and not rbac_denials(body, namespace, sa), body
    finally:
        api.close()
        core.patch_namespaced_config_map("hold", doomed, {"metadata": {"finalizers": None}})


def _scrape(port: int) -> str:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as resp:
            return str(resp.read().decode())
    except OSError:
        return ""
