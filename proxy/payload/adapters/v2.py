"""Open Inference Protocol V2 (KServe V2, MLServer, Triton): ``POST /v2/models/<m>[/versions/<v>]/infer``.

Layouts read from ``inputs[]`` (each ``name``, ``shape``, ``datatype``, ``data`` flat or nested row-major):

- ``v2.columnar``: one input per feature, all with the same ``shape[0]`` (the rows). MLServer's ``pd`` content
  type is this layout; so is any request with several inputs or a single ``[N]`` input. A ``[N]`` or ``[N, 1]``
  input gives scalar cells; ``[N, K, ...]`` gives tensor cells (nested lists), which only structural
  mutations touch. Write-back: rename changes ``name``, drop removes the input, reorder reorders ``inputs``,
  truncation changes ``shape[0]``, a datatype change (type_swap → ``BYTES``) changes ``datatype``.
- ``v2.matrix``: a single ``[N, F]`` input (not ``pd``; ``[N, 1]`` only when the policy names one feature).
  Feature names come from ``AdapterOptions.feature_names`` (made up as ``<input>[j]`` when their count does
  not match); the table is unnamed, so a rename is not expressible. Drop/reorder change ``shape[1]``/column
  positions; ``datatype`` is kept (type_swap leaves strings in a numeric tensor) unless every column became
  ``BYTES``.

Flat data stays flat, nested stays nested. Any other field (``id``, ``parameters``, ``outputs``, an input's
``parameters``) is kept.

Binary tensor extension (``Inference-Header-Content-Length``): ``split_binary`` cuts the JSON head from the
tensors; ``inline_binary`` decodes every tensor with a ``binary_data_size`` parameter (BOOL, INT8-64,
UINT8-64, FP16/32/64, BYTES) into ``data``, keeping ``binary_data_size`` as the marker; the adapter reads and
writes that doc like a JSON one; ``pack_binary`` encodes marked tensors again (updating ``binary_data_size``)
and returns the body and the new header length. A tensor whose new values its datatype cannot hold in binary
(``null`` in an INT tensor, strings in FP32) is sent as JSON ``data`` instead, which the extension allows per
tensor. BF16 and malformed tails are not decoded: ``inline_binary`` returns None and the body passes through.
"""

from __future__ import annotations

import math
import re
import struct
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

import numpy as np
import orjson

from ..table import (
    FLOAT_DTYPES,
    INT_RANGES,
    V2_DATATYPES,
    FeatureTable,
    all_scalar,
    copy_cells,
    is_number,
    is_scalar,
    origins,
    resolve_col_origin,
)
from .base import (
    DEFAULT_OPTIONS,
    PREDICTIONS,
    REQUEST,
    RESPONSE,
    AdapterOptions,
    BaseAdapter,
    Headers,
    Parsed,
    Predictions,
    clone,
    rows_of,
)

__all__ = ["V2Adapter", "binary_header_length", "inline_binary", "leaves", "pack_binary", "split_binary"]

_PATH = re.compile(r"(?:^|/)v2/models/[^/]+(?:/versions/[^/]+)?/infer/?$")


_BINARY_HEADER = "inference-header-content-length"


def _text(v: str | bytes) -> str:
    return v.decode("latin-1") if isinstance(v, (bytes, bytearray)) else str(v)


def binary_header_length(headers: Headers | None) -> int | None:
    """The value of ``Inference-Header-Content-Length`` (the V2 binary extension), when present and valid."""
    if headers is None:
        return None
    pairs = headers.items() if isinstance(headers, Mapping) else headers
    for k, v in pairs:
        if _text(k).lower() == _BINARY_HEADER:
            value = _text(v).strip()
            return int(value) if value.isascii() and value.isdigit() else None
    return None


def _shape(v: Any) -> list[int] | None:
    if not isinstance(v, list) or not all(isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in v):
        return None
    return list(v)


def _prod(dims: Sequence[int]) -> int:
    p = 1
    for d in dims:
        p *= d
    return p


def _nested_ok(data: Any, shape: Sequence[int]) -> bool:
    """``data`` is nested exactly as ``shape`` says, with scalar leaves."""
    if not shape:
        return is_scalar(data)
    if not isinstance(data, list) or len(data) != shape[0]:
        return False
    return all(_nested_ok(x, shape[1:]) for x in data)


