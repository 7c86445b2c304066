"""Cohort assignment: the hash itself, the sticky key, and what clients see through a running sidecar."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote_from_bytes

import aiohttp
import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from proxy.cohort import bucket_of, random_bucket, sticky_value
from proxy.policy import BUCKETS, StickyKey
from tests.conftest import policy_from

ROOT = Path(__file__).resolve().parents[1]
KEYS = [f"user-{i}".encode() for i in range(100_000)]
COHORT = "x-mlchaos-cohort"


@dataclass
class FakeRequest:
    """The four things ``sticky_value`` reads from a request."""

    headers: dict[bytes, bytes]
    query: bytes = b""
    client_ip: bytes = b"127.0.0.1"
    body: bytes | None = None

    def header(self, name: bytes) -> bytes | None:
        return self.headers.get(name)

    def held_body(self) -> bytes | None:
        return self.body


def cohort_of(salt: str, key: str, chaos: int, control: int) -> str | None:
    """The cohort a sticky key lands in, from the public hash: chaos, control or None (untouched)."""
    b = bucket_of(salt.encode(), key.encode())
    return "chaos" if b < chaos else "control" if b < chaos + control else None


def users_by_cohort(salt: str, chaos: int, control: int) -> dict[str | None, str]:
    """One user id for each cohort of an experiment."""
    found: dict[str | None, str] = {}
    for i in range(10_000):
        found.setdefault(cohort_of(salt, f"u{i}", chaos, control), f"u{i}")
        if len(found) == 3:
            return found
    raise AssertionError("no user found for every cohort")


# -- the hash ----------------------------------------------------------------------------------------------

@given(salt=st.binary(max_size=64), key=st.binary(max_size=256))
def test_a_bucket_is_deterministic_and_within_the_bucket_range(salt: bytes, key: bytes) -> None:
    b = bucket_of(salt, key)
    assert 0 <= b < BUCKETS
    assert bucket_of(salt, key) == b
    assert bucket_of(bytes(salt), bytes(key)) == b


def test_another_process_computes_the_same_buckets() -> None:
    pairs = [(f"exp-{i % 3}", f"user-{i}") for i in range(50)]
    here = [bucket_of(s.encode(), k.encode()) for s, k in pairs]
    code = ("import sys, json; from proxy.cohort import bucket_of; "
            "pairs = json.loads(sys.argv[1]); "
            "print(json.dumps([bucket_of(s.encode(), k.encode()) for s, k in pairs]))")
    env = {**os.environ, "PYTHONHASHSEED": "12345"}
    out = subprocess.run([sys.executable, "-c", code, json.dumps(pairs)], capture_output=True, text=True,
                         timeout=20, check=True, env=env, cwd=ROOT)
    assert json.loads(out.stdout) == here


@pytest.mark.parametrize("percent", [1.0, 2.0, 2.5, 5.0])
def test_the_share_of_keys_under_a_threshold_matches_the_configured_percent(percent: float) -> None:
    threshold = round(percent * BUCKETS / 100)
    inside = sum(1 for k in KEYS if bucket_of(b"checkout-latency", k) < threshold)
    share = inside * 100 / len(KEYS)
    assert abs(share - percent) <= 0.2, f"{share:.3f}% of keys under {threshold} buckets, expected {percent}%"


def test_buckets_spread_evenly_over_ten_deciles() -> None:
    deciles = Counter(bucket_of(b"spread", k) * 10 // BUCKETS for k in KEYS)
    assert sorted(deciles) == list(range(10))
    assert all(9_500 <= n <= 10_500 for n in deciles.values()), deciles


def test_random_buckets_spread_evenly_across_pool_refills() -> None:
    # 100,000 draws: about 24 refills of the pool. Each decile expects 10,000 (sd ~95): 9,500-10,500 is over 5 sd.
    draws = [random_bucket() for _ in range(100_000)]
    assert min(draws) >= 0 and max(draws) < BUCKETS
    deciles = Counter(b * 10 // BUCKETS for b in draws)
    assert all(9_500 <= deciles[d] <= 10_500 for d in range(10)), deciles
    # Consecutive draws are not tied to each other (a refill that repeated its pool would show here).
    assert len(set(zip(draws[::2], draws[1::2], strict=True))) > 49_000


def test_two_experiments_choose_their_chaos_cohorts_independently() -> None:
    a = {k for k in KEYS if bucket_of(b"exp-a", k) < 500}
    b = {k for k in KEYS if bucket_of(b"exp-b", k) < 500}
    overlap = len(a & b) * 100 / len(KEYS)
    # Independent 5% draws share 5% x 5% = 0.25% of keys; the same salt would share all 5%.
    assert 0.17 <= overlap <= 0.33, f"overlap {overlap:.3f}%"
    assert a != b


# -- the sticky key ----------------------------------------------------------------------------------------

def test_a_header_sticky_key_reads_the_header_value_stripped() -> None:
    req = FakeRequest({b"x-user-id": b"  alice \t"})
    assert sticky_value(StickyKey("header", "x-user-id"), req) == b"alice"
    assert sticky_value(StickyKey("header", "x-tenant"), req) is None
    assert sticky_value(StickyKey("header", "x-user-id"), FakeRequest({b"x-user-id": b""})) is None


def test_a_query_sticky_key_reads_the_url_decoded_parameter() -> None:
    key = StickyKey("query", "uid")
    assert sticky_value(key, FakeRequest({}, query=b"a=1&uid=J%C3%B6rg+M&b=2")) == "Jörg M".encode()
    assert sticky_value(key, FakeRequest({}, query=b"u%69d=encoded-name")) == b"encoded-name"
    assert sticky_value(key, FakeRequest({}, query=b"a=1&uidx=2")) is None
    assert sticky_value(key, FakeRequest({}, query=b"uid")) is None
    assert sticky_value(key, FakeRequest({}, query=b"uid=")) is None
    assert sticky_value(key, FakeRequest({}, query=b"")) is None


@given(value=st.binary(min_size=1, max_size=64))
def test_any_url_encoded_query_value_decodes_to_the_original_bytes(value: bytes) -> None:
    query = b"x=1&uid=" + quote_from_bytes(value, safe="").encode() + b"&y=2"
    assert sticky_value(StickyKey("query", "uid"), FakeRequest({}, query=query)) == value


def test_a_cookie_sticky_key_reads_the_named_cookie() -> None:
    key = StickyKey("cookie", "sid")
    assert sticky_value(key, FakeRequest({b"cookie": b"a=1; sid=\"abc\"; b=2"})) == b"abc"
    assert sticky_value(key, FakeRequest({b"cookie": b"sid=xyz"})) == b"xyz"
    assert sticky_value(key, FakeRequest({b"cookie": b"sidx=1; other=sid"})) is None
    assert sticky_value(key, FakeRequest({})) is None


def test_a_client_ip_sticky_key_reads_the_peer_address() -> None:
    key = StickyKey("client_ip")
    assert sticky_value(key, FakeRequest({}, client_ip=b"10.1.2.3")) == b"10.1.2.3"
    assert sticky_value(key, FakeRequest({}, client_ip=b"")) is None


def test_an_entity_sticky_key_reads_the_first_entity_value_of_a_feast_request() -> None:
    key = StickyKey("entity", "driver_id")

    def value(body: bytes | None) -> bytes | None:
        return sticky_value(key, FakeRequest({}, body=body))

    assert value(b'{"features": ["v:f"], "entities": {"driver_id": [1001, 1002]}}') == b"1001"
    assert value(b'{"entities": {"driver_id": ["abc"]}, "feature_service": "s"}') == b"abc"
    assert value(b'{"entities": {"driver_id": [1.5]}}') == b"1.5"
    # the same entity as a number and as its digits: one key, one cohort
    assert value(b'{"entities": {"driver_id": ["1001"]}}') == value(b'{"entities": {"driver_id": [1001]}}')
    for missing in (None, b"", b"not json", b"[1]", b'{"entities": {"rider_id": [1]}}',
                    b'{"entities": {"driver_id": []}}', b'{"entities": {"driver_id": [null]}}',
                    b'{"entities": {"driver_id": [[1]]}}', b'{"entities": {"driver_id": 1001}}',
                    b'{"entities": {"driver_id": [""]}}'):
        assert value(missing) is None, missing


@given(entity=st.one_of(st.integers(-(2**63), 2**63 - 1), st.text(min_size=1)))
def test_one_entity_always_lands_in_one_cohort_whatever_else_the_request_holds(entity: int | str) -> None:
    key = StickyKey("entity", "driver_id")
    a = orjson.dumps({"features": ["v:a"], "entities": {"driver_id": [entity]}})
    b = orjson.dumps({"entities": {"driver_id": [entity, "other"]}, "features": ["v:b", "v:c"],
                      "full_feature_names": True})
    va, vb = sticky_value(key, FakeRequest({}, body=a)), sticky_value(key, FakeRequest({}, body=b))
    assert va is not None and va == vb
    assert bucket_of(b"exp", va) == bucket_of(b"exp", vb)


# -- through the proxy -------------------------------------------------------------------------------------

STICKY = {
    "max_blast_radius": 5,
    "experiments": [{"name": "sticky", "chaos": 5, "control": 5, "sticky_key": "header:x-user-id",
                     "reveal": {"cohort": True}}],
}


async def test_the_same_user_always_gets_the_same_revealed_cohort(upstream, start_sidecar) -> None:
    sc = await start_sidecar(policy_from(upstream.url, STICKY))
    users = users_by_cohort("sticky", 500, 500)
    async with aiohttp.ClientSession() as s:
        for expected, user in users.items():
            seen = set()
            for _ in range(20):
                async with s.get(f"http://127.0.0.1:{sc.proxy_port}/predict", headers={"x-user-id": user}) as r:
                    assert r.status == 200
                    seen.add(r.headers.get(COHORT))
            assert seen == {expected}, f"user {user}"


async def test_requests_without_the_sticky_header_are_assigned_at_random(upstream, start_sidecar) -> None:
    policy = policy_from(upstream.url, {
        "max_blast_radius": 25,
        "experiments": [{"name": "wide", "chaos": 25, "control": 25, "sticky_key": "header:x-user-id",
                         "reveal": {"cohort": True}}],
    })
    sc = await start_sidecar(policy)
    seen: Counter[str | None] = Counter()
    async with aiohttp.ClientSession() as s:
        for _ in range(120):
            async with s.get(f"http://127.0.0.1:{sc.proxy_port}/") as r:
                seen[r.headers.get(COHORT)] += 1
    assert set(seen) == {"chaos", "control", None}, seen


async def test_match_rules_limit_which_requests_enter_the_experiment(upstream, start_sidecar) -> None:
    policy = policy_from(upstream.url, {
        "experiments": [{"name": "matched", "chaos": 5, "sticky_key": "header:x-user-id",
                         "match": {"method": ["POST"], "path": "/v1/models/*/predict",
                                   "headers": {"x-tenant": "team-*"}},
                         "reveal": {"cohort": True}}],
    })
    sc = await start_sidecar(policy)
    user = users_by_cohort("matched", 500, 500)["chaos"]
    base = f"http://127.0.0.1:{sc.proxy_port}"
    ok_headers = {"x-user-id": user, "x-tenant": "team-red"}
    async with aiohttp.ClientSession() as s:
        async def cohort(method: str, path: str, headers: dict[str, str]) -> str | None:
            async with s.request(method, base + path, headers=headers) as r:
                assert r.status == 200
                return r.headers.get(COHORT)

        assert await cohort("POST", "/v1/models/iris/predict", ok_headers) == "chaos"
        assert await cohort("POST", "/v1/models/iris/predict?x=1", ok_headers) == "chaos"
        assert await cohort("GET", "/v1/models/iris/predict", ok_headers) is None
        assert await cohort("POST", "/v1/models/iris/v2/predict", ok_headers) is None
        assert await cohort("POST", "/v1/models/iris/explain", ok_headers) is None
        assert await cohort("POST", "/v1/models/iris/predict", {"x-user-id": user, "x-tenant": "red"}) is None
        assert await cohort("POST", "/v1/models/iris/predict", {"x-user-id": user}) is None


async def test_two_experiments_never_put_one_request_in_two_cohorts(upstream, start_sidecar) -> None:
    policy = policy_from(upstream.url, {
        "max_blast_radius": 40,
        "experiments": [
            {"name": "exp-a", "chaos": 20, "control": 20, "reveal": {"cohort": True}},
            {"name": "exp-b", "chaos": 20, "control": 20, "reveal": {"cohort": True}},
        ],
    })
    sc = await start_sidecar(policy)
    seen: Counter[str] = Counter()
    n = 150
    async with aiohttp.ClientSession() as s:
        for _ in range(n):
            async with s.get(f"http://127.0.0.1:{sc.proxy_port}/") as r:
                assert r.status == 200
                values = r.headers.getall(COHORT, [])
                assert len(values) <= 1, values
                seen[values[0] if values else "none"] += 1
        async with s.get(f"http://127.0.0.1:{sc.admin_port}/experiments") as r:
            exps = (await r.json())["experiments"]
    assert sum(seen.values()) == n
    assert sum(e["requests"]["chaos"] for e in exps) == seen["chaos"]
    assert sum(e["requests"]["control"] for e in exps) == seen["control"]
    # Both experiments saw traffic: the second one gets what the first one leaves.
    assert all(e["requests"]["chaos"] + e["requests"]["control"] > 0 for e in exps), exps


# -- cohort override ---------------------------------------------------------------------------------------

def override_policy(url: str, enabled: bool) -> object:
    return policy_from(url, {
        "cohort_override": {"enabled": enabled},
        "experiments": [
            {"name": "ovr-a", "chaos": 2, "sticky_key": "header:x-user-id", "reveal": {"cohort": True}},
            {"name": "ovr-b", "chaos": 2, "sticky_key": "header:x-user-id", "reveal": {"cohort": True}},
        ],
    })


async def _send(port: int, headers: dict[str, str]) -> tuple[str | None, dict[str, str]]:
    async with aiohttp.ClientSession() as s, s.get(f"http://127.0.0.1:{port}/echo", headers=headers) as r:
        assert r.status == 200
        body = await r.json()
        return r.headers.get(COHORT), body["headers"]


def _untouched_user() -> str:
    for i in range(10_000):
        if cohort_of("ovr-a", f"u{i}", 200, 200) is None and cohort_of("ovr-b", f"u{i}", 200, 200) is None:
            return f"u{i}"
    raise AssertionError("no untouched user")


async def test_a_cohort_override_with_the_right_token_forces_the_cohort(upstream, start_sidecar) -> None:
    sc = await start_sidecar(override_policy(upstream.url, True), env={"MLCHAOS_OVERRIDE_TOKEN": "let-me-in"})
    user = _untouched_user()
    for forced in ("chaos", "control"):
        cohort, seen = await _send(sc.proxy_port, {"x-user-id": user, "x-mlchaos-cohort": forced,
                                                   "x-mlchaos-token": "let-me-in"})
        assert cohort == forced
        assert not [h for h in seen if h.lower().startswith("x-mlchaos")], seen
    chaos_user = users_by_cohort("ovr-a", 200, 200)["chaos"]
    cohort, _ = await _send(sc.proxy_port, {"x-user-id": chaos_user, "x-mlchaos-cohort": "none",
                                            "x-mlchaos-token": "let-me-in"})
    assert cohort is None


async def test_a_cohort_override_can_name_the_experiment(upstream, start_sidecar) -> None:
    sc = await start_sidecar(override_policy(upstream.url, True), env={"MLCHAOS_OVERRIDE_TOKEN": "let-me-in"})
    cohort, seen = await _send(sc.proxy_port, {"x-user-id": _untouched_user(), "x-mlchaos-cohort": "control",
                                               "x-mlchaos-token": "let-me-in", "x-mlchaos-experiment": "ovr-b"})
    assert cohort == "control"
    assert "x-mlchaos-experiment" not in {h.lower() for h in seen}
    async with aiohttp.ClientSession() as s, s.get(f"http://127.0.0.1:{sc.admin_port}/experiments") as r:
        exps = {e["name"]: e for e in (await r.json())["experiments"]}
    assert exps["ovr-b"]["requests"]["control"] == 1
    assert exps["ovr-a"]["requests"] == {"chaos": 0, "control": 0}


@pytest.mark.parametrize(("enabled", "token"), [(True, "wrong"), (True, ""), (False, "let-me-in")])
async def test_a_cohort_override_is_ignored_with_a_wrong_token_or_when_disabled(
        upstream, start_sidecar, enabled: bool, token: str) -> None:
    sc = await start_sidecar(override_policy(upstream.url, enabled), env={"MLCHAOS_OVERRIDE_TOKEN": "let-me-in"})
    cohort, seen = await _send(sc.proxy_port, {"x-user-id": _untouched_user(), "x-mlchaos-cohort": "chaos",
                                               "x-mlchaos-token": token})
    assert cohort is None
    assert not [h for h in seen if h.lower().startswith("x-mlchaos")], seen


async def test_override_headers_are_ignored_when_the_token_variable_is_unset(upstream, start_sidecar) -> None:
    sc = await start_sidecar(override_policy(upstream.url, True), env={})
    cohort, seen = await _send(sc.proxy_port, {"x-user-id": _untouched_user(), "x-mlchaos-cohort": "chaos",
                                               "x-mlchaos-token": ""})
    assert cohort is None
    assert not [h for h in seen if h.lower().startswith("x-mlchaos")], seen
