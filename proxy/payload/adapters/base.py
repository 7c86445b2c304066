"""The adapter contract, and the row/column shapes several formats share.

An adapter turns an inference request into a ``FeatureTable`` and writes a changed table back, and reads
predictions out of a response. It never raises on a payload it does not understand: ``read`` and
``predictions`` return ``None`` (the caller passes such bodies through untouched and counts them).

The shared shapes (V1 ``instances``/``inputs``, MLflow ``instances``/``inputs``/``dataframe_records``, generic
pointers) are:

- ``rows``: rows as equal-length lists (no feature names in the payload: names come from the policy);
- ``scalars``: one value per row (a single unnamed feature);
- ``records``: rows as objects, feature name → value (keys a row lacks are ``MISSING`` cells);
- ``columns``: an object of equal-length lists, feature name → values.
"""

from __future__ import annotations

import itertools
import math
import re
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, Final, Protocol

from ..mutate import Mutation
from ..table import (
    MISSING,
    FeatureTable,
    all_json,
    all_numbers,
    all_scalar,
    clone,
    copy_cells,
    infer_dtype,
    is_number,
    is_scalar,
    origins,
    resolve_col_origin,
    resolve_row_origin,
)

__all__ = [
    "DEFAULT_OPTIONS", "PREDICTIONS", "REQUEST", "RESPONSE", "STREAM", "Adapter", "AdapterOptions", "BaseAdapter",
    "Headers", "Parsed", "Predictions", "RowsDetail", "clone", "read_pred_items", "read_rows", "rows_of",
    "write_pred_items", "write_rows",
]

Headers = Mapping[str, str] | Mapping[bytes, bytes] | Iterable[tuple[str | bytes, str | bytes]]

# Output name → one value per row: a float (score, regression), an int or str (label), a list[float]
# (probability vector or scores), or None where a row has no value.
Predictions = dict[str, list[Any]]


@dataclass(frozen=True)
class AdapterOptions:
    # Names for layouts that carry none (V2 matrix, V1 list rows, MLflow instances as lists); used only when
    # their count matches the payload's, otherwise names are made up ("<tensor>[j]").
    feature_names: tuple[str, ...] = ()
    # Generic adapter: RFC 6901 pointer to the rows (list of lists or list of dicts) or columns (dict of lists).
    features_pointer: str | None = None
    # Generic adapter: pointer to the predictions (one item per row, or a dict of lists).
    predictions_pointer: str | None = None
    # Which output to read predictions from when there are several (default: all).
    output: str | None = None
    # Feast: the status of a value a fault made null (NULL_VALUE, or NOT_FOUND as for an unknown entity).
    null_status: str = "NULL_VALUE"


DEFAULT_OPTIONS = AdapterOptions()


# What an adapter can read: a request's features, a response's features (a model's outputs, a feature
# store's answer, a data feed), a response's predictions, a streamed answer's chunks.
REQUEST: Final = "request"
RESPONSE: Final = "response"
PREDICTIONS: Final = "predictions"
STREAM: Final = "stream"


class Parsed:
    """What ``read`` found. Callers use ``table``, ``layout`` and ``direction``; ``doc`` and ``detail`` belong
    to the adapter."""

    # Plain classes here and in RowsDetail, not dataclasses: compiled, their __init__ is native.
    __slots__ = ("detail", "direction", "doc", "layout", "table")

    def __init__(self, doc: Any, table: FeatureTable, layout: str, detail: Any = None,
                 direction: str = REQUEST) -> None:
        self.doc = doc
        self.table = table
        self.layout = layout
        self.detail = detail
        self.direction = direction

    def __repr__(self) -> str:
        return f"Parsed(layout={self.layout!r}, table={self.table!r}, detail={self.detail!r})"


