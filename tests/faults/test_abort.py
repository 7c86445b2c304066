"""``abort``: the chaos cohort gets the policy's status, body and headers; the model is never called."""

from __future__ import annotations

import math

import aiohttp
from aiohttp import web

from tests.conftest import policy_from
from tests.dataplane.conftest import (
    FORCE_CHAOS,
    FORCE_CONTROL,
    FORCE_NONE,
    OVERRIDE_ENV,
    RawClient,
    chaos_experiment,
    faults_total,
    get,
)


async def _model(start_upstream):
    hits = {"n": 0}

    async def handler(request: web.Request) -> web.Response:
        hits["n"] += 1
        return web.json_response({"model": "answer", "headers": {k.lower(): v for k, v in request.headers.items()}})

    up = await start_upstream({"/v1/infer": handler})
    return hits, up


async def test_abort_answers_the_chaos_cohort_with_the_default_503_body(start_upstream, start_sidecar):
    hits, up = await _model(start_upstream)
    sc = await start_sidecar(policy_from(up.url, chaos_experiment([{"type": "abort"}])), env=OVERRIDE_ENV)
    async with aiohttp.ClientSession() as s:
        async with s.post(f"http://127.0.0.1:{sc.proxy_port}/v1/infer", json={"x": 1}, headers=FORCE_CHAOS) as r:
            assert r.status == 503
            assert r.headers["content-type"] == "application/json"
            assert await r.json() == {"error": "Service Unavailable"}
            assert r.headers["x-mlchaos-fault"] == "abort"
            assert r.headers["x-mlchaos-cohort"] == "chaos"
            assert "x-mlchaos-error" not in r.headers  # an injected fault, not a proxy failure
    assert hits["n"] == 0
    assert faults_total(sc, "e1", "abort") == 1


async def test_abort_with_status_body_headers_and_retry_after(start_upstream, start_sidecar):
    hits, up = await _model(start_upstream)
    fault = {"type": "abort", "status": 429, "body": {"error": "rate limited by mlchaos"},
             "headers": {"x-reason": "chaos"}, "retry_after": "2s"}
    sc = await start_sidecar(policy_from(up.url, chaos_experiment([fault])), env=OVERRIDE_ENV)
    async with aiohttp.ClientSession() as s:
        async with s.get(f"http://127.0.0.1:{sc.proxy_port}/v1/infer", headers=FORCE_CHAOS) as r:
            assert r.status == 429
            assert await r.json() == {"error": "rate limited by mlchaos"}
            assert r.headers["retry-after"] == "2"
            assert r.headers["x-reason"] == "chaos"
    assert hits["n"] == 0


async def test_abort_with_a_string_body_sends_it_as_text(start_upstream, start_sidecar):
    _, up = await _model(start_upstream)
    fault = {"type": "abort", "status": 500, "body": "model exploded"}
    sc = await start_sidecar(policy_from(up.url, chaos_experiment([fault])), env=OVERRIDE_ENV)
    async with await RawClient.connect(sc.proxy_port) as c:
        r = await c.request(get("/v1/infer", headers=FORCE_CHAOS))
        assert r.status == 500 and r.body == b"model exploded"
        assert (r.header("content-type") or "").startswith("text/plain")
        assert r.header("content-length") == str(len(b"model exploded"))
        # The connection stays usable after an injected answer.
        r2 = await c.request(get("/v1/infer", headers=FORCE_NONE))
        assert r2.status == 200


async def test_abort_hides_the_fault_header_unless_reveal_fault_is_set(start_upstream, start_sidecar):
    _, up = await _model(start_upstream)
    policy = policy_from(up.url, chaos_experiment([{"type": "abort"}], reveal_fault=False, reveal_cohort=False))
    sc = await start_sidecar(policy, env=OVERRIDE_ENV)
    async with aiohttp.ClientSession() as s:
        async with s.get(f"http://127.0.0.1:{sc.proxy_port}/v1/infer", headers=FORCE_CHAOS) as r:
            assert r.status == 503
            assert "x-mlchaos-fault" not in r.headers and "x-mlchaos-cohort" not in r.headers


async def test_reveal_cohort_alone_names_the_cohort_but_not_the_fault(start_upstream, start_sidecar):
    _, up = await _model(start_upstream)
    policy = policy_from(up.url, chaos_experiment([{"type": "abort"}], reveal_fault=False, reveal_cohort=True))
    sc = await start_sidecar(policy, env=OVERRIDE_ENV)
    async with aiohttp.ClientSession() as s:
        async with s.get(f"http://127.0.0.1:{sc.proxy_port}/v1/infer", headers=FORCE_CHAOS) as r:
            assert r.status == 503
            assert r.headers["x-mlchaos-cohort"] == "chaos" and "x-mlchaos-fault" not in r.headers


