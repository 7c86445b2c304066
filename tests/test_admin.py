"""The admin API: health, metrics, experiments, the kill switch, the policy, and its bearer token."""

from __future__ import annotations

from collections import Counter
from typing import Any

import aiohttp
import pytest
import yaml

from proxy.app import StartupError
from proxy.cohort import bucket_of
from tests.conftest import policy_from

COHORT = "x-mlchaos-cohort"
TOKEN_ENV = {"MLCHAOS_ADMIN_TOKEN": "s3cret"}

STICKY: dict[str, Any] = {"max_blast_radius": 6, "experiments": [
    {"name": "checkout", "chaos": 5, "sticky_key": "header:x-user-id", "reveal": {"cohort": True},
     "faults": [{"type": "abort", "status": 503, "probability": 1}]},
    {"name": "search", "chaos": 0.5, "enabled": False},
]}


def chaos_user(name: str, chaos_buckets: int) -> str:
    for i in range(10_000):
        if bucket_of(name.encode(), f"u{i}".encode()) < chaos_buckets:
            return f"u{i}"
    raise AssertionError("no chaos user")


async def call(port: int, method: str, path: str, **kw: Any) -> tuple[int, Any]:
    async with aiohttp.ClientSession() as s, s.request(method, f"http://127.0.0.1:{port}{path}", **kw) as r:
        if r.content_type == "application/json":
            return r.status, await r.json()
        return r.status, await r.text()


async def experiments(sc: Any) -> dict[str, dict[str, Any]]:
    status, body = await call(sc.admin_port, "GET", "/experiments")
    assert status == 200
    return {e["name"]: e for e in body["experiments"]}


async def cohort_of(sc: Any, user: str) -> tuple[int, str | None]:
    async with aiohttp.ClientSession() as s, \
            s.get(f"http://127.0.0.1:{sc.proxy_port}/", headers={"x-user-id": user}) as r:
        return r.status, r.headers.get(COHORT)


def policy_text(upstream_url: str, experiments: list[dict[str, Any]]) -> str:
    return yaml.safe_dump({"listen": "127.0.0.1:0", "upstream": upstream_url, "admin": {"listen": "127.0.0.1:0"},
                           "max_blast_radius": 6, "experiments": experiments}, sort_keys=False)


# -- health and metrics ------------------------------------------------------------------------------------

async def test_healthz_and_readyz_answer_ok(upstream, start_sidecar) -> None:
    sc = await start_sidecar(policy_from(upstream.url))
    assert await call(sc.admin_port, "GET", "/healthz") == (200, {"status": "ok"})
    assert await call(sc.admin_port, "GET", "/readyz") == (200, {"status": "ready"})


async def test_metrics_are_served_as_prometheus_text(upstream, start_sidecar) -> None:
    sc = await start_sidecar(policy_from(upstream.url, STICKY))
    await cohort_of(sc, "anyone")
    async with aiohttp.ClientSession() as s, s.get(f"http://127.0.0.1:{sc.admin_port}/metrics") as r:
        assert r.status == 200
        assert r.headers["Content-Type"].startswith("text/plain")
        text = await r.text()
    assert 'mlchaos_requests_total{' in text
    assert 'mlchaos_experiment_active{experiment="checkout"} 1.0' in text


# -- experiments -------------------------------------------------------------------------------------------

