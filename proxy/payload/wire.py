"""A small protobuf wire codec: a message as its fields in order, and the Open Inference Protocol's tensors.

``decode`` turns a message into ``(number, wire type, value)`` fields in the order they came: a varint as an
int, a fixed32/fixed64 as its 4/8 bytes, a length-delimited field as its bytes; ``encode`` writes them back.
Unknown fields are fields like any other, so whatever a change does not touch goes out as it came in (byte
for byte when the input was canonically encoded, as every protobuf library writes it).

On top, the tensors of ``inference.ModelInferRequest`` (inputs = 5, raw_input_contents = 7) and
``ModelInferResponse`` (outputs = 5, raw_output_contents = 6) of grpc_predict_v2.proto: an InferInputTensor
and an InferOutputTensor share their field numbers (name 1, datatype 2, shape 3, parameters 4, contents 5),
and InferTensorContents has one repeated field per type (bool 1, int 2, int64 3, uint 4, uint64 5, fp32 6,
fp64 7, bytes 8). ``read_tensors`` gives each tensor's flat values from ``contents`` or from its raw bytes;
``write_tensors`` writes changed tensors back the way they came (typed or raw), keeping every other field.
Only what a fault or the observer must read is ever decoded; no protobuf runtime is needed.
"""

from __future__ import annotations

import math
import struct
from typing import Any, Final

import numpy as np

__all__ = [
    "RAW_FIELD", "TENSOR_FIELD", "Tensor", "decode", "encode", "field_string", "read_tensors", "set_string",
    "write_tensors",
]

VARINT: Final = 0
I64: Final = 1
LEN: Final = 2
I32: Final = 5
# inputs/outputs, and raw_input_contents/raw_output_contents, by message ("request", "response").
TENSOR_FIELD: Final = 5
RAW_FIELD: Final = {"request": 7, "response": 6}
# InferTensorContents field of each datatype (FP16 and BF16 travel only raw).
CONTENTS_FIELD: Final = {"BOOL": 1, "INT8": 2, "INT16": 2, "INT32": 2, "INT64": 3, "UINT8": 4, "UINT16": 4,
                         "UINT32": 4, "UINT64": 5, "FP32": 6, "FP64": 7, "BYTES": 8}
# Little-endian numpy dtypes of raw contents.
RAW_DTYPE: Final = {"BOOL": "?", "INT8": "<i1", "INT16": "<i2", "INT32": "<i4", "INT64": "<i8", "UINT8": "<u1",
                    "UINT16": "<u2", "UINT32": "<u4", "UINT64": "<u8", "FP16": "<f2", "FP32": "<f4", "FP64": "<f8"}
_INT_RANGE: Final = {"INT8": (-(2**7), 2**7 - 1), "INT16": (-(2**15), 2**15 - 1), "INT32": (-(2**31), 2**31 - 1),
                     "INT64": (-(2**63), 2**63 - 1), "UINT8": (0, 2**8 - 1), "UINT16": (0, 2**16 - 1),
                     "UINT32": (0, 2**32 - 1), "UINT64": (0, 2**64 - 1)}
Field = tuple[int, int, Any]


def _varint(data: bytes, i: int) -> tuple[int, int]:
    result = shift = 0
    n = len(data)
    while True:
        if i >= n:
            raise ValueError("truncated varint")
        b = data[i]
        i += 1
        result |= (b & 0x7F) << shift
        if b < 0x80:
            return result, i
        shift += 7
        if shift >= 70:
            raise ValueError("varint too long")


def _put_varint(out: bytearray, value: int) -> None:
    value &= (1 << 64) - 1  # negative int32/int64 are sent as their 64-bit two's complement
    while value >= 0x80:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)


def decode(data: bytes) -> list[Field]:
    """The fields of a message in wire order; ValueError for what is not a well-formed message."""
    fields: list[Field] = []
    i, n = 0, len(data)
    while i < n:
        key, i = _varint(data, i)
        number, wire = key >> 3, key & 7
        if number == 0:
            raise ValueError("field number 0")
        value: Any
        if wire == VARINT:
            value, i = _varint(data, i)
        elif wire == LEN:
            size, i = _varint(data, i)
            if i + size > n:
                raise ValueError("truncated length-delimited field")
            value, i = data[i:i + size], i + size
        elif wire == I64:
            if i + 8 > n:
                raise ValueError("truncated fixed64")
            value, i = data[i:i + 8], i + 8
        elif wire == I32:
            if i + 4 > n:
                raise ValueError("truncated fixed32")
            value, i = data[i:i + 4], i + 4
        else:
            raise ValueError(f"wire type {wire} (groups) not supported")
        fields.append((number, wire, value))
    return fields


def encode(fields: list[Field]) -> bytes:
    out = bytearray()
    for number, wire, value in fields:
        _put_varint(out, number << 3 | wire)
        if wire == VARINT:
            _put_varint(out, value)
        elif wire == LEN:
            _put_varint(out, len(value))
            out += value
        else:
            out += value
    return bytes(out)


