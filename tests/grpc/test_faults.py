"""Each fault on a gRPC call, as a raw grpcio client sees it: the status raised, the time taken, the tensor
values the model received or the predictions the client got, changed exactly as the fault says."""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Callable
from typing import Any

import pytest

from proxy.payload.wire import decode
from tests.dataplane.conftest import FORCE_CHAOS, FORCE_CONTROL, chaos_experiment

pytest.importorskip("grpc")

from .conftest import UpstreamServer, grpc
from .infer import RAW, TYPED, model, request, tensors, version

aio = grpc.aio
INFER = "/inference.GRPCInferenceService/ModelInfer"
CHAOS_MD = tuple(FORCE_CHAOS.items())


async def infer(sc: Any, channel_to: Callable[[int], Any], message: bytes, metadata: tuple[Any, ...] = CHAOS_MD,
                timeout: float = 5) -> Any:
    call = channel_to(sc.grpc_port).unary_unary(INFER)(message, metadata=metadata, timeout=timeout)
    return await call, call


@pytest.fixture
async def model_upstream(start_grpc_upstream: Any) -> UpstreamServer:
    up: UpstreamServer = await start_grpc_upstream(model)
    return up


async def test_abort_with_a_grpc_status(model_upstream: UpstreamServer, grpc_sidecar: Any,
                                        channel_to: Callable[[int], Any]) -> None:
    fault = {"type": "abort", "grpc_status": "RESOURCE_EXHAUSTED", "message": "slow down"}
    sc = await grpc_sidecar(model_upstream, chaos_experiment([fault]))
    with pytest.raises(aio.AioRpcError) as info:
        await infer(sc, channel_to, TYPED)
    assert info.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED and info.value.details() == "slow down"
    assert ("x-mlchaos-fault", "abort") in tuple(info.value.trailing_metadata())
    assert model_upstream.seen.calls == 0
    assert sc.metrics.requests.children[("e1", "chaos", "RESOURCE_EXHAUSTED")].value == 1
    # The guards judge it as its HTTP equivalent: 429 is not an error, so the outcome is not 5xx.
    st = sc.experiments.states["e1"]
    assert st.faults_injected == 1


async def test_abort_with_an_http_status_maps_to_grpc(model_upstream: UpstreamServer, grpc_sidecar: Any,
                                                      channel_to: Callable[[int], Any]) -> None:
    sc = await grpc_sidecar(model_upstream, chaos_experiment([{"type": "abort", "status": 503}]))
    with pytest.raises(aio.AioRpcError) as info:
        await infer(sc, channel_to, TYPED)
    assert info.value.code() == grpc.StatusCode.UNAVAILABLE
    assert sc.metrics.requests.children[("e1", "chaos", "UNAVAILABLE")].value == 1
    # The control cohort goes through untouched.
    answer, _ = await infer(sc, channel_to, TYPED, tuple(FORCE_CONTROL.items()))
    assert tensors(answer, "response")["predict"][2] == [1.5 - 2.0 - 1, 3.25 + 4.0 + 2**40]
    assert sc.metrics.requests.children[("e1", "control", "OK")].value == 1


async def test_delay_holds_the_call(model_upstream: UpstreamServer, grpc_sidecar: Any,
                                    channel_to: Callable[[int], Any]) -> None:
    sc = await grpc_sidecar(model_upstream, chaos_experiment([{"type": "delay", "duration": "300ms"}]))
    message = request([("x", "FP64", [1], [2.0])])
    t0 = time.monotonic()
    answer, _ = await infer(sc, channel_to, message)
    assert time.monotonic() - t0 >= 0.3
    assert tensors(answer, "response")["predict"][2] == [2.0]


async def test_delay_past_the_deadline_is_deadline_exceeded(model_upstream: UpstreamServer, grpc_sidecar: Any,
                                                            channel_to: Callable[[int], Any]) -> None:
    sc = await grpc_sidecar(model_upstream, chaos_experiment([{"type": "delay", "duration": "2s"}]))
    with pytest.raises(aio.AioRpcError) as info:
        await infer(sc, channel_to, request([("x", "FP64", [1], [2.0])]), timeout=0.3)
    assert info.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    assert model_upstream.seen.calls == 0


@pytest.mark.parametrize("mode", ["close", "reset"])
async def test_drop_ends_the_connection(model_upstream: UpstreamServer, grpc_sidecar: Any,
                                        channel_to: Callable[[int], Any], mode: str) -> None:
    sc = await grpc_sidecar(model_upstream, chaos_experiment([{"type": "drop", "mode": mode}]))
    with pytest.raises(aio.AioRpcError) as info:
        await infer(sc, channel_to, TYPED)
    assert info.value.code() == grpc.StatusCode.UNAVAILABLE
    assert "mlchaos" not in (info.value.details() or "")  # the connection died: no status came from the proxy
    assert model_upstream.seen.calls == 0
    assert sc.metrics.requests.children[("e1", "chaos", "dropped")].value == 1