class Adapter(Protocol):
    name: ClassVar[str]

    def matches(self, path: str, doc: Any) -> bool: ...

    def read(self, doc: Any, options: AdapterOptions = DEFAULT_OPTIONS, direction: str = REQUEST) -> Parsed | None: ...

    def write(self, parsed: Parsed, table: FeatureTable, options: AdapterOptions = DEFAULT_OPTIONS) -> Any: ...

    def predictions(self, doc: Any, options: AdapterOptions = DEFAULT_OPTIONS) -> Predictions | None: ...

    def write_predictions(
        self, doc: Any, preds: Predictions, options: AdapterOptions = DEFAULT_OPTIONS,
    ) -> Any | None: ...


class BaseAdapter(ABC):
    """The no-exceptions shell around each format's strict reader and writers, and its declaration.

    An adapter declares itself: its ``name`` (the policy's ``payload.format``), the request ``PATH`` it is
    detected from, what a body of its format looks like (``sniff``), and what it ``READS``. Detection
    (``proxy.payload.adapters.detect``) walks the registry with these; nothing else lists formats.

    ``read_strict``/``predictions_strict`` are the real parsers; tests call them directly so that the safety
    net here does not hide a bug. ``write`` raises ValueError only for a table that is not consistent with
    itself (columns of different lengths), which mutations never produce.
    """

    name: ClassVar[str]
    HELP: ClassVar[str] = ""
    # The request paths of this format, searched in the path without its query; None: never from the path.
    PATH: ClassVar[re.Pattern[str] | None] = None
    READS: ClassVar[frozenset[str]] = frozenset({REQUEST, PREDICTIONS})

    def sniff(self, doc: Any) -> bool:
        """Whether a parsed request body is of this format, when its path says nothing."""
        return False

    def sniff_headers(self, headers: Headers) -> bool:
        """Whether the request's headers say it is of this format (before its path and body are looked at)."""
        return False

    def claims(self, options: AdapterOptions) -> bool:
        """Whether the experiment's payload options choose this adapter whatever the path and body say."""
        return False

    # A file format (CSV, JSON Lines, Parquet ...) rather than a JSON document: ``read_response_strict`` is
    # given the response body's bytes and ``write`` returns bytes. Such adapters read responses only (a data
    # feed's answer to a GET) and are detected from the response by ``sniff_response``.
    RAW: ClassVar[bool] = False

    def sniff_response(self, suffix: str, media_type: str, body: bytes) -> bool:
        """Whether a response body is of this (RAW) format: from the request path's ``suffix`` (".csv", "" for
        none), the response's ``media_type`` (lowercased, without parameters; "" when absent) and the body."""
        return False

    def matches(self, path: str, doc: Any) -> bool:
        pattern = self.PATH
        return (pattern is not None and pattern.search(path.split("?", 1)[0]) is not None) or self.sniff(doc)

    @abstractmethod
    def read_strict(self, doc: Any, options: AdapterOptions) -> Parsed | None: ...

    def read_response_strict(self, doc: Any, options: AdapterOptions) -> Parsed | None:
        """The features of a response body; formats that carry none there keep this."""
        return None

    @abstractmethod
    def write(self, parsed: Parsed, table: FeatureTable, options: AdapterOptions = DEFAULT_OPTIONS) -> Any: ...

    @abstractmethod
    def predictions_strict(self, doc: Any, options: AdapterOptions) -> Predictions | None: ...

    @abstractmethod
    def write_predictions_strict(self, doc: Any, preds: Predictions, options: AdapterOptions) -> Any | None: ...

    def blank_cells(self, body: bytes, options: AdapterOptions, features: Sequence[str] | None, fraction: float,
                    rng: Any) -> tuple[bool, bytes | None]:
        """``nan`` on a (RAW) response body without reading the whole table: ``(True, body)`` with exactly what
        reading it, ``mutate.nan`` with the same ``rng`` (a numpy Generator) and ``write`` would give (``None``:
        the body stays as it came), or ``(False, None)`` when the format cannot tell cheaply: then the table is
        read. Formats that keep this always read the table."""
        return False, None

    def rewrite_values(self, body: bytes, options: AdapterOptions, features: Sequence[str] | None,
                       change: Callable[[FeatureTable], Mutation]) -> tuple[bool, bytes | None]:
        """A fault that changes only cells of ``features`` in place (``change``: its mutation of a table), on a
        (RAW) response body with only those columns read as values: ``(True, body)`` with exactly what reading
        it, ``change`` and ``write`` would give (``None``: as it came), or ``(False, None)``: then the table is
        read. ``change`` is given a table whose other columns' cells are None."""
        return False, None

    def restructure(self, body: bytes, options: AdapterOptions,
                    change: Callable[[FeatureTable], Mutation]) -> tuple[bool, bytes | None]:
        """A fault that only moves, drops or repeats rows and columns, or renames columns (``change``: its
        mutation of a table), on a (RAW) response body without reading its values: ``(True, body)`` with exactly
        what reading it, ``change`` and ``write`` would give (``None``: as it came), or ``(False, None)``: then
        the table is read. ``change`` is given a table of the body's names and shape whose cells are None."""
        return False, None

    def cell_statuses(self, parsed: Parsed) -> list[list[str]] | None:
        """Per column of a response table as read, per row, the status its format gives the cell (a feature
        store's); None for formats without one."""
        return None

    def read(self, doc: Any, options: AdapterOptions = DEFAULT_OPTIONS, direction: str = REQUEST) -> Parsed | None:
        """The feature table of a request body, or of a response body with ``direction="response"``."""
        try:
            if direction == RESPONSE:
                return self.read_response_strict(doc, options)
            return self.read_strict(doc, options)
        except Exception:  # a payload we did not foresee: pass it through rather than fail the request
            return None

    def predictions(self, doc: Any, options: AdapterOptions = DEFAULT_OPTIONS) -> Predictions | None:
        try:
            return self.predictions_strict(doc, options)
        except Exception:
            return None

    def write_predictions(
        self, doc: Any, preds: Predictions, options: AdapterOptions = DEFAULT_OPTIONS,
    ) -> Any | None:
        """A new response doc with ``preds`` in place of the predictions read; None when they do not fit."""
        try:
            return self.write_predictions_strict(doc, preds, options)
        except Exception:
            return None


