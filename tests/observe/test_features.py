"""What a feature store fed each cohort: status counts, value histograms and drift of served features, off the
request path, in Prometheus and in the report JSON (GET /experiments/NAME/report)."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import aiohttp
import numpy as np
from aiohttp import web

from tests.conftest import policy_from

PATH = "/get-online-features"


def feast_answer(drivers: list[int], extra_features: int = 0) -> dict[str, Any]:
    """What Feast answers for these drivers: conv_rate follows the id, city is a label; ids >= 5000 unknown."""
    names = ["driver_id", "conv_rate", "city"] + [f"f{k}" for k in range(extra_features)]
    known = [d < 5000 for d in drivers]
    ts = ["2026-12-01T12:00:00Z" if k else "1970-01-01T00:00:00Z" for k in known]
    status = ["PRESENT" if k else "NOT_FOUND" for k in known]
    results = [{"values": drivers, "statuses": ["PRESENT"] * len(drivers),
                "event_timestamps": ["1970-01-01T00:00:00Z"] * len(drivers)},
               {"values": [(d % 100) / 100 if k else None for d, k in zip(drivers, known, strict=True)],
                "statuses": status, "event_timestamps": ts},
               {"values": [f"c{d % 3}" if k else None for d, k in zip(drivers, known, strict=True)],
                "statuses": status, "event_timestamps": ts}]
    results += [{"values": [1.0] * len(drivers), "statuses": ["PRESENT"] * len(drivers),
                 "event_timestamps": ["2026-12-01T12:00:00Z"] * len(drivers)} for _ in range(extra_features)]
    return {"metadata": {"feature_names": names}, "results": results}


async def _run(start_upstream: Any, start_sidecar: Any, faults: list[dict[str, Any]], n: int = 600,
               extra_features: int = 0, max_outputs: int = 8) -> tuple[Any, dict[str, Any]]:
    async def get_online_features(request: web.Request) -> web.Response:
        doc = await request.json()
        return web.json_response(feast_answer(doc["entities"]["driver_id"], extra_features))

    up = await start_upstream({PATH: get_online_features})
    exp = {"name": "fs", "chaos": 25, "control": 25, "sticky_key": "entity:driver_id", "faults": faults,
           "kill_switch": {"enabled": False}, "observe": {"drift_interval": "1ms", "max_outputs": max_outputs}}
    sc = await start_sidecar(policy_from(up.url, {"experiments": [exp]}, max_blast_radius=50))
    rng = np.random.default_rng(5)
    async with aiohttp.ClientSession() as s:
        async def one(i: int) -> None:
            drivers = [int(rng.integers(1000, 2000)), int(rng.integers(1000, 2000))]
            async with s.post(f"http://127.0.0.1:{sc.proxy_port}{PATH}",
                              json={"features": ["v:conv_rate", "v:city"], "entities": {"driver_id": drivers}}) as r:
                assert r.status == 200
                await r.read()
        for start in range(0, n, 32):
            await asyncio.gather(*(one(i) for i in range(start, min(start + 32, n))))
        sc.observe_once()
        async with s.get(f"http://127.0.0.1:{sc.admin_port}/experiments/fs/report") as r:
            report = await r.json()
    return sc, report


def _sample(sc: Any, name: str, **labels: str) -> float:
    value = sc.metrics.registry.get_sample_value(name, labels)
    return float(value or 0.0)


async def test_not_found_shows_in_the_status_counts_of_the_chaos_cohort_only(start_upstream, start_sidecar):
    sc, report = await _run(start_upstream, start_sidecar, [{"type": "not_found", "features": ["conv_rate"]}])
    chaos = _sample(sc, "mlchaos_feature_status_total", experiment="fs", cohort="chaos", feature="conv_rate",
                    status="NOT_FOUND")
    assert chaos > 100
    assert _sample(sc, "mlchaos_feature_status_total", experiment="fs", cohort="chaos", feature="conv_rate",
                   status="PRESENT") == 0
    assert _sample(sc, "mlchaos_feature_status_total", experiment="fs", cohort="control", feature="conv_rate",
                   status="NOT_FOUND") == 0
    control = _sample(sc, "mlchaos_feature_status_total", experiment="fs", cohort="control", feature="conv_rate",
                      status="PRESENT")
    assert control > 100
    # city was not touched: PRESENT in both
    assert _sample(sc, "mlchaos_feature_status_total", experiment="fs", cohort="chaos", feature="city",
                   status="PRESENT") == chaos
    statuses = report["features"]["statuses"]["conv_rate"]
    assert statuses["chaos"] == {"NOT_FOUND": chaos} and statuses["control"] == {"PRESENT": control}
    assert report["features"]["answers"]["chaos"] == chaos / 2  # two entity rows per answer


async def test_a_shift_of_served_values_raises_feature_drift(start_upstream, start_sidecar):
    sc, report = await _run(start_upstream, start_sidecar, [
        {"type": "shift", "target": "response", "features": ["conv_rate"], "scale": 3.0, "offset": 1.0}])
    psi = _sample(sc, "mlchaos_feature_drift", experiment="fs", feature="conv_rate", statistic="psi")
    assert psi > 0.25
    assert _sample(sc, "mlchaos_feature_value_count", experiment="fs", cohort="control", feature="conv_rate") > 100
    values = report["features"]["values"]["conv_rate"]
    assert values["kind"] == "numeric" and values["drift"]["psi"] == psi
    assert min(values["chaos"]["values"]) >= 1.0 > max(values["control"]["values"])
    assert report["features"]["values"]["city"]["kind"] == "class"


async def test_an_unharmed_experiment_shows_no_feature_drift(start_upstream, start_sidecar):
    sc, _ = await _run(start_upstream, start_sidecar, [])
    assert _sample(sc, "mlchaos_feature_drift", experiment="fs", feature="conv_rate", statistic="psi") < 0.1


async def test_feature_labels_are_bounded_by_max_outputs(start_upstream, start_sidecar):
    sc, report = await _run(start_upstream, start_sidecar, [], n=64, extra_features=20, max_outputs=4)
    names = {s.labels["feature"] for m in sc.metrics.registry.collect() if m.name == "mlchaos_feature_status"
             for s in m.samples}
    assert names == {"conv_rate", "city", "f0", "f1", "__other__"}
    assert len(report["features"]["values"]) <= 4
    assert json.dumps(report)  # plain JSON
