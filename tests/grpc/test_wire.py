"""The protobuf wire codec against messages protobuf itself serialized, and as a property: any message of
well-formed fields (unknown ones included) decodes and encodes back to the same bytes."""

from __future__ import annotations

import math
import struct

from hypothesis import given
from hypothesis import strategies as st

from proxy.payload.adapters import AdapterOptions
from proxy.payload.adapters.v2_grpc import GrpcDoc, V2GrpcAdapter
from proxy.payload.wire import I32, I64, LEN, VARINT, decode, encode, set_string

from .infer import RAW, RESPONSE, TYPED, tensors, version

# Small numbers often (the message's own fields, given other wire types or contents), any number sometimes.
numbers = st.one_of(st.integers(1, 16), st.integers(1, 2**29 - 1))
fields = st.lists(st.one_of(
    st.tuples(numbers, st.just(VARINT), st.integers(0, 2**64 - 1)),
    st.tuples(numbers, st.just(LEN), st.binary(max_size=40)),
    st.tuples(numbers, st.just(I64), st.binary(min_size=8, max_size=8)),
    st.tuples(numbers, st.just(I32), st.binary(min_size=4, max_size=4)),
), max_size=20)


@given(fields)
def test_round_trip_of_any_fields(message: list[tuple[int, int, object]]) -> None:
    data = encode(message)
    assert decode(data) == message
    assert encode(decode(data)) == data


@given(fields, st.integers(0, 20))
def test_an_unknown_field_survives_a_tensor_change(extra: list[tuple[int, int, object]], at: int) -> None:
    """Fields other than the tensors, known or not, anywhere in the message, go out as they came when a
    tensor changes (the parameters map, 4, only when it is one: a map entry it cannot read is refused)."""
    others = [f for f in extra if f[0] not in (4, 5, 7)]
    head = decode(RAW)
    message = encode(head[:1] + others[:at] + head[1:] + others[at:])
    doc = GrpcDoc.of(message, "request")
    assert doc is not None
    doc.json["inputs"][1]["data"] = [9.0, 8.0, 7.0]
    out = decode(doc.encode())
    assert [f for f in out if f[0] not in (5, 7)] == [f for f in decode(message) if f[0] not in (5, 7)]
    assert tensors(doc.encode())["b"][2] == [9.0, 8.0, 7.0]


def test_protobuf_serialized_messages_read_and_write_back_identically() -> None:
    for message, direction in ((TYPED, "request"), (RAW, "request"), (RESPONSE, "response")):
        assert encode(decode(message)) == message
        doc = GrpcDoc.of(message, direction)
        assert doc is not None and doc.encode() == message
    assert tensors(TYPED) == {"x": ("FP32", [2, 2], [1.5, -2.0, 3.25, 4.0]), "n": ("INT64", [2], [-1, 2**40]),
                              "s": ("BYTES", [2], ["a", "é"])}
    assert tensors(RAW) == {"a": ("INT32", [3], [1, -2, 3]), "b": ("FP64", [3], [0.5, 1.5, -2.5])}
    assert tensors(RESPONSE, "response") == {"predict": ("FP64", [2], [0.25, 0.75])}


def test_the_v2_view_reads_pd_columns_and_writes_raw_back_raw() -> None:
    adapter = V2GrpcAdapter()
    doc = GrpcDoc.of(RAW, "request")
    parsed = adapter.read(doc, AdapterOptions())
    assert parsed is not None and parsed.layout == "v2.columnar" and parsed.table.names == ["a", "b"]
    table = parsed.table
    table.columns[0][1] = None  # an INT32 tensor cannot hold it: the tensor turns FP64 with a NaN
    table.columns[1][2] = 4.5
    out = adapter.write(parsed, table).encode()
    raw = [v for n, _, v in decode(out) if n == 7]
    assert struct.unpack("<3d", raw[1]) == (0.5, 1.5, 4.5)
    a = struct.unpack("<3d", raw[0])
    assert a[0] == 1.0 and math.isnan(a[1]) and a[2] == 3.0
    assert tensors(out)["a"][0] == "FP64"


def test_set_string_rewrites_model_version() -> None:
    assert version(TYPED) == "1"
    changed = set_string(TYPED, 2, "7")
    assert version(changed) == "7"
    assert [f for f in decode(changed) if f[0] != 2] == [f for f in decode(TYPED) if f[0] != 2]


@given(st.binary(max_size=200))
def test_any_bytes_decode_or_are_refused_never_raise(data: bytes) -> None:
    doc = GrpcDoc.of(data, "request")
    assert doc is None or isinstance(doc.json["inputs"], list)
