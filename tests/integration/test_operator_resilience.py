"""The operator under stress: kills mid-reconcile, two replicas, errors, metrics."""

from __future__ import annotations

import signal
import subprocess
import time
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client
from test_operator_kinds import (
    GROUP,
    VERSION,
    complete_job,
    crds,  # noqa: F401 (a fixture)
    start_operator,
    status_of,
    stop,
    wait_for,
)

from hanlin.dev.fixtures import K8s

pytestmark = pytest.mark.integration
MANAGED = "app.kubernetes.io/managed-by=hanlin-operator"


@pytest.fixture
def ns(k8s: K8s, crds: None) -> Iterator[str]:  # noqa: F811
    core = client.CoreV1Api(k8s.api)
    name = "res-" + uuid.uuid4().hex[:8]
    core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=name)))
    yield name
    core.delete_namespace(name)


def tj(name: str, **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "hanlin.dev/v1alpha1",
        "kind": "TrainingJob",
        "metadata": {"name": name},
        "spec": {
            "method": "sft",
            "model": {"uri": "s3://models/base"},
            "data": [{"uri": "s3://data/train.jsonl"}],
            "output": {"uri": f"s3://out/{name}"},
            **spec,
        },
    }


def create(k8s: K8s, ns: str, body: dict[str, Any]) -> None:
    client.CustomObjectsApi(k8s.api).create_namespaced_custom_object(
        GROUP, VERSION, ns, "trainingjobs", body
    )


def children(k8s: K8s, ns: str) -> list[Any]:
    core, batch = client.CoreV1Api(k8s.api), client.BatchV1Api(k8s.api)
    rbac = client.RbacAuthorizationV1Api(k8s.api)
    out: list[Any] = []
    for lister in (
        core.list_namespaced_config_map,
        core.list_namespaced_service,
        core.list_namespaced_service_account,
        rbac.list_namespaced_role,
        rbac.list_namespaced_role_binding,
        batch.list_namespaced_job,
    ):
        out += lister(ns, label_selector=MANAGED).items
    return out


def log_of(tmp_path: Path, name: str) -> Path:
    return tmp_path / f"{name}.log"


def test_kills_mid_reconcile_leave_no_duplicates_orphans_or_regressions(
    k8s: K8s, ns: str, tmp_path: Path
) -> None:
    n = 12
    log = log_of(tmp_path, "op")
    proc = start_operator(k8s, "--namespace", ns, "--standalone", "--metrics-port", "0", log=log)
    create(k8s, ns, tj("done-0"))
    wait_for(
        lambda: status_of(k8s, "trainingjobs", ns, "done-0").get("phase") == "Pending",
        what="done-0 Pending",
    )
    complete_job(k8s, ns, "done-0")
    finished = wait_for(
        lambda: (
            (s := status_of(k8s, "trainingjobs", ns, "done-0")).get("phase") == "Succeeded" and s
        ),
        what="done-0 Succeeded",
    )
    for i in range(n):
        create(k8s, ns, tj(f"tj-{i:02d}"))
    # Kill hard (no cleanup) at several points while it works through the batch.
    for delay in (0.3, 0.8, 1.5):
        time.sleep(delay)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        proc = start_operator(
            k8s, "--namespace", ns, "--standalone", "--metrics-port", "0", log=log
        )
    try:
        want = 7 * (n + 1)
        wait_for(lambda: len(children(k8s, ns)) >= want, timeout=90, what="all children")
        time.sleep(2)  # anything extra would show up now
        objs = children(k8s, ns)
        keys = [
            (o.kind if hasattr(o, "kind") and o.kind else type(o).__name__, o.metadata.name)
            for o in objs
        ]
        assert len(keys) == len(set(keys)) == want
        owners = {
            o["metadata"]["uid"]
            for o in client.CustomObjectsApi(k8s.api).list_namespaced_custom_object(
                GROUP, VERSION, ns, "trainingjobs"
            )["items"]
        }
        for o in objs:
            refs = o.metadata.owner_references or []
            assert len(refs) == 1 and refs[0].uid in owners, o.metadata.name
        after = status_of(k8s, "trainingjobs", ns, "done-0")
        assert (
            after["phase"] == "Succeeded" and after["completionTime"] == finished["completionTime"]
        )
        assert after["observedGeneration"] == finished["observedGeneration"]
        for i in range(n):
            st = wait_for(
                lambda i=i: status_of(k8s, "trainingjobs", ns, f"tj-{i:02d}"), what="status"
            )
            assert st["phase"] == "Pending" and st["observedGeneration"] == 1
    finally:
        stop(proc)


