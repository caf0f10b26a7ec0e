"""The Helm chart against the real API server: lint, render, dry-run, install, upgrade, uninstall.

The control plane has no kubelet, so pods never run: these tests check what the
API server accepts and stores (and what kube-controller-manager does with it,
such as a new ReplicaSet on a rollout), not the operator's behaviour, which
test_helm_rbac.py runs under the chart's identity.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client

from hanlin.dev.fixtures import K8s
from hanlin.dev.paths import K8S_VERSION, cache_dir

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "helm" / "hanlin"
MONITORING_API = "monitoring.coreos.com/v1"

# Values sets rendered and dry-run applied: defaults, everything on, a namespaced
# operator without CRDs or RBAC of its own, and monitoring forced off.
VALUE_SETS: dict[str, list[str]] = {
    "defaults": [],
    "monitoring-on": [
        "--set", "monitoring.enabled=true",
        "--set", "monitoring.labels.release=kube-prometheus",
        "--set", "operator.storageSecret=hanlin-storage",
        "--set", "monitoring.grafanaDashboards.folder=LLM",
    ],
    "namespaced-external": [
        "--set", "operator.watchNamespace=team-a",
        "--set", "crds.install=false",
        "--set", "rbac.create=false",
        "--set", "serviceAccount.create=false",
        "--set", "serviceAccount.name=hanlin-existing",
        "--set", "operator.replicas=1",
        "--set", "metrics.service.enabled=false",
    ],
    "monitoring-off": ["--set", "monitoring.enabled=false", "--set", "crds.keep=false"],
}  # fmt: skip


def helm(k8s: K8s, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    """Run the built helm against the test cluster."""
    result = subprocess.run(
        [str(k8s.bin / "helm"), f"--kubeconfig={k8s.kubeconfig}", *args],
        capture_output=True,
        text=True,
        timeout=180,
    )
    if check and result.returncode != 0:
        raise AssertionError(f"helm {' '.join(args)} failed:\n{result.stderr}")
    return result


def render(k8s: K8s, *args: str, chart: Path = CHART) -> list[dict[str, Any]]:
    """`helm template` as documents (against the cluster's Kubernetes version)."""
    out = helm(k8s, "template", "hanlin", str(chart), "--kube-version", K8S_VERSION, *args).stdout
    return [d for d in yaml.safe_load_all(out) if d]


def kinds(docs: list[dict[str, Any]]) -> list[str]:
    return sorted(d["kind"] for d in docs)


def monitoring_crd_dir() -> Path:
    """The prometheus-operator CRDs from its Go module (fetched once by the script)."""
    subprocess.run(
        ["bash", str(ROOT / "scripts" / "build-promtool.sh"), "crds"],
        check=True,
        capture_output=True,
        timeout=300,
    )
    dirs = sorted((cache_dir() / "prometheus-operator").glob("*/crds"))
    assert dirs, "scripts/build-promtool.sh crds left no CRDs"
    return dirs[-1]


@pytest.fixture(scope="module")
def monitoring_crds(k8s: K8s) -> None:
    """ServiceMonitor, PodMonitor and PrometheusRule served by the test API server."""
    directory = monitoring_crd_dir()
    for name in ("servicemonitors", "podmonitors", "prometheusrules"):
        k8s.kubectl(
            "apply", "--server-side", "-f", str(directory / f"monitoring.coreos.com_{name}.yaml")
        )
    k8s.kubectl(
        "wait", "--for=condition=Established", "--timeout=60s",
        "crd/servicemonitors.monitoring.coreos.com",
        "crd/podmonitors.monitoring.coreos.com",
        "crd/prometheusrules.monitoring.coreos.com",
    )  # fmt: skip


@pytest.fixture
def namespace(k8s: K8s) -> Iterator[str]:
    core = client.CoreV1Api(k8s.api)
    name = "helm-" + uuid.uuid4().hex[:8]
    core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=name)))
    yield name
    core.delete_namespace(name)


def test_lint_strict(k8s: K8s) -> None:
    namespaced_rbac = ["--set", "rbac.scope=namespace", "--set", "operator.watchNamespace=team-a"]
    for extra in (
        [],
        ["--set", "monitoring.enabled=true"],
        VALUE_SETS["namespaced-external"],
        namespaced_rbac,
    ):
        result = helm(k8s, "lint", "--strict", "--kube-version", K8S_VERSION, str(CHART), *extra)
        assert "0 chart(s) failed" in result.stdout, result.stdout


