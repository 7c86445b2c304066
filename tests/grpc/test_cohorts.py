"""Cohorts and matching on gRPC calls: the method and the metadata, the same hash as HTTP's for the same key;
gRPC codes in the metrics; ModelInfer predictions in the drift statistics."""

from __future__ import annotations

import asyncio
import json
import re
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

import aiohttp
import numpy as np
import pytest

from proxy.gate import gate_from_prometheus
from proxy.policy import PolicyError
from tests.conftest import policy_from

pytest.importorskip("grpc")

from .conftest import UpstreamServer, grpc
from .infer import model, request

INFER = "/inference.GRPCInferenceService/ModelInfer"


def experiment(**extra: Any) -> dict[str, Any]:
    exp = {"name": "g", "chaos": 50, "control": 50, "sticky_key": "metadata:x-user-id",
           "match": {"method": INFER}, "reveal": {"cohort": True}, "kill_switch": {"enabled": False}, **extra}
    return {"experiments": [exp], "environment": "staging", "max_blast_radius": 100}


async def cohort_of(channel: Any, user: str, method: str = INFER, message: bytes = b"") -> str | None:
    call = channel.unary_unary(method)(message or request([("x", "FP64", [1], [1.0])]),
                                       metadata=(("x-user-id", user),), timeout=5)
    await call
    return dict(await call.initial_metadata()).get("x-mlchaos-cohort")


async def test_metadata_sticky_key_matches_http_header_cohorts(
        start_grpc_upstream: Any, grpc_sidecar: Any, channel_to: Callable[[int], Any], upstream: Any,
        start_sidecar: Any) -> None:
    up: UpstreamServer = await start_grpc_upstream(model)
    sc = await grpc_sidecar(up, experiment(match={"method": [INFER]}))
    channel = channel_to(sc.grpc_port)
    users = [f"user-{i}" for i in range(40)]
    grpc_cohorts = [await cohort_of(channel, u) for u in users]
    assert set(grpc_cohorts) == {"chaos", "control"}
    assert grpc_cohorts == [await cohort_of(channel, u) for u in users]  # sticky
    # An HTTP sidecar with the experiment's name and header:x-user-id puts each user in the same cohort.
    http_policy = policy_from(upstream.url, {"experiments": [{
        "name": "g", "chaos": 50, "control": 50, "sticky_key": "header:x-user-id", "reveal": {"cohort": True},
        "kill_switch": {"enabled": False}}], "environment": "staging", "max_blast_radius": 100})
    http = await start_sidecar(http_policy)
    async with aiohttp.ClientSession() as s:
        http_cohorts = []
        for u in users:
            async with s.post(f"http://127.0.0.1:{http.proxy_port}/v2/models/m/infer", headers={"x-user-id": u}) as r:
                http_cohorts.append(r.headers.get("x-mlchaos-cohort"))
    assert http_cohorts == grpc_cohorts


async def test_match_on_the_grpc_method(grpc_upstream: UpstreamServer, grpc_sidecar: Any,
                                        channel_to: Callable[[int], Any]) -> None:
    sc = await grpc_sidecar(grpc_upstream, experiment(faults=[{"type": "abort", "grpc_status": "INTERNAL"}]))
    channel = channel_to(sc.grpc_port)
    # Another method passes untouched, whatever the user's cohort would be.
    for i in range(20):
        call = channel.unary_unary("/test.Echo/Unary")(b"ab", metadata=(("x-user-id", f"u{i}"),))
        assert await call == b"ba"
        assert "x-mlchaos-cohort" not in dict(await call.initial_metadata())
    assert sc.metrics.requests.children[("", "none", "OK")].value == 20


def test_grpc_and_http_methods_do_not_mix() -> None:
    with pytest.raises(PolicyError, match="not both"):
        policy_from("http://127.0.0.1:1", experiment(match={"method": [INFER, "GET"]}))
    with pytest.raises(PolicyError, match="in method or in path"):
        policy_from("http://127.0.0.1:1", experiment(match={"method": INFER, "path": "/x"}))
    with pytest.raises(PolicyError, match="not a gRPC method path"):
        policy_from("http://127.0.0.1:1", experiment(match={"method": "/nope"}))