def reconciles(port: int) -> float:
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith("hanlin_operator_reconciles_total{")
    )


def test_two_replicas_only_one_acts_and_the_other_takes_over(
    k8s: K8s, ns: str, tmp_path: Path
) -> None:
    peering = "p-" + uuid.uuid4().hex[:6]
    common = ["--namespace", ns, "--peering", peering, "--metrics-host", "127.0.0.1"]
    low = start_operator(
        k8s, *common, "--priority", "10", "--metrics-port", "18491", log=log_of(tmp_path, "low")
    )
    high = start_operator(
        k8s, *common, "--priority", "20", "--metrics-port", "18492", log=log_of(tmp_path, "high")
    )
    try:
        wait_for(lambda: _healthy(18491) and _healthy(18492), what="both replicas up")
        time.sleep(3)  # peering: the lower one sees the higher one and pauses
        create(k8s, ns, tj("one"))
        wait_for(
            lambda: status_of(k8s, "trainingjobs", ns, "one").get("phase") == "Pending",
            what="one reconciled",
        )
        time.sleep(1)
        assert reconciles(18492) >= 1 and reconciles(18491) == 0
        stop(high)  # a clean exit removes its peering record
        create(k8s, ns, tj("two"))
        wait_for(
            lambda: status_of(k8s, "trainingjobs", ns, "two").get("phase") == "Pending",
            timeout=60,
            what="takeover",
        )
        assert reconciles(18491) >= 1
    finally:
        stop(low)
        stop(high)


def _healthy(port: int) -> bool:
    try:
        return urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2).status == 200
    except OSError:
        return False


def test_permanent_error_shows_in_condition_and_event_and_metrics(
    k8s: K8s, ns: str, tmp_path: Path
) -> None:
    proc = start_operator(
        k8s,
        "--namespace",
        ns,
        "--standalone",
        "--metrics-port",
        "18493",
        log=log_of(tmp_path, "err"),
    )
    try:
        # The CRD's quantity pattern lets `1.2.3` through; the Job API refuses it: that will not heal.
        create(k8s, ns, tj("bad", resources={"cpu": "1.2.3"}))
        st = wait_for(
            lambda: (s := status_of(k8s, "trainingjobs", ns, "bad")).get("phase") == "Failed" and s,
            what="Failed",
        )
        cond = next(c for c in st["conditions"] if c["type"] == "Reconciled")
        assert cond["status"] == "False" and cond["reason"] == "PermanentError"
        # The event is posted right after the status patch: wait for it rather than race it.
        wait_for(
            lambda: any(
                e.reason == "PermanentError" and e.type == "Warning"
                for e in client.CoreV1Api(k8s.api)
                .list_namespaced_event(ns, field_selector="involvedObject.name=bad")
                .items
            ),
            what="a PermanentError Warning event",
        )
        failed_line = 'hanlin_operator_resources{kind="TrainingJob",phase="Failed"} 1.0'
        text = wait_for(
            lambda: (
                (
                    t := urllib.request.urlopen("http://127.0.0.1:18493/metrics", timeout=5)
                    .read()
                    .decode()
                )
                and failed_line in t
                and t
            ),
            what="the Failed phase in the metrics",
        )
        assert 'hanlin_operator_reconciles_total{kind="TrainingJob",result="error"}' in text
        assert "hanlin_operator_reconcile_duration_seconds_bucket" in text
        secret_free = subprocess.run(
            ["grep", "-c", "apiKey", str(log_of(tmp_path, "err"))], capture_output=True, text=True
        )
        assert secret_free.stdout.strip() in ("0", "")
    finally:
        stop(proc)
