"""Prometheus metrics: a fixed label vocabulary whatever clients send, and counts that match what they saw."""

from __future__ import annotations

import asyncio
import bisect
import contextlib
import math
import random
from collections import Counter
from collections.abc import Callable, Coroutine
from typing import Any

import aiohttp
from hypothesis import given
from hypothesis import strategies as st
from prometheus_client.parser import text_string_to_metric_families

import proxy
from proxy.cohort import bucket_of
from proxy.hypothesis.registry import CHECK_NAMES
from proxy.metrics import Distribution
from proxy.observe.outcomes import OUTCOMES
from tests.conftest import policy_from

COHORT = "x-mlchaos-cohort"
# The documented vocabularies (README, "Metrics"): nothing else may ever appear as a label value.
COHORTS = {"chaos", "control", "none"}
CODES = {"1xx", "2xx", "3xx", "4xx", "5xx", "dropped"}
FAULT_TYPES = {"abort", "drop", "delay", "stall", "throttle", "fallback"}
ERROR_KINDS = {"malformed_request", "body_too_large", "headers_too_large", "upstream_connect", "upstream_reset",
               "upstream_timeout", "upstream_bad_response", "client_disconnect", "client_timeout",
               "upstream_stale_retry", "upstream_stale_not_retried", "request_header_dropped",
               "client_header_timeout", "response_over_inspect_limit", "internal"}
GUARDS = {"errors", "latency", "ttft", "seatbelt", "evaluation"}


