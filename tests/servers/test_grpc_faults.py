"""Each fault through ``mlchaos run``'s gRPC listener in front of MLServer's and KServe's gRPC ports, asserted on
what the real client raises or returns: tritonclient.grpc (an InferenceServerException and its status, or the
outputs it decodes) and, for ModelStreamInfer, a raw grpcio client.

One sidecar per server with one experiment per fault; a call is put in a fault's chaos cohort with the cohort
override metadata (``forced``). The ground truth is the server's own answer, direct, in test_grpc_passthrough:
[0, 2] for the two iris rows. tritonclient sends raw_input_contents; the typed-contents twin of each request is
sent through tritonclient's own stub and channel (``contents="typed"``), so feature faults are checked on both
encodings of a tensor (KServe reads a "pd" request's typed contents only).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from tests.servers.grpc_peers import (
    COLUMNS,
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

WRONG = [2, 2]  # what 1e6 x the scaled petal_length makes of row 0 (test_direct.py's ground truth)
DELAY = 0.4
FAULTS: dict[str, dict[str, Any]] = {
    "abort": {"type": "abort", "grpc_status": "RESOURCE_EXHAUSTED", "message": "chaos: the model is overloaded"},
    # No grpc_status: the HTTP status's gRPC code (gRPC's HTTP-to-gRPC table: 503 -> UNAVAILABLE).
    "abort_http": {"type": "abort", "status": 503},
    "delay": {"type": "delay", "duration": DELAY},
    "stall": {"type": "stall", "cap": "8s"},
    "drop": {"type": "drop", "mode": "reset"},
    "drop_stream": {"type": "drop", "mode": "stream"},
    "fallback": {"type": "fallback", "upstream": "other"},
    "wrong_version": {"type": "wrong_version", "version": "v0"},
    "out_of_range": {"type": "out_of_range", "features": ["petal_length"], "at": "scaled", "factor": 1e6, "sign": "+"},
    "nan": {"type": "nan", "features": ["sepal_width"], "fraction": 1.0},
    "perturb": {"type": "perturb_predictions", "flip_rate": 1.0, "classes": [0, 1, 2]},
}


def _proxy(server: RunningServer, other: RunningServer, tmp_path_factory: pytest.TempPathFactory,
           grpc_target: str | None = None) -> Iterator[GrpcProxy]:
    require_clients()
    proxy = GrpcProxy(grpc_target or server.grpc_target, server.url, FAULTS,
                      tmp_path_factory.mktemp(f"grpc-faults-{server.name}"),
                      upstreams={"other": f"http://{other.grpc_target}"})
    try:
        yield proxy
    finally:
        proxy.stop()


@pytest.fixture(scope="module")
def mlserver_faults(mlserver: RunningServer, kserve: RunningServer,
                    tmp_path_factory: pytest.TempPathFactory) -> Iterator[GrpcProxy]:
    """In front of MLServer; fallback goes to KServe (whose answer names its output "output-0")."""
    yield from _proxy(mlserver, kserve, tmp_path_factory)


@pytest.fixture(scope="module")
def kserve_faults(kserve: RunningServer, mlserver: RunningServer,
                  tmp_path_factory: pytest.TempPathFactory) -> Iterator[GrpcProxy]:
    """In front of KServe; fallback goes to MLServer (whose answer names its output "predict")."""
    yield from _proxy(kserve, mlserver, tmp_path_factory)


def triton(proxy: GrpcProxy, fault: str | None, **job: Any) -> dict[str, Any]:
    """One tritonclient.grpc infer through ``proxy``, in ``fault``'s chaos cohort (None: unassigned)."""
    return run_clients([_job(proxy, fault, **job)])[0]


def _job(proxy: GrpcProxy, fault: str | None, **job: Any) -> dict[str, Any]:
    return {"client": "triton", "target": proxy.target, "model": "iris", "features": COLUMNS, "timeout": 10.0,
            "headers": forced(fault) if fault else {}, **job}


def _raised(result: dict[str, Any], status: str, fragment: str = "") -> None:
    assert not result["ok"] and result["status"] == f"StatusCode.{status}", result
    assert fragment in result["message"], result


