"""The webhook POSTed when a kill switch trips: its Slack/Alertmanager payload, and that it never hurts the proxy."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import datetime
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from proxy.killswitch.webhook import trip_payload
from tests.conftest import policy_from
from tests.killswitch.prom import free_port

TRIP: dict[str, Any] = {
    "guard": "errors", "reason": "the chaos cohort has more errors than control", "at": "2026-03-01T12:00:00+00:00",
    "n_chaos": 12, "n_control": 10, "errors_chaos": 12, "errors_control": 0, "guards": {},
}

# Every chaos request is aborted: the errors guard trips after a handful of them.
TRIPPING: dict[str, Any] = {"max_blast_radius": 50, "experiments": [
    {"name": "hooked", "chaos": 25, "control": 25, "reveal": {"cohort": True},
     "faults": [{"type": "abort", "probability": 1.0, "status": 503}]},
]}


async def wait_for(probe: Callable[[], Awaitable[bool]] | Callable[[], bool], timeout: float,
                   interval: float = 0.02) -> bool:
    deadline = time.monotonic() + timeout
    while True:
        ok = probe()
        if asyncio.iscoroutine(ok):
            ok = await ok
        if ok:
            return True
        if time.monotonic() >= deadline:
            return False
        await asyncio.sleep(interval)


async def get_many(port: int, n: int, timeout: float = 5.0) -> list[int]:
    statuses = []
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=timeout)) as s:
        for _ in range(n):
            async with s.get(f"http://127.0.0.1:{port}/predict") as r:
                await r.read()
                statuses.append(r.status)
    return statuses


async def tripped(sc: Any, name: str) -> bool:
    async with aiohttp.ClientSession() as s, s.get(f"http://127.0.0.1:{sc.admin_port}/experiments") as r:
        body = await r.json()
    return any(e["name"] == name and e["kill_switch"]["tripped"] for e in body["experiments"])


class Hook:
    """An aiohttp receiver on a free loopback port that records every POST to /hook."""

    def __init__(self) -> None:
        self.received: list[dict[str, Any]] = []
        self.headers: list[dict[str, str]] = []
        self.delay = 0.0
        self.runner: web.AppRunner | None = None
        self.url = ""

    async def handle(self, request: web.Request) -> web.Response:
        self.headers.append(dict(request.headers))
        self.received.append(await request.json())
        if self.delay:
            await asyncio.sleep(self.delay)
        return web.json_response({"ok": True})

    async def start(self) -> Hook:
        app = web.Application()
        app.router.add_post("/hook", self.handle)
        self.runner = web.AppRunner(app, access_log=None, handle_signals=False, shutdown_timeout=0.5)
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", 0)
        await site.start()
        self.url = f"http://127.0.0.1:{self.runner.addresses[0][1]}/hook"
        return self

    async def stop(self) -> None:
        if self.runner is not None:
            await self.runner.cleanup()


@pytest.fixture
async def hook() -> AsyncIterator[Hook]:
    h = await Hook().start()
    yield h
    await h.stop()


# -- the payload --------------------------------------------------------------------------------------------

def test_payload_has_slack_text() -> None:
    p = trip_payload("checkout", TRIP, "127.0.0.1:8000")
    assert isinstance(p["text"], str)
    assert "checkout" in p["text"] and TRIP["reason"] in p["text"]
    # The numbers behind the trip and how to undo it are in the message a human reads.
    assert "12 requests" in p["text"] and "POST /experiments/checkout/rearm" in p["text"]


def test_payload_is_an_alertmanager_v4_webhook() -> None:
    p = trip_payload("checkout", TRIP, "127.0.0.1:8000")
    assert p["version"] == "4"
    assert p["status"] == "firing"
    for field in ("receiver", "groupKey", "groupLabels", "commonLabels", "commonAnnotations", "externalURL",
                  "truncatedAlerts", "alerts"):
        assert field in p, field
    assert isinstance(p["truncatedAlerts"], int) and isinstance(p["groupKey"], str)
    assert len(p["alerts"]) == 1
    alert = p["alerts"][0]
    assert alert["status"] == "firing"
    assert alert["labels"]["alertname"] == "MlchaosKillSwitchTripped"
    assert alert["labels"]["experiment"] == "checkout"
    assert alert["labels"]["guard"] == "errors"
    assert alert["labels"]["instance"] == "127.0.0.1:8000"
    assert set(alert["annotations"]) >= {"summary", "description"}
    assert alert["startsAt"] == TRIP["at"]
    datetime.fromisoformat(alert["startsAt"])  # RFC 3339
    assert {"endsAt", "generatorURL", "fingerprint"} <= set(alert)
    # Every label value and annotation is a string, as Alertmanager's receivers expect.
    assert all(isinstance(v, str) for v in alert["labels"].values())
    assert all(isinstance(v, str) for v in alert["annotations"].values())
    assert p["commonLabels"] == alert["labels"]


def test_payload_fingerprint_is_stable_per_experiment_and_guard() -> None:
    a = trip_payload("checkout", TRIP, "a:1")["alerts"][0]["fingerprint"]
    assert a == trip_payload("checkout", {**TRIP, "at": "later"}, "b:2")["alerts"][0]["fingerprint"]
    assert a != trip_payload("search", TRIP, "a:1")["alerts"][0]["fingerprint"]
    assert a != trip_payload("checkout", {**TRIP, "guard": "seatbelt"}, "a:1")["alerts"][0]["fingerprint"]


def test_payload_tolerates_a_sparse_trip_record() -> None:
    # A record restored from an old state file may lack fields: the payload is still complete.
    p = trip_payload("old", {}, "h:1")
    assert p["alerts"][0]["labels"]["guard"] == "?"
    assert p["text"] and p["alerts"][0]["startsAt"] == ""


# -- end to end ---------------------------------------------------------------------------------------------

async def test_a_trip_posts_the_webhook_exactly_once(upstream, start_sidecar, hook, log_events) -> None:
    sc = await start_sidecar(policy_from(upstream.url, TRIPPING, webhook={"url": hook.url, "timeout": "2s"}))
    for _ in range(10):
        await get_many(sc.proxy_port, 20)
        if await tripped(sc, "hooked"):
            break
    assert await tripped(sc, "hooked")
    assert await wait_for(lambda: len(hook.received) >= 1, 3), "no webhook within 3 s of the trip"
    # More traffic, more time: still one POST for the one trip.
    statuses = await get_many(sc.proxy_port, 50)
    assert statuses == [200] * 50, "after the trip nothing is aborted"
    await asyncio.sleep(0.3)
    assert len(hook.received) == 1, hook.received
    body = hook.received[0]
    assert hook.headers[0]["Content-Type"].startswith("application/json")
    assert body["version"] == "4" and body["status"] == "firing" and "text" in body
    alert = body["alerts"][0]
    assert alert["labels"]["alertname"] == "MlchaosKillSwitchTripped"
    assert alert["labels"]["experiment"] == "hooked"
    assert alert["labels"]["guard"] in {"errors", "seatbelt"}
    assert alert["labels"]["instance"] == f"127.0.0.1:{sc.proxy_port}"
    assert alert["startsAt"] and body["trip"]["n_chaos"] >= 1
    sent = [f for e, _, f in log_events if e == "webhook_sent"]
    assert sent and sent[0]["status"] == 200 and sent[0]["url"] == hook.url


async def test_a_refused_webhook_never_affects_the_proxy(upstream, start_sidecar, log_events) -> None:
    dead = f"http://127.0.0.1:{free_port()}/hook"  # nothing listens there
    sc = await start_sidecar(policy_from(upstream.url, TRIPPING, webhook={"url": dead, "timeout": "1s"}))
    for _ in range(10):
        await get_many(sc.proxy_port, 20)
        if await tripped(sc, "hooked"):
            break
    assert await tripped(sc, "hooked")
    assert await get_many(sc.proxy_port, 30) == [200] * 30
    assert await wait_for(lambda: any(e == "webhook_failed" for e, _, _ in log_events), 3)
    failed = [f for e, _, f in log_events if e == "webhook_failed"]
    assert len(failed) == 1 and failed[0]["url"] == dead
    async with aiohttp.ClientSession() as s, s.get(f"http://127.0.0.1:{sc.admin_port}/healthz") as r:
        assert r.status == 200


async def test_a_hanging_webhook_times_out_without_slowing_requests(upstream, start_sidecar, hook,
                                                                  log_events) -> None:
    hook.delay = 5.0  # answers long after the sidecar's timeout
    sc = await start_sidecar(policy_from(upstream.url, TRIPPING, webhook={"url": hook.url, "timeout": "0.5s"}))
    for _ in range(10):
        await get_many(sc.proxy_port, 20)
        if await tripped(sc, "hooked"):
            break
    assert await tripped(sc, "hooked")
    assert await wait_for(lambda: len(hook.received) == 1, 3)
    # While the webhook hangs, requests flow at their usual speed.
    t0 = time.monotonic()
    assert await get_many(sc.proxy_port, 30) == [200] * 30
    assert time.monotonic() - t0 < 2.0
    assert await wait_for(lambda: any(e == "webhook_failed" for e, _, _ in log_events), 2)
    assert len(hook.received) == 1