# ---------------------------------------------------------------------------------------------------------
# Rows and columns shared by V1, MLflow and generic


class RowsDetail:
    __slots__ = ("kind", "n_rows", "names", "row_keys")

    def __init__(self, kind: str, names: list[str], n_rows: int, row_keys: list[list[str]] | None = None) -> None:
        self.kind = kind  # "rows" | "scalars" | "records" | "columns" | "columns_in_list"
        self.names = names  # the names as read
        self.n_rows = n_rows
        # records: the key order of each original row (to keep it when columns were not reordered)
        self.row_keys = row_keys

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, RowsDetail):
            return NotImplemented
        return (self.kind, self.names, self.n_rows, self.row_keys) == \
            (other.kind, other.names, other.n_rows, other.row_keys)

    def __repr__(self) -> str:
        return f"RowsDetail({self.kind!r}, {self.names!r}, {self.n_rows!r}, {self.row_keys!r})"


def _made_up_names(base: str, n: int) -> list[str]:
    """``<base>[j]`` for each column: every request of a model has the same width, so they are made once
    (up to 64 widths of at most 256 columns)."""
    key = (base, n)
    names = _NAMES.get(key)
    if names is None:
        names = [f"{base}[{j}]" for j in range(n)]
        if n > 256:
            return names
        if len(_NAMES) >= 64:
            _NAMES.clear()
        _NAMES[key] = names
    return names[:]


_NAMES: Final[dict[tuple[str, int], list[str]]] = {}


