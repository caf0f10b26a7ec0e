"""A real Kubernetes control plane on loopback, as envtest runs one.

etcd, kube-apiserver (TLS, RBAC, client-cert admin, service-account keys),
kube-controller-manager (garbage collection, Deployments, Jobs) and kube-scheduler,
each on a free 127.0.0.1 port. There is no kubelet: pods are scheduled but never run,
which is what tests of an operator want.
"""

from __future__ import annotations

import base64
import ssl
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import yaml

from hanlin.dev.paths import binary
from hanlin.dev.pki import Pki, write_pki
from hanlin.dev.processes import ProcessGroup, alive, free_port, stop

SERVICE_CIDR = "10.0.0.0/24"


@dataclass(frozen=True)
class Cluster:
    """A started control plane."""

    directory: Path
    kubeconfig: Path
    server: str
    pki: Pki


class StartupError(RuntimeError):
    """A component exited or never became ready; the message carries its log tail."""


def _kubeconfig(path: Path, server: str, pki: Pki) -> None:
    def b64(p: Path) -> str:
        return base64.b64encode(p.read_bytes()).decode()

    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {
                "name": "hanlin-dev",
                "cluster": {"server": server, "certificate-authority-data": b64(pki.ca_cert)},
            }
        ],
        "users": [
            {
                "name": "hanlin-admin",
                "user": {
                    "client-certificate-data": b64(pki.admin_cert),
                    "client-key-data": b64(pki.admin_key),
                },
            }
        ],
        "contexts": [
            {"name": "hanlin-dev", "context": {"cluster": "hanlin-dev", "user": "hanlin-admin"}}
        ],
        "current-context": "hanlin-dev",
    }
    path.write_text(yaml.safe_dump(config))
    path.chmod(0o600)


def _wait_ready(group: ProcessGroup, name: str, url: str, pki: Pki, timeout: float) -> None:
    ctx = ssl.create_default_context(cafile=str(pki.ca_cert))
    ctx.load_cert_chain(str(pki.admin_cert), str(pki.admin_key))
    deadline = time.monotonic() + timeout
    last = ""
    while time.monotonic() < deadline:
        proc_pid = group.pids[name]
        try:
            with urllib.request.urlopen(url, context=ctx, timeout=5) as resp:
                if resp.status == 200:
                    return
        except (urllib.error.URLError, OSError) as exc:
            last = str(exc)
        if not alive(proc_pid):
            raise StartupError(f"{name} exited during startup:\n{group.tail(name)}")
        time.sleep(0.25)
    raise StartupError(
        f"{name} not ready at {url} after {timeout:.0f}s ({last}):\n{group.tail(name)}"
    )


def _wait_etcd(group: ProcessGroup, port: int, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2) as resp:
                if resp.status == 200:
                    return
        except (urllib.error.URLError, OSError):
            time.sleep(0.2)
    raise StartupError(f"etcd not healthy after {timeout:.0f}s:\n{group.tail('etcd')}")


def start(directory: Path, *, timeout: float = 120.0, controllers: bool = True) -> Cluster:
    """Start the control plane in DIR and return once /readyz answers."""
    directory = Path(directory).resolve()
    group = ProcessGroup(directory, "cluster")
    group.check_not_running()
    # Resolve every binary before starting anything, so a missing one fails cleanly.
    bins = {
        name: binary(name)
        for name in ("etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler")
    }
    directory.mkdir(parents=True, exist_ok=True)
    pki = write_pki(directory / "pki")
    etcd_port, etcd_peer, api_port = free_port(), free_port(), free_port()
    server = f"https://127.0.0.1:{api_port}"
    kubeconfig = directory / "kubeconfig"
    _kubeconfig(kubeconfig, server, pki)
    group.info = {"server": server, "kubeconfig": str(kubeconfig)}
    try:
        group.spawn(
            "etcd",
            [
                bins["etcd"],
                "--data-dir", directory / "etcd",
                "--listen-client-urls", f"http://127.0.0.1:{etcd_port}",
                "--advertise-client-urls", f"http://127.0.0.1:{etcd_port}",
                "--listen-peer-urls", f"http://127.0.0.1:{etcd_peer}",
                "--initial-advertise-peer-urls", f"http://127.0.0.1:{etcd_peer}",
                "--initial-cluster", f"default=http://127.0.0.1:{etcd_peer}",
                # Test data is disposable; fsync dominates etcd latency on small disks.
                "--unsafe-no-fsync",
            ],
        )  # fmt: skip
        _wait_etcd(group, etcd_port, timeout)
        group.spawn(
            "kube-apiserver",
            [
                bins["kube-apiserver"],
                f"--etcd-servers=http://127.0.0.1:{etcd_port}",
                "--bind-address=127.0.0.1",
                "--advertise-address=127.0.0.1",
                f"--secure-port={api_port}",
                f"--tls-cert-file={pki.serving_cert}",
                f"--tls-private-key-file={pki.serving_key}",
                f"--client-ca-file={pki.ca_cert}",
                "--authorization-mode=RBAC",
                f"--service-cluster-ip-range={SERVICE_CIDR}",
                "--service-account-issuer=https://kubernetes.default.svc.cluster.local",
                f"--service-account-key-file={pki.sa_pub}",
                f"--service-account-signing-key-file={pki.sa_key}",
                "--allow-privileged=true",
                f"--cert-dir={directory / 'pki'}",
            ],
        )
        _wait_ready(group, "kube-apiserver", f"{server}/readyz", pki, timeout)
        if controllers:
            group.spawn(
                "kube-controller-manager",
                [
                    bins["kube-controller-manager"],
                    f"--kubeconfig={kubeconfig}",
                    f"--authentication-kubeconfig={kubeconfig}",
                    f"--authorization-kubeconfig={kubeconfig}",
                    "--leader-elect=false",
                    "--bind-address=127.0.0.1",
                    f"--secure-port={free_port()}",
                    f"--service-account-private-key-file={pki.sa_key}",
                    f"--root-ca-file={pki.ca_cert}",
                    f"--service-cluster-ip-range={SERVICE_CIDR}",
                    "--use-service-account-credentials=false",
                    # React fast in tests: GC and Job syncs are otherwise throttled.
                    "--concurrent-gc-syncs=5",
                ],
            )
            group.spawn(
                "kube-scheduler",
                [
                    bins["kube-scheduler"],
                    f"--kubeconfig={kubeconfig}",
                    f"--authentication-kubeconfig={kubeconfig}",
                    f"--authorization-kubeconfig={kubeconfig}",
                    "--leader-elect=false",
                    "--bind-address=127.0.0.1",
                    f"--secure-port={free_port()}",
                ],
            )
    except BaseException:
        stop(directory)
        raise
    return Cluster(directory=directory, kubeconfig=kubeconfig, server=server, pki=pki)


__all__ = ["Cluster", "StartupError", "start", "stop"]
