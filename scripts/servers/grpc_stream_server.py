"""A Triton-shaped ``ModelStreamInfer`` peer for tritonclient.grpc's streaming API, on a loopback port.

Why it exists: neither real server of tests/servers answers tritonclient's stream. Triton's service declares
``ModelStreamInfer(stream ModelInferRequest) returns (stream ModelStreamInferResponse)`` (an error_message and
an infer_response), and tritonclient parses that; MLServer 1.7 answers the same method with bare
``ModelInferResponse`` messages (its dataplane.proto), which tritonclient cannot read (its stream thread fails and
no callback comes), and KServe 0.21 has no ModelStreamInfer at all. This server speaks Triton's shape, from
tritonclient's own generated messages, and nothing else.

Runs in the grpc-clients venv: ``python grpc_stream_server.py PORT``; prints ``ready`` once serving. Each request
on a stream is answered in order with one ModelStreamInferResponse whose infer_response echoes model_name,
model_version and id and has one FP64 output "sum" of shape [N]: the sum across the inputs of each row (the
inputs read from raw_input_contents or typed fp64_contents alike), so a client sees exactly what a fault did to
any feature. A request for model "fail" is answered with error_message instead (the stream stays open). The
call's request metadata whose keys start with ``x-echo-`` come back as its trailing metadata, so a test sees
what metadata reached the peer.
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import AsyncIterator
from typing import Any

import grpc
import numpy as np
from tritonclient.grpc import service_pb2

METHOD = "/inference.GRPCInferenceService/ModelStreamInfer"


def _columns(request: Any) -> list[np.ndarray]:
    cols = []
    for i, tensor in enumerate(request.inputs):
        if request.raw_input_contents:
            cols.append(np.frombuffer(request.raw_input_contents[i], dtype=np.float64))
        else:
            cols.append(np.asarray(tensor.contents.fp64_contents, dtype=np.float64))
    return cols


def answer(request: Any) -> Any:
    out = service_pb2.ModelStreamInferResponse()
    if request.model_name == "fail":
        out.error_message = "model fail always fails"
        return out
    sums = np.sum(np.vstack(_columns(request)), axis=0)
    response = out.infer_response
    response.model_name, response.model_version, response.id = request.model_name, request.model_version, request.id
    response.outputs.add(name="sum", datatype="FP64", shape=[len(sums)])
    response.raw_output_contents.append(sums.astype(np.float64).tobytes())
    return out


async def stream_infer(requests: AsyncIterator[Any], context: grpc.aio.ServicerContext) -> AsyncIterator[Any]:
    echo = [(k, v) for k, v in context.invocation_metadata() or () if k.startswith("x-echo-")]
    context.set_trailing_metadata(echo)
    async for request in requests:
        yield answer(request)


async def serve(port: int) -> None:
    server = grpc.aio.server()
    handler = grpc.stream_stream_rpc_method_handler(
        stream_infer, request_deserializer=service_pb2.ModelInferRequest.FromString,
        response_serializer=service_pb2.ModelStreamInferResponse.SerializeToString)
    server.add_generic_rpc_handlers(
        [grpc.method_handlers_generic_handler("inference.GRPCInferenceService", {"ModelStreamInfer": handler})])
    server.add_insecure_port(f"127.0.0.1:{port}")
    await server.start()
    print("ready", flush=True)
    await server.wait_for_termination()


if __name__ == "__main__":
    asyncio.run(serve(int(sys.argv[1])))
