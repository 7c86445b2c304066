"""Two `mlchaos run` processes scraped by a real Prometheus; `mlchaos gate --prometheus` judges the fleet.

The clients count cohorts from ``x-mlchaos-cohort``; PromQL over both sidecars must say the same. The fleet
gate passes a healthy experiment with enough traffic, is inconclusive with too little, and fails when one
sidecar's kill switch trips.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import sys
import time
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import yaml

from tests.killswitch.prom import PrometheusServer, free_port, requires_prometheus

pytestmark = requires_prometheus

MLCHAOS = str(Path(sys.executable).with_name("mlchaos"))
COHORT = "x-mlchaos-cohort"
NAME = "fleet"
MIN = 50


def policy_yaml(upstream_url: str, faulty: bool) -> str:
    return yaml.safe_dump({
        "listen": "127.0.0.1:1", "upstream": upstream_url, "admin": {"listen": "127.0.0.1:2"},
        "max_blast_radius": 20,
        "experiments": [{
            "name": NAME, "chaos": 20, "control": 20, "reveal": {"cohort": True},
            "kill_switch": {"min_requests": MIN},
            "faults": [{"type": "abort", "probability": 1.0, "status": 503}] if faulty else [],
        }],
    }, sort_keys=False)


class Mlchaos:
    """One `mlchaos run` process on its own free ports; its log goes to a file."""

    def __init__(self, proc: asyncio.subprocess.Process, proxy_port: int, admin_port: int, log: Path) -> None:
        self.proc, self.proxy_port, self.admin_port, self.log = proc, proxy_port, admin_port, log

    @property
    def target(self) -> str:
        return f"127.0.0.1:{self.admin_port}"

    async def ready(self, timeout: float = 10.0) -> None:
        deadline = time.monotonic() + timeout
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=1)) as s:
            while time.monotonic() < deadline:
                if self.proc.returncode is not None:
                    raise AssertionError(f"mlchaos exited {self.proc.returncode}: {self.log.read_text()[-2000:]}")
                with contextlib.suppress(aiohttp.ClientError, TimeoutError):
                    async with s.get(f"http://127.0.0.1:{self.admin_port}/readyz") as r:
                        if r.status == 200:
                            return
                await asyncio.sleep(0.05)
        raise AssertionError(f"mlchaos not ready in {timeout} s: {self.log.read_text()[-2000:]}")

    async def experiment(self) -> dict[str, Any]:
        async with aiohttp.ClientSession() as s, s.get(f"http://127.0.0.1:{self.admin_port}/experiments") as r:
            body = await r.json()
        return next(e for e in body["experiments"] if e["name"] == NAME)


@pytest.fixture
async def run_mlchaos(tmp_path: Path) -> AsyncIterator[Callable[[str, bool], Awaitable[Mlchaos]]]:
    started: list[Mlchaos] = []

    async def run(upstream_url: str, faulty: bool) -> Mlchaos:
        i = len(started)
        config = tmp_path / f"policy-{i}.yaml"
        config.write_text(policy_yaml(upstream_url, faulty))
        log = tmp_path / f"mlchaos-{i}.log"
        proxy_port, admin_port = free_port(), free_port()
        with open(log, "wb") as fh:
            proc = await asyncio.create_subprocess_exec(
                MLCHAOS, "run", "--config", str(config), "--listen", f"127.0.0.1:{proxy_port}",
                "--admin", f"127.0.0.1:{admin_port}", stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.DEVNULL, stderr=fh)
        m = Mlchaos(proc, proxy_port, admin_port, log)
        started.append(m)
        await m.ready()
        return m

    yield run
    for m in started:
        if m.proc.returncode is None:
            m.proc.terminate()
            try:
                await asyncio.wait_for(m.proc.wait(), 5)
            except TimeoutError:
                m.proc.kill()
                await m.proc.wait()


@pytest.fixture
async def prometheus(tmp_path: Path) -> AsyncIterator[Callable[[list[str]], Awaitable[PrometheusServer]]]:
    servers: list[PrometheusServer] = []

    async def start(targets: list[str]) -> PrometheusServer:
        prom = PrometheusServer({"mlchaos": targets}, tmp_path / f"prometheus-{len(servers)}")
        servers.append(prom)
        await prom.astart()
        await prom.await_targets_up(len(targets), timeout=15)
        return prom

    yield start
    for prom in servers:
        await prom.astop()


async def drive(sidecars: list[Mlchaos], per_sidecar: int, concurrency: int = 8) -> dict[int, Counter[str]]:
    """GET through each sidecar; per sidecar (by admin port), how many answers carried each cohort."""
    seen: dict[int, Counter[str]] = {m.admin_port: Counter() for m in sidecars}
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as s:
        async def worker(m: Mlchaos, n: int) -> None:
            for _ in range(n):
                async with s.get(f"http://127.0.0.1:{m.proxy_port}/infer") as r:
                    await r.read()
                    seen[m.admin_port][r.headers.get(COHORT, "none")] += 1

        share = per_sidecar // concurrency
        await asyncio.gather(*(worker(m, share + (1 if j < per_sidecar % concurrency else 0))
                               for m in sidecars for j in range(concurrency)))
    return seen


def total(counts: dict[int, Counter[str]]) -> Counter[str]:
    out: Counter[str] = Counter()
    for c in counts.values():
        out.update(c)
    return out


async def mlchaos_gate(prom: PrometheusServer, *extra: str) -> tuple[int, dict[str, Any] | None, str]:
    proc = await asyncio.create_subprocess_exec(
        MLCHAOS, "gate", "--prometheus", prom.url, "--experiment", NAME, "--min-requests", str(MIN), *extra,
        stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    try:
        out, err = await asyncio.wait_for(proc.communicate(), 20)
    except TimeoutError:
        proc.kill()
        await proc.wait()
        raise
    assert proc.returncode is not None
    return proc.returncode, json.loads(out) if out.strip() else None, err.decode()


async def test_promql_counts_match_the_clients_and_the_fleet_gate_passes(upstream, run_mlchaos, prometheus) -> None:
    a, b = await run_mlchaos(upstream.url, False), await run_mlchaos(upstream.url, False)
    prom = await prometheus([a.target, b.target])

    # Too little traffic: inconclusive.
    thin = await drive([a, b], 10)
    await prom.await_scrapes_after(time.time())
    rc, verdict, err = await mlchaos_gate(prom)
    assert rc == 2, (verdict, err)
    assert verdict is not None and verdict["verdict"] == "inconclusive" and verdict["sidecars"] == 2

    more = await drive([a, b], 300)
    counts = {port: thin[port] + more[port] for port in thin}
    await prom.await_scrapes_after(time.time())

    clients = total(counts)
    by_cohort = await prom.aquery_by(f'sum by (cohort) (mlchaos_requests_total{{experiment="{NAME}"}})', "cohort")
    assert by_cohort == {"chaos": clients["chaos"], "control": clients["control"]}, clients
    untouched = await prom.aquery_value('sum(mlchaos_requests_total{experiment=""})')
    assert untouched == clients["none"]
    assert sum(clients.values()) == 2 * 310
    # Per sidecar too: each instance's series match what went through it.
    for m in (a, b):
        mine = await prom.aquery_by(
            f'sum by (cohort) (mlchaos_requests_total{{experiment="{NAME}",instance="{m.target}"}})', "cohort")
        assert mine == {"chaos": counts[m.admin_port]["chaos"], "control": counts[m.admin_port]["control"]}
    assert await prom.aquery_value(f'sum(mlchaos_killswitch_tripped{{experiment="{NAME}"}})') == 0

    rc, verdict, err = await mlchaos_gate(prom)
    assert rc == 0, (verdict, err)
    assert verdict is not None and verdict["verdict"] == "pass"
    assert (verdict["n_chaos"], verdict["n_control"]) == (clients["chaos"], clients["control"])
    assert verdict["errors_chaos"] == 0 and verdict["sidecars"] == 2

    # --window judges recent counts only: once the traffic has stopped for longer than the window, the
    # window holds no chaos request, and the verdict waits (what a re-armed experiment needs: old errors out).
    await asyncio.sleep(4)
    await prom.await_scrapes_after(time.time())
    rc, verdict, err = await mlchaos_gate(prom, "--window", "2s")
    assert rc == 2, (verdict, err)
    assert verdict is not None and verdict["verdict"] == "inconclusive" and verdict["n_chaos"] == 0
    assert verdict["window_seconds"] == 2.0
    rc, verdict, _ = await mlchaos_gate(prom)
    assert rc == 0 and verdict is not None and verdict["n_chaos"] == clients["chaos"]


async def test_the_fleet_gate_fails_when_one_sidecar_trips(upstream, run_mlchaos, prometheus) -> None:
    healthy, faulty = await run_mlchaos(upstream.url, False), await run_mlchaos(upstream.url, True)
    prom = await prometheus([healthy.target, faulty.target])
    for _ in range(20):
        counts = await drive([healthy, faulty], 50)
        if (await faulty.experiment())["kill_switch"]["tripped"]:
            break
    assert (await faulty.experiment())["kill_switch"]["tripped"], counts
    assert (await healthy.experiment())["kill_switch"]["tripped"] is None

    tripped = await prom.await_until(
        lambda: prom.query_by(f'mlchaos_killswitch_tripped{{experiment="{NAME}"}}', "instance"),
        lambda v: v.get(faulty.target) == 1.0, timeout=10, what="the trip in Prometheus")
    assert tripped == {healthy.target: 0.0, faulty.target: 1.0}

    rc, verdict, err = await mlchaos_gate(prom)
    assert rc == 1, (verdict, err)
    assert verdict is not None and verdict["verdict"] == "fail" and verdict["tripped"] is True
    assert "1 sidecar(s) tripped" in verdict["reason"]


async def test_the_fleet_gate_is_inconclusive_when_prometheus_is_dead() -> None:
    proc = await asyncio.create_subprocess_exec(
        MLCHAOS, "gate", "--prometheus", f"http://127.0.0.1:{free_port()}", "--experiment", NAME, "--timeout", "2",
        stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(proc.communicate(), 20)
    assert proc.returncode == 2 and out == b"" and b"no verdict" in err
