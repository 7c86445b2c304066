"""Feast faults through the proxy, in front of an upstream that answers as Feast 0.67 does: what the client gets
for each fault, and what passes through untouched (control, error answers, bodies that are not Feast's)."""

from __future__ import annotations

import copy
import json
from typing import Any

import aiohttp
from aiohttp import web

from proxy.cohort import bucket_of
from proxy.payload.adapters.feast import EPOCH, NOT_FOUND, NULL_VALUE, OUTSIDE_MAX_AGE
from tests.conftest import policy_from
from tests.dataplane.conftest import FORCE_CHAOS, FORCE_CONTROL, OVERRIDE_ENV, chaos_experiment
from tests.payload.test_feast import REAL

PATH = "/get-online-features"
REQUEST = {"features": ["driver_hourly_stats:conv_rate", "driver_hourly_stats:avg_daily_trips",
                        "driver_hourly_stats:city"], "entities": {"driver_id": [1001, 1002, 99]}}
ERROR_404 = json.dumps(json.dumps({"module": "feast.errors", "class": "FeatureViewNotFoundException",
                                   "message": "Feature view nope does not exist in project p"}))


async def _feast_upstream(start_upstream: Any, answers: list[Any] | None = None) -> Any:
    """Answers /get-online-features with REAL (or the next of ``answers``), and records what it was sent."""
    seen: list[bytes] = []
    queue = list(answers or [])

    async def get_online_features(request: web.Request) -> web.Response:
        seen.append(await request.read())
        answer = queue.pop(0) if queue else REAL
        if isinstance(answer, web.Response):
            return answer
        return web.Response(body=json.dumps(answer).encode(), content_type="application/json")

    up = await start_upstream({PATH: get_online_features})
    up.seen = seen
    return up


async def _post(sc: Any, headers: dict[str, str], body: bytes | None = None) -> tuple[int, dict[str, str], bytes]:
    async with aiohttp.ClientSession() as s, \
            s.post(f"http://127.0.0.1:{sc.proxy_port}{PATH}", data=body or json.dumps(REQUEST).encode(),
                   headers={"Content-Type": "application/json", **headers}) as r:
        return r.status, dict(r.headers), await r.read()


async def _chaos(start_upstream: Any, start_sidecar: Any, fault: dict[str, Any], *, times: int = 1,
                 answers: list[Any] | None = None, payload: dict[str, Any] | None = None) -> list[Any]:
    up = await _feast_upstream(start_upstream, answers)
    extra = chaos_experiment([fault])
    if payload:
        extra["experiments"][0]["payload"] = payload
    sc = await start_sidecar(policy_from(up.url, extra), env=OVERRIDE_ENV)
    out = []
    for _ in range(times):
        status, _, body = await _post(sc, FORCE_CHAOS)
        out.append((status, json.loads(body)))
    return out


def _column(doc: dict[str, Any], name: str) -> dict[str, Any]:
    return doc["results"][doc["metadata"]["feature_names"].index(name)]


async def test_nan_nulls_a_feature_with_the_configured_status(start_upstream, start_sidecar):
    for null_status in (NULL_VALUE, NOT_FOUND):
        [(status, doc)] = await _chaos(start_upstream, start_sidecar, {
            "type": "nan", "target": "response", "features": ["conv_rate"]},
            payload={"format": "feast", "null_status": null_status})
        assert status == 200
        col = _column(doc, "conv_rate")
        assert col["values"] == [None, None, None]
        assert col["statuses"] == [null_status, null_status, NOT_FOUND]
        stamps = REAL["results"][1]["event_timestamps"]
        assert col["event_timestamps"] == (stamps if null_status == NULL_VALUE else [EPOCH] * 3)
        assert _column(doc, "city") == REAL["results"][3]
        assert _column(doc, "driver_id") == REAL["results"][0]


async def test_drop_and_rename_change_the_names_and_results_together(start_upstream, start_sidecar):
    [(_, doc)] = await _chaos(start_upstream, start_sidecar,
                              {"type": "drop_feature", "target": "response", "features": ["city"]})
    assert doc["metadata"]["feature_names"] == ["driver_id", "conv_rate", "avg_daily_trips"]
    assert doc["results"] == REAL["results"][:3]
    [(_, doc)] = await _chaos(start_upstream, start_sidecar, {
        "type": "rename_feature", "target": "response", "mapping": {"conv_rate": "conversion"}})
    assert doc["metadata"]["feature_names"] == ["driver_id", "conversion", "avg_daily_trips", "city"]
    assert doc["results"] == REAL["results"]


