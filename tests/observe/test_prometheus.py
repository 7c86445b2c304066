"""Per-cohort rates and the drift gauge through a real Prometheus scraping two `mlchaos run` processes.

Both sidecars stand in front of the demo model with the same experiment: a shift on the chaos cohort. What the
clients counted per cohort must come out of PromQL, and the drift gauge must show the shift past its alarm.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from pathlib import Path

import aiohttp
import numpy as np
import yaml

from proxy.demo.model import sample_rows, start_model
from tests.killswitch.prom import PrometheusServer, free_port, requires_prometheus
from tests.killswitch.test_prometheus import MLCHAOS, Mlchaos

pytestmark = requires_prometheus
NAME = "drift"
NAMES = ["sepal_length", "sepal_width", "petal_length", "petal_width"]


async def _sidecar(upstream: str, tmp: Path, i: int) -> Mlchaos:
    config = tmp / f"policy-{i}.yaml"
    config.write_text(yaml.safe_dump({
        "listen": "127.0.0.1:1", "upstream": upstream, "admin": {"listen": "127.0.0.1:2"}, "max_blast_radius": 25,
        "experiments": [{"name": NAME, "chaos": 25, "control": 25, "reveal": {"cohort": True},
                         "kill_switch": {"enabled": False}, "payload": {"features": NAMES},
                         "observe": {"drift_interval": "200ms"},
                         "faults": [{"type": "shift", "scale": 1.5, "offset": 1.0}]}],
    }))
    log = tmp / f"mlchaos-{i}.log"
    proxy_port, admin_port = free_port(), free_port()
    with open(log, "wb") as fh:
        proc = await asyncio.create_subprocess_exec(
            MLCHAOS, "run", "--config", str(config), "--listen", f"127.0.0.1:{proxy_port}",
            "--admin", f"127.0.0.1:{admin_port}", stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.DEVNULL, stderr=fh)
    m = Mlchaos(proc, proxy_port, admin_port, log)
    await m.ready()
    return m


async def test_promql_sees_per_cohort_counts_and_the_drift_of_a_shift(tmp_path: Path) -> None:
    runner, port = await start_model()
    sidecars: list[Mlchaos] = []
    prom: PrometheusServer | None = None
    try:
        sidecars = [await _sidecar(f"http://127.0.0.1:{port}", tmp_path, i) for i in range(2)]
        prom = PrometheusServer({"mlchaos": [f"127.0.0.1:{m.admin_port}" for m in sidecars]}, tmp_path / "prom")
        await prom.astart()
        await prom.await_targets_up(2, timeout=15)
        seen: Counter[str] = Counter()
        rng = np.random.default_rng(5)
        async with aiohttp.ClientSession() as s:
            async def one(m: Mlchaos) -> None:
                rows = sample_rows(rng, 4).round(2).tolist()
                body = {"inputs": [{"name": "input-0", "shape": [4, 4], "datatype": "FP64", "data": rows}]}
                async with s.post(f"http://127.0.0.1:{m.proxy_port}/v2/models/iris/infer", json=body) as r:
                    assert r.status == 200
                    seen[r.headers.get("x-mlchaos-cohort", "none")] += 1
            for _ in range(25):
                await asyncio.gather(*(one(m) for m in sidecars for _ in range(16)))
        await asyncio.sleep(1.5)  # the observers' passes and one drift computation
        await prom.await_scrapes_after(time.time())
        by_cohort = await prom.aquery_by(f'sum by (cohort) (mlchaos_requests_total{{experiment="{NAME}"}})',
                                         "cohort")
        assert by_cohort == {"chaos": seen["chaos"], "control": seen["control"]}
        psi = await prom.aquery_by(
            f'mlchaos_prediction_drift{{experiment="{NAME}",output="probabilities",statistic="psi"}}', "instance")
        assert len(psi) == 2 and all(v > 0.25 for v in psi.values()), psi
        ks_p = await prom.aquery_value(
            f'max(mlchaos_prediction_drift{{experiment="{NAME}",output="probabilities",statistic="ks_p"}})')
        assert ks_p is not None and ks_p < 0.05
        srm = await prom.aquery_value(f'max(mlchaos_sample_ratio_mismatch{{experiment="{NAME}"}})')
        assert srm == 0
    finally:
        if prom is not None:
            await prom.astop()
        for m in sidecars:
            m.proc.terminate()
            await m.proc.wait()
        await runner.cleanup()