def leaves(data: Any) -> list[Any]:
    """The scalars of nested lists, depth-first, left to right."""
    out: list[Any] = []
    stack: list[Any] = [data]
    while stack:
        x = stack.pop()
        if isinstance(x, list):
            stack.extend(reversed(x))
        else:
            out.append(x)
    return out


def _flatten(data: Any, shape: Sequence[int]) -> tuple[list[Any], str] | None:
    """(row-major values, "flat" | "nested"), or None when data and shape disagree."""
    if not isinstance(data, list):
        return None
    types = set(map(type, data))
    if list not in types:
        if len(data) != _prod(shape) or not all_scalar(data):
            return None
        return list(data), "flat"
    if len(shape) < 2 or not _nested_ok(data, shape):
        return None
    return leaves(data), "nested"


def _nest(flat: list[Any], dims: Sequence[int]) -> list[Any]:
    """Row-major values as nested lists of ``dims`` (``len(flat) == prod(dims)``)."""
    if len(dims) <= 1:
        return copy_cells(flat)
    step = _prod(dims[1:])
    return [_nest(flat[i * step:(i + 1) * step], dims[1:]) for i in range(dims[0])]


def _flatten_cell(cell: Any, dims: Sequence[int]) -> list[Any]:
    if not _nested_ok(cell, dims):
        raise ValueError("a tensor cell does not have its input's row shape")
    return leaves(cell)


_EMPTY_DIMS = 4096  # the most rows or columns an empty tensor is read with (see _tensor)


def _tensor(obj: Any) -> tuple[str, list[int], str, list[Any], str] | None:
    """(name, shape, datatype, flat data, mode) of a V2 tensor object with JSON data."""
    if not isinstance(obj, dict):
        return None
    name, shape, dt = obj.get("name"), _shape(obj.get("shape")), obj.get("datatype")
    if not isinstance(name, str) or shape is None or not isinstance(dt, str):
        return None
    fl = _flatten(obj.get("data"), shape)
    if fl is None:
        return None
    if _prod([d for d in shape if d]) > max(len(fl[0]), _EMPTY_DIMS):
        # An empty tensor's other dims are not bounded by its data, and rows and names are made per dim:
        # {"shape": [0, 10**9], "data": []} would take gigabytes. Such a tensor holds nothing to change.
        return None
    return name, shape, dt.upper(), fl[0], fl[1]


def _looks_v2(doc: Any) -> bool:
    inputs = doc.get("inputs") if isinstance(doc, dict) else None
    return isinstance(inputs, list) and bool(inputs) and all(
        isinstance(i, dict) and "name" in i and "shape" in i and "datatype" in i for i in inputs)


