"""The load driver over real loopback sockets: against the demo model, a cohort-tagging stub, a dead port."""

from __future__ import annotations

import io
import re
import socket
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path

import numpy as np
import orjson
import pytest
from aiohttp import web

from proxy.demo.driver import (
    NO_RESPONSE,
    CohortStats,
    Progress,
    Results,
    drive,
    format_progress,
    format_table,
    make_request,
)
from proxy.demo.model import decode_v1, decode_v2, start_model
from proxy.demo.run import run_demo


@asynccontextmanager
async def model(latency: float = 0.0) -> AsyncIterator[str]:
    runner, port = await start_model(latency=latency)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        await runner.cleanup()


@asynccontextmanager
async def serve(handler: Callable[[web.Request], Awaitable[web.StreamResponse]]) -> AsyncIterator[str]:
    app = web.Application()
    app.router.add_post("/{tail:.*}", handler)
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=1.0)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    try:
        yield f"http://127.0.0.1:{runner.addresses[0][1]}"
    finally:
        await runner.cleanup()


async def test_counts_add_up_against_the_model() -> None:
    seen: list[Progress] = []
    async with model() as url:
        res = await drive(url, duration=5.0, concurrency=8, max_requests=150, on_progress=seen.append)
    assert res.stopped_by == "max_requests"
    assert res.requests == 150
    assert set(res.cohorts) == {"none"}  # no sidecar: nobody is tagged
    none = res["none"]
    assert none.requests == 150 and none.errors == 0 and none.client_errors == 0
    assert none.outcomes == {200: 150}
    assert len(none.latencies_ms) == 150 and not none.faults
    assert 0 < none.p50_ms <= none.p99_ms < 10_000
    assert res["chaos"].requests == 0 and np.isnan(res["chaos"].p99_ms)
    assert seen and seen[-1].requests == 150 and seen[-1].cohorts == {"none": 150}

    table = format_table(res)
    lines = table.splitlines()
    columns = ["cohort", "requests", "errors", "error %", "p50 ms", "p99 ms", "faults"]
    assert re.split(r"\s{2,}", lines[0]) == columns
    assert [line.split()[0] for line in lines[2:]] == ["chaos", "control", "none"]
    assert lines[4].split()[:4] == ["none", "150", "0", "0.0"]
    # Aligned: the requests column ends at the same place on every line.
    end = len(lines[0].split("requests")[0]) + len("requests")
    assert all(line[end - 1] != " " for line in lines if not line.startswith("-"))


async def test_bounded_by_max_requests() -> None:
    async with model() as url:
        res = await drive(url, duration=10.0, concurrency=32, max_requests=10)
    assert res.requests == 10 and res.stopped_by == "max_requests"
    assert res.elapsed < 5.0


async def test_bounded_by_duration() -> None:
    progress: list[Progress] = []
    async with model(latency=0.05) as url:
        t0 = time.perf_counter()
        res = await drive(url, duration=0.6, concurrency=4, max_requests=1_000_000,
                          on_progress=progress.append, progress_interval=0.1)
        took = time.perf_counter() - t0
    assert res.stopped_by == "duration"
    assert took < 0.6 + 0.5  # the last requests in flight finish, nothing new starts
    assert 4 <= res.requests <= 4 * (0.6 / 0.05 + 1)
    assert len(progress) >= 3
    assert [p.requests for p in progress] == sorted(p.requests for p in progress)
    assert res["none"].p50_ms >= 50


async def test_reads_cohort_and_fault_headers() -> None:
    users: list[str] = []

    async def sidecar_stub(request: web.Request) -> web.Response:
        await request.read()
        user = request.headers["x-user-id"]
        users.append(user)
        k = int(user.removeprefix("user-"))
        if k % 10 == 0:
            headers = {"x-mlchaos-cohort": "chaos", "x-mlchaos-fault": "abort"}
            return web.json_response({"error": "Service Unavailable"}, status=503, headers=headers)
        if k % 10 == 1:
            return web.json_response({"predictions": [0]}, headers={"x-mlchaos-cohort": "control"})
        if k % 10 == 2:
            return web.json_response({"predictions": [0]}, headers={"x-mlchaos-cohort": "chaos",
                                                                    "x-mlchaos-fault": "delay"})
        if k % 10 == 3:
            return web.json_response({"error": "bad"}, status=400)
        return web.json_response({"predictions": [0]})

    async with serve(sidecar_stub) as url:
        res = await drive(url, duration=5.0, concurrency=4, max_requests=300, seed=3)
    assert res.requests == 300 == len(users)
    assert all(u.startswith("user-") and 0 <= int(u[5:]) < 5_000 for u in users)
    assert len(set(users)) > 200  # many simulated users, not a handful
    chaos, control, none = res["chaos"], res["control"], res["none"]
    assert chaos.requests + control.requests + none.requests == 300
    assert chaos.faults["abort"] == chaos.errors == chaos.outcomes[503]
    assert chaos.faults["delay"] == chaos.outcomes[200]
    assert control.errors == 0 and control.faults == {}
    assert none.errors == 0 and none.client_errors == none.outcomes[400] > 0
    assert all(n > 0 for n in (chaos.requests, control.requests, none.requests))
    table = format_table(res)
    assert "abort=" in table and "delay=" in table
    assert "4xx answers (not counted as errors): none" in table