def test_abort_raises_the_status_and_message_it_names(mlserver_faults, kserve_faults):
    for proxy in (mlserver_faults, kserve_faults):
        raw, typed, http = run_clients([_job(proxy, "abort"), _job(proxy, "abort", contents="typed"),
                                        _job(proxy, "abort_http")])
        _raised(raw, "RESOURCE_EXHAUSTED", "chaos: the model is overloaded")
        _raised(typed, "RESOURCE_EXHAUSTED", "chaos: the model is overloaded")
        _raised(http, "UNAVAILABLE")


def test_delay_answers_correctly_and_late(mlserver_faults):
    plain, late = run_clients([_job(mlserver_faults, None), _job(mlserver_faults, "delay")])
    assert late["ok"] and late["outputs"] == {"predict": EXPECTED}, late
    assert late["seconds"] >= DELAY and late["seconds"] - plain["seconds"] >= DELAY * 0.9, (plain, late)


def test_stall_outlasts_the_client_deadline(mlserver_faults):
    result = triton(mlserver_faults, "stall", timeout=1.0)
    _raised(result, "DEADLINE_EXCEEDED")
    assert 0.9 <= result["seconds"] < 8.0, result  # the client's deadline ended it, not the stall's cap


def test_drop_resets_the_connection_and_the_client_raises_unavailable(mlserver_faults):
    dropped, after = run_clients([_job(mlserver_faults, "drop"), _job(mlserver_faults, None)])
    _raised(dropped, "UNAVAILABLE")
    # The next call, on a new connection, is answered: the drop cost one call, not the sidecar.
    assert after["ok"] and after["outputs"] == {"predict": EXPECTED}, after


def test_drop_stream_resets_the_call_and_tritonclient_raises_cancelled(mlserver_faults):
    dropped, after = run_clients([_job(mlserver_faults, "drop_stream"), _job(mlserver_faults, None)])
    _raised(dropped, "CANCELLED")
    assert after["ok"] and after["outputs"] == {"predict": EXPECTED}, after


def test_fallback_is_answered_by_the_other_server(mlserver_faults, kserve_faults):
    # Typed tensors: KServe cannot read tritonclient's raw ones. The output's name tells who answered.
    to_kserve = triton(mlserver_faults, "fallback", contents="typed")
    assert to_kserve["ok"] and to_kserve["outputs"] == {"output-0": EXPECTED}, to_kserve
    to_mlserver = triton(kserve_faults, "fallback", contents="typed")
    assert to_mlserver["ok"] and to_mlserver["outputs"] == {"predict": EXPECTED}, to_mlserver


def test_wrong_version_asks_for_a_version_mlserver_has_not_got(mlserver_faults):
    _raised(triton(mlserver_faults, "wrong_version"), "NOT_FOUND", "Model iris with version v0 not found")
    # The same call unassigned names no version, and MLServer serves its default.
    assert triton(mlserver_faults, None)["outputs"] == {"predict": EXPECTED}


def test_out_of_range_silently_changes_the_answer_raw_and_typed(mlserver_faults, kserve_faults):
    raw, typed, control = run_clients([_job(mlserver_faults, "out_of_range"),
                                       _job(mlserver_faults, "out_of_range", contents="typed"),
                                       {**_job(mlserver_faults, None), "headers": forced("out_of_range", "control")}])
    assert raw["ok"] and raw["outputs"] == {"predict": WRONG}, raw
    assert typed["ok"] and typed["outputs"] == {"predict": WRONG}, typed
    assert control["ok"] and control["outputs"] == {"predict": EXPECTED}, control
    ks = triton(kserve_faults, "out_of_range", contents="typed")
    assert ks["ok"] and ks["outputs"] == {"output-0": WRONG}, ks


def test_nan_makes_the_model_raise_its_own_error(mlserver_faults, kserve_faults):
    raw, typed = run_clients([_job(mlserver_faults, "nan"), _job(mlserver_faults, "nan", contents="typed")])
    _raised(raw, "INTERNAL", "Input X contains NaN")
    _raised(typed, "INTERNAL", "Input X contains NaN")
    _raised(triton(kserve_faults, "nan", contents="typed"), "INVALID_ARGUMENT", "Input X contains NaN")