class V2Adapter(BaseAdapter):
    name: ClassVar[str] = "v2"
    HELP: ClassVar[str] = "Open Inference Protocol V2 (KServe V2, MLServer, Triton): inputs and outputs as tensors."
    PATH: ClassVar[re.Pattern[str] | None] = _PATH
    # A model's outputs are tensors like its inputs: the response's features.
    READS: ClassVar[frozenset[str]] = frozenset({REQUEST, RESPONSE, PREDICTIONS})

    def sniff(self, doc: Any) -> bool:
        return _looks_v2(doc)

    def sniff_headers(self, headers: Headers) -> bool:
        return binary_header_length(headers) is not None

    # ------------------------------------------------------------------------------------------------ read

    def read_strict(self, doc: Any, options: AdapterOptions) -> Parsed | None:
        return self._read_tensors(doc, "inputs", options)

    def read_response_strict(self, doc: Any, options: AdapterOptions) -> Parsed | None:
        """The outputs as a table, laid out as inputs are (``v2.columnar`` or ``v2.matrix``)."""
        return self._read_tensors(doc, "outputs", options)

    def _read_tensors(self, doc: Any, key: str, options: AdapterOptions) -> Parsed | None:
        direction = RESPONSE if key == "outputs" else REQUEST
        if not isinstance(doc, dict) or not isinstance(doc.get(key), list) or not doc[key]:
            return None
        tensors = [_tensor(i) for i in doc[key]]
        if any(t is None for t in tensors):
            return None
        ts = [t for t in tensors if t is not None]
        params = doc.get("parameters")
        pd = isinstance(params, dict) and params.get("content_type") == "pd"
        if not pd and len(ts) == 1 and len(ts[0][1]) == 2 and (ts[0][1][1] != 1 or len(options.feature_names) == 1):
            return self._read_matrix(doc, ts[0], options, direction)
        if not all(len(t[1]) >= 1 for t in ts) or len({t[1][0] for t in ts}) != 1:
            return None
        n = ts[0][1][0]
        names, columns, dtypes, detail = [], [], [], []
        for name, shape, dt, flat, mode in ts:
            row_dims = shape[1:]
            if _prod(row_dims) == 1 and len(row_dims) <= 1:
                cells = flat
            else:
                size = _prod(row_dims)
                cells = [_nest(flat[i * size:(i + 1) * size], row_dims) for i in range(n)]
            names.append(name)
            columns.append(cells)
            dtypes.append(dt)
            detail.append((row_dims, mode))
        table = FeatureTable(names=names, columns=columns, dtypes=dtypes, named=True,
                             col_origin=origins(len(names)), row_origin=origins(n))
        return Parsed(doc=doc, table=table, layout="v2.columnar", detail=detail, direction=direction)

    def _read_matrix(
        self, doc: dict[str, Any], t: tuple[str, list[int], str, list[Any], str], options: AdapterOptions,
        direction: str,
    ) -> Parsed:
        name, shape, dt, flat, mode = t
        n, f = shape
        named = len(options.feature_names) == f and f > 0
        names = list(options.feature_names) if named else [f"{name}[{j}]" for j in range(f)]
        columns = [flat[j::f] for j in range(f)]
        table = FeatureTable(names=names, columns=columns, dtypes=[dt] * f, named=False,
                             col_origin=origins(f), row_origin=origins(n))
        return Parsed(doc=doc, table=table, layout="v2.matrix", detail=(mode, names), direction=direction)

    # ----------------------------------------------------------------------------------------------- write

    def write(self, parsed: Parsed, table: FeatureTable, options: AdapterOptions = DEFAULT_OPTIONS) -> Any:
        table.validate()
        doc = parsed.doc
        key = "outputs" if parsed.direction == RESPONSE else "inputs"
        if parsed.layout == "v2.matrix":
            tensors = [self._write_matrix(doc[key][0], parsed.detail, table)]
        else:
            tensors = self._write_columnar(doc[key], parsed.detail, table)
        return {k: (tensors if k == key else clone(v)) for k, v in doc.items()}

    def _write_columnar(
        self, originals: list[dict[str, Any]], detail: list[tuple[list[int], str]], table: FeatureTable,
    ) -> list[dict[str, Any]]:
        origins = resolve_col_origin(table, [i["name"] for i in originals])
        n = table.n_rows
        out = []
        for j, o in enumerate(origins):
            cells, dt = table.columns[j], table.dtypes[j]
            if o is not None:
                base: dict[str, Any] = originals[o]
                row_dims, mode = detail[o]
            else:
                base = {"name": None, "shape": None, "datatype": _guess_datatype(dt, cells), "data": None}
                row_dims, mode = [], "flat"
            scalar_cells = _prod(row_dims) == 1 and len(row_dims) <= 1
            if scalar_cells:
                data = [[v] for v in copy_cells(cells)] if (row_dims and mode == "nested") else copy_cells(cells)
            elif mode == "nested":
                for c in cells:
                    if not _nested_ok(c, row_dims):
                        raise ValueError("a tensor cell does not have its input's row shape")
                data = [clone(c) for c in cells]
            else:
                data = [v for c in cells for v in _flatten_cell(c, row_dims)]
            new: dict[str, Any] = {}
            for k, v in base.items():
                if k == "name":
                    new[k] = table.names[j]
                elif k == "shape":
                    new[k] = [n, *row_dims]
                elif k == "datatype":
                    new[k] = dt if dt in V2_DATATYPES and dt != str(v).upper() else clone(v)
                elif k == "data":
                    new[k] = data
                else:
                    new[k] = clone(v)
            out.append(new)
        return out

    def _write_matrix(self, original: dict[str, Any], detail: tuple[str, list[str]], table: FeatureTable) -> Any:
        mode, _names = detail
        n, f = table.n_rows, table.n_cols
        rows = rows_of(table.columns, n)
        data = rows if mode == "nested" else [v for r in rows for v in r]
        dt = str(original.get("datatype", "")).upper()
        if f and all(d == "BYTES" for d in table.dtypes) and dt != "BYTES":
            dt_out: Any = "BYTES"
        else:
            dt_out = clone(original.get("datatype"))
        new: dict[str, Any] = {}
        for k, v in original.items():
            if k == "shape":
                new[k] = [n, f]
            elif k == "data":
                new[k] = data
            elif k == "datatype":
                new[k] = dt_out
            else:
                new[k] = clone(v)
        return new

    # ----------------------------------------------------------------------------------------- predictions

    def predictions_strict(self, doc: Any, options: AdapterOptions) -> Predictions | None:
        if not isinstance(doc, dict) or not isinstance(doc.get("outputs"), list):
            return None
        out: Predictions = {}
        for o in doc["outputs"]:
            t = _tensor(o)
            if t is None:
                continue
            name, shape, _dt, flat, _mode = t
            if options.output is not None and name != options.output:
                continue
            rows = _rows_of(flat, shape)
            if rows is not None and name not in out:
                out[name] = rows
        return out or None

    def write_predictions_strict(self, doc: Any, preds: Predictions, options: AdapterOptions) -> Any | None:
        if not isinstance(doc, dict) or not isinstance(doc.get("outputs"), list):
            return None
        outputs = []
        done: set[str] = set()
        for o in doc["outputs"]:
            t = _tensor(o)
            if t is None or t[0] not in preds or t[0] in done:
                outputs.append(clone(o))
                continue
            name, shape, _dt, _flat, mode = t
            values = preds[name]
            if len(values) != shape[0] or len(shape) > 2:
                return None
            width = shape[1] if len(shape) == 2 else 1
            flat: list[Any] = []
            for v in values:
                if width == 1:
                    if isinstance(v, list):
                        return None
                    flat.append(v)
                else:
                    if not isinstance(v, list) or len(v) != width:
                        return None
                    flat.extend(v)
            data = _nest(flat, shape) if mode == "nested" else flat
            outputs.append({k: (data if k == "data" else clone(x)) for k, x in o.items()})
            done.add(name)
        if set(preds) - done:
            return None
        return {k: (outputs if k == "outputs" else clone(v)) for k, v in doc.items()}