async def test_drop_stream_resets_only_that_call(model_upstream: UpstreamServer, grpc_sidecar: Any,
                                                channel_to: Callable[[int], Any]) -> None:
    """mode: stream resets the call's HTTP/2 stream: the client raises for that call, and its connection lives
    on (the same one answers the next call; a grpc channel would quietly reconnect after a connection drop)."""
    sc = await grpc_sidecar(model_upstream, chaos_experiment([{"type": "drop", "mode": "stream"}]))
    control = tuple(FORCE_CONTROL.items())
    await infer(sc, channel_to, TYPED, metadata=control)
    connections = set(sc._grpc.connections)
    assert len(connections) == 1
    with pytest.raises(aio.AioRpcError) as info:
        await infer(sc, channel_to, TYPED)
    assert info.value.code() == grpc.StatusCode.CANCELLED
    assert "RST_STREAM" in (info.value.debug_error_string() or "")
    assert model_upstream.seen.calls == 1  # the control call's only
    assert sc.metrics.requests.children[("e1", "chaos", "dropped")].value == 1
    answer, _call = await infer(sc, channel_to, TYPED, metadata=control)
    assert tensors(answer, "response")["predict"][2]
    assert set(sc._grpc.connections) == connections


async def test_stall_then_close(model_upstream: UpstreamServer, grpc_sidecar: Any,
                                channel_to: Callable[[int], Any]) -> None:
    sc = await grpc_sidecar(model_upstream, chaos_experiment([{"type": "stall", "cap": "300ms"}]))
    t0 = time.monotonic()
    with pytest.raises(aio.AioRpcError) as info:
        await infer(sc, channel_to, TYPED)
    assert time.monotonic() - t0 >= 0.3
    assert info.value.code() == grpc.StatusCode.UNAVAILABLE


async def test_fallback_calls_the_other_upstream(model_upstream: UpstreamServer, start_grpc_upstream: Any,
                                                 grpc_sidecar: Any, channel_to: Callable[[int], Any]) -> None:
    other: UpstreamServer = await start_grpc_upstream(model)
    extra = chaos_experiment([{"type": "fallback", "upstream": "backup"}])
    extra["upstreams"] = {"backup": f"http://{other.address}"}
    sc = await grpc_sidecar(model_upstream, extra)
    await infer(sc, channel_to, TYPED)
    assert (other.seen.calls, model_upstream.seen.calls) == (1, 0)


async def test_wrong_version_rewrites_model_version(model_upstream: UpstreamServer, grpc_sidecar: Any,
                                                    channel_to: Callable[[int], Any]) -> None:
    sc = await grpc_sidecar(model_upstream, chaos_experiment([{"type": "wrong_version", "version": "9"}]))
    answer, _ = await infer(sc, channel_to, TYPED)
    sent = model_upstream.seen.requests[0]
    assert version(sent) == "9" and version(answer) == "9"
    assert tensors(sent) == tensors(TYPED)


async def test_nan_on_typed_contents(model_upstream: UpstreamServer, grpc_sidecar: Any,
                                     channel_to: Callable[[int], Any]) -> None:
    sc = await grpc_sidecar(model_upstream, chaos_experiment([{"type": "nan", "features": ["n"]}]))
    await infer(sc, channel_to, TYPED)
    sent = tensors(model_upstream.seen.requests[0])
    # An INT64 tensor cannot hold NaN: it turns FP64, as a JSON null would make an INT tensor unreadable.
    datatype, shape, values = sent["n"]
    assert datatype == "FP64" and shape == [2] and all(math.isnan(v) for v in values)
    assert sent["x"] == tensors(TYPED)["x"] and sent["s"] == tensors(TYPED)["s"]


async def test_shift_on_raw_contents(model_upstream: UpstreamServer, grpc_sidecar: Any,
                                     channel_to: Callable[[int], Any]) -> None:
    fault = {"type": "shift", "features": ["b"], "scale": 2.0, "offset": 1.0}
    sc = await grpc_sidecar(model_upstream, chaos_experiment([fault]))
    answer, _ = await infer(sc, channel_to, RAW)
    sent = model_upstream.seen.requests[0]
    assert tensors(sent) == {"a": ("INT32", [3], [1, -2, 3]), "b": ("FP64", [3], [2.0, 4.0, -4.0])}
    assert sum(1 for n, _, _ in decode(sent) if n == 7) == 2  # still raw: two raw_input_contents
    assert tensors(answer, "response")["predict"][2] == [3.0, 2.0, -1.0]


async def test_perturb_predictions_on_the_response(model_upstream: UpstreamServer, grpc_sidecar: Any,
                                                   channel_to: Callable[[int], Any]) -> None:
    fault = {"type": "perturb_predictions", "noise_std": 0.5}
    sc = await grpc_sidecar(model_upstream, chaos_experiment([fault]))
    message = request([("x", "FP64", [4], [1.0, 2.0, 3.0, 4.0])])
    answer, _ = await infer(sc, channel_to, message)
    got = tensors(answer, "response")["predict"]
    assert got[0] == "FP64" and got[1] == [4] and got[2] != [1.0, 2.0, 3.0, 4.0]
    assert tensors(model_upstream.seen.requests[0]) == tensors(message)  # the request was not touched


