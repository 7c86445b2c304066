"""Prediction bookkeeping through the proxy, in front of the demo model: metrics, drift, SRM, report."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from typing import Any

import aiohttp
import numpy as np
import pytest

from proxy.demo.model import sample_rows, start_model
from tests.conftest import policy_from

NAMES = ["sepal_length", "sepal_width", "petal_length", "petal_width"]


async def _drive(port: int, n: int, seed: int) -> None:
    rng = np.random.default_rng(seed)
    url = f"http://127.0.0.1:{port}/v2/models/iris/infer"
    async with aiohttp.ClientSession() as s:
        async def one(i: int) -> None:
            rows = sample_rows(rng, 4).round(2).tolist()
            body = {"inputs": [{"name": "input-0", "shape": [4, 4], "datatype": "FP64", "data": rows}]}
            async with s.post(url, json=body, headers={"x-user-id": f"u{i}"}) as r:
                assert r.status == 200
        for start in range(0, n, 32):
            await asyncio.gather(*(one(i) for i in range(start, min(start + 32, n))))


async def _run(start_sidecar, faults: list[dict[str, Any]], n: int = 1200) -> Any:
    runner, port = await start_model()
    try:
        exp = {"name": "obs", "chaos": 25, "control": 25, "sticky_key": "header:x-user-id", "faults": faults,
               "payload": {"features": NAMES}, "kill_switch": {"enabled": False},
               "observe": {"drift_interval": "1ms"}}
        sc = await start_sidecar(policy_from(f"http://127.0.0.1:{port}", {"experiments": [exp]},
                                             max_blast_radius=50))
        await _drive(sc.proxy_port, n, seed=11)
        sc.observe_once()
        return sc
    finally:
        await runner.cleanup()


def _sample(sc: Any, name: str, labels: dict[str, str]) -> float | None:
    value: float | None = sc.metrics.registry.get_sample_value(name, labels)
    return value


async def test_a_shift_fault_raises_drift_past_the_alarm_levels(start_sidecar):
    sc = await _run(start_sidecar, [{"type": "shift", "scale": 1.5, "offset": 1.0}])
    drift = {stat: _sample(sc, "mlchaos_prediction_drift", {"experiment": "obs", "output": "probabilities",
                                                               "statistic": stat}) for stat in ("psi", "ks_p")}
    assert drift["psi"] is not None and drift["psi"] > 0.25
    assert drift["ks_p"] is not None and drift["ks_p"] < 0.05
    # Labels flip too: the chaos cohort's class counts differ from control's.
    chaos = {c: _sample(sc, "mlchaos_prediction_class_total",
                        {"experiment": "obs", "cohort": "chaos", "output": "label", "class": c}) or 0
             for c in ("0", "1", "2")}
    control = {c: _sample(sc, "mlchaos_prediction_class_total",
                          {"experiment": "obs", "cohort": "control", "output": "label", "class": c}) or 0
               for c in ("0", "1", "2")}
    share = lambda d: {k: v / sum(d.values()) for k, v in d.items()}  # noqa: E731
    assert abs(share(chaos)["2"] - share(control)["2"]) > 0.2, (chaos, control)


async def test_an_a_a_experiment_stays_below_the_psi_warning(start_sidecar):
    sc = await _run(start_sidecar, [])
    psi = _sample(sc, "mlchaos_prediction_drift", {"experiment": "obs", "output": "probabilities",
                                                  "statistic": "psi"})
    assert psi is not None and psi < 0.1
    assert _sample(sc, "mlchaos_sample_ratio_mismatch", {"experiment": "obs"}) == 0
    assert _sample(sc, "mlchaos_prediction_value_count",
                   {"experiment": "obs", "cohort": "control", "output": "probabilities"}) is None  # vectors:
    conf = _sample(sc, "mlchaos_prediction_confidence_count",
                   {"experiment": "obs", "cohort": "control", "output": "probabilities"})
    assert conf is not None and conf > 500


async def test_the_report_endpoint_and_the_cli_write_a_page_with_plots(start_sidecar, tmp_path):
    sc = await _run(start_sidecar, [{"type": "shift", "scale": 1.5}], n=300)
    async with aiohttp.ClientSession() as s, \
            s.get(f"http://127.0.0.1:{sc.admin_port}/experiments/obs/report") as r:
        data = await r.json()
    assert set(data["cohorts"]) == {"chaos", "control"}
    assert data["cohorts"]["chaos"]["requests"] > 0 and "probabilities" in data["outputs"]
    assert data["srm"] is not None and "p_value" in data["srm"]
    out = tmp_path / "report.html"
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "proxy", "report", "--admin", f"http://127.0.0.1:{sc.admin_port}", "--out", str(out),
        stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    _, err = await asyncio.wait_for(proc.communicate(), 30)
    assert proc.returncode == 0, err
    html = out.read_text()
    assert html.count("<svg") >= 3 and "obs" in html


@pytest.mark.parametrize("n_outputs", [30])
def test_output_and_class_labels_stay_bounded_whatever_responses_carry(n_outputs):
    from proxy.observe.observer import PredictionObserver
    from proxy.payload import AdapterOptions
    from proxy.policy.model import ObserveSpec, PayloadSpec

    obs = PredictionObserver("e", ObserveSpec(max_classes=5, max_outputs=4), PayloadSpec(format="v1"),
                             AdapterOptions())
    for i in range(400):
        body = ('{"predictions": [{' + ",".join(f'"out{k}": "class-{i}-{k}"' for k in range(n_outputs)) + "}]}")
        obs.submit(i % 2, "/v1/models/m:predict", [body.encode()])
    obs.process()
    fam = obs.families()
    per_output: dict[str, set[str]] = {}
    for labels, _ in fam["classes"]:
        per_output.setdefault(labels[2], set()).add(labels[3])
    assert len(per_output) == 4  # max_outputs; the other 26 outputs are not recorded at all
    for classes in per_output.values():
        assert len(classes) <= 5 + 1 and "__other__" in classes  # max_classes, then __other__


def test_probability_vectors_are_counted_per_row_whatever_their_json_number_types():
    from proxy.observe.observer import PredictionObserver
    from proxy.payload import AdapterOptions
    from proxy.policy.model import ObserveSpec, PayloadSpec

    obs = PredictionObserver("e", ObserveSpec(), PayloadSpec(format="v1"), AdapterOptions())
    # control: plain floats (the native fast path); chaos: ints, and a vector with a null (the per-vector
    # path: the null vector is left out, the others count).
    for cohort, body in ((1, '{"predictions": [[0.7, 0.3], [0.2, 0.8]]}'), (1, '{"predictions": [[0.6, 0.4]]}'),
                         (0, '{"predictions": [[1, 0], [0.1, 0.9]]}'),
                         (0, '{"predictions": [[1.0, 0.0], [null, 0.5]]}')):
        obs.submit(cohort, "/v1/models/m:predict", [body.encode()])
    assert obs.process() == 4
    fam = obs.families()
    classes = {(labels[1], labels[3]): n for labels, n in fam["classes"]}
    assert classes == {("control", "0"): 2, ("control", "1"): 1, ("chaos", "0"): 2, ("chaos", "1"): 1}
    confidence = {labels[1]: (buckets[-1][1], total) for labels, (buckets, total) in fam["confidence"]}
    assert confidence["control"] == (3, pytest.approx(0.7 + 0.8 + 0.6))
    assert confidence["chaos"] == (3, pytest.approx(1.0 + 0.9 + 1.0))
    assert obs.unparsed == [0, 0]


def test_a_batch_of_vectors_of_different_lengths_is_not_recorded():
    from proxy.observe.observer import PredictionObserver
    from proxy.payload import AdapterOptions
    from proxy.policy.model import ObserveSpec, PayloadSpec

    obs = PredictionObserver("e", ObserveSpec(), PayloadSpec(format="v1"), AdapterOptions())
    obs.submit(1, "/v1/models/m:predict", [b'{"predictions": [[0.7, 0.3], [0.2, 0.5, 0.3]]}'])
    obs.process()
    fam = obs.families()
    assert fam["classes"] == [] and all(buckets[-1][1] == 0 for _, (buckets, _) in fam["confidence"])


async def test_shadow_comparison_counts_exactly_the_rows_a_shift_flips(start_sidecar):
    runner, port = await start_model()
    try:
        exp = {"name": "sh", "chaos": 50, "control": 0, "sticky_key": "header:x-user-id",
               "reveal": {"cohort": True}, "kill_switch": {"enabled": False},
               "faults": [{"type": "shift", "scale": 1.3, "offset": 0.4}],
               "observe": {"shadow": {"enabled": True, "max_concurrency": 256}}}
        sc = await start_sidecar(policy_from(f"http://127.0.0.1:{port}", {"experiments": [exp]},
                                             max_blast_radius=50))
        rng = np.random.default_rng(3)
        chaos_rows: list[list[float]] = []
        async with aiohttp.ClientSession() as s:
            for i in range(120):
                rows = sample_rows(rng, 4).round(2).tolist()
                body = {"inputs": [{"name": "input-0", "shape": [4, 4], "datatype": "FP64", "data": rows}]}
                async with s.post(f"http://127.0.0.1:{sc.proxy_port}/v2/models/iris/infer", json=body,
                                  headers={"x-user-id": f"u{i}"}) as r:
                    assert r.status == 200
                    if r.headers.get("x-mlchaos-cohort") == "chaos":
                        chaos_rows.extend(rows)
            # The truth, from the model itself: labels of the original rows and of the shifted ones.
            shifted = [[v * 1.3 + 0.4 for v in row] for row in chaos_rows]
            labels = []
            for data in (chaos_rows, shifted):
                body = {"inputs": [{"name": "input-0", "shape": [len(data), 4], "datatype": "FP64", "data": data}]}
                async with s.post(f"http://127.0.0.1:{port}/v2/models/iris/infer", json=body) as r:
                    labels.append((await r.json())["outputs"][0]["data"])
        expected_flips = sum(a != b for a, b in zip(*labels, strict=True))
        n_chaos = len(chaos_rows) // 4
        assert n_chaos > 20 and expected_flips > 0

        def compared() -> float:
            return _sample(sc, "mlchaos_shadow_requests_total", {"experiment": "sh", "result": "compared"}) or 0

        async with asyncio.timeout(10):
            while compared() < n_chaos:
                await asyncio.sleep(0.1)
        assert _sample(sc, "mlchaos_shadow_flips_total", {"experiment": "sh", "output": "label"}) == expected_flips
        assert _sample(sc, "mlchaos_shadow_requests_total", {"experiment": "sh", "result": "failed"}) == 0
        deltas = _sample(sc, "mlchaos_shadow_prediction_delta_count", {"experiment": "sh", "output": "probabilities"})
        assert deltas == len(chaos_rows)
    finally:
        await runner.cleanup()


async def test_the_shadow_twin_carries_the_clients_end_to_end_headers(start_upstream, start_sidecar):
    from aiohttp import web

    from tests.dataplane.conftest import FORCE_CHAOS, OVERRIDE_ENV

    seen: list[dict[str, str]] = []

    async def model(request: web.Request) -> web.Response:
        seen.append({k.lower(): v for k, v in request.headers.items()})
        return web.json_response({"predictions": [1]})

    up = await start_upstream({"/v1/models/m:predict": model})
    exp = {"name": "sh", "chaos": 5, "control": 5, "kill_switch": {"enabled": False},
           "faults": [{"type": "shift", "scale": 2.0}], "observe": {"shadow": {"enabled": True}}}
    override = {"enabled": True, "token_env": "MLCHAOS_OVERRIDE_TOKEN"}
    sc = await start_sidecar(policy_from(up.url, {"experiments": [exp], "cohort_override": override}),
                             env=OVERRIDE_ENV)
    headers = {**FORCE_CHAOS, "Authorization": "Bearer model-key", "X-Tenant": "t1", "Connection": "X-Hop",
               "X-Hop": "no"}
    async with aiohttp.ClientSession() as s, \
            s.post(f"http://127.0.0.1:{sc.proxy_port}/v1/models/m:predict", json={"instances": [[1.0, 2.0]]},
                   headers=headers) as r:
        assert r.status == 200
    async with asyncio.timeout(5):
        while len(seen) < 2:
            await asyncio.sleep(0.05)
    chaos, shadow = seen
    assert "x-mlchaos-shadow" not in chaos and shadow["x-mlchaos-shadow"] == "1"
    for h in (chaos, shadow):
        assert h["authorization"] == "Bearer model-key" and h["x-tenant"] == "t1"
        assert not {"x-mlchaos-cohort", "x-mlchaos-token", "x-hop"} & set(h)
    assert shadow["content-type"] == "application/json"
