"""The fault outcome matrix through the proxy, in front of the demo model: per fault type, rejected (4xx),
failed (5xx), changed (the shadow twin's prediction differs) and unchanged, against what clients saw and the
model's own answers."""

from __future__ import annotations

import asyncio
from typing import Any

import aiohttp
import numpy as np

from proxy.demo.model import sample_rows, start_model
from proxy.observe.outcomes import FaultOutcomes
from tests.conftest import policy_from

SCALE, OFFSET = 1.3, 0.4


def test_record_and_settle() -> None:
    m = FaultOutcomes()
    m.record(["abort"], 400)
    m.record(["delay", "status"], 503)
    m.record(["shift"], 0)
    m.record(["shift", "shift"], 200)
    m.record(["shift"], 200)
    m.settle(["shift"], True)
    assert m.to_dict() == {
        "abort": {"rejected": 1, "failed": 0, "changed": 0, "unchanged": 0, "answered": 0},
        "delay": {"rejected": 0, "failed": 1, "changed": 0, "unchanged": 0, "answered": 0},
        "status": {"rejected": 0, "failed": 1, "changed": 0, "unchanged": 0, "answered": 0},
        "shift": {"rejected": 0, "failed": 1, "changed": 1, "unchanged": 0, "answered": 1},
    }
    assert (["x", "shift", "answered"], 1.0) in m.samples("x")


async def _labels(s: aiohttp.ClientSession, port: int, rows: list[list[float]]) -> list[Any]:
    body = {"inputs": [{"name": "input-0", "shape": [len(rows), 4], "datatype": "FP64", "data": rows}]}
    async with s.post(f"http://127.0.0.1:{port}/v2/models/iris/infer", json=body) as r:
        return list((await r.json())["outputs"][0]["data"])


async def test_the_matrix_matches_the_clients_and_the_model(start_sidecar) -> None:
    runner, port = await start_model()
    try:
        exp = {"name": "om", "chaos": 50, "control": 0, "sticky_key": "header:x-user-id",
               "reveal": {"cohort": True, "fault": True}, "kill_switch": {"enabled": False},
               "faults": [{"type": "abort", "status": 400, "probability": 0.15},
                          {"type": "shift", "scale": SCALE, "offset": OFFSET},
                          {"type": "status", "status": 503, "probability": 0.15}],
               "observe": {"shadow": {"enabled": True, "max_concurrency": 256}}}
        sc = await start_sidecar(policy_from(f"http://127.0.0.1:{port}", {"experiments": [exp]},
                                             max_blast_radius=50))
        rng = np.random.default_rng(5)
        rejected = failed = changed = unchanged = 0
        async with aiohttp.ClientSession() as s:
            for i in range(160):
                rows = sample_rows(rng, 4).round(2).tolist()
                body = {"inputs": [{"name": "input-0", "shape": [4, 4], "datatype": "FP64", "data": rows}]}
                async with s.post(f"http://127.0.0.1:{sc.proxy_port}/v2/models/iris/infer", json=body,
                                  headers={"x-user-id": f"u{i}"}) as r:
                    await r.read()
                    if r.headers.get("x-mlchaos-cohort") != "chaos":
                        continue
                    status = r.status
                if status == 400:
                    rejected += 1
                elif status == 503:
                    failed += 1
                else:
                    # The truth: did the shift change any of the request's labels?
                    shifted = [[v * SCALE + OFFSET for v in row] for row in rows]
                    same = await _labels(s, port, rows) == await _labels(s, port, shifted)
                    changed, unchanged = changed + (not same), unchanged + same
        assert rejected > 0 and failed > 0 and changed > 0 and unchanged > 0

        def matrix() -> dict[str, dict[str, int]]:
            return sc.experiments.states["om"].outcomes.to_dict()

        async with asyncio.timeout(10):
            while matrix()["shift"]["answered"] > 0:  # the twins are compared off the client's path
                await asyncio.sleep(0.1)
        m = matrix()
        assert m["abort"] == {"rejected": rejected, "failed": 0, "changed": 0, "unchanged": 0, "answered": 0}
        assert m["status"]["failed"] == failed and sum(m["status"].values()) == failed
        assert m["shift"] == {"rejected": 0, "failed": failed, "changed": changed, "unchanged": unchanged,
                              "answered": 0}
        report = sc.report("om")
        assert report is not None and report["fault_outcomes"] == m
        value = sc.metrics.registry.get_sample_value(
            "mlchaos_fault_outcomes_total", {"experiment": "om", "fault": "shift", "outcome": "changed"})
        assert value == changed
    finally:
        await runner.cleanup()