def read_rows(
    value: Any, feature_names: Sequence[str], base_name: str, *, allow_scalars: bool = True,
    allow_columns_in_list: bool = False,
) -> tuple[FeatureTable, RowsDetail] | None:
    """A table from one of the shared shapes; None when ``value`` is none of them (or empty, or ragged)."""
    if isinstance(value, dict):
        return _read_columns(value, "columns")
    if not isinstance(value, list) or not value:
        return None
    first = value[0]
    if isinstance(first, list):
        f = len(first)
        # Columns first (a native loop: faster than zip(*rows) on the small batches inference sends), then
        # one pass over each: its datatype, and whether its cells are all JSON values.
        columns: list[list[Any]] = [[] for _ in range(f)]
        for row in value:
            if type(row) is not list or len(row) != f:
                return None
            cells: list[Any] = row
            for j in range(f):
                columns[j].append(cells[j])
        dtypes: list[str] = []
        for c in columns:
            if all_numbers(c):
                dtypes.append("number")
            elif not all_json(c):
                return None
            else:
                dtypes.append(infer_dtype(c))
        named = len(feature_names) == f and f > 0
        list_names = list(feature_names) if named else _made_up_names(base_name, f)
        table = FeatureTable(list_names, columns, dtypes, False, origins(f), origins(len(value)))
        return table, RowsDetail("rows", list_names[:], len(value))
    if isinstance(first, dict):
        if (
            allow_columns_in_list and len(value) == 1 and first
            and all(isinstance(v, list) for v in first.values())
            and len({len(v) for v in first.values()}) == 1 and len(next(iter(first.values()))) >= 2
            and all(all_scalar(v) for v in first.values())
        ):
            return _read_columns(first, "columns_in_list")
        if not all(isinstance(r, dict) for r in value):
            return None
        names: list[str] = []
        seen: set[str] = set()
        row_keys: list[list[str]] = []
        for r in value:
            keys = list(r)
            row_keys.append(keys)
            for k in keys:
                if not isinstance(k, str):
                    return None
                if k not in seen:
                    seen.add(k)
                    names.append(k)
        if not names:
            return None
        if not all(all_json(list(r.values())) for r in value):
            return None
        columns = [[r.get(n, MISSING) for r in value] for n in names]
        table = FeatureTable(
            names=names, columns=columns, dtypes=[infer_dtype(c) for c in columns], named=True,
            col_origin=origins(len(names)), row_origin=origins(len(value)),
        )
        return table, RowsDetail("records", list(names), len(value), row_keys)
    if allow_scalars and all_scalar(value):
        names = [feature_names[0]] if len(feature_names) == 1 else [base_name]
        table = FeatureTable(
            names=names, columns=[list(value)], dtypes=[infer_dtype(value)], named=False,
            col_origin=[0], row_origin=origins(len(value)),
        )
        return table, RowsDetail("scalars", names, len(value))
    return None


def _read_columns(value: dict[str, Any], kind: str) -> tuple[FeatureTable, RowsDetail] | None:
    if not value or not all(isinstance(k, str) and isinstance(v, list) for k, v in value.items()):
        return None
    lengths = {len(v) for v in value.values()}
    if len(lengths) != 1:
        return None
    if not all(all_json(v) for v in value.values()):
        return None
    names = list(value)
    columns = [list(value[n]) for n in names]
    n = lengths.pop()
    table = FeatureTable(
        names=names, columns=columns, dtypes=[infer_dtype(c) for c in columns], named=True,
        col_origin=origins(len(names)), row_origin=origins(n),
    )
    return table, RowsDetail(kind, list(names), n)


def _check_unique(names: Sequence[str]) -> None:
    if len(set(names)) != len(names):
        raise ValueError("duplicate feature names cannot be written as object keys")


def _in_original_order(origins: Sequence[int | None]) -> bool:
    known = [o for o in origins if o is not None]
    return all(a < b for a, b in itertools.pairwise(known))


def rows_of(columns: list[list[Any]], n: int) -> list[list[Any]]:
    """Row lists from columns (cells copied)."""
    if not columns:
        return [[] for _ in range(n)]
    cols = [copy_cells(c) for c in columns]
    m = len(cols[0])
    if any(len(c) != m for c in cols):
        raise ValueError("columns differ in length")
    return [[c[i] for c in cols] for i in range(m)]