async def test_feature_fault_on_the_response_outputs(model_upstream: UpstreamServer, grpc_sidecar: Any,
                                                     channel_to: Callable[[int], Any]) -> None:
    fault = {"type": "out_of_range", "features": ["predict"], "target": "response"}
    sc = await grpc_sidecar(model_upstream, chaos_experiment([fault]))
    message = request([("x", "FP64", [2], [1.0, 2.0])])
    answer, _ = await infer(sc, channel_to, message)
    assert tensors(answer, "response")["predict"][2] != [1.0, 2.0]


async def test_drop_feature_removes_the_tensor(model_upstream: UpstreamServer, grpc_sidecar: Any,
                                               channel_to: Callable[[int], Any]) -> None:
    sc = await grpc_sidecar(model_upstream, chaos_experiment([{"type": "drop_feature", "features": ["s"]}]))
    await infer(sc, channel_to, TYPED)
    sent = model_upstream.seen.requests[0]
    assert list(tensors(sent)) == ["x", "n"]


async def test_stall_until_the_client_deadline(model_upstream: UpstreamServer, grpc_sidecar: Any,
                                               channel_to: Callable[[int], Any]) -> None:
    sc = await grpc_sidecar(model_upstream, chaos_experiment([{"type": "stall", "cap": "10s"}]))
    t0 = time.monotonic()
    with pytest.raises(aio.AioRpcError) as info:
        await infer(sc, channel_to, TYPED, timeout=0.3)
    assert info.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED and time.monotonic() - t0 < 2
    for _ in range(100):  # the proxy learns of the deadline from grpc, a moment after the client
        if sc.metrics.errors["client_disconnect"].value:
            break
        await asyncio.sleep(0.02)
    assert sc.metrics.errors["client_disconnect"].value == 1
    assert model_upstream.seen.calls == 0


async def test_abort_on_a_bidirectional_call(grpc_upstream: UpstreamServer, grpc_sidecar: Any,
                                             channel_to: Callable[[int], Any]) -> None:
    fault = {"type": "abort", "grpc_status": "UNAVAILABLE", "message": "stream refused"}
    extra = chaos_experiment([fault])
    extra["experiments"][0]["match"] = {"method": "/test.Echo/Bidi"}
    sc = await grpc_sidecar(grpc_upstream, extra)
    call = channel_to(sc.grpc_port).stream_stream("/test.Echo/Bidi")(metadata=CHAOS_MD, timeout=5)
    with pytest.raises(aio.AioRpcError) as info:
        await call.write(b"a")  # raises when the status came first
        await call.read()
    assert info.value.code() == grpc.StatusCode.UNAVAILABLE and info.value.details() == "stream refused"
    assert grpc_upstream.seen.calls == 0
    # The same experiment leaves the unary method alone.
    assert await channel_to(sc.grpc_port).unary_unary("/test.Echo/Unary")(b"ab", metadata=CHAOS_MD) == b"ba"


async def test_delay_on_a_bidirectional_call(grpc_upstream: UpstreamServer, grpc_sidecar: Any,
                                             channel_to: Callable[[int], Any]) -> None:
    sc = await grpc_sidecar(grpc_upstream, chaos_experiment([{"type": "delay", "duration": "300ms"}]))
    t0 = time.monotonic()
    call = channel_to(sc.grpc_port).stream_stream("/test.Echo/Bidi")(metadata=CHAOS_MD, timeout=5)
    await call.write(b"a")
    assert await call.read() == b"A"
    assert time.monotonic() - t0 >= 0.3
    await call.done_writing()
    assert await call.code() == grpc.StatusCode.OK
    assert sc.metrics.requests.children[("e1", "chaos", "OK")].value == 1


async def test_status_after_the_model_answered(model_upstream: UpstreamServer, grpc_sidecar: Any,
                                               channel_to: Callable[[int], Any]) -> None:
    sc = await grpc_sidecar(model_upstream, chaos_experiment([{"type": "status", "status": 504}]))
    with pytest.raises(aio.AioRpcError) as info:
        await infer(sc, channel_to, TYPED)
    assert info.value.code() == grpc.StatusCode.UNAVAILABLE  # 504 by gRPC's HTTP-to-gRPC table
    assert model_upstream.seen.calls == 1  # the work was done
    assert sc.metrics.requests.children[("e1", "chaos", "UNAVAILABLE")].value == 1


async def test_corrupt_response_reaches_the_client_undecodable(model_upstream: UpstreamServer,
                                                               grpc_sidecar: Any,
                                                               channel_to: Callable[[int], Any]) -> None:
    sc = await grpc_sidecar(model_upstream, chaos_experiment([{"type": "corrupt_response", "mode": "truncate",
                                                               "keep": 0.5}]))
    answer, _ = await infer(sc, channel_to, TYPED)
    direct = model(TYPED)
    assert answer == direct[: len(direct) // 2]