async def test_not_found_and_misalign_reach_the_client(start_upstream, start_sidecar):
    [(_, doc)] = await _chaos(start_upstream, start_sidecar, {"type": "not_found", "by": "features",
                                                              "features": ["avg_daily_trips"]})
    assert _column(doc, "avg_daily_trips") == {"values": [None] * 3, "statuses": [NOT_FOUND] * 3,
                                               "event_timestamps": [EPOCH] * 3}
    [(_, doc)] = await _chaos(start_upstream, start_sidecar, {"type": "misalign", "mode": "drop_name",
                                                              "features": ["conv_rate"]})
    assert doc["metadata"]["feature_names"] == ["driver_id", "avg_daily_trips", "city"]
    assert doc["results"] == REAL["results"]


async def test_stale_serves_the_earlier_answer_of_each_entity_with_aged_timestamps(start_upstream, start_sidecar):
    newer = copy.deepcopy(REAL)
    newer["results"][1]["values"] = [0.9, 0.8, None]
    got = await _chaos(start_upstream, start_sidecar,
                       {"type": "stale", "target": "response", "age": "1h", "outside_max_age": True,
                        "features": ["conv_rate"]}, times=2, answers=[REAL, newer])
    first, second = got[0][1], got[1][1]
    for doc in (first, second):
        col = _column(doc, "conv_rate")
        assert col["values"] == REAL["results"][1]["values"]  # the second answer's new values never show
        assert col["statuses"] == [OUTSIDE_MAX_AGE, OUTSIDE_MAX_AGE, NOT_FOUND]
        assert col["event_timestamps"] == ["2026-12-01T11:00:00Z", "2026-12-01T11:00:00Z", EPOCH]
        assert _column(doc, "city") == REAL["results"][3]


async def test_feast_error_answers_as_feast_does(start_upstream, start_sidecar):
    up = await _feast_upstream(start_upstream)
    sc = await start_sidecar(policy_from(up.url, chaos_experiment([
        {"type": "feast_error", "exception": "FeatureViewNotFoundException", "message": "gone"}])), env=OVERRIDE_ENV)
    status, headers, body = await _post(sc, FORCE_CHAOS)
    assert status == 404 and headers["Content-Type"] == "application/json"
    assert json.loads(json.loads(body)) == {"module": "feast.errors", "class": "FeatureViewNotFoundException",
                                            "message": "gone"}
    assert up.seen == []  # the store was never asked
    [(status, doc)] = await _chaos(start_upstream, start_sidecar, {"type": "feast_error"})
    assert status == 500 and doc == "database is locked"


async def test_control_error_answers_and_foreign_bodies_pass_through(start_upstream, start_sidecar):
    error = web.Response(status=404, body=ERROR_404.encode(), content_type="application/json")
    foreign = {"results": "not a list", "metadata": {}}
    up = await _feast_upstream(start_upstream, [REAL, error, foreign])
    sc = await start_sidecar(policy_from(up.url, chaos_experiment([
        {"type": "not_found", "fraction": 1.0}, {"type": "misalign"}])), env=OVERRIDE_ENV)
    status, _, body = await _post(sc, FORCE_CONTROL)
    assert (status, body) == (200, json.dumps(REAL).encode())  # byte for byte
    status, _, body = await _post(sc, FORCE_CHAOS)
    assert (status, body) == (404, ERROR_404.encode())
    status, _, body = await _post(sc, FORCE_CHAOS)
    assert (status, json.loads(body)) == (200, foreign)
    assert sc.metrics.payload_unparsed.labels("e1", "chaos", "response").value == 2  # one per fault
    assert up.seen == [json.dumps(REQUEST).encode()] * 3


async def test_an_entity_sticky_key_keeps_each_driver_in_one_cohort(start_upstream, start_sidecar):
    up = await _feast_upstream(start_upstream)
    exp = {"max_blast_radius": 50,
           "experiments": [{"name": "by-driver", "chaos": 25, "control": 25, "sticky_key": "entity:driver_id",
                            "reveal": {"cohort": True}, "faults": [{"type": "not_found"}]}]}
    sc = await start_sidecar(policy_from(up.url, exp))

    def expected(driver: int) -> str:
        b = bucket_of(b"by-driver", str(driver).encode())
        return "chaos" if b < 2500 else "control" if b < 5000 else "none"

    seen: dict[str, int] = {}
    for driver in range(1000, 1040):
        body = json.dumps({"features": ["v:f"], "entities": {"driver_id": [driver, 5]}}).encode()
        for _ in range(2):
            status, headers, answer = await _post(sc, {}, body)
            assert status == 200
            cohort = headers.get("x-mlchaos-cohort", "none")
            assert cohort == expected(driver)
            gone = json.loads(answer)["results"][1]["statuses"] == [NOT_FOUND] * 3
            assert gone == (cohort == "chaos")
        seen[cohort] = seen.get(cohort, 0) + 1
    assert set(seen) == {"chaos", "control", "none"}
    # the request went upstream untouched: routing only read it
    assert up.seen[0] == json.dumps({"features": ["v:f"], "entities": {"driver_id": [1000, 5]}}).encode()