def test_chart_crds_equal_the_generated_ones() -> None:
    """files/crds is `hanlin crds generate` output plus kopf's peering CRDs, unedited."""
    from hanlin_operator.peering import peering_crds

    subprocess.run(
        ["hanlin", "crds", "check", "--dir", str(CHART / "files" / "crds")],
        check=True,
        capture_output=True,
    )
    for name in ("trainingjobs", "evalruns", "modeldeployments", "agentservices"):
        ours = (CHART / "files" / "crds" / f"hanlin.dev_{name}.yaml").read_text()
        assert ours == (ROOT / "crds" / f"hanlin.dev_{name}.yaml").read_text(), (
            f"{name}: run `hanlin crds generate --dir helm/hanlin/files/crds`"
        )
    kopf = list(
        yaml.safe_load_all((CHART / "files" / "crds" / "kopf.dev_peerings.yaml").read_text())
    )
    assert [d for d in kopf if d] == peering_crds(), "run `hanlin operator peering-crds`"


def test_monitoring_defaults_follow_the_api(k8s: K8s) -> None:
    monitoring = {"ServiceMonitor", "PodMonitor", "PrometheusRule"}
    plain = render(k8s)
    assert not monitoring & set(kinds(plain))
    assert not [
        d for d in plain if d["kind"] == "ConfigMap" and "dashboard" in d["metadata"]["name"]
    ]
    with_api = render(k8s, "--api-versions", MONITORING_API)
    assert monitoring <= set(kinds(with_api))
    dashboards = [d for d in with_api if "grafana_dashboard" in d["metadata"].get("labels", {})]
    assert len(dashboards) == 5
    for board in dashboards:
        (text,) = board["data"].values()
        assert json.loads(text)["panels"]
    forced_off = render(k8s, "--api-versions", MONITORING_API, "--set", "monitoring.enabled=false")
    assert not monitoring & set(kinds(forced_off))


def test_values_schema_names_the_bad_field(k8s: K8s) -> None:
    for setting, field in (
        ("operator.replicas=-1", "replicas"),
        ("monitoring.prometheusRule.kvCacheUsage=2", "kvCacheUsage"),
        ("operator.peering=Not_A_Name", "peering"),
        ("operator.nosuchkey=1", "nosuchkey"),
    ):
        result = helm(
            k8s, "template", "x", str(CHART), "--kube-version", K8S_VERSION, "--set", setting,
            check=False,
        )  # fmt: skip
        assert result.returncode != 0, setting
        assert field in result.stderr, result.stderr


