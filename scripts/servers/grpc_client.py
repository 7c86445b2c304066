"""Run real gRPC clients against an Open Inference Protocol address and report what each one saw, as JSON.

Runs in the grpc-clients venv (scripts/servers/grpc-clients.txt: tritonclient[grpc], grpcio), not the project's:
tests/servers/grpc_peers.py starts it with a list of jobs on stdin (one JSON array) and reads one JSON result per
job, in order, on stdout. Jobs:

    {"client": "raw", "target": "127.0.0.1:PORT", "method": "/inference.GRPCInferenceService/ModelInfer",
     "requests": [BASE64, ...], "kind": "unary" | "stream", "metadata": [[k, v], ...], "timeout": 10}
        grpcio with no (de)serializer: the response messages as base64 exactly as they arrived, the initial and
        trailing metadata, the status code and details (from the RpcError when the call failed).
    {"client": "triton", "target": ..., "model": "iris", "version": "", "features": {name: [floats]},
     "headers": {...}, "timeout": 10, "stream": false, "contents": "raw" | "typed"}
        tritonclient.grpc: InferenceServerClient.infer (or start_stream + async_stream_infer with "stream": true)
        with one FP64 input per feature and the request parameter content_type "pd" (a DataFrame, as the model
        was fitted). "contents": "typed" sends the same request with InferTensorContents.fp64_contents instead of
        raw_input_contents (tritonclient always writes raw: the typed request goes through the client's own
        stub, grpc_service_pb2_grpc, with the client's metadata). The outputs as lists, or the
        InferenceServerException's status and message.
    {"client": "encode", "model": ..., "features": ..., "contents": "raw" | "typed", "version": "", "id": "..."}
        The serialized ModelInferRequest bytes only (base64), for the raw client's jobs.

Nothing here retries or catches on the client's behalf beyond turning the exception into data.
"""

from __future__ import annotations

import base64
import json
import queue
import sys
import time
from typing import Any

import grpc
import numpy as np
import tritonclient.grpc as tc
from tritonclient.grpc import service_pb2, service_pb2_grpc
from tritonclient.utils import InferenceServerException


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def _pairs(md: Any) -> list[list[str]]:
    """Metadata as [key, value] pairs in order; binary (-bin) values as base64."""
    out = []
    for k, v in md or ():
        out.append([k, _b64(v) if isinstance(v, bytes) else v])
    return out


def _raw(job: dict[str, Any]) -> dict[str, Any]:
    requests = [base64.b64decode(r) for r in job["requests"]]
    metadata = [tuple(p) for p in job.get("metadata", [])]
    t0 = time.monotonic()
    with grpc.insecure_channel(job["target"]) as channel:
        if job.get("kind", "unary") == "unary":
            call = channel.unary_unary(job["method"])  # no serializers: bytes in, bytes out
            try:
                response, state = call.with_call(requests[0], metadata=metadata, timeout=job.get("timeout", 10.0))
                return {"ok": True, "responses": [_b64(response)], "initial": _pairs(state.initial_metadata()),
                        "trailing": _pairs(state.trailing_metadata()), "code": state.code().name,
                        "details": state.details() or "", "seconds": time.monotonic() - t0}
            except grpc.RpcError as e:
                return _rpc_error(e, [], t0)
        stream = channel.stream_stream(job["method"])
        it = stream(iter(requests), metadata=metadata, timeout=job.get("timeout", 10.0))
        got: list[str] = []
        try:
            for message in it:
                got.append(_b64(message))
        except grpc.RpcError as e:
            return _rpc_error(e, got, t0)
        return {"ok": True, "responses": got, "initial": _pairs(it.initial_metadata()),
                "trailing": _pairs(it.trailing_metadata()), "code": it.code().name, "details": it.details() or "",
                "seconds": time.monotonic() - t0}


def _rpc_error(e: grpc.RpcError, got: list[str], t0: float) -> dict[str, Any]:
    call: Any = e
    return {"ok": False, "responses": got, "code": call.code().name, "details": call.details() or "",
            "initial": _pairs(call.initial_metadata()), "trailing": _pairs(call.trailing_metadata()),
            "seconds": time.monotonic() - t0}


def _inputs(features: dict[str, list[float]]) -> list[tc.InferInput]:
    inputs = []
    for name, values in features.items():
        x = tc.InferInput(name, [len(values)], "FP64")
        x.set_data_from_numpy(np.asarray(values, dtype=np.float64))
        inputs.append(x)
    return inputs