async def test_predictions_of_model_infer_feed_drift(start_grpc_upstream: Any, grpc_sidecar: Any,
                                                     channel_to: Callable[[int], Any]) -> None:
    up: UpstreamServer = await start_grpc_upstream(model)
    shift = {"type": "shift", "offset": 5.0}
    sc = await grpc_sidecar(up, experiment(faults=[shift], observe={"drift_interval": "1ms"}))
    channel = channel_to(sc.grpc_port)
    rng = np.random.default_rng(3)

    async def one(i: int) -> None:
        values = rng.normal(size=4).round(3).tolist()
        await channel.unary_unary(INFER)(request([("x", "FP64", [4], values)]), metadata=(("x-user-id", f"u{i}"),))

    for start in range(0, 400, 40):
        await asyncio.gather(*(one(i) for i in range(start, start + 40)))
    sc.observe_once()
    psi = sc.metrics.registry.get_sample_value(
        "mlchaos_prediction_drift", {"experiment": "g", "output": "predict", "statistic": "psi"})
    assert psi is not None and psi > 0.25


async def test_the_kill_switch_trips_on_grpc_errors(grpc_upstream: UpstreamServer, grpc_sidecar: Any,
                                                    channel_to: Callable[[int], Any]) -> None:
    """UNAVAILABLE answers of the chaos cohort are errors to the guards (their HTTP equivalent is 503): the
    experiment stops, and calls after it are no longer faulted."""
    exp = {"name": "k", "chaos": 20, "control": 20, "faults": [{"type": "abort", "grpc_status": "UNAVAILABLE"}]}
    sc = await grpc_sidecar(grpc_upstream, {"experiments": [exp]}, max_blast_radius=20)
    stub = channel_to(sc.grpc_port).unary_unary("/test.Echo/Unary")
    st = sc.experiments.states["k"]

    async def one() -> grpc.StatusCode:
        try:
            await stub(b"x", timeout=5)
        except grpc.aio.AioRpcError as err:
            return err.code()
        return grpc.StatusCode.OK

    codes: list[grpc.StatusCode] = []
    for _ in range(60):  # at most 3000 calls
        codes += await asyncio.gather(*(one() for _ in range(50)))
        if st.tripped is not None:
            break
    assert st.tripped is not None, f"no trip after {len(codes)} calls"
    assert st.tripped["guard"] in {"errors", "seatbelt"} and st.tripped["errors_control"] == 0
    assert set(codes) == {grpc.StatusCode.OK, grpc.StatusCode.UNAVAILABLE}
    after = await asyncio.gather(*(one() for _ in range(100)))
    assert set(after) == {grpc.StatusCode.OK}


class _FakePrometheus(ThreadingHTTPServer):
    """Answers /api/v1/query for ``sum(mlchaos_requests_total{...})`` over one sidecar's registry, with the
    label matchers (= and =~) PromQL applies; every other query is 0."""

    def __init__(self, registry: Any) -> None:
        self.registry = registry
        super().__init__(("127.0.0.1", 0), _PromHandler)


class _PromHandler(BaseHTTPRequestHandler):
    server: _FakePrometheus

    def do_GET(self) -> None:
        query = parse_qs(urlsplit(self.path).query)["query"][0]
        m = re.fullmatch(r"sum\(mlchaos_requests_total\{(.*)\}\)", query)
        total = 0.0
        if m is not None:
            matchers = re.findall(r'(\w+)(=~|=)"([^"]*)"', m.group(1))
            for fam in self.server.registry.collect():
                for s in fam.samples:
                    if s.name == "mlchaos_requests_total" and all(
                            (re.fullmatch(v, s.labels.get(k, "")) if op == "=~" else s.labels.get(k) == v)
                            for k, op, v in matchers):
                        total += s.value
        body = json.dumps({"status": "success", "data": {"result": [{"value": [0, str(total)]}]}}).encode()
        self.send_response(200)
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: Any) -> None:
        pass


async def test_the_fleet_gate_counts_grpc_error_codes(grpc_upstream: UpstreamServer, grpc_sidecar: Any,
                                                      channel_to: Callable[[int], Any]) -> None:
    exp = {"name": "k", "chaos": 50, "control": 50, "kill_switch": {"enabled": False},
           "faults": [{"type": "abort", "grpc_status": "UNAVAILABLE"}]}
    sc = await grpc_sidecar(grpc_upstream, {"experiments": [exp], "environment": "staging"}, max_blast_radius=100)
    stub = channel_to(sc.grpc_port).unary_unary("/test.Echo/Unary")
    failed = 0
    for _ in range(200):
        try:
            await stub(b"x", timeout=5)
        except grpc.aio.AioRpcError:
            failed += 1
    prom = _FakePrometheus(sc.metrics.registry)
    thread = threading.Thread(target=prom.serve_forever, daemon=True)
    thread.start()
    try:
        verdict = await asyncio.to_thread(gate_from_prometheus, f"http://127.0.0.1:{prom.server_port}", "k")
    finally:
        prom.shutdown()
        prom.server_close()
    assert 0 < failed < 200
    assert verdict["errors_chaos"] == verdict["n_chaos"] == failed and verdict["errors_control"] == 0
    assert verdict["verdict"] == "fail"
