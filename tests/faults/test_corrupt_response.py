"""``corrupt_response``: malformed JSON, a truncated body, a wrong content type, an empty body."""

from __future__ import annotations

import json

import aiohttp
import pytest
from aiohttp import web

from tests.conftest import policy_from
from tests.dataplane.conftest import FORCE_CHAOS, FORCE_NONE, OVERRIDE_ENV, chaos_experiment

ANSWER = {"model_name": "iris", "outputs": [{"name": "label", "shape": [2], "datatype": "INT64", "data": [0, 2]}]}
RAW = json.dumps(ANSWER, separators=(",", ":")).encode()


async def _sidecar(start_upstream, start_sidecar, fault):
    async def model(request: web.Request) -> web.Response:
        return web.Response(body=RAW, content_type="application/json")

    up = await start_upstream({"/v2/models/iris/infer": model})
    sc = await start_sidecar(policy_from(up.url, chaos_experiment([fault])), env=OVERRIDE_ENV)
    return f"http://127.0.0.1:{sc.proxy_port}/v2/models/iris/infer"


async def test_malformed_json_cannot_be_parsed_but_keeps_status_and_type(start_upstream, start_sidecar):
    url = await _sidecar(start_upstream, start_sidecar, {"type": "corrupt_response"})
    async with aiohttp.ClientSession() as s, s.post(url, json={}, headers=FORCE_CHAOS) as r:
        body = await r.read()
        assert r.status == 200 and r.headers["content-type"] == "application/json"
        assert r.headers["content-length"] == str(len(body))
    with pytest.raises(json.JSONDecodeError):
        json.loads(body)


async def test_truncate_keeps_the_given_share_of_the_body(start_upstream, start_sidecar):
    url = await _sidecar(start_upstream, start_sidecar, {"type": "corrupt_response", "mode": "truncate", "keep": 0.25})
    async with aiohttp.ClientSession() as s, s.post(url, json={}, headers=FORCE_CHAOS) as r:
        assert await r.read() == RAW[: int(len(RAW) * 0.25)]


async def test_content_type_relabels_the_same_bytes(start_upstream, start_sidecar):
    url = await _sidecar(start_upstream, start_sidecar,
                         {"type": "corrupt_response", "mode": "content_type", "content_type": "text/html"})
    async with aiohttp.ClientSession() as s, s.post(url, json={}, headers=FORCE_CHAOS) as r:
        assert r.headers["content-type"] == "text/html"
        assert await r.read() == RAW


async def test_empty_sends_no_body_and_untouched_cohorts_get_the_original(start_upstream, start_sidecar):
    url = await _sidecar(start_upstream, start_sidecar, {"type": "corrupt_response", "mode": "empty"})
    async with aiohttp.ClientSession() as s:
        async with s.post(url, json={}, headers=FORCE_CHAOS) as r:
            assert r.status == 200 and await r.read() == b"" and r.headers["content-length"] == "0"
        async with s.post(url, json={}, headers=FORCE_NONE) as r:
            assert await r.read() == RAW