def write_rows(detail: RowsDetail, table: FeatureTable) -> Any:
    """The shared shape ``detail`` describes, holding ``table`` (cells are copied, never shared)."""
    table.validate()
    n = table.n_rows
    cols = [copy_cells(c) for c in table.columns]
    if detail.kind == "rows" or (detail.kind == "scalars" and len(cols) != 1):
        return [[c[i] for c in cols] for i in range(n)]
    if detail.kind == "scalars":
        return cols[0]
    _check_unique(table.names)
    if detail.kind in ("columns", "columns_in_list"):
        out = {name: c for name, c in zip(table.names, cols, strict=True)}
        return [out] if detail.kind == "columns_in_list" else out
    # records
    origins = resolve_col_origin(table, detail.names)
    rows = resolve_row_origin(table, detail.n_rows)
    keep_order = _in_original_order(origins) and detail.row_keys is not None
    by_origin = {o: j for j, o in enumerate(origins) if o is not None}
    index_of = {name: k for k, name in enumerate(detail.names)}
    records: list[dict[str, Any]] = []
    for i in range(n):
        rec: dict[str, Any] = {}
        order: list[int] = []
        r = rows[i]
        if keep_order and r is not None and detail.row_keys is not None:
            for key in detail.row_keys[r]:
                j = by_origin.get(index_of[key])
                if j is not None:
                    order.append(j)
            placed = set(order)
            order.extend(j for j in range(len(cols)) if j not in placed)
        else:
            order = list(range(len(cols)))
        for j in order:
            v = cols[j][i]
            if v is not MISSING:
                rec[table.names[j]] = v
        records.append(rec)
    return records


# ---------------------------------------------------------------------------------------------------------
# Prediction items: one per row, as found in V1/MLflow ``predictions`` or a generic pointer


def _pred_value(v: Any) -> tuple[bool, Any]:
    """(ok, value): a scalar; ``[x]`` unwrapped to x; a list of numbers as a vector."""
    if is_scalar(v):
        return True, v
    if isinstance(v, list) and v and all(is_number(x) or x is None for x in v):
        if len(v) == 1:
            return True, v[0]
        return True, list(v)
    return False, None


def read_pred_items(items: Any, name: str) -> Predictions | None:
    """Predictions from a per-row list: scalars/vectors under ``name``, or dict items split by key."""
    if not isinstance(items, list) or not items:
        return None
    if all(isinstance(it, dict) for it in items):
        keys: list[str] = []
        for it in items:
            keys.extend(k for k in it if k not in keys)
        out: Predictions = {}
        for k in keys:
            values: list[Any] = []
            for it in items:
                ok, v = _pred_value(it.get(k))
                if not ok:
                    break
                values.append(v)
            else:
                out[k] = values
        return out or None
    values = []
    for it in items:
        ok, v = _pred_value(it)
        if not ok:
            return None
        values.append(v)
    return {name: values}


def _put_value(original: Any, new: Any) -> Any:
    """``new`` in the form ``original`` had: re-wrapped in a list when the original was ``[x]``."""
    if isinstance(original, list) and len(original) == 1 and not isinstance(new, list):
        return [new]
    if isinstance(new, float) and math.isnan(new):
        return new
    return clone(new)


def write_pred_items(items: list[Any], preds: Predictions, name: str) -> list[Any] | None:
    """``items`` with the values of ``preds`` written back in the same form; None when they do not fit."""
    n = len(items)
    if all(isinstance(it, dict) for it in items):
        if not all(k in {kk for it in items for kk in it} for k in preds):
            return None
        if any(len(v) != n for v in preds.values()):
            return None
        out = []
        for i, it in enumerate(items):
            new = dict(it)
            for k, values in preds.items():
                if k in new:
                    new[k] = _put_value(new[k], values[i])
            out.append({k: clone(v) if k not in preds else v for k, v in new.items()})
        return out
    if set(preds) != {name} or len(preds[name]) != n:
        return None
    return [_put_value(o, v) for o, v in zip(items, preds[name], strict=True)]