def _rows_of(flat: list[Any], shape: list[int]) -> list[Any] | None:
    if len(shape) == 1 or (len(shape) == 2 and shape[1] == 1):
        return list(flat)
    if len(shape) == 2:
        k = shape[1]
        return [list(flat[i * k:(i + 1) * k]) for i in range(shape[0])]
    return None


def _guess_datatype(dt: str, cells: Sequence[Any]) -> str:
    if dt in V2_DATATYPES:
        return dt
    if dt == "string":
        return "BYTES"
    if dt == "bool":
        return "BOOL"
    if all(isinstance(v, int) and not isinstance(v, bool) for v in cells if v is not None):
        return "INT64"
    return "FP64"


# ------------------------------------------------------------------------------------------------------------
# Binary tensor data extension

_NP_DTYPES = {
    "BOOL": "?", "INT8": "i1", "INT16": "<i2", "INT32": "<i4", "INT64": "<i8",
    "UINT8": "u1", "UINT16": "<u2", "UINT32": "<u4", "UINT64": "<u8",
    "FP16": "<f2", "FP32": "<f4", "FP64": "<f8",
}


def split_binary(body: bytes, header_len: int) -> tuple[dict[str, Any], bytes] | None:
    """(JSON head, tensor bytes) of a binary-extension body; None when the head is not a JSON object."""
    if not isinstance(header_len, int) or header_len < 0 or header_len > len(body):
        return None
    try:
        head = orjson.loads(body[:header_len])
    except orjson.JSONDecodeError:
        return None
    if not isinstance(head, dict):
        return None
    return head, bytes(body[header_len:])


def _binary_size(obj: Any) -> int | None:
    if not isinstance(obj, dict):
        return None
    params = obj.get("parameters")
    if not isinstance(params, dict) or "binary_data_size" not in params:
        return None
    size = params["binary_data_size"]
    if not isinstance(size, int) or isinstance(size, bool) or size < 0:
        return -1
    return size