async def test_no_answer_counts_as_error() -> None:
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    res = await drive(f"http://127.0.0.1:{port}", duration=5.0, concurrency=2, max_requests=6)
    assert res.requests == 6 == res.errors
    assert res[NO_RESPONSE].outcomes == {"connection error": 6}
    assert NO_RESPONSE in format_table(res)


def test_requests_fit_the_model() -> None:
    rng = np.random.default_rng(1)
    kinds: set[str] = set()
    for seq in range(300):
        path, body = make_request(rng, seq)
        doc = orjson.loads(body)
        if path.startswith("/v1/"):
            assert path == "/v1/models/iris:predict"
            x = decode_v1(doc)
            kinds.add("v1-dict" if isinstance(doc["instances"][0], dict) else "v1-list")
        else:
            assert path in ("/v2/models/iris/infer", "/v2/models/iris/versions/1/infer")
            x, req_id, _ = decode_v2(doc)
            assert req_id == f"req-{seq}"
            first = doc["inputs"][0]
            kinds.add("v2-columns" if len(doc["inputs"]) == 4 else
                      "v2-nested" if isinstance(first["data"][0], list) else "v2-flat")
        assert x.shape[1] == 4 and 1 <= x.shape[0] <= 4
    assert kinds == {"v1-list", "v1-dict", "v2-flat", "v2-nested", "v2-columns"}


def test_format_table_and_progress() -> None:
    chaos = CohortStats(requests=4, errors=1, latencies_ms=[10.0, 20.0, 30.0, 400.0])
    chaos.faults.update({"delay": 2, "abort": 1})
    res = Results({"chaos": chaos, "none": CohortStats(requests=2, latencies_ms=[1.0, 3.0])}, 1.0, "duration")
    lines = format_table(res).splitlines()
    assert lines[2].split() == ["chaos", "4", "1", "25.0", "25.0", "388.9", "delay=2", "abort=1"]
    assert lines[3].split() == ["control", "0", "0", "-", "-", "-", "-"]
    assert lines[4].split() == ["none", "2", "0", "0.0", "2.0", "3.0", "-"]

    line = format_progress(Progress(2.5, 20.0, 500, 3, {"chaos": 20, "control": 25, "none": 455}))
    assert "\n" not in line and "\r" not in line
    assert "2.5/20s" in line and "200.0 req/s" in line
    assert "chaos 20" in line and "control 25" in line and "none 455" in line and "errors 3" in line


@pytest.mark.parametrize(("concurrency", "users"), [(0, 10), (4, 0)])
async def test_rejects_nonsense(concurrency: int, users: int) -> None:
    with pytest.raises(ValueError, match="must be >= 1"):
        await drive("http://127.0.0.1:9", duration=0.1, concurrency=concurrency, users=users)


# --- The whole demo, through the real sidecar -----------------------------------------------------------

async def test_run_demo_end_to_end() -> None:
    out = io.StringIO()
    assert await run_demo(duration=1.5, out=out, concurrency=8) == 0
    text = out.getvalue()
    table = text[text.index("cohort   requests"):]
    rows = {cells[0]: cells for cells in map(str.split, table.splitlines()[2:5])}
    assert set(rows) == {"chaos", "control", "none"}
    assert int(rows["chaos"][1]) > 0 and int(rows["control"][1]) > 0
    assert int(rows["none"][1]) > int(rows["chaos"][1])
    assert rows["control"][2] == rows["none"][2] == "0"  # no errors outside chaos
    assert "faults injected" in text and "the none cohort is untouched" in text
    assert "\r" not in text  # not a terminal: one progress line per interval


async def test_run_demo_bad_policy(tmp_path: Path) -> None:
    policy = tmp_path / "bad.yaml"
    policy.write_text("listen: nowhere\n")
    out = io.StringIO()
    assert await run_demo(duration=1.0, policy_path=str(policy), out=out) == 1
    assert "cannot load" in out.getvalue()