def field_string(fields: list[Field], number: int) -> str | None:
    """The last value of a string field (proto3: the last one wins), or None."""
    found = None
    for num, wire, value in fields:
        if num == number and wire == LEN:
            found = value
    return found.decode("utf-8") if found is not None else None


def set_string(message: bytes, number: int, text: str) -> bytes:
    """``message`` with string field ``number`` set to ``text`` (in place of every occurrence, or appended)."""
    fields = decode(message)
    value = text.encode("utf-8")
    out: list[Field] = []
    done = False
    for f in fields:
        if f[0] == number:
            if not done:
                out.append((number, LEN, value))
                done = True
            continue
        out.append(f)
    if not done:
        out.append((number, LEN, value))
    return encode(out)


# -- tensors


def _signed(v: int, bits: int) -> int:
    v &= (1 << 64) - 1
    v = v - (1 << 64) if v >= 1 << 63 else v
    if bits == 32:
        v &= (1 << 32) - 1
        v = v - (1 << 32) if v >= 1 << 31 else v
    return v


def _varints(wire: int, value: Any) -> list[int]:
    if wire == VARINT:
        return [value]
    if wire != LEN:
        raise ValueError("a varint field with another wire type")
    out, i = [], 0
    while i < len(value):
        v, i = _varint(value, i)
        out.append(v)
    return out


def _fixed(wire: int, value: bytes, fmt: str, size: int, want: int) -> list[float]:
    if wire == want:
        return [struct.unpack(fmt, value)[0]]
    if wire != LEN or len(value) % size:
        raise ValueError("a packed fixed field of a wrong length")
    return list(struct.unpack(f"<{len(value) // size}{fmt[1]}", value))


def _contents(data: bytes, datatype: str) -> list[Any]:
    """The values of an InferTensorContents for ``datatype`` (the field of another type is ignored)."""
    want = CONTENTS_FIELD.get(datatype)
    if want is None:
        raise ValueError(f"{datatype} travels only as raw contents")
    values: list[Any] = []
    for number, wire, value in decode(data):
        if number != want:
            continue
        if want == 1:
            values.extend(bool(v) for v in _varints(wire, value))
        elif want == 2:
            values.extend(_signed(v, 32) for v in _varints(wire, value))
        elif want == 3:
            values.extend(_signed(v, 64) for v in _varints(wire, value))
        elif want in (4, 5):
            values.extend(_varints(wire, value))
        elif want == 6:
            values.extend(_fixed(wire, value, "<f", 4, I32))
        elif want == 7:
            values.extend(_fixed(wire, value, "<d", 8, I64))
        else:
            if wire != LEN:
                raise ValueError("bytes_contents with another wire type")
            values.append(value.decode("utf-8"))
    return values


def _raw_values(raw: bytes, datatype: str) -> list[Any]:
    if datatype == "BYTES":
        out, i = [], 0
        while i < len(raw):
            if i + 4 > len(raw):
                raise ValueError("truncated BYTES element")
            (size,) = struct.unpack_from("<I", raw, i)
            if i + 4 + size > len(raw):
                raise ValueError("truncated BYTES element")
            out.append(raw[i + 4:i + 4 + size].decode("utf-8"))
            i += 4 + size
        return out
    dtype = RAW_DTYPE.get(datatype)
    if dtype is None:
        raise ValueError(f"raw {datatype} is not decoded")  # BF16
    arr = np.frombuffer(raw, dtype=dtype)
    return [float(v) for v in arr] if arr.dtype.kind == "f" else arr.tolist()


class Tensor:
    """One decoded tensor: its fields as they came, and its name, datatype, shape and flat values."""

    __slots__ = ("datatype", "fields", "name", "raw", "shape", "values")

    def __init__(self, fields: list[Field], name: str, datatype: str, shape: list[int], values: list[Any],
                 raw: bool) -> None:
        self.fields, self.name, self.datatype, self.shape = fields, name, datatype, shape
        self.values, self.raw = values, raw


def read_tensors(fields: list[Field], direction: str) -> list[Tensor]:
    """The tensors of a decoded ModelInferRequest (``direction`` "request") or ModelInferResponse, with their
    values from ``contents`` or from the raw contents that go with them in order."""
    raw = [value for number, wire, value in fields if number == RAW_FIELD[direction] and wire == LEN]
    tensors: list[Tensor] = []
    for number, wire, value in fields:
        if number != TENSOR_FIELD or wire != LEN:
            continue
        tf = decode(value)
        shape: list[int] = []
        contents: bytes | None = None
        for num, w, v in tf:
            if num == 3:
                shape.extend(_signed(x, 64) for x in _varints(w, v))
            elif num == 5 and w == LEN:
                contents = v if contents is None else contents + v  # a repeated message merges
        name, datatype = field_string(tf, 1) or "", (field_string(tf, 2) or "").upper()
        if raw:
            if len(raw) <= len(tensors):
                raise ValueError("fewer raw contents than tensors")
            values = _raw_values(raw[len(tensors)], datatype)
        else:
            values = _contents(contents or b"", datatype)
        tensors.append(Tensor(tf, name, datatype, shape, values, bool(raw)))
    if raw and len(raw) != len(tensors):
        raise ValueError("raw contents and tensors differ in number")
    return tensors