def _decode(chunk: bytes, datatype: str, count: int) -> list[Any] | None:
    if datatype == "BYTES":
        out: list[Any] = []
        pos = 0
        while pos < len(chunk):
            if pos + 4 > len(chunk):
                return None
            (size,) = struct.unpack_from("<I", chunk, pos)
            pos += 4
            if pos + size > len(chunk):
                return None
            try:
                out.append(chunk[pos:pos + size].decode("utf-8"))
            except UnicodeDecodeError:
                return None
            pos += size
        return out if len(out) == count else None
    npdt = _NP_DTYPES.get(datatype)
    if npdt is None:
        return None
    itemsize = np.dtype(npdt).itemsize
    if len(chunk) != count * itemsize:
        return None
    if datatype == "BOOL":
        return [bool(x) for x in chunk]
    values: list[Any] = np.frombuffer(chunk, dtype=npdt).tolist()
    return values


def _encode(values: Sequence[Any], datatype: str) -> bytes | None:
    """The binary form of ``values`` in ``datatype``; None when a value does not fit it."""
    if datatype == "BYTES":
        parts = []
        for v in values:
            if isinstance(v, str):
                b = v.encode("utf-8")
            elif isinstance(v, bytes):
                b = v
            else:
                return None
            parts.append(struct.pack("<I", len(b)) + b)
        return b"".join(parts)
    npdt = _NP_DTYPES.get(datatype)
    if npdt is None:
        return None
    if datatype == "BOOL":
        if not all(isinstance(v, bool) for v in values):
            return None
        return bytes(1 if v else 0 for v in values)
    if datatype in FLOAT_DTYPES:
        if not all(v is None or is_number(v) for v in values):
            return None
        floats = [math.nan if v is None else float(v) for v in values]
        with np.errstate(all="ignore"):
            return np.asarray(floats, dtype=np.float64).astype(npdt).tobytes()
    lo, hi = INT_RANGES[datatype]
    if not all(isinstance(v, int) and not isinstance(v, bool) and lo <= v <= hi for v in values):
        return None
    return np.asarray(values, dtype=npdt).tobytes()


def inline_binary(head: dict[str, Any], tail: bytes) -> dict[str, Any] | None:
    """``head`` with each binary tensor's values decoded into ``data``; None when the tail does not decode.

    Tensors are taken in order: ``inputs`` then ``outputs`` (a request has only the first, a response only
    the second). ``binary_data_size`` stays in the tensor's parameters: it marks what ``pack_binary`` encodes.
    """
    pos = 0
    new = clone(head)
    for section in ("inputs", "outputs"):
        tensors = new.get(section)
        if not isinstance(tensors, list):
            continue
        for obj in tensors:
            size = _binary_size(obj)
            if size is None:
                continue
            if size < 0:
                return None
            shape = _shape(obj.get("shape"))
            dt = obj.get("datatype")
            if shape is None or not isinstance(dt, str) or pos + size > len(tail):
                return None
            values = _decode(tail[pos:pos + size], dt.upper(), _prod(shape))
            if values is None:
                return None
            obj["data"] = values
            pos += size
    if pos != len(tail):
        return None
    return new


def pack_binary(doc: dict[str, Any], *, nan_token: bool = False) -> tuple[bytes, int]:
    """(body, Inference-Header-Content-Length) for a doc made by ``inline_binary`` (and maybe rewritten)."""
    from .. import dumps

    new = clone(doc)
    chunks: list[bytes] = []
    for section in ("inputs", "outputs"):
        tensors = new.get(section)
        if not isinstance(tensors, list):
            continue
        for obj in tensors:
            if _binary_size(obj) is None or not isinstance(obj.get("data"), list):
                continue
            dt = obj.get("datatype")
            shape = _shape(obj.get("shape"))
            fl = _flatten(obj["data"], shape) if shape is not None else None
            encoded = _encode(fl[0], dt.upper()) if fl is not None and isinstance(dt, str) else None
            if encoded is None:
                # not representable in binary: this tensor goes as JSON data
                del obj["parameters"]["binary_data_size"]
                continue
            obj["parameters"]["binary_data_size"] = len(encoded)
            del obj["data"]
            chunks.append(encoded)
    head = dumps(new, nan_token=nan_token)
    return head + b"".join(chunks), len(head)
