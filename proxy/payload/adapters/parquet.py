"""Parquet: a data feed's table as one file, as a response to a GET. Needs pyarrow (the optional extra
``mlchaos[data]``), imported on the first Parquet body: without it the sidecar runs and every other format
works, and a Parquet body passes through untouched, counted in mlchaos_payload_unparsed_total.

Recognised by the magic ``PAR1`` at both ends of the body, with Content-Type ``application/vnd.apache.parquet``
(or ``application/x-parquet``), a generic one (``application/octet-stream`` ...) or the path suffix
``.parquet``. Read as ``parquet.table``: one column per field, cells as pyarrow gives them to Python (ints,
floats, strings, bools, None; timestamps, dates and decimals as their Python objects, which value faults leave
alone).

Written back with the same schema (field types, nullability, field and schema metadata) and the compression
codec of the file's first column chunk: a column whose cells are all the original ones (any row order or
subset: ``truncate_batch``, ``reorder_rows``) is taken from the original Arrow column, so it keeps its exact
type; a changed column is converted to its field's type, a cell a fault made NaN being null; a column that no
longer fits its type (``type_swap``'s strings in a float column) takes the type its values have (schema drift,
which is the fault). pandas' schema metadata is dropped when columns were renamed, dropped or added (it lists
them).
"""

from __future__ import annotations

import importlib
import math
from typing import Any, ClassVar, Final

from ..table import FeatureTable, infer_dtype, origins, resolve_col_origin, resolve_row_origin
from ..tabular import GENERIC_MEDIA
from .base import DEFAULT_OPTIONS, RESPONSE, AdapterOptions, BaseAdapter, Parsed, Predictions

__all__ = ["ParquetAdapter", "arrow"]

MAGIC: Final = b"PAR1"
MEDIA: Final = frozenset({"application/vnd.apache.parquet", "application/x-parquet", "application/parquet"})
# pyarrow's name of a column chunk's codec -> what pyarrow.parquet.write_table takes.
_CODECS: Final = {"UNCOMPRESSED": "none", "SNAPPY": "snappy", "GZIP": "gzip", "BROTLI": "brotli", "ZSTD": "zstd",
                  "LZ4": "lz4", "LZ4_RAW": "lz4"}
_ARROW: dict[str, Any] = {}


def arrow() -> tuple[Any, Any] | None:
    """(pyarrow, pyarrow.parquet), imported once; None when pyarrow is not installed."""
    if "pa" not in _ARROW:
        try:
            _ARROW["pa"] = importlib.import_module("pyarrow")
            _ARROW["pq"] = importlib.import_module("pyarrow.parquet")
        except ImportError:
            _ARROW["pa"] = None
    pa = _ARROW["pa"]
    return None if pa is None else (pa, _ARROW["pq"])


class ParquetDetail:
    __slots__ = ("codec", "names", "original")

    def __init__(self, original: Any, codec: str, names: list[str]) -> None:
        self.original = original  # the pyarrow Table as read
        self.codec = codec
        self.names = names


class ParquetAdapter(BaseAdapter):
    name: ClassVar[str] = "parquet"
    HELP: ClassVar[str] = "Parquet data feeds (responses; needs pyarrow, mlchaos[data]): same schema and codec."
    READS: ClassVar[frozenset[str]] = frozenset({RESPONSE})
    RAW: ClassVar[bool] = True

    def sniff_response(self, suffix: str, media_type: str, body: bytes) -> bool:
        return body[:4] == MAGIC and body[-4:] == MAGIC and (
            media_type in MEDIA or media_type in GENERIC_MEDIA or suffix == ".parquet")

    def read_strict(self, doc: Any, options: AdapterOptions) -> Parsed | None:
        return None

    def read_response_strict(self, doc: Any, options: AdapterOptions) -> Parsed | None:
        mods = arrow()
        if mods is None or not isinstance(doc, bytes) or doc[:4] != MAGIC:
            return None
        pa, pq = mods
        pf = pq.ParquetFile(pa.BufferReader(doc))
        original = pf.read()
        meta = pf.metadata
        codec = "none"
        if meta.num_row_groups and meta.num_columns:
            codec = _CODECS.get(str(meta.row_group(0).column(0).compression).upper(), "none")
        names = [str(n) for n in original.column_names]
        columns = [original.column(j).to_pylist() for j in range(original.num_columns)]
        table = FeatureTable(names, columns, [infer_dtype(c) for c in columns], True, origins(len(names)),
                             origins(original.num_rows))
        return Parsed(doc=None, table=table, layout="parquet.table", detail=ParquetDetail(original, codec, names[:]),
                      direction=RESPONSE)

    def write(self, parsed: Parsed, table: FeatureTable, options: AdapterOptions = DEFAULT_OPTIONS) -> Any:
        mods = arrow()
        assert mods is not None  # a table was read, so pyarrow is there
        pa, pq = mods
        table.validate()
        detail: ParquetDetail = parsed.detail
        original = detail.original
        cols = resolve_col_origin(table, detail.names)
        rows = resolve_row_origin(table, original.num_rows)
        arrays: list[Any] = []
        fields: list[Any] = []
        for j, values in enumerate(table.columns):
            o = cols[j]
            name = table.names[j]
            if o is None:
                array = _array(pa, values, None)
                fields.append(pa.field(name, array.type))
                arrays.append(array)
                continue
            field = original.schema.field(o)
            before = parsed.table.columns[o]
            kept = all(r is not None and _same(v, before[r]) for v, r in zip(values, rows, strict=True))
            if kept:
                column = original.column(o)
                if rows != list(range(original.num_rows)):
                    column = column.take(pa.array(rows, type=pa.int64()))
                array = column
            else:
                news = [None if isinstance(v, float) and math.isnan(v) and (r is None or not _same(v, before[r]))
                        else v for v, r in zip(values, rows, strict=True)]
                array = _array(pa, news, field.type)
            fields.append(field.with_name(name) if array.type == field.type
                          else pa.field(name, array.type, nullable=True, metadata=field.metadata))
            arrays.append(array)
        metadata = original.schema.metadata
        if metadata and table.names != detail.names:
            metadata = {k: v for k, v in metadata.items() if k != b"pandas"}
        out = pa.Table.from_arrays(arrays, schema=pa.schema(fields, metadata=metadata))
        sink = pa.BufferOutputStream()
        pq.write_table(out, sink, compression=detail.codec)
        data: bytes = sink.getvalue().to_pybytes()
        return data

    def predictions_strict(self, doc: Any, options: AdapterOptions) -> Predictions | None:
        return None

    def write_predictions_strict(self, doc: Any, preds: Predictions, options: AdapterOptions) -> Any | None:
        return None


def _same(a: Any, b: Any) -> bool:
    return a is b or (type(a) is type(b) and a == b)


def _array(pa: Any, values: list[Any], kind: Any) -> Any:
    """``values`` as an Arrow array of type ``kind``; of the type they have when they do not fit it (None:
    inferred); as text when they have none in common."""
    if kind is not None:
        try:
            return pa.array(values, type=kind)
        except (pa.ArrowInvalid, pa.ArrowTypeError, TypeError, ValueError, OverflowError):
            pass
    try:
        return pa.array(values)
    except (pa.ArrowInvalid, pa.ArrowTypeError, TypeError, ValueError, OverflowError):
        return pa.array([None if v is None else str(v) for v in values], type=pa.string())