def test_perturb_predictions_changes_every_label(mlserver_faults, kserve_faults):
    for proxy, output, contents in ((mlserver_faults, "predict", "raw"), (mlserver_faults, "predict", "typed"),
                                    (kserve_faults, "output-0", "typed")):
        result = triton(proxy, "perturb", contents=contents)
        assert result["ok"] and set(result["outputs"]) == {output}, result
        labels = result["outputs"][output]
        # flip_rate 1: every row's label is another of the classes.
        assert len(labels) == 2, result
        assert all(a != b and a in (0, 1, 2) for a, b in zip(labels, EXPECTED, strict=True)), result


def test_faults_on_mlservers_bidirectional_stream(mlserver, mlserver_faults):
    """A raw grpcio ModelStreamInfer through the sidecar: abort ends the stream with the status before any
    answer; delay answers the same bytes as direct, late."""
    request = [b64(infer_request("raw"))]

    def stream(target: str, fault: str | None) -> dict[str, Any]:
        return {"client": "raw", "target": target, "method": STREAM_INFER, "requests": request, "kind": "stream",
                "metadata": [[k, v] for k, v in (forced(fault) if fault else {}).items()], "timeout": 10.0}

    direct, aborted, delayed = run_clients([stream(mlserver.grpc_target, None),
                                           stream(mlserver_faults.target, "abort"),
                                           stream(mlserver_faults.target, "delay")])
    assert direct["ok"] and len(direct["responses"]) == 1, direct
    assert (aborted["code"], aborted["details"], aborted["responses"]) == (
        "RESOURCE_EXHAUSTED", "chaos: the model is overloaded", []), aborted
    assert delayed["ok"] and delayed["responses"] == direct["responses"] and delayed["seconds"] >= DELAY, delayed


@pytest.fixture(scope="module")
def stream_faults(stream_peer: StreamPeer, mlserver: RunningServer, kserve: RunningServer,
                  tmp_path_factory: pytest.TempPathFactory) -> Iterator[GrpcProxy]:
    yield from _proxy(mlserver, kserve, tmp_path_factory, grpc_target=stream_peer.target)


def test_tritonclient_stream_raises_an_abort_in_its_callback(stream_faults):
    aborted, plain = run_clients([_job(stream_faults, "abort", stream=True), _job(stream_faults, None, stream=True)])
    _raised(aborted, "RESOURCE_EXHAUSTED", "chaos: the model is overloaded")
    sums = [sum(col[i] for col in COLUMNS.values()) for i in range(2)]
    assert plain["ok"] and plain["outputs"] == {"sum": pytest.approx(sums)}, plain


def _count(metrics: str, experiment: str, cohort: str, code: str) -> float:
    """mlchaos_requests_total for these labels, in whatever order the exposition writes them."""
    want = {f'experiment="{experiment}"', f'cohort="{cohort}"', f'code="{code}"'}
    total = 0.0
    for line in metrics.splitlines():
        if line.startswith("mlchaos_requests_total{"):
            labels, value = line[len("mlchaos_requests_total{"):].rsplit("} ", 1)
            if set(labels.split(",")) == want:
                total += float(value)
    return total


def test_metrics_count_real_outcomes_by_grpc_status(mlserver_faults):
    """The status the client saw is the code label: the fault's own (abort), the server's (MLServer's INTERNAL
    for a NaN), and OK for the control cohort."""
    seen = [("abort", "chaos", "RESOURCE_EXHAUSTED"), ("nan", "chaos", "INTERNAL"), ("nan", "control", "OK")]
    before = mlserver_faults.metrics()
    run_clients([{**_job(mlserver_faults, experiment), "headers": forced(experiment, cohort)}
                 for experiment, cohort, _ in seen])
    after = mlserver_faults.metrics()
    for experiment, cohort, code in seen:
        assert _count(after, experiment, cohort, code) - _count(before, experiment, cohort, code) == 1, (
            experiment, cohort, code, [line for line in after.splitlines() if line.startswith("mlchaos_requests_")])
