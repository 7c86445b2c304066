"""Calls mlchaos does not touch are the server's own, byte for byte: MLServer's and KServe's gRPC ports, direct
and through ``mlchaos run``'s gRPC listener, with a raw grpcio client (no deserializer: the bytes as they
arrived) and with tritonclient.grpc.

What is compared: every response message, the initial metadata, the trailing metadata, the status code and its
details, for unary calls (ModelInfer with raw and typed tensors, the health and metadata RPCs, a server error, a
method the server has not got) and MLServer's bidirectional ModelStreamInfer. tritonclient's streaming API
(start_stream/async_stream_infer) reads Triton's ModelStreamInferResponse, which neither server answers
(MLServer's ModelStreamInfer sends bare ModelInferResponse messages, KServe has no ModelStreamInfer): it is
tested against scripts/servers/grpc_stream_server.py, a peer in Triton's shape, instead.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from tests.servers.grpc_peers import (
    COLUMNS,
    INFER,
    STREAM_INFER,
    GrpcProxy,
    StreamPeer,
    b64,
    forced,
    infer_request,
    require_clients,
    run_clients,
)
from tests.servers.harness import EXPECTED, RunningServer

pytestmark = pytest.mark.slow

SERVICE = "/inference.GRPCInferenceService/"
# One experiment, so that a forced control cohort exists; nothing here is sent to its chaos cohort.
EXPERIMENTS = {"shift": {"type": "shift", "features": ["petal_length"], "scale": 4.0, "offset": 1.0}}


def _proxy(server: RunningServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[GrpcProxy]:
    require_clients()
    proxy = GrpcProxy(server.grpc_target, server.url, EXPERIMENTS, tmp_path_factory.mktemp(f"grpc-{server.name}"))
    try:
        yield proxy
    finally:
        proxy.stop()


@pytest.fixture(scope="module")
def via_mlserver(mlserver: RunningServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[GrpcProxy]:
    yield from _proxy(mlserver, tmp_path_factory)


@pytest.fixture(scope="module")
def via_kserve(kserve: RunningServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[GrpcProxy]:
    yield from _proxy(kserve, tmp_path_factory)


def _calls() -> list[tuple[str, str, bytes, str]]:
    """(label, method, request, kind): ModelInfer raw and typed, a NaN row (the server's own error), and the
    health and metadata RPCs. (A method the server has not got: test_a_method_the_server_has_not_got_....)"""
    raw, typed, nan = (infer_request("raw"), infer_request("typed"),
                       infer_request("typed", {**COLUMNS, "sepal_width": [float("nan"), 3.0]}))
    ready = b"\n\x04iris"  # ModelReadyRequest{name: "iris"} / ModelMetadataRequest{name: "iris"}
    return [
        ("infer-raw", INFER, raw, "unary"), ("infer-typed", INFER, typed, "unary"), ("infer-nan", INFER, nan, "unary"),
        ("live", SERVICE + "ServerLive", b"", "unary"), ("ready", SERVICE + "ModelReady", ready, "unary"),
        ("metadata", SERVICE + "ModelMetadata", ready, "unary"), ("server", SERVICE + "ServerMetadata", b"", "unary"),
    ]


def _jobs(target: str, calls: list[tuple[str, str, bytes, str]], metadata: dict[str, str]) -> list[dict[str, Any]]:
    return [{"client": "raw", "target": target, "method": method, "requests": [b64(body)], "kind": kind,
             "metadata": [[k, v] for k, v in metadata.items()], "timeout": 10.0}
            for _, method, body, kind in calls]


def _same(direct: dict[str, Any], through: dict[str, Any], label: str) -> None:
    for key in ("ok", "code", "details", "responses", "initial", "trailing"):
        assert through[key] == direct[key], f"{label}: {key} differs\n direct  {direct}\n through {through}"


def _assert_identical(server: RunningServer, proxy: GrpcProxy, calls: list[tuple[str, str, bytes, str]]) -> None:
    # Each way twice: an unassigned call (no x-chaos metadata: no experiment matches) and a forced control one.
    for metadata in ({"x-request-tag": "passthrough"}, forced("shift", "control")):
        direct = run_clients(_jobs(server.grpc_target, calls, metadata))
        through = run_clients(_jobs(proxy.target, calls, metadata))
        for (label, *_), d, t in zip(calls, direct, through, strict=True):
            _same(d, t, f"{server.name} {label} {metadata.get('x-mlchaos-cohort', 'unassigned')}")


def test_mlserver_unary_calls_are_byte_identical_through_mlchaos(mlserver, via_mlserver):
    calls = _calls()
    _assert_identical(mlserver, via_mlserver, calls)
    # The comparison has teeth: the calls answered differently, successes and errors alike.
    got = run_clients(_jobs(mlserver.grpc_target, calls, {}))
    assert [r["code"] for r in got] == ["OK", "OK", "INTERNAL", "OK", "OK", "OK", "OK"], got
    assert any(k.startswith("ce-") for k, _ in got[0]["trailing"]), got[0]  # MLServer's CloudEvents trailers
    assert "NaN" in got[2]["details"], got[2]


def test_kserve_unary_calls_are_byte_identical_through_mlchaos(kserve, via_kserve):
    calls = _calls()
    _assert_identical(kserve, via_kserve, calls)
    got = run_clients(_jobs(kserve.grpc_target, calls, {}))
    # KServe 0.21 reads a "pd" request's tensors from typed contents only: raw ones make an empty DataFrame.
    assert [r["code"] for r in got] == [
        "INVALID_ARGUMENT", "OK", "INVALID_ARGUMENT", "OK", "OK", "OK", "OK"], got


def test_mlserver_bidirectional_stream_is_byte_identical_through_mlchaos(mlserver, via_mlserver):
    calls = [("stream", STREAM_INFER, infer_request("raw"), "stream"),
             ("stream-typed", STREAM_INFER, infer_request("typed"), "stream")]
    _assert_identical(mlserver, via_mlserver, calls)
    got = run_clients(_jobs(mlserver.grpc_target, calls, {}))
    assert all(r["code"] == "OK" and len(r["responses"]) == 1 for r in got), got


def _unimplemented(server: RunningServer, proxy: GrpcProxy, method: str, kind: str) -> None:
    """Direct and through mlchaos, the server says UNIMPLEMENTED every time, with nothing before it. mlchaos
    forwards a method it does not know as a bidirectional call (it cannot know the method's shape), and the
    server ends that call before reading the request: the failed request write must not replace the server's
    status by grpc.aio's INTERNAL "Internal error from Core" (before the fix: 8 of 40 calls against MLServer,
    1 of 20 against KServe; grpcio 1.85)."""
    calls = [("missing", method, b"", kind)] * 20
    direct = run_clients(_jobs(server.grpc_target, calls, {}))
    assert {(r["code"], r["details"]) for r in direct} == {("UNIMPLEMENTED", "Method not found!")}, direct
    through = run_clients(_jobs(proxy.target, calls, {}))
    for d, t in zip(direct, through, strict=True):
        _same(d, t, f"{server.name} {method}")
    assert all(r["responses"] == [] and r["initial"] == [] for r in through), through


def test_a_method_the_server_has_not_got_is_unimplemented_through_mlchaos(mlserver, via_mlserver, kserve, via_kserve):
    for server, proxy in ((mlserver, via_mlserver), (kserve, via_kserve)):
        _unimplemented(server, proxy, SERVICE + "NoSuchMethod", "unary")


def test_kserve_has_no_stream_and_says_so_through_mlchaos(kserve, via_kserve):
    _unimplemented(kserve, via_kserve, STREAM_INFER, "stream")


def _triton(target: str, **job: Any) -> dict[str, Any]:
    return {"client": "triton", "target": target, "model": "iris", "features": COLUMNS, "timeout": 10.0, **job}


def test_tritonclient_unary_infer_answers_the_same_through_mlchaos(mlserver, via_mlserver, kserve, via_kserve):
    jobs = []
    for target in (mlserver.grpc_target, via_mlserver.target):
        jobs += [_triton(target), _triton(target, contents="typed"),
                 _triton(target, headers=forced("shift", "control"))]
    ml = run_clients(jobs)
    assert all(r["ok"] and r["outputs"] == {"predict": EXPECTED} for r in ml), ml
    ks = run_clients([_triton(t, contents="typed") for t in (kserve.grpc_target, via_kserve.target)]
                     + [_triton(t) for t in (kserve.grpc_target, via_kserve.target)])
    assert ks[0]["ok"] and ks[0]["outputs"] == ks[1]["outputs"] == {"output-0": EXPECTED}, ks
    # tritonclient sends raw tensors, which KServe's "pd" path cannot read: its error comes through as it is.
    assert not ks[2]["ok"] and (ks[2]["status"], ks[2]["message"]) == (ks[3]["status"], ks[3]["message"]), ks
    assert ks[2]["status"] == "StatusCode.INVALID_ARGUMENT", ks


@pytest.fixture(scope="module")
def via_stream_peer(stream_peer: StreamPeer, mlserver: RunningServer,
                    tmp_path_factory: pytest.TempPathFactory) -> Iterator[GrpcProxy]:
    # The HTTP side needs an upstream too: MLServer's REST port, unused here.
    proxy = GrpcProxy(stream_peer.target, mlserver.url, EXPERIMENTS, tmp_path_factory.mktemp("grpc-stream"))
    try:
        yield proxy
    finally:
        proxy.stop()


def test_tritonclient_stream_answers_the_same_through_mlchaos(stream_peer, via_stream_peer):
    sums = [sum(col[i] for col in COLUMNS.values()) for i in range(2)]
    jobs = [_triton(t, stream=True, model=model) for t in (stream_peer.target, via_stream_peer.target)
            for model in ("iris", "fail")]
    direct_ok, direct_fail, through_ok, through_fail = run_clients(jobs)
    assert direct_ok["ok"] and direct_ok["outputs"] == {"sum": pytest.approx(sums)}, direct_ok
    assert through_ok["outputs"] == direct_ok["outputs"], through_ok
    # An error inside the stream (Triton's error_message) is the callback's InferenceServerException, both ways.
    assert not direct_fail["ok"] and "model fail always fails" in direct_fail["message"], direct_fail
    assert (through_fail["ok"], through_fail["message"]) == (direct_fail["ok"], direct_fail["message"])


def test_request_metadata_reach_the_peer_and_its_trailers_come_back(stream_peer, via_stream_peer):
    metadata = {"x-echo-user": "ada", "x-echo-trace": "0af7651916cd43dd8448eb211c80319c"}
    calls = [("echo", STREAM_INFER, infer_request("raw"), "stream")]
    direct, through = (run_clients(_jobs(t, calls, metadata))[0] for t in (stream_peer.target, via_stream_peer.target))
    _same(direct, through, "stream peer echo")
    assert sorted(map(tuple, through["trailing"])) == sorted(metadata.items()), through
