"""ModelInferRequest/ModelInferResponse messages for the tests, and a small model behind the test upstream."""

from __future__ import annotations

from typing import Any

from proxy.payload.wire import LEN, Tensor, decode, field_string, read_tensors, write_tensors

# Serialized by protobuf 7.36 from grpc_predict_v2.proto (KServe's): model_name iris, model_version 1, id req-7,
# parameters {content_type: np}; inputs x FP32 [2,2] [1.5,-2,3.25,4] (with parameters {p: -3}), n INT64 [2]
# [-1, 2**40], s BYTES [2] ["a", "é"]; outputs [{name: y}].
TYPED = bytes.fromhex(
    "0a04697269731201311a057265712d3722140a0c636f6e74656e745f7479706512041a026e702a330a01781204465033321a0202"
    "0222100a0170120b10fdffffffffffffffff012a1232100000c03f000000c000005040000080402a210a016e1205494e5436341a"
    "01022a121a10ffffffffffffffffff018080808080202a160a0173120542595445531a01022a074201614202c3a932030a0179")
# model_name iris; inputs a INT32 [3], b FP64 [3]; raw_input_contents [1,-2,3] and [0.5,1.5,-2.5].
RAW = bytes.fromhex(
    "0a04697269732a0d0a01611205494e5433321a01032a0c0a01621204465036341a01033a0c01000000feffffff030000003a1800"
    "0000000000e03f000000000000f83f00000000000004c0")
# ModelInferResponse: model_name iris, id req-7, outputs predict FP64 [2] [0.25, 0.75].
RESPONSE = bytes.fromhex(
    "0a04697269731a057265712d372a260a07707265646963741204465036341a01022a123a10000000000000d03f000000000000e83f")


def request(inputs: list[tuple[str, str, list[int], list[Any]]], raw: bool = False, version: str = "") -> bytes:
    head = [(1, LEN, b"iris")] + ([(2, LEN, version.encode())] if version else [])
    return write_tensors(head, "request", [Tensor([], n, dt, shape, values, raw) for n, dt, shape, values in inputs])


def tensors(message: bytes, direction: str = "request") -> dict[str, tuple[str, list[int], list[Any]]]:
    return {t.name: (t.datatype, t.shape, t.values) for t in read_tensors(decode(message), direction)}


def version(message: bytes) -> str | None:
    return field_string(decode(message), 2)


def model(message: bytes) -> bytes:
    """predict[i] = the sum of row i over every numeric input (FP64), model_version echoed."""
    ts = read_tensors(decode(message), "request")
    rows = ts[0].shape[0] if ts else 0
    sums = [0.0] * rows
    for t in ts:
        if t.datatype == "BYTES":
            continue
        width = len(t.values) // rows if rows else 0
        for i in range(rows):
            sums[i] += sum(float(v) for v in t.values[i * width:(i + 1) * width])
    head = [(1, LEN, b"iris"), (2, LEN, (version(message) or "").encode())]
    return write_tensors(head, "response", [Tensor([], "predict", "FP64", [rows], sums, False)])