@pytest.mark.parametrize("values", sorted(VALUE_SETS))
def test_rendered_chart_passes_server_side_dry_run(
    k8s: K8s, monitoring_crds: None, namespace: str, values: str
) -> None:
    docs = render(
        k8s, "--namespace", namespace, "--api-versions", MONITORING_API, *VALUE_SETS[values]
    )
    assert "Deployment" in kinds(docs)
    manifest = yaml.safe_dump_all(docs)
    result = k8s.kubectl(
        "apply", "--server-side", "--force-conflicts", "--dry-run=server",
        "--field-manager=helm-test", "-n", namespace, "-f", "-",
        input=manifest, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert result.stdout.count("(server dry run)") == len(docs)


def _deployment(k8s: K8s, namespace: str, name: str) -> Any:
    return client.AppsV1Api(k8s.api).read_namespaced_deployment(name, namespace)


def _crd(k8s: K8s, name: str) -> Any:
    return client.ApiextensionsV1Api(k8s.api).read_custom_resource_definition(name)


def _changed_chart(tmp_path: Path) -> Path:
    """A copy of the chart whose TrainingJob CRD has one more printer column (a CRD change)."""
    chart = tmp_path / "hanlin"
    shutil.copytree(CHART, chart)
    path = chart / "files" / "crds" / "hanlin.dev_trainingjobs.yaml"
    crd = yaml.safe_load(path.read_text())
    crd["spec"]["versions"][0]["additionalPrinterColumns"].append(
        {
            "name": "Node Count",
            "type": "integer",
            "jsonPath": ".spec.resources.nodes",
            "priority": 1,
        }
    )
    path.write_text(yaml.safe_dump(crd, sort_keys=False))
    return chart


def test_install_upgrade_uninstall(
    k8s: K8s, monitoring_crds: None, namespace: str, tmp_path: Path
) -> None:
    release = "hl"
    name = f"{release}-hanlin-operator"
    base = ["--namespace", namespace, "--kube-version", K8S_VERSION]
    # --take-ownership: other tests of this session may have applied the CRDs with kubectl,
    # exactly as a user who installed them by hand before adopting the chart.
    notes = helm(k8s, "install", release, str(CHART), *base[:2], "--take-ownership").stdout
    # NOTES.txt: what to apply next, and that monitoring was found and set up
    assert "kubectl apply -f examples/pipeline.yaml" in notes
    assert f'PrometheusRule "{release}-hanlin"' in notes
    deployment = _deployment(k8s, namespace, name)
    assert deployment.spec.replicas == 2
    pod = deployment.spec.template.spec
    container = pod.containers[0]
    assert container.security_context.read_only_root_filesystem
    assert container.security_context.capabilities.drop == ["ALL"]
    assert pod.security_context.run_as_non_root
    assert container.liveness_probe.http_get.path == "/healthz"
    crd = _crd(k8s, "trainingjobs.hanlin.dev")
    assert crd.metadata.annotations["helm.sh/resource-policy"] == "keep"
    # Monitoring was discovered from the API (no values set).
    custom = client.CustomObjectsApi(k8s.api)
    rules = custom.list_namespaced_custom_object(
        "monitoring.coreos.com", "v1", namespace, "prometheusrules"
    )["items"]
    assert [r["metadata"]["name"] for r in rules] == [f"{release}-hanlin"]
    checksum = deployment.spec.template.metadata.annotations["checksum/config"]
    generation = deployment.metadata.generation

    # A changed value that lives in the ConfigMap rolls the pods through the checksum.
    helm(k8s, "upgrade", release, str(CHART), *base[:2], "--set", "operator.storageSecret=s3")
    rolled = _deployment(k8s, namespace, name)
    assert rolled.spec.template.metadata.annotations["checksum/config"] != checksum
    assert rolled.metadata.generation == generation + 1
    apps = client.AppsV1Api(k8s.api)
    deadline = time.monotonic() + 30
    while len(apps.list_namespaced_replica_set(namespace).items) < 2:
        # kube-controller-manager starts the rollout with a second ReplicaSet
        assert time.monotonic() < deadline, "the upgrade did not start a rollout"
        time.sleep(0.2)

    # The CRD upgrade story: a chart whose CRD changed upgrades the CRD in place.
    changed = _changed_chart(tmp_path)
    helm(k8s, "upgrade", release, str(changed), *base[:2], "--reuse-values")
    columns = [
        c.name
        for c in _crd(k8s, "trainingjobs.hanlin.dev").spec.versions[0].additional_printer_columns
    ]
    assert "Node Count" in columns
    helm(k8s, "upgrade", release, str(CHART), *base[:2], "--reuse-values")
    columns = [
        c.name
        for c in _crd(k8s, "trainingjobs.hanlin.dev").spec.versions[0].additional_printer_columns
    ]
    assert "Node Count" not in columns

    helm(k8s, "uninstall", release, *base[:2], "--wait", "--timeout", "60s")
    with pytest.raises(client.ApiException) as gone:
        _deployment(k8s, namespace, name)
    assert gone.value.status == 404
    # The CRDs, and so every user's resources, survive the uninstall.
    assert _crd(k8s, "trainingjobs.hanlin.dev").metadata.name == "trainingjobs.hanlin.dev"
    rbac = client.RbacAuthorizationV1Api(k8s.api)
    assert not [
        r
        for r in rbac.list_cluster_role().items
        if r.metadata.name.startswith(f"{release}-hanlin-{namespace}")
    ]


def test_rendered_crds_are_the_files_plus_labels_and_keep(k8s: K8s) -> None:
    """Templating a CRD (fromYaml/toYaml) changes nothing but metadata: no number or key drift."""
    rendered = {d["metadata"]["name"]: d for d in render(k8s, "--show-only", "templates/crds.yaml")}
    sources = [
        d
        for path in sorted((CHART / "files" / "crds").glob("*.yaml"))
        for d in yaml.safe_load_all(path.read_text())
        if d
    ]
    assert len(rendered) == len(sources) == 6
    for source in sources:
        crd = rendered[source["metadata"]["name"]]
        meta = crd["metadata"]
        assert meta["annotations"]["helm.sh/resource-policy"] == "keep"
        assert meta["labels"]["app.kubernetes.io/part-of"] == "hanlin"
        stripped = {**crd, "metadata": {"name": meta["name"]}}
        assert stripped == source
    without = render(k8s, "--set", "crds.install=false")
    assert "CustomResourceDefinition" not in kinds(without)
