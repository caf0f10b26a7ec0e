"""Generated valid resources: the models accept them and they survive a round trip."""

from __future__ import annotations

import pytest
from api_strategies import valid_resources
from hypothesis import HealthCheck, given, settings

from hanlin.api import KINDS, validate_resource


@pytest.mark.parametrize("kind", list(KINDS))
def test_generated_resources_round_trip(kind: str) -> None:
    @settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(doc=valid_resources(kind))
    def check(doc: dict[str, object]) -> None:
        resource = validate_resource(doc)
        assert validate_resource(resource.to_dict()) == resource

    check()