async def raw_exchange(port: int, data: bytes, timeout: float = 3.0) -> bytes:
    """Send raw bytes on a fresh connection and read until the sidecar closes it."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(data)
        await writer.drain()
        return await asyncio.wait_for(reader.read(-1), timeout)
    except ConnectionResetError:
        return b""
    finally:
        writer.close()
        with contextlib.suppress(ConnectionError):
            await writer.wait_closed()


async def scrape(admin_port: int) -> str:
    async with aiohttp.ClientSession() as s, s.get(f"http://127.0.0.1:{admin_port}/metrics") as r:
        assert r.status == 200
        return await r.text()


def samples(text: str) -> list[tuple[str, dict[str, str], float]]:
    return [(s.name, s.labels, s.value) for fam in text_string_to_metric_families(text) for s in fam.samples
            if s.name.startswith("mlchaos_")]


def value(text: str, name: str, **labels: str) -> float:
    return sum(v for n, lab, v in samples(text) if n == name and lab == labels)


async def eventually(check: Callable[[], Coroutine[Any, Any, bool]], timeout: float = 1.0) -> bool:
    for _ in range(int(timeout / 0.02)):
        if await check():
            return True
        await asyncio.sleep(0.02)
    return await check()


def user_in(name: str, lo: int, hi: int) -> str:
    for i in range(10_000):
        if lo <= bucket_of(name.encode(), f"u{i}".encode()) < hi:
            return f"u{i}"
    raise AssertionError("no such user")


# -- label values ------------------------------------------------------------------------------------------

class RandomTraffic:
    """Requests with random methods, paths, headers and override headers; every random string is remembered."""

    def __init__(self, seed: int) -> None:
        self.rng = random.Random(seed)
        self.strings: list[str] = []

    def word(self, prefix: str = "") -> str:
        s = f"{prefix}q{self.rng.getrandbits(40):010x}"
        self.strings.append(s)
        return s

    def request(self) -> bytes:
        rng = self.rng
        method = rng.choice(["GET", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", self.word("M").upper()])
        path = "/" + "/".join(self.word() for _ in range(rng.randint(0, 4)))
        if rng.random() < 0.5:
            path += f"?{self.word()}={self.word()}"
        headers = [(self.word("x-"), self.word()) for _ in range(rng.randint(0, 4))]
        headers += rng.sample([("x-mlchaos-experiment", self.word()), ("x-mlchaos-cohort", self.word()),
                               ("x-mlchaos-token", self.word()), ("x-mlchaos-cohort", "chaos")], k=rng.randint(0, 3))
        body = self.word().encode() if method in ("POST", "PUT") else b""
        head = f"{method} {path} HTTP/1.1\r\nhost: {self.word()}\r\nconnection: close\r\n"
        head += "".join(f"{n}: {v}\r\n" for n, v in headers)
        head += f"content-length: {len(body)}\r\n\r\n"
        return head.encode() + body


LABELLED = {
    "max_blast_radius": 40,
    "cohort_override": {"enabled": True},
    "experiments": [
        {"name": "exp-a", "chaos": 20, "control": 20, "match": {"method": ["GET", "POST"]},
         "faults": [{"type": "abort", "status": 503, "probability": 0.5},
                    {"type": "delay", "duration": "1ms", "probability": 0.5}]},
        {"name": "exp-b", "chaos": 20, "control": 20, "faults": [{"type": "drop", "probability": 0.3}]},
    ],
}


async def test_label_values_come_only_from_the_policy_and_fixed_lists(upstream, start_sidecar) -> None:
    sc = await start_sidecar(policy_from(upstream.url, LABELLED), env={"MLCHAOS_OVERRIDE_TOKEN": "tok"})
    traffic = RandomTraffic(seed=20301)
    for _ in range(6):
        await asyncio.gather(*(raw_exchange(sc.proxy_port, traffic.request()) for _ in range(15)))
    # Requests the proxy itself refuses, carrying random strings too.
    for bad in (f"{traffic.word()}\r\n\r\n", f"GET /{traffic.word()} HTTP/1.1\r\nContent-Length: x\r\n\r\n",
                f"GET /{traffic.word()} HTTP/1.1\r\nhost: a\r\nx-big: {'a' * 70_000}\r\n\r\n"):
        await raw_exchange(sc.proxy_port, bad.encode())
    text = await scrape(sc.admin_port)
    allowed = {
        "experiment": {"", "exp-a", "exp-b"}, "cohort": COHORTS, "code": CODES, "fault": FAULT_TYPES,
        "kind": ERROR_KINDS, "result": {"ok", "invalid", "compared", "failed", "skipped", "read", "dropped"},
        "version": {proxy.__version__}, "guard": GUARDS,
        "direction": {"request", "response"}, "outcome": set(OUTCOMES), "check": {*CHECK_NAMES, "verdict"},
    }
    seen: dict[str, set[str]] = {}
    for name, labels, _ in samples(text):
        for label, v in labels.items():
            seen.setdefault(label, set()).add(v)
            if label == "le":
                float(v)  # a histogram bound: a number or +Inf
                continue
            assert label in allowed, f"{name} has an unexpected label {label}={v!r}"
            assert v in allowed[label], f"{name}{{{label}={v!r}}} is not from the policy or a fixed list"
    leaked = [s for s in traffic.strings if s in text]
    assert not leaked, leaked[:5]
    # The traffic did reach every kind of series, so the check above looked at real values.
    assert {"chaos", "control", "none"} <= seen["cohort"]
    assert {"exp-a", "exp-b", ""} <= seen["experiment"]
    assert value(text, "mlchaos_proxy_errors_total", kind="malformed_request") >= 2
    assert value(text, "mlchaos_proxy_errors_total", kind="headers_too_large") == 1
    assert seen["outcome"]  # faulted requests reached the outcome matrix


# -- counts ------------------------------------------------------------------------------------------------

async def test_request_counts_per_cohort_match_what_clients_saw(upstream, start_sidecar) -> None:
    sc = await start_sidecar(policy_from(upstream.url, {"max_blast_radius": 20, "experiments": [
        {"name": "counted", "chaos": 20, "control": 20, "reveal": {"cohort": True}, "match": {"path": "/in/**"},
         "faults": [{"type": "abort", "status": 503}]}]}))
    seen: Counter[tuple[str, int]] = Counter()
    async with aiohttp.ClientSession() as s:
        for i in range(120):
            path = "/in/predict" if i % 4 else "/out"
            async with s.post(f"http://127.0.0.1:{sc.proxy_port}{path}", data=b"{}") as r:
                await r.read()
                seen[r.headers.get(COHORT, "none"), r.status] += 1
    assert set(seen) == {("chaos", 503), ("control", 200), ("none", 200)}, seen
    expected = {("counted", "chaos", "5xx"): seen["chaos", 503], ("counted", "control", "2xx"): seen["control", 200],
                ("", "none", "2xx"): seen["none", 200]}

    async def matches() -> bool:
        text = await scrape(sc.admin_port)
        got = {(lab["experiment"], lab["cohort"], lab["code"]): v for n, lab, v in samples(text)
               if n == "mlchaos_requests_total" and v}
        return got == expected

    assert await eventually(matches), (expected, await scrape(sc.admin_port))
    text = await scrape(sc.admin_port)
    assert value(text, "mlchaos_faults_injected_total", experiment="counted", fault="abort") == seen["chaos", 503]
    for exp, cohort, n in (("counted", "chaos", seen["chaos", 503]), ("counted", "control", seen["control", 200]),
                           ("", "none", seen["none", 200])):
        assert value(text, "mlchaos_request_duration_seconds_count", experiment=exp, cohort=cohort) == n


async def test_a_dropped_connection_is_counted_as_dropped(upstream, start_sidecar) -> None:
    sc = await start_sidecar(policy_from(upstream.url, {"experiments": [
        {"name": "dropper", "chaos": 5, "sticky_key": "header:x-user-id", "faults": [{"type": "drop"}]}]}))
    user = user_in("dropper", 0, 500)
    answer = await raw_exchange(sc.proxy_port, f"GET / HTTP/1.1\r\nhost: a\r\nx-user-id: {user}\r\n\r\n".encode())
    assert answer == b""

    async def counted() -> bool:
        text = await scrape(sc.admin_port)
        return value(text, "mlchaos_requests_total", experiment="dropper", cohort="chaos", code="dropped") == 1

    assert await eventually(counted)


async def test_an_unreachable_upstream_is_counted_as_a_connect_error(start_sidecar) -> None:
    sc = await start_sidecar(policy_from("http://127.0.0.1:9"))
    async with aiohttp.ClientSession() as s, s.get(f"http://127.0.0.1:{sc.proxy_port}/") as r:
        assert r.status == 502 and r.headers["x-mlchaos-error"] == "1"
    text = await scrape(sc.admin_port)
    assert value(text, "mlchaos_proxy_errors_total", kind="upstream_connect") == 1
    assert value(text, "mlchaos_requests_total", experiment="", cohort="none", code="5xx") == 1


# -- experiment_active -------------------------------------------------------------------------------------

async def test_experiment_active_follows_start_stop_halt_and_reload(upstream, start_sidecar) -> None:
    sc = await start_sidecar(policy_from(upstream.url, {"experiments": [
        {"name": "on", "chaos": 1}, {"name": "off", "chaos": 1, "enabled": False}]}))
    base = f"http://127.0.0.1:{sc.admin_port}"

    async def active() -> dict[str, float]:
        return {lab["experiment"]: v for n, lab, v in samples(await scrape(sc.admin_port))
                if n == "mlchaos_experiment_active"}

    async with aiohttp.ClientSession() as s:
        assert await active() == {"on": 1, "off": 0}
        async with s.post(f"{base}/experiments/on/stop") as r:
            assert r.status == 200
        assert await active() == {"on": 0, "off": 0}
        async with s.post(f"{base}/experiments/off/start") as r:
            assert r.status == 200
        assert await active() == {"on": 0, "off": 1}
        async with s.post(f"{base}/halt") as r:
            assert r.status == 200
        assert await active() == {"on": 0, "off": 0}
        text = policy_from(upstream.url, {"experiments": [{"name": "new", "chaos": 1}]}).source
        async with s.post(f"{base}/policy", data=text) as r:
            assert r.status == 200
        # A removed experiment's series are gone, not left at their last value; a halt outlives the
        # reload, so the new experiment waits until it is started by name.
        assert await active() == {"new": 0}
        async with s.post(f"{base}/experiments/new/start") as r:
            assert r.status == 200
        assert await active() == {"new": 1}
        assert "off" not in {lab.get("experiment") for _, lab, _ in samples(await scrape(sc.admin_port))}


@given(st.lists(st.floats(allow_nan=False, allow_infinity=False, width=32), min_size=1, max_size=20, unique=True),
       st.lists(st.floats(allow_nan=False), max_size=50))
def test_a_histogram_puts_each_value_in_the_bucket_bisect_left_finds(bounds: list[float], values: list[float]) -> None:
    edges = tuple(sorted(bounds))
    d = Distribution(edges)
    expected = [0] * (len(edges) + 1)
    total = 0.0
    for v in values:
        d.observe(v)
        expected[bisect.bisect_left(edges, v)] += 1
        total += v
    assert d.counts == expected
    assert d.sum == total or (math.isnan(d.sum) and math.isnan(total))


@given(st.lists(st.floats(allow_nan=False, allow_infinity=False, width=32), min_size=1, max_size=20, unique=True),
       st.lists(st.floats(allow_nan=False), max_size=50))
def test_a_histogram_takes_a_batch_as_it_takes_each_value(bounds: list[float], values: list[float]) -> None:
    edges = tuple(sorted(bounds))
    one, batch = Distribution(edges), Distribution(edges)
    for v in values:
        one.observe(v)
    batch.observe_all(values)
    assert batch.counts == one.counts
    assert batch.sum == one.sum or (math.isnan(batch.sum) and math.isnan(one.sum))
