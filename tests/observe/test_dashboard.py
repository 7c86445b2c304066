"""deploy/grafana/mlchaos.json: a Grafana dashboard whose every query parses as PromQL, uses only metrics
the sidecar exports, and is scoped to the selected experiment."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

promql_parser = pytest.importorskip("promql_parser")

ROOT = Path(__file__).resolve().parents[2]
GRAFANA = ROOT / "deploy" / "grafana"

# Every metric the sidecar exports or will export (names as PromQL sees them: counters with _total,
# histograms as _bucket/_sum/_count).
KNOWN_METRICS = {
    "mlchaos_requests_total",
    "mlchaos_request_duration_seconds_bucket", "mlchaos_request_duration_seconds_sum",
    "mlchaos_request_duration_seconds_count",
    "mlchaos_upstream_duration_seconds_bucket",
    "mlchaos_faults_injected_total",
    "mlchaos_proxy_errors_total",
    "mlchaos_experiment_active",
    "mlchaos_killswitch_tripped", "mlchaos_killswitch_evalue", "mlchaos_killswitch_trips_total",
    "mlchaos_payload_unparsed_total",
    "mlchaos_prediction_value_bucket", "mlchaos_prediction_value_sum", "mlchaos_prediction_value_count",
    "mlchaos_prediction_class_total",
    "mlchaos_prediction_confidence_bucket",
    "mlchaos_prediction_drift",
    "mlchaos_cohort_share",
    "mlchaos_sample_ratio_mismatch",
    "mlchaos_shadow_prediction_delta_bucket", "mlchaos_shadow_flips_total",
    "mlchaos_client_connections",
    "mlchaos_policy_reloads_total",
}
# What the dashboard must show.
REQUIRED_METRICS = {
    "mlchaos_requests_total", "mlchaos_request_duration_seconds_bucket", "mlchaos_faults_injected_total",
    "mlchaos_killswitch_tripped", "mlchaos_killswitch_evalue", "mlchaos_cohort_share",
    "mlchaos_sample_ratio_mismatch", "mlchaos_prediction_drift", "mlchaos_prediction_value_bucket",
    "mlchaos_prediction_class_total", "mlchaos_prediction_confidence_bucket",
}
# Metrics without an experiment label.
GLOBAL_METRICS = {"mlchaos_proxy_errors_total", "mlchaos_client_connections", "mlchaos_policy_reloads_total"}
# Grafana's interval variables become a duration before parsing; other variables sit inside strings.
INTERVALS = re.compile(r"\$(__rate_interval|__interval|__range)\b|\$\{(__rate_interval|__interval|__range)\}")


@pytest.fixture(scope="module")
def dashboard() -> dict[str, Any]:
    data: dict[str, Any] = json.loads((GRAFANA / "mlchaos.json").read_text(encoding="utf-8"))
    return data


def panels(d: dict[str, Any]) -> list[dict[str, Any]]:
    out = []
    for p in d["panels"]:
        out.append(p)
        out.extend(p.get("panels", []))  # collapsed rows keep their panels inside
    return out


def queries(d: dict[str, Any]) -> list[tuple[str, str]]:
    return [(p["title"], t["expr"]) for p in panels(d) for t in p.get("targets", [])]


def selectors(expr: str) -> list[Any]:
    found: list[Any] = []

    def visit(node: Any) -> None:
        if isinstance(node, promql_parser.VectorSelector):
            found.append(node)

    promql_parser.walk(promql_parser.parse(INTERVALS.sub("5m", expr)), visit)
    return found


def test_identity_and_schema(dashboard: dict[str, Any]) -> None:
    assert dashboard["uid"] and len(dashboard["uid"]) <= 40 and re.fullmatch(r"[\w-]+", dashboard["uid"])
    assert dashboard["title"]
    assert 36 <= dashboard["schemaVersion"] <= 41
    assert "id" not in dashboard or dashboard["id"] is None  # provisioned: Grafana assigns it


def test_variables(dashboard: dict[str, Any]) -> None:
    variables = {v["name"]: v for v in dashboard["templating"]["list"]}
    ds = variables["datasource"]
    assert ds["type"] == "datasource" and ds["query"] == "prometheus"
    exp = variables["experiment"]
    assert exp["type"] == "query" and exp["datasource"]["uid"] == "${datasource}"
    query = exp["query"]["query"] if isinstance(exp["query"], dict) else exp["query"]
    assert query == "label_values(mlchaos_experiment_active, experiment)"


def test_every_panel_has_a_datasource_and_unique_id(dashboard: dict[str, Any]) -> None:
    ids = [p["id"] for p in panels(dashboard)]
    assert len(ids) == len(set(ids))
    for p in panels(dashboard):
        if p["type"] == "row":
            continue
        assert p["datasource"] == {"type": "prometheus", "uid": "${datasource}"}, p["title"]
        assert p["targets"], p["title"]
        for t in p["targets"]:
            assert t["datasource"]["uid"] == "${datasource}" and t["refId"], p["title"]
        assert p.get("description"), p["title"]


def test_every_query_parses_and_uses_known_metrics(dashboard: dict[str, Any]) -> None:
    used: set[str] = set()
    assert len(queries(dashboard)) >= 20
    for title, expr in queries(dashboard):
        found = selectors(expr)
        assert found, (title, expr)
        for sel in found:
            assert sel.name in KNOWN_METRICS, (title, sel.name)
            used.add(sel.name)
    assert REQUIRED_METRICS <= used, REQUIRED_METRICS - used


def test_queries_are_scoped_to_the_selected_experiment(dashboard: dict[str, Any]) -> None:
    for title, expr in queries(dashboard):
        for sel in selectors(expr):
            if sel.name in GLOBAL_METRICS:
                continue
            matchers = {m.name: m.value for m in sel.matchers.matchers}
            assert matchers.get("experiment") == "$experiment", (title, expr)


def test_invalid_promql_is_caught() -> None:
    with pytest.raises(ValueError):
        promql_parser.parse("sum by (cohort (rate(mlchaos_requests_total[5m]))")


def test_cohort_panels_show_chaos_and_control_in_their_colours(dashboard: dict[str, Any]) -> None:
    by_cohort = [p for p in panels(dashboard) if any("{{cohort}}" in t.get("legendFormat", "")
                                                     for t in p.get("targets", []))]
    assert len(by_cohort) >= 6
    for p in by_cohort:
        colours = {o["matcher"]["options"]: o["properties"][0]["value"]["fixedColor"]
                   for o in p["fieldConfig"]["overrides"]}
        assert colours == {".*chaos.*": "#d6604d", ".*control.*": "#4393c3"}, p["title"]


def test_layout_fits_the_grid_without_overlaps(dashboard: dict[str, Any]) -> None:
    boxes = []
    for p in dashboard["panels"]:
        g = p["gridPos"]
        assert 0 <= g["x"] and g["x"] + g["w"] <= 24 and g["h"] > 0, p["title"]
        boxes.append((g["x"], g["y"], g["w"], g["h"], p["title"]))
    for i, (x1, y1, w1, h1, t1) in enumerate(boxes):
        for x2, y2, w2, h2, t2 in boxes[i + 1:]:
            assert x1 + w1 <= x2 or x2 + w2 <= x1 or y1 + h1 <= y2 or y2 + h2 <= y1, (t1, t2)


def test_panels_cover_the_brief(dashboard: dict[str, Any]) -> None:
    titles = " | ".join(p["title"].lower() for p in panels(dashboard))
    for words in ("request rate", "error rate", "p50 / p99", "faults injected", "kill switch", "e-values",
                  "cohort share", "sample ratio mismatch", "drift", "prediction values", "class shares",
                  "confidence"):
        assert words in titles, words
    assert any(p["type"] == "heatmap" for p in panels(dashboard))


def test_kustomization_generates_the_dashboard_configmap() -> None:
    kust = yaml.safe_load((GRAFANA / "kustomization.yaml").read_text(encoding="utf-8"))
    (gen,) = kust["configMapGenerator"]
    assert gen["files"] == ["mlchaos.json"] and (GRAFANA / "mlchaos.json").is_file()
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        pytest.skip("kubectl is not installed: the ConfigMap was not rendered")
    res = subprocess.run([kubectl, "kustomize", str(GRAFANA)], capture_output=True, text=True, timeout=60,
                         check=False)
    assert res.returncode == 0, res.stderr
    (cm,) = [d for d in yaml.safe_load_all(res.stdout) if d]
    assert cm["kind"] == "ConfigMap" and cm["metadata"]["labels"] == {"grafana_dashboard": "1"}
    assert json.loads(cm["data"]["mlchaos.json"])["uid"] == "mlchaos-experiment"
