"""Every PromQL expression of the chart parses (promtool) and names only contract series.

The alert rules come from the rendered PrometheusRule; each dashboard panel's
query becomes a recording rule in a temporary rules file (with Grafana's
`$namespace` variable replaced by a regex), so `promtool check rules` parses
both. Which series an expression names is read with a small tokenizer that
drops strings, label matchers, ranges and grouping labels; the contract
(hanlin.telemetry.contract) must list every one.
"""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from hanlin.dev.paths import K8S_VERSION, binary, cache_dir
from hanlin.telemetry.contract import allowed_series

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "helm" / "hanlin"
_KEYWORDS = {
    "and", "or", "unless", "bool", "offset", "by", "without", "on", "ignoring",
    "group_left", "group_right", "inf", "nan", "start", "end",
}  # fmt: skip
_GROUPING = re.compile(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)")
_IDENT = re.compile(r"(?<![\w.:$])([a-zA-Z_:][a-zA-Z0-9_:]*)(\s*\()?")


def series_names(expr: str) -> set[str]:
    """The metric names a PromQL expression selects."""
    text = re.sub(r'"(?:\\.|[^"\\])*"|\'(?:\\.|[^\'\\])*\'|`[^`]*`', '""', expr)
    text = re.sub(r"\{[^}]*\}", " ", text)
    text = re.sub(r"\[[^\]]*\]", " ", text)
    text = _GROUPING.sub(" ", text)
    return {
        m.group(1)
        for m in _IDENT.finditer(text)
        if not m.group(2) and m.group(1).lower() not in _KEYWORDS
    }


def _rendered() -> list[dict[str, Any]]:
    out = subprocess.run(
        [
            str(binary("helm")), "template", "hanlin", str(CHART), "--kube-version", K8S_VERSION,
            "--namespace", "hanlin-system", "--set", "monitoring.enabled=true",
        ],
        check=True, capture_output=True, text=True,
    ).stdout  # fmt: skip
    return [d for d in yaml.safe_load_all(out) if d]


def rule_groups() -> list[dict[str, Any]]:
    """The alerting rule groups of the rendered PrometheusRule."""
    (rule,) = [d for d in _rendered() if d["kind"] == "PrometheusRule"]
    return list(rule["spec"]["groups"])


def dashboard_expressions() -> dict[str, str]:
    """'<dashboard>/<panel>/<ref>' -> expression, Grafana variables replaced."""
    found: dict[str, str] = {}
    for path in sorted((CHART / "files" / "dashboards").glob("*.json")):
        board = json.loads(path.read_text())
        for panel in board["panels"]:
            for target in panel.get("targets", []):
                expr = target["expr"].replace("$namespace", ".*")
                found[f"{path.stem}/{panel['title']}/{target['refId']}"] = expr
    return found


def promql_expressions() -> list[str]:
    """Every expression of the alerts and the dashboards."""
    rules = [r["expr"] for g in rule_groups() for r in g["rules"]]
    return rules + list(dashboard_expressions().values())


def promtool() -> Path:
    path = sorted((cache_dir() / "prometheus").glob("*/bin/promtool"))
    if not path:
        subprocess.run(
            ["bash", str(ROOT / "scripts" / "build-promtool.sh"), "promtool"],
            check=True, capture_output=True, timeout=580,
        )  # fmt: skip
        path = sorted((cache_dir() / "prometheus").glob("*/bin/promtool"))
    return path[-1]


def check_rules(groups: list[dict[str, Any]], tmp_path: Path) -> subprocess.CompletedProcess[str]:
    path = tmp_path / "rules.yaml"
    path.write_text(yaml.safe_dump({"groups": groups}, sort_keys=False))
    return subprocess.run(
        [str(promtool()), "check", "rules", str(path)], capture_output=True, text=True, timeout=60
    )


def test_series_names_reads_selectors_not_labels_or_functions() -> None:
    expr = (
        'sum by (kind, le) (rate(hanlin_x_bucket{job="a", le!="b"}[5m] offset 1h)) '
        "/ on (pod) group_left (node) absent(up == 1) > 0.5e1 and hanlin_y unless bool inf"
    )
    assert series_names(expr) == {"hanlin_x_bucket", "up", "hanlin_y"}


def test_every_expression_names_only_contract_series() -> None:
    allowed = allowed_series()
    expressions = promql_expressions()
    assert len(expressions) >= 30
    for expr in expressions:
        names = series_names(expr)
        assert names, f"no series in {expr!r}"
        assert names <= allowed, f"{sorted(names - allowed)} not in the metrics contract: {expr}"


def test_alerts_cover_the_failure_modes() -> None:
    alerts = {r["alert"] for g in rule_groups() for r in g["rules"]}
    assert {
        "HanlinOperatorDown",
        "HanlinReconcileErrors",
        "HanlinTrainingFailed",
        "HanlinTrainingStalled",
        "HanlinServingLatencyHigh",
        "HanlinServingQueueHigh",
        "HanlinEvalGateFailed",
    } <= alerts


def test_promtool_parses_the_alert_rules(tmp_path: Path) -> None:
    result = check_rules(rule_groups(), tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


def test_promtool_parses_the_dashboard_queries(tmp_path: Path) -> None:
    rules = [
        {"record": f"hanlin:dashboard:{i}", "expr": expr, "labels": {"panel": key}}
        for i, (key, expr) in enumerate(sorted(dashboard_expressions().items()))
    ]
    result = check_rules([{"name": "dashboards", "rules": rules}], tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr


def test_promtool_refuses_a_broken_expression(tmp_path: Path) -> None:
    broken = [{"name": "b", "rules": [{"record": "x:y", "expr": "sum(rate(hanlin_y[5m])))"}]}]
    result = check_rules(broken, tmp_path)
    assert result.returncode != 0