async def test_the_control_cohort_gets_the_model_and_no_fault(start_upstream, start_sidecar):
    hits, up = await _model(start_upstream)
    sc = await start_sidecar(policy_from(up.url, chaos_experiment([{"type": "abort"}])), env=OVERRIDE_ENV)
    async with aiohttp.ClientSession() as s:
        for _ in range(5):
            async with s.post(f"http://127.0.0.1:{sc.proxy_port}/v1/infer", json={},
                              headers=FORCE_CONTROL) as r:
                assert r.status == 200
                body = await r.json()
                assert body["model"] == "answer"
                assert r.headers["x-mlchaos-cohort"] == "control"
                assert "x-mlchaos-fault" not in r.headers
    assert hits["n"] == 5
    assert faults_total(sc, "e1", "abort") == 0
    # The override headers are the proxy's own: the model never sees the token.
    assert "x-mlchaos-token" not in body["headers"] and "x-mlchaos-cohort" not in body["headers"]


async def test_a_wrong_override_token_does_not_force_the_chaos_cohort(start_upstream, start_sidecar):
    hits, up = await _model(start_upstream)
    # 0.01% chaos: a request the override did not force is practically never in chaos.
    policy = policy_from(up.url, chaos_experiment([{"type": "abort"}], chaos=0.01, control=0.01))
    sc = await start_sidecar(policy, env=OVERRIDE_ENV)
    async with aiohttp.ClientSession() as s:
        for _ in range(10):
            async with s.get(f"http://127.0.0.1:{sc.proxy_port}/v1/infer",
                             headers={"x-mlchaos-cohort": "chaos", "x-mlchaos-token": "wrong"}) as r:
                assert r.status == 200
    assert hits["n"] == 10


async def test_abort_probability_is_respected_within_a_binomial_band(start_upstream, start_sidecar):
    hits, up = await _model(start_upstream)
    p, n = 0.3, 400
    policy = policy_from(up.url, chaos_experiment([{"type": "abort", "probability": p}]))
    sc = await start_sidecar(policy, env=OVERRIDE_ENV)
    statuses = []
    async with aiohttp.ClientSession() as s:
        for _ in range(n):
            async with s.get(f"http://127.0.0.1:{sc.proxy_port}/v1/infer", headers=FORCE_CHAOS) as r:
                await r.read()
                statuses.append((r.status, r.headers.get("x-mlchaos-fault")))
    aborted = sum(1 for status, _ in statuses if status == 503)
    sigma = math.sqrt(n * p * (1 - p))
    assert abs(aborted - n * p) <= 4 * sigma, aborted
    assert all((fault == "abort") == (status == 503) for status, fault in statuses)
    assert aborted + hits["n"] == n
    assert faults_total(sc, "e1", "abort") == aborted


async def test_abort_answers_head_with_headers_only_and_keeps_the_connection(start_upstream, start_sidecar):
    _, up = await _model(start_upstream)
    sc = await start_sidecar(policy_from(up.url, chaos_experiment([{"type": "abort"}])), env=OVERRIDE_ENV)
    async with await RawClient.connect(sc.proxy_port) as c:
        h = await c.request(get("/v1/infer", method="HEAD", headers=FORCE_CHAOS), head=True)
        assert h.status == 503 and h.header("x-mlchaos-fault") == "abort"
        r = await c.request(get("/v1/infer", headers=FORCE_NONE))
        assert r.status == 200 and r.json()["model"] == "answer"


async def test_abort_answers_an_http_1_0_client_and_closes(start_upstream, start_sidecar):
    _, up = await _model(start_upstream)
    sc = await start_sidecar(policy_from(up.url, chaos_experiment([{"type": "abort", "status": 500}])),
                             env=OVERRIDE_ENV)
    headers = "".join(f"{k}: {v}\r\n" for k, v in FORCE_CHAOS.items())
    async with await RawClient.connect(sc.proxy_port) as c:
        r = await c.request(f"GET /v1/infer HTTP/1.0\r\n{headers}\r\n".encode())
        assert r.status == 500 and r.json() == {"error": "Internal Server Error"}
        assert await c.closed_by_peer()