def _request(job: dict[str, Any]) -> service_pb2.ModelInferRequest:
    """The ModelInferRequest tritonclient would send (raw contents), or its typed-contents twin."""
    # An id of our own: KServe answers a request without one with a fresh uuid, different on every call.
    request = service_pb2.ModelInferRequest(model_name=job["model"], model_version=job.get("version", ""),
                                            id=job.get("id", "iris-request"))
    request.parameters["content_type"].string_param = "pd"
    for name, values in job["features"].items():
        tensor = request.inputs.add(name=name, datatype="FP64", shape=[len(values)])
        if job.get("contents", "raw") == "typed":
            tensor.contents.fp64_contents.extend(values)
        else:
            request.raw_input_contents.append(np.asarray(values, dtype=np.float64).tobytes())
    return request


# The typed field of InferTensorContents each datatype travels in.
TYPED = {"BOOL": "bool_contents", "INT8": "int_contents", "INT16": "int_contents", "INT32": "int_contents",
         "INT64": "int64_contents", "UINT8": "uint_contents", "UINT16": "uint_contents", "UINT32": "uint_contents",
         "UINT64": "uint64_contents", "FP32": "fp32_contents", "FP64": "fp64_contents", "BYTES": "bytes_contents"}


def _outputs(result: Any) -> dict[str, list[Any]]:
    """Each output's values, flat: as_numpy reads raw_output_contents only; a server answering a typed request
    in typed contents (MLServer) is read from them."""
    response = result.get_response()
    if response.raw_output_contents:
        return {o.name: np.asarray(result.as_numpy(o.name)).ravel().tolist() for o in response.outputs}
    return {o.name: list(getattr(o.contents, TYPED[o.datatype])) for o in response.outputs}


def _exc(e: InferenceServerException) -> dict[str, Any]:
    return {"ok": False, "error": type(e).__name__, "status": e.status(), "message": e.message() or ""}


def _triton(job: dict[str, Any]) -> dict[str, Any]:
    client = tc.InferenceServerClient(job["target"])
    headers = job.get("headers") or {}
    timeout = job.get("timeout", 10.0)
    t0 = time.monotonic()
    try:
        if job.get("stream"):
            return _triton_stream(client, job, headers, timeout, t0)
        if job.get("contents", "raw") == "typed":
            # tritonclient writes raw_input_contents only; the typed request goes through the same channel.
            stub = service_pb2_grpc.GRPCInferenceServiceStub(client._channel)
            try:
                response = stub.ModelInfer(_request(job), metadata=list(headers.items()), timeout=timeout)
            except grpc.RpcError as e:
                call: Any = e
                return {"ok": False, "error": "RpcError", "status": f"StatusCode.{call.code().name}",
                        "message": call.details() or "", "seconds": time.monotonic() - t0}
            result = tc.InferResult(response)
        else:
            result = client.infer(job["model"], _inputs(job["features"]), model_version=job.get("version", ""),
                                  request_id=job.get("id", "iris-request"), headers=headers, client_timeout=timeout,
                                  parameters={"content_type": "pd"})
        return {"ok": True, "outputs": _outputs(result), "seconds": time.monotonic() - t0}
    except InferenceServerException as e:
        return {**_exc(e), "seconds": time.monotonic() - t0}
    finally:
        client.close()


def _triton_stream(client: Any, job: dict[str, Any], headers: dict[str, str], timeout: float,
                   t0: float) -> dict[str, Any]:
    results: queue.Queue[Any] = queue.Queue()
    client.start_stream(callback=lambda result, error: results.put((result, error)), stream_timeout=timeout,
                        headers=headers)
    sent = True
    try:
        try:
            client.async_stream_infer(job["model"], _inputs(job["features"]), model_version=job.get("version", ""),
                                      parameters={"content_type": "pd"})
        except InferenceServerException:
            # The stream ended before the request went out (a status at once, e.g. an abort): tritonclient says
            # so here and hands the status to the callback, where a caller reads it.
            sent = False
        try:
            result, error = results.get(timeout=timeout + 5.0)  # the stream's own timeout comes first
        except queue.Empty:
            return {"ok": False, "error": "NoCallback", "status": None, "message": "no callback", "sent": sent,
                    "seconds": time.monotonic() - t0}
    finally:
        client.stop_stream(cancel_requests=False)
    if error is not None:
        return {**_exc(error), "sent": sent, "seconds": time.monotonic() - t0}
    return {"ok": True, "outputs": _outputs(result), "seconds": time.monotonic() - t0}


def main() -> None:
    jobs = json.load(sys.stdin)
    for job in jobs:
        try:
            if job["client"] == "raw":
                out = _raw(job)
            elif job["client"] == "triton":
                out = _triton(job)
            elif job["client"] == "encode":
                out = {"ok": True, "request": _b64(_request(job).SerializeToString())}
            else:
                out = {"ok": False, "error": f"unknown client {job['client']!r}"}
        except Exception as e:  # a bug here, or a client raising what it should not: reported, not hidden
            out = {"ok": False, "error": type(e).__name__, "status": None, "message": str(e)[:500], "crash": True}
        print(json.dumps(out), flush=True)


if __name__ == "__main__":
    main()