async def test_get_experiments_describes_each_experiment_and_counts_its_traffic(upstream, start_sidecar) -> None:
    policy = policy_from(upstream.url, {"max_blast_radius": 20, "experiments": [
        {"name": "wide", "chaos": 20, "control": 20, "reveal": {"cohort": True},
         "match": {"method": "GET"}, "faults": [{"type": "abort", "status": 500}],
         # Off, or the guards would stop this deliberately broken experiment partway through.
         "kill_switch": {"enabled": False}}]})
    sc = await start_sidecar(policy)
    seen: Counter[str] = Counter()
    async with aiohttp.ClientSession() as s:
        for _ in range(60):
            async with s.get(f"http://127.0.0.1:{sc.proxy_port}/p") as r:
                cohort = r.headers.get(COHORT, "none")
                seen[cohort] += 1
                assert r.status == (500 if cohort == "chaos" else 200)
    exp = (await experiments(sc))["wide"]
    assert exp == {
        "name": "wide", "state": "active", "reason": "policy", "enabled": True,
        "chaos_percent": 20.0, "control_percent": 20.0, "sticky_key": "random", "match": {"method": "GET"},
        "faults": [{"type": "abort", "probability": 1.0}],
        "requests": {"chaos": seen["chaos"], "control": seen["control"]},
        "errors": {"chaos": seen["chaos"], "control": 0},
        "faults_injected": seen["chaos"],
        "kill_switch": {"enabled": False, "tripped": None, "guards": {}},
    }
    assert seen["chaos"] > 0 and seen["control"] > 0


async def test_stop_start_and_halt_change_routing_at_once(upstream, start_sidecar) -> None:
    sc = await start_sidecar(policy_from(upstream.url, STICKY))
    user = chaos_user("checkout", 500)
    assert await cohort_of(sc, user) == (503, "chaos")
    assert await call(sc.admin_port, "POST", "/experiments/checkout/stop") == (
        200, {"status": "stopped", "experiment": "checkout"})
    assert await cohort_of(sc, user) == (200, None)
    exp = (await experiments(sc))["checkout"]
    assert (exp["state"], exp["reason"]) == ("stopped", "stopped through the admin API")
    assert (await call(sc.admin_port, "POST", "/experiments/checkout/start"))[0] == 200
    assert await cohort_of(sc, user) == (503, "chaos")
    assert (await call(sc.admin_port, "POST", "/experiments/search/start"))[0] == 200
    status, body = await call(sc.admin_port, "POST", "/halt")
    assert status == 200 and body["status"] == "halted" and set(body["experiments"]) == {"checkout", "search"}
    assert await cohort_of(sc, user) == (200, None)
    assert {e["state"] for e in (await experiments(sc)).values()} == {"stopped"}


# -- the policy --------------------------------------------------------------------------------------------

async def test_get_policy_returns_the_yaml_it_runs(upstream, start_sidecar) -> None:
    policy = policy_from(upstream.url, STICKY)
    sc = await start_sidecar(policy)
    async with aiohttp.ClientSession() as s, s.get(f"http://127.0.0.1:{sc.admin_port}/policy") as r:
        assert r.status == 200 and r.content_type == "application/yaml"
        text = await r.text()
    assert text == policy.source
    assert [e["name"] for e in yaml.safe_load(text)["experiments"]] == ["checkout", "search"]


async def test_posting_a_valid_policy_swaps_it_in(upstream, start_sidecar) -> None:
    sc = await start_sidecar(policy_from(upstream.url, STICKY))
    text = policy_text(upstream.url, [
        {"name": "checkout", "chaos": 5, "sticky_key": "header:x-user-id", "reveal": {"cohort": True}},
        {"name": "fresh", "chaos": 1}])
    status, body = await call(sc.admin_port, "POST", "/policy", data=text)
    assert status == 200 and body["status"] == "loaded", body
    assert "2 experiment(s)" in body["summary"]
    exps = await experiments(sc)
    assert set(exps) == {"checkout", "fresh"} and exps["fresh"]["state"] == "active"
    assert (await call(sc.admin_port, "GET", "/policy"))[1] == text
    # The new checkout has no faults: its chaos user now reaches the model.
    assert await cohort_of(sc, chaos_user("checkout", 500)) == (200, "chaos")
    assert sc.metrics.registry.get_sample_value("mlchaos_policy_reloads_total", {"result": "ok"}) == 1


