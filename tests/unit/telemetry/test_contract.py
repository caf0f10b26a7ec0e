"""The metrics contract equals the metric definitions in the code.

The code is read, not imported: every call of a prometheus_client metric class
under services/ and operator/ is found in the syntax tree, so a metric added in
any module (even one that needs torch to import) is seen. The registries that
import cheaply are also exposed for real and parsed back, which checks the
naming rules (a counter gains `_total`) that the static reading assumes.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from hanlin.telemetry.contract import METRICS, Metric, MetricType, allowed_series, metric

ROOT = Path(__file__).resolve().parents[3]
SOURCE_ROOTS = (ROOT / "services", ROOT / "operator")
_TYPES = {
    "Counter": MetricType.COUNTER,
    "Gauge": MetricType.GAUGE,
    "Histogram": MetricType.HISTOGRAM,
    "Summary": MetricType.SUMMARY,
    # families a custom collector yields at scrape time
    "CounterMetricFamily": MetricType.COUNTER,
    "GaugeMetricFamily": MetricType.GAUGE,
    "HistogramMetricFamily": MetricType.HISTOGRAM,
    "SummaryMetricFamily": MetricType.SUMMARY,
}
_MODULES = {"prometheus_client", "prometheus_client.core", "prometheus_client.metrics_core"}
# Argument positions (and the label keyword) of the metric classes and of the families.
_POSITIONS = {"name": 0, "documentation": 1, "labelnames": 2}
_FAMILY_POSITIONS = {"name": 0, "documentation": 1, "labels": 3}


def _argument(call: ast.Call, key: str) -> ast.expr | None:
    family = isinstance(call.func, ast.Name | ast.Attribute) and (
        getattr(call.func, "id", None) or getattr(call.func, "attr", "")
    ).endswith("MetricFamily")
    if family and key == "labelnames":
        key = "labels"
    for kw in call.keywords:
        if kw.arg == key:
            return kw.value
    pos = (_FAMILY_POSITIONS if family else _POSITIONS)[key]
    return call.args[pos] if len(call.args) > pos else None


def _literal(node: ast.expr | None, where: str, what: str) -> object:
    try:
        return ast.literal_eval(node) if node is not None else None
    except ValueError:
        raise AssertionError(
            f"{where}: metric {what} is not a literal; the contract test reads it statically"
        ) from None


def _module_name(path: Path) -> str:
    for root in SOURCE_ROOTS:
        if path.is_relative_to(root):
            return ".".join(path.relative_to(root).with_suffix("").parts)
    raise AssertionError(path)


def _definitions_in(path: Path) -> list[Metric]:
    tree = ast.parse(path.read_text(), filename=str(path))
    # Local names bound to prometheus_client's classes, wherever imported (some
    # modules import inside a function to keep import time low).
    local: dict[str, MetricType] = {}
    module_aliases: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module in _MODULES:
            for alias in node.names:
                if alias.name in _TYPES:
                    local[alias.asname or alias.name] = _TYPES[alias.name]
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name in _MODULES:
                    module_aliases.add(alias.asname or alias.name)
    found: list[Metric] = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call):
            continue
        func = node.func
        if isinstance(func, ast.Name) and func.id in local:
            kind = local[func.id]
        elif (
            isinstance(func, ast.Attribute)
            and isinstance(func.value, ast.Name)
            and func.value.id in module_aliases
            and func.attr in _TYPES
        ):
            kind = _TYPES[func.attr]
        else:
            continue
        where = f"{path.relative_to(ROOT)}:{node.lineno}"
        name = _literal(_argument(node, "name"), where, "name")
        doc = _literal(_argument(node, "documentation"), where, "help")
        labels = _literal(_argument(node, "labelnames"), where, "labels") or ()
        assert isinstance(name, str) and isinstance(doc, str), where
        if kind is MetricType.COUNTER and not name.endswith("_total"):
            name += "_total"  # prometheus_client exposes counters with the suffix
        found.append(Metric(name, kind, doc, _module_name(path), tuple(labels)))  # type: ignore[arg-type]
    return found


def _code_metrics() -> list[Metric]:
    found: list[Metric] = []
    for root in SOURCE_ROOTS:
        for path in sorted(root.rglob("*.py")):
            found.extend(_definitions_in(path))
    return found


def test_contract_equals_the_metrics_the_code_defines() -> None:
    code = _code_metrics()
    by_name = {m.name: m for m in code}
    assert len(by_name) == len(code), "a metric name is defined twice"
    contract = {m.name: m for m in METRICS}
    assert len(contract) == len(METRICS), "a metric is listed twice in the contract"
    missing = sorted(set(by_name) - set(contract))
    stale = sorted(set(contract) - set(by_name))
    assert not missing, f"defined in code but not in hanlin.telemetry.contract: {missing}"
    assert not stale, f"in the contract but defined nowhere: {stale}"
    for name, defined in by_name.items():
        assert contract[name] == defined, f"{name}: contract {contract[name]} != code {defined}"


def test_every_name_follows_the_conventions() -> None:
    for m in METRICS:
        assert m.name.startswith("hanlin_"), m.name
        assert (m.type is MetricType.COUNTER) == m.name.endswith("_total"), m.name
        assert m.help, m.name


def _exposed(registry: CollectorRegistry) -> dict[str, tuple[str, set[str]]]:
    """Family name -> (type, sample names), as a scraper parses the exposition."""
    text = generate_latest(registry).decode()
    return {
        f.name: (f.type, {s.name for s in f.samples})
        for f in text_string_to_metric_families(text)
        # the 0.0.4 text format writes each *_created as a family of its own
        if not f.name.endswith("_created")
    }


def _check_exposed(registry: CollectorRegistry, module: str) -> None:
    exposed = _exposed(registry)
    listed = {m.name.removesuffix("_total"): m for m in METRICS if m.module == module}
    assert set(exposed) <= set(listed), f"exposed but not listed: {set(exposed) - set(listed)}"
    for family, m in listed.items():
        if m.labels and not exposed.get(family, ("", set()))[1]:
            continue  # a labelled family without children has no samples yet
        kind, samples = exposed[family]
        assert kind == m.type.value, f"{m.name} exposed as a {kind}"
        assert samples and samples <= m.series(), f"{m.name}: {samples} not in {m.series()}"


def test_serving_registry_exposes_the_contract() -> None:
    from hanlin.serve.metrics import EngineMetrics, ServerMetrics

    # /metrics serves the server process's registry followed by the engine process's.
    engine, server = EngineMetrics(), ServerMetrics()
    engine.finished.labels(reason="stop").inc()
    server.rejected.labels(code="queue_full").inc()
    both = CollectorRegistry()
    both.register(server.registry)
    both.register(engine.registry)
    _check_exposed(both, "hanlin.serve.metrics")
    exposed = _exposed(both)
    assert "hanlin_requests_finished_total" in exposed["hanlin_requests_finished"][1]
    assert "hanlin_requests_rejected_total" in exposed["hanlin_requests_rejected"][1]


def test_training_and_eval_registries_expose_the_contract() -> None:
    from hanlin.eval.progress import Metrics as EvalMetrics
    from hanlin.train.progress import Metrics as TrainMetrics

    _check_exposed(TrainMetrics().registry, "hanlin.train.progress")
    _check_exposed(EvalMetrics.create().registry, "hanlin.eval.progress")


def test_allowed_series_cover_every_family_and_scrape_series() -> None:
    allowed = allowed_series()
    assert "up" in allowed
    assert "hanlin_time_to_first_token_seconds_bucket" in allowed
    assert "hanlin_agent_runs_total" in allowed
    assert "hanlin_agent_runs" not in allowed
    with pytest.raises(KeyError, match="hanlin_nope"):
        metric("hanlin_nope")


def test_agent_registry_exposes_the_contract() -> None:
    from hanlin.agent.service.metrics import AgentMetrics

    agent = AgentMetrics()
    agent.runs.labels(status="finished").inc()
    agent.tool_latency.labels(tool="calculator").observe(0.01)
    _check_exposed(agent.registry, "hanlin.agent.service.metrics")


def test_operator_registry_exposes_the_contract() -> None:
    from hanlin_operator.metrics import OperatorMetrics

    phases = {"TrainingJob": [{"status": {"phase": "Running"}}, {"status": {}}]}
    metrics = OperatorMetrics(lambda kind: phases.get(kind, []))
    metrics.observe("TrainingJob", "ok", 0.01)
    _check_exposed(metrics.registry, "hanlin_operator.metrics")
    samples = _exposed(metrics.registry)["hanlin_operator_resources"][1]
    assert samples == {"hanlin_operator_resources"}
