"""Starting the operator: API client, reconciler, metrics server, kopf with peering."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import kopf

from hanlin_operator.handlers import Controller, register
from hanlin_operator.kube import Kube
from hanlin_operator.metrics import OperatorMetrics
from hanlin_operator.peering import PeeringGate, ensure_peering_object
from hanlin_operator.reconcile import Reconciler
from hanlin_operator.settings import OperatorSettings

log = logging.getLogger(__name__)


def api_client() -> Any:
    """A kubernetes ApiClient: in-cluster when in a pod, else KUBECONFIG / ~/.kube/config."""
    from kubernetes import client, config

    try:
        config.load_incluster_config()  # type: ignore[no-untyped-call]
    except config.ConfigException:
        config.load_kube_config()  # type: ignore[no-untyped-call]
    configuration = client.Configuration.get_default_copy()
    # One connection per reconcile thread, so threads never queue for a socket.
    configuration.connection_pool_maxsize = 32
    return client.ApiClient(configuration)


def run_operator(settings: OperatorSettings) -> None:
    """Run kopf with the Hanlin handlers until interrupted."""
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    # kopf logs every handler call at INFO: thousands of lines a second with many resources.
    logging.getLogger("kopf.objects").setLevel(logging.WARNING)
    kube = Kube(api_client())
    if not settings.standalone and not ensure_peering_object(
        kube.api, settings.peering, settings.namespace
    ):
        log.warning("kopf peering CRDs are not installed: running standalone (one replica only)")
        settings.standalone = True
    reconciler = Reconciler(kube=kube, settings=settings.build)
    metrics = OperatorMetrics(reconciler.cache.of_kind)
    reconciler.on_result = metrics.observe
    controller = Controller(reconciler)
    gate: PeeringGate | None = None
    if not settings.standalone:
        gate = PeeringGate(kube.api, settings.peering, settings.namespace, settings.priority)
        controller.active = gate.active
    registry = kopf.OperatorRegistry()
    register(registry, controller)

    @kopf.on.login(registry=registry)
    def login(**kwargs: Any) -> Any:
        # A registry of our own gets no default login handler: use the same config as ours.
        return kopf.login_via_client(**kwargs)

    @kopf.on.startup(registry=registry)
    def configure(settings: kopf.OperatorSettings, **_: Any) -> None:
        # Only watch handlers are registered: kopf keeps no state on the resources.
        settings.posting.level = logging.WARNING
        settings.watching.server_timeout = 300
        settings.peering.clusterwide = operator_settings.namespace is None
        # Watching one namespace, kopf needs no namespace listing or CRD watch; without
        # them a namespaced install (a Role only, rbac.scope=namespace) works with no 403.
        settings.scanning.disabled = operator_settings.namespace is not None

    operator_settings = settings
    if settings.metrics_port:
        metrics.serve(settings.metrics_host, settings.metrics_port)
    namespaces = [settings.namespace] if settings.namespace else []
    controller.start(settings.workers)
    try:
        asyncio.run(
            kopf.operator(
                registry=registry,
                clusterwide=settings.namespace is None,
                namespaces=namespaces,
                standalone=settings.standalone,
                priority=settings.priority,
                peering_name=None if settings.standalone else settings.peering,
                # kopf's Identity is a NewType of str.
                identity=gate.identity if gate else None,  # type: ignore[arg-type]
            )
        )
    finally:
        controller.stop()
