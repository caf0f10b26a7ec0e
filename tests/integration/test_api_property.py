"""The models and the CRDs agree: what the models accept, the API server accepts, with the same defaults."""

from __future__ import annotations

import importlib.util
import secrets
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings

from hanlin.api import KINDS, validate_resource

pytestmark = pytest.mark.integration

ROOT = Path(__file__).parents[2]


def shared(name: str) -> ModuleType:
    """A helper module of the API unit tests (the strategies)."""
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, ROOT / "tests/unit/api" / f"{name}.py")
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
    return sys.modules[name]


valid_resources = shared("api_strategies").valid_resources


@pytest.fixture(scope="module")
def ns(k8s: Any) -> Iterator[str]:
    k8s.install_crds(ROOT / "crds")
    name = "api-" + secrets.token_hex(4)
    k8s.kubectl("create", "namespace", name)
    yield name
    k8s.kubectl("delete", "namespace", name, "--wait=false")


@pytest.mark.parametrize("kind", list(KINDS))
def test_server_accepts_what_the_models_accept(k8s: Any, ns: str, kind: str) -> None:
    from kubernetes import client

    api = client.CustomObjectsApi(k8s.api)
    plural = KINDS[kind].plural

    # ~8 per kind keeps the four kinds near 30 server round trips in all.
    @settings(max_examples=8, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(doc=valid_resources(kind))
    def check(doc: dict[str, Any]) -> None:
        try:
            stored = api.create_namespaced_custom_object(
                "hanlin.dev", "v1alpha1", ns, plural, doc, dry_run="All", field_validation="Strict"
            )
        except client.ApiException as err:
            raise AssertionError(
                f"the server refused a resource the models accept:\n{doc}\n{err.body}"
            ) from None
        # the server's defaulting gives the same spec as the models' defaults
        assert validate_resource(stored).spec == validate_resource(doc).spec

    check()
