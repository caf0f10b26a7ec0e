"""Operator throughput: N TrainingJobs -> all their children, versus creating them directly.

Starts its own control plane, then measures in two fresh namespaces:

- floor: create the N TrainingJobs and then their children (the very manifests
  the operator builds) directly, with the same client and the same number of
  threads the operator uses;
- operator: `hanlin operator run` is started (and ready) first; create the N
  TrainingJobs and wait until every child exists.

Prints both times, the ratio (goal <= 2) and the operator's peak RSS (goal <= 300 MB).

    python bench/operator/bench_trainingjobs.py --n 1000
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
CHILDREN_PER_JOB = 7  # spec CM, progress CM, SA, Role, RoleBinding, Service, Job


def training_job(name: str, suspend: bool) -> dict[str, Any]:
    return {
        "apiVersion": "hanlin.dev/v1alpha1",
        "kind": "TrainingJob",
        "metadata": {"name": name},
        "spec": {
            "method": "sft",
            "model": {"uri": "s3://models/base"},
            "data": [{"uri": "s3://data/train.jsonl", "format": "alpaca"}],
            "hyperparameters": {"maxSteps": 10},
            "output": {"uri": f"s3://out/{name}"},
            "suspend": suspend,
        },
    }


def create_all(
    kube: Any, namespace: str, n: int, suspend: bool, workers: int
) -> list[dict[str, Any]]:
    from hanlin_operator.kube import path

    def one(i: int) -> dict[str, Any]:
        body = training_job(f"tj-{i:05d}", suspend)
        body["metadata"]["namespace"] = namespace
        url = path("hanlin.dev/v1alpha1", "TrainingJob", namespace)
        return kube._call("POST", url, body)

    with ThreadPoolExecutor(workers) as pool:
        return list(pool.map(one, range(n)))


MANAGED = "app.kubernetes.io/managed-by=hanlin-operator"


def count_children(kube: Any, namespace: str) -> int:
    selector = MANAGED
    total = 0
    for api_version, kind in (
        ("v1", "ConfigMap"),
        ("v1", "ServiceAccount"),
        ("rbac.authorization.k8s.io/v1", "Role"),
        ("rbac.authorization.k8s.io/v1", "RoleBinding"),
        ("v1", "Service"),
        ("batch/v1", "Job"),
    ):
        total += len(kube.list_objects(api_version, kind, namespace, selector))
    return total


def peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=1000, help="number of TrainingJobs")
    parser.add_argument("--workers", type=int, default=16, help="threads (floor and operator)")
    parser.add_argument(
        "--run-pods",
        action="store_true",
        help="do not suspend the Jobs (the Job controller creates pods)",
    )
    args = parser.parse_args()

    from kubernetes import config

    from hanlin.api import TrainingJob
    from hanlin.dev import cluster
    from hanlin.dev.paths import bin_dir
    from hanlin_operator.builders import BuildSettings
    from hanlin_operator.builders import training_job as builder
    from hanlin_operator.kube import Kube
    from hanlin_operator.reconcile import typed_resource

    suspend = not args.run_pods
    with tempfile.TemporaryDirectory() as tmp:
        started = cluster.start(Path(tmp))
        try:
            kubectl = [str(bin_dir() / "kubectl"), f"--kubeconfig={started.kubeconfig}"]
            subprocess.run(
                [*kubectl, "apply", "--server-side", "-f", str(ROOT / "crds")],
                check=True,
                capture_output=True,
            )
            subprocess.run(
                [*kubectl, "wait", "--for=condition=Established", "crd", "--all"],
                check=True,
                capture_output=True,
            )
            for ns in ("bench-floor", "bench-operator"):
                subprocess.run(
                    [*kubectl, "create", "namespace", ns], check=True, capture_output=True
                )
            api = config.new_client_from_config(config_file=str(started.kubeconfig))
            api.configuration.connection_pool_maxsize = 32
            api.rest_client.pool_manager.connection_pool_kw["maxsize"] = 32
            kube = Kube(api)

            # The floor: the same objects, created directly.
            t0 = time.perf_counter()
            created = create_all(kube, "bench-floor", args.n, suspend, args.workers)
            settings = BuildSettings()
            children: list[dict[str, Any]] = []
            for body in created:
                resource = typed_resource(body)
                assert isinstance(resource, TrainingJob)
                children += builder.build(resource, settings)

            def make(child: dict[str, Any]) -> None:
                if child["kind"] == "Job":
                    kube.ensure_job(child)
                else:
                    kube.apply(child)

            with ThreadPoolExecutor(args.workers) as pool:
                list(pool.map(make, children))
            floor = time.perf_counter() - t0
            assert count_children(kube, "bench-floor") == CHILDREN_PER_JOB * args.n

            # The operator.
            env = {**os.environ, "KUBECONFIG": str(started.kubeconfig)}
            log = Path(tmp) / "operator.log"
            with log.open("wb") as out:
                proc = subprocess.Popen(
                    [
                        sys.executable,
                        "-m",
                        "hanlin.cli",
                        "operator",
                        "run",
                        "--namespace",
                        "bench-operator",
                        "--standalone",
                        "--workers",
                        str(args.workers),
                        "--metrics-host",
                        "127.0.0.1",
                        "--metrics-port",
                        "18599",
                    ],
                    env=env,
                    stdout=out,
                    stderr=subprocess.STDOUT,
                )
            try:
                deadline = time.monotonic() + 60
                while time.monotonic() < deadline:
                    try:
                        urllib.request.urlopen("http://127.0.0.1:18599/healthz", timeout=1).read()
                        break
                    except OSError:
                        time.sleep(0.2)
                time.sleep(2)  # kopf's watches start a moment after the health server
                t0 = time.perf_counter()
                create_all(kube, "bench-operator", args.n, suspend, args.workers)
                want = CHILDREN_PER_JOB * args.n
                # The Job is each resource's last child: poll the Jobs only (lightly, so the
                # polling does not load the API server the operator is using), then check all.
                while True:
                    time.sleep(1.0)
                    jobs = kube.list_objects("batch/v1", "Job", "bench-operator", MANAGED)
                    if len(jobs) >= args.n and count_children(kube, "bench-operator") >= want:
                        break
                    if time.perf_counter() - t0 > 3600:
                        raise SystemExit("operator did not finish within an hour")
                operated = time.perf_counter() - t0
                rss = peak_rss_mb(proc.pid)
            finally:
                proc.terminate()
                proc.wait(timeout=30)
            api.close()
        finally:
            cluster.stop(Path(tmp))

    print(
        f"N={args.n} TrainingJobs, {CHILDREN_PER_JOB} children each, {args.workers} threads, suspended={suspend}"
    )
    print(f"floor (direct creation):   {floor:8.2f} s")
    print(f"operator (apply -> exist): {operated:8.2f} s")
    print(f"ratio operator/floor:      {operated / floor:8.2f}  (goal <= 2)")
    print(f"operator peak RSS:         {rss:8.1f} MB (goal <= 300)")


if __name__ == "__main__":
    main()