def _fits(datatype: str, values: list[Any]) -> bool:
    if datatype == "BYTES":
        return all(isinstance(v, (str, bytes)) for v in values)
    if datatype == "BOOL":
        return all(isinstance(v, bool) for v in values)
    if datatype in ("FP16", "FP32", "FP64"):
        return all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values)
    lo, hi = _INT_RANGE[datatype]
    return all(isinstance(v, int) and not isinstance(v, bool) and lo <= v <= hi for v in values)


def fitting_datatype(datatype: str, values: list[Any]) -> str:
    """``datatype`` when every value fits it; else FP64 for numbers with gaps (None: NaN), BYTES for the rest.
    A model server rejects the changed datatype as it would a JSON null in an INT tensor."""
    if datatype in CONTENTS_FIELD or datatype in RAW_DTYPE:
        if _fits(datatype, values):
            return datatype
    if all(v is None or (isinstance(v, (int, float)) and not isinstance(v, bool)) for v in values):
        return "FP64"
    return "BYTES"


def _bytes_value(v: Any) -> bytes:
    if isinstance(v, bytes):
        return v
    if isinstance(v, float) and not math.isfinite(v):
        return repr(v).encode()
    return (v if isinstance(v, str) else "" if v is None else str(v)).encode("utf-8")


def _float(v: Any) -> float:
    return math.nan if v is None else float(v)


def encode_contents(datatype: str, values: list[Any]) -> bytes:
    """An InferTensorContents holding ``values`` (packed numbers, as proto3 writes them)."""
    number = CONTENTS_FIELD[datatype]
    if number == 8:
        return encode([(8, LEN, _bytes_value(v)) for v in values])
    if not values:
        return b""
    if number == 6:
        packed = struct.pack(f"<{len(values)}f", *(_float(v) for v in values))
    elif number == 7:
        packed = struct.pack(f"<{len(values)}d", *(_float(v) for v in values))
    else:
        buf = bytearray()
        for v in values:
            _put_varint(buf, int(v))
        packed = bytes(buf)
    return encode([(number, LEN, packed)])


def encode_raw(datatype: str, values: list[Any]) -> bytes:
    if datatype == "BYTES":
        out = bytearray()
        for v in values:
            b = _bytes_value(v)
            out += struct.pack("<I", len(b)) + b
        return bytes(out)
    dtype = np.dtype(RAW_DTYPE[datatype])
    if dtype.kind == "f":
        return np.asarray([_float(v) for v in values], dtype=dtype).tobytes()
    return np.asarray(values, dtype=dtype).tobytes()


def write_tensors(fields: list[Field], direction: str, tensors: list[Tensor]) -> bytes:
    """The message ``fields`` with ``tensors`` in place of its tensors (and raw contents, when they came raw):
    each tensor's own other fields (parameters, unknown ones) and every other field of the message kept."""
    raw_field = RAW_FIELD[direction]
    raw = any(t.raw for t in tensors) or any(n == raw_field for n, _, _ in fields)
    new_tensors: list[Field] = []
    new_raw: list[Field] = []
    for t in tensors:
        datatype = t.datatype if raw and t.datatype in RAW_DTYPE and _fits(t.datatype, t.values) \
            else fitting_datatype(t.datatype, t.values)
        if datatype == "FP16" and not raw:
            datatype = "FP32"
        shape = bytearray()
        for d in t.shape:
            _put_varint(shape, d)
        had = {f[0] for f in t.fields}
        own: dict[int, Field] = {}
        # proto3 leaves out empty values; a field the tensor had is written even when empty now.
        for number, value in ((1, t.name.encode("utf-8")), (2, datatype.encode("ascii")), (3, bytes(shape)),
                              (5, None if raw else encode_contents(datatype, t.values))):
            if value is not None and (value or number in had):
                own[number] = (number, LEN, value)
        tf: list[Field] = []
        for f in t.fields:
            if f[0] in (1, 2, 3, 5):
                new = own.pop(f[0], None)  # in place of the first of its kind; repeats of it go
                if new is not None:
                    tf.append(new)
                continue
            tf.append(f)
        tf.extend(own[n] for n in sorted(own))
        new_tensors.append((TENSOR_FIELD, LEN, encode(tf)))
        if raw:
            new_raw.append((raw_field, LEN, encode_raw(datatype, t.values)))
    out: list[Field] = []
    tensors_at = raw_at = -1
    for f in fields:
        if f[0] == TENSOR_FIELD:
            tensors_at = len(out) if tensors_at < 0 else tensors_at
        elif f[0] == raw_field:
            raw_at = len(out) if raw_at < 0 else raw_at
        else:
            out.append(f)
    # The tensors (and raw contents) where the first of them stood; raw after the tensors they go with.
    at = len(out) if tensors_at < 0 else tensors_at
    out[at:at] = new_tensors
    if new_raw:
        if raw_at < 0:
            at = len(out)
        else:
            at = raw_at + len(new_tensors) if raw_at >= tensors_at else raw_at
        out[at:at] = new_raw
    return encode(out)
