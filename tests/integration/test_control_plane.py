"""The control plane the tests use is a real one: API server, controllers, RBAC."""

from __future__ import annotations

import subprocess
import threading
import time
import uuid

import pytest
from kubernetes import client, watch
from kubernetes.client.rest import ApiException

from hanlin.dev.fixtures import K8s

pytestmark = pytest.mark.integration


def _wait(predicate, timeout: float = 60.0, what: str = "condition"):  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.25)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


@pytest.fixture
def namespace(k8s: K8s):  # type: ignore[no-untyped-def]
    core = client.CoreV1Api(k8s.api)
    name = "t-" + uuid.uuid4().hex[:8]
    core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=name)))
    yield name
    core.delete_namespace(name)


def test_configmap_watch_sees_events(k8s: K8s, namespace: str) -> None:
    core = client.CoreV1Api(k8s.api)
    seen: list[tuple[str, str]] = []
    ready = threading.Event()

    def watcher() -> None:
        w = watch.Watch()
        ready.set()
        for event in w.stream(core.list_namespaced_config_map, namespace, timeout_seconds=30):
            seen.append((event["type"], event["object"].metadata.name))
            if ("DELETED", "cm1") in seen:
                w.stop()

    thread = threading.Thread(target=watcher, daemon=True)
    thread.start()
    ready.wait()
    time.sleep(0.5)
    body = client.V1ConfigMap(metadata=client.V1ObjectMeta(name="cm1"), data={"k": "v1"})
    core.create_namespaced_config_map(namespace, body)
    core.patch_namespaced_config_map("cm1", namespace, {"data": {"k": "v2"}})
    assert core.read_namespaced_config_map("cm1", namespace).data == {"k": "v2"}
    core.delete_namespaced_config_map("cm1", namespace)
    thread.join(timeout=30)
    assert ("ADDED", "cm1") in seen
    assert ("MODIFIED", "cm1") in seen
    assert ("DELETED", "cm1") in seen


def _deployment(name: str) -> client.V1Deployment:
    labels = {"app": name}
    return client.V1Deployment(
        metadata=client.V1ObjectMeta(name=name),
        spec=client.V1DeploymentSpec(
            replicas=1,
            selector=client.V1LabelSelector(match_labels=labels),
            template=client.V1PodTemplateSpec(
                metadata=client.V1ObjectMeta(labels=labels),
                spec=client.V1PodSpec(containers=[client.V1Container(name="c", image="busybox")]),
            ),
        ),
    )


def test_deployment_gets_replicaset_and_gc_deletes_dependants(k8s: K8s, namespace: str) -> None:
    apps = client.AppsV1Api(k8s.api)
    core = client.CoreV1Api(k8s.api)
    dep = apps.create_namespaced_deployment(namespace, _deployment("web"))

    # kube-controller-manager's deployment controller makes a ReplicaSet owned by it.
    rs = _wait(
        lambda: apps.list_namespaced_replica_set(namespace, label_selector="app=web").items,
        what="a ReplicaSet for the Deployment",
    )[0]
    assert rs.metadata.owner_references[0].uid == dep.metadata.uid

    # A ConfigMap owned by the Deployment is collected when the owner goes.
    owner = client.V1OwnerReference(
        api_version="apps/v1", kind="Deployment", name="web", uid=dep.metadata.uid
    )
    core.create_namespaced_config_map(
        namespace,
        client.V1ConfigMap(metadata=client.V1ObjectMeta(name="owned", owner_references=[owner])),
    )
    apps.delete_namespaced_deployment(
        "web", namespace, body=client.V1DeleteOptions(propagation_policy="Background")
    )

    def gone() -> bool:
        try:
            core.read_namespaced_config_map("owned", namespace)
        except ApiException as exc:
            return exc.status == 404
        return False

    _wait(gone, what="garbage collection of the owned ConfigMap")
    _wait(
        lambda: not apps.list_namespaced_replica_set(namespace, label_selector="app=web").items,
        what="garbage collection of the ReplicaSet",
    )


def test_rbac_refuses_an_unprivileged_user(k8s: K8s, namespace: str) -> None:
    from kubernetes import config

    api = config.new_client_from_config(config_file=str(k8s.kubeconfig))
    api.set_default_header("Impersonate-User", "nobody@example.com")
    try:
        with pytest.raises(ApiException) as err:
            client.CoreV1Api(api).list_namespaced_config_map(namespace)
        assert err.value.status == 403
        assert "nobody@example.com" in err.value.body
    finally:
        api.close()


def test_kubectl_and_helm_run_against_it(k8s: K8s, namespace: str) -> None:
    out = k8s.kubectl("get", "namespace", namespace, "-o", "jsonpath={.status.phase}")
    assert out.stdout == "Active"
    version = k8s.kubectl("version", "-o", "json").stdout
    assert '"serverVersion"' in version and '"gitVersion": "v1.' in version
    helm = subprocess.run(
        [str(k8s.bin / "helm"), "version", "--short"],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    assert helm.stdout.startswith("v3.")
    listing = subprocess.run(
        [str(k8s.bin / "helm"), "list", "-n", namespace, "--kubeconfig", str(k8s.kubeconfig)],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    assert listing.stdout.startswith("NAME")