async def test_posting_an_invalid_policy_is_refused_with_every_problem(upstream, start_sidecar) -> None:
    policy = policy_from(upstream.url, STICKY)
    sc = await start_sidecar(policy)
    text = policy_text(upstream.url, [
        {"name": "bad", "chaos": 2, "faults": [{"type": "abort", "probability": 1.5}]},
        {"name": "worse", "chaos": "lots"}])
    status, body = await call(sc.admin_port, "POST", "/policy", data=text)
    assert status == 422
    assert body["error"].startswith("invalid policy")
    assert "experiments[0].faults[0].probability: must be between 0 and 1" in body["problems"]
    assert any(p.startswith("experiments[1].chaos: ") for p in body["problems"]), body["problems"]
    assert set(await experiments(sc)) == {"checkout", "search"}
    assert (await call(sc.admin_port, "GET", "/policy"))[1] == policy.source
    assert await cohort_of(sc, chaos_user("checkout", 500)) == (503, "chaos")
    assert sc.metrics.registry.get_sample_value("mlchaos_policy_reloads_total", {"result": "invalid"}) == 1


async def test_posting_text_that_is_not_yaml_is_refused(upstream, start_sidecar) -> None:
    sc = await start_sidecar(policy_from(upstream.url, STICKY))
    status, body = await call(sc.admin_port, "POST", "/policy", data="experiments: [unclosed")
    assert status == 422 and any("invalid YAML" in p for p in body["problems"])


# -- auth --------------------------------------------------------------------------------------------------

MUTATING = [("/experiments/checkout/stop", None), ("/experiments/search/start", None), ("/halt", None),
            ("/policy", "policy")]


@pytest.mark.parametrize(("path", "body"), MUTATING)
async def test_mutating_calls_need_the_bearer_token(upstream, start_sidecar, path: str, body: str | None) -> None:
    sc = await start_sidecar(policy_from(upstream.url, STICKY), env=TOKEN_ENV)
    data = policy_text(upstream.url, [{"name": "checkout", "chaos": 1}]) if body else None
    for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": "s3cret"},
                    {"Authorization": "Basic s3cret"}, {"Authorization": "Bearer s3cret2"}):
        status, answer = await call(sc.admin_port, "POST", path, headers=headers, data=data)
        assert status == 401, headers
        assert answer["error"] == "missing or wrong bearer token"
    assert set(await experiments(sc)) == {"checkout", "search"}
    assert {e["state"] for e in (await experiments(sc)).values()} == {"active", "stopped"}
    status, _ = await call(sc.admin_port, "POST", path, headers={"Authorization": "Bearer s3cret"}, data=data)
    assert status == 200


async def test_reads_need_no_token(upstream, start_sidecar) -> None:
    sc = await start_sidecar(policy_from(upstream.url, STICKY), env=TOKEN_ENV)
    for path in ("/healthz", "/readyz", "/metrics", "/experiments", "/policy"):
        assert (await call(sc.admin_port, "GET", path))[0] == 200, path


async def test_without_a_token_mutating_calls_are_open_on_loopback(upstream, start_sidecar) -> None:
    sc = await start_sidecar(policy_from(upstream.url, STICKY), env={})
    assert (await call(sc.admin_port, "POST", "/halt"))[0] == 200


async def test_an_admin_api_off_loopback_without_a_token_refuses_to_start(upstream, start_sidecar) -> None:
    policy = policy_from(upstream.url, admin={"listen": "0.0.0.0:0"})
    with pytest.raises(StartupError, match="without a token"):
        await start_sidecar(policy, env={})


async def test_an_admin_api_off_loopback_with_a_token_starts(upstream, start_sidecar) -> None:
    sc = await start_sidecar(policy_from(upstream.url, STICKY, admin={"listen": "0.0.0.0:0"}), env=TOKEN_ENV)
    assert await call(sc.admin_port, "GET", "/healthz") == (200, {"status": "ok"})
    assert (await call(sc.admin_port, "POST", "/halt"))[0] == 401
    assert (await call(sc.admin_port, "POST", "/halt", headers={"Authorization": "Bearer s3cret"}))[0] == 200
