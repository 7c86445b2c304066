"""The feature table: what an adapter reads out of an inference payload and what mutations change.

A table is column-major: ``columns[j][i]`` is row ``i`` of feature ``j``. Cells are the values found in the
payload (float, int, str, bool, None), a nested list for a tensor-valued cell (a V2 input of shape ``[N, K]``,
a V1 instance holding a vector), or ``MISSING`` where a record (a dict row) lacks a key other rows have.
Value mutations only touch scalar cells; structural ones (drop, rename, reorder, truncate) move any cell.

``col_origin`` and ``row_origin`` tie each column and row to the one it came from in the parsed payload
(``None`` for one that did not exist), so that an adapter writing the table back knows that ``x_renamed`` is
the input that used to be ``x`` and keeps that input's other fields. Adapters set both on the tables they
read; mutations keep them up to date. A table built by hand may leave them ``None``: columns are then matched
by name and rows by position.
"""

from __future__ import annotations

import math
import sys
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Final

import numpy as np

__all__ = [
    "FLOAT_DTYPES", "FLOAT_MAX", "INT_DTYPES", "INT_RANGES", "MISSING", "V2_DATATYPES", "FeatureTable",
    "all_floats", "all_json", "all_numbers", "all_scalar", "cells_equal", "clone", "copy_cells", "infer_dtype",
    "is_number", "is_scalar", "number_rows", "origins", "positions",
]


class _Missing:
    """A cell with no value at all (a key a record lacks), as opposed to an explicit ``null``."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "MISSING"

    def __copy__(self) -> _Missing:
        return self

    def __deepcopy__(self, memo: Any) -> _Missing:
        return self

    def __reduce__(self) -> str:
        return "MISSING"


MISSING: Final = _Missing()

INT_RANGES: Final[Mapping[str, tuple[int, int]]] = {
    "INT8": (-(2**7), 2**7 - 1), "INT16": (-(2**15), 2**15 - 1),
    "INT32": (-(2**31), 2**31 - 1), "INT64": (-(2**63), 2**63 - 1),
    "UINT8": (0, 2**8 - 1), "UINT16": (0, 2**16 - 1), "UINT32": (0, 2**32 - 1), "UINT64": (0, 2**64 - 1),
}
# The largest finite value of each float datatype (BF16 is known here but never decoded from binary).
FLOAT_MAX: Final[Mapping[str, float]] = {
    "FP16": float(np.finfo(np.float16).max), "BF16": 3.3895313892515355e38,
    "FP32": float(np.finfo(np.float32).max), "FP64": sys.float_info.max,
}
INT_DTYPES: Final = frozenset(INT_RANGES)
FLOAT_DTYPES: Final = frozenset(FLOAT_MAX)
V2_DATATYPES: Final = INT_DTYPES | FLOAT_DTYPES | {"BOOL", "BYTES"}


def is_number(v: Any) -> bool:
    """An int or float that is not a bool."""
    return isinstance(v, (int, float)) and not isinstance(v, bool)


_SCALAR_TYPES: Final = frozenset({type(None), bool, int, float, str})


def is_scalar(v: Any) -> bool:
    """A value mutations may replace: None, bool, int, float or str (not a list, dict or MISSING)."""
    return type(v) in _SCALAR_TYPES or (v is not MISSING and isinstance(v, (int, float, str)))


def all_scalar(values: list[Any]) -> bool:
    """Every value is a scalar (one native pass over exact types for JSON-parsed lists)."""
    for v in values:
        t = type(v)
        if not (t is float or t is int or t is str or t is bool or v is None) and not is_scalar(v):
            return False
    return True


def all_numbers(values: list[Any]) -> bool:
    """Every value is exactly an int or a float (what a JSON parser gives for numbers; no bools)."""
    for v in values:
        t = type(v)
        if t is not float and t is not int:
            return False
    return True


def all_floats(values: list[Any]) -> bool:
    """Every value is a float (``isinstance``: numpy's float64 counts); one native pass."""
    for v in values:
        if not isinstance(v, float):
            return False
    return True


def number_rows(rows: list[Any]) -> int:
    """The common length of ``rows`` when each is a non-empty list of exact ints and floats (a batch of
    probability vectors as a JSON parser gives them); -1 for anything else. One native pass."""
    width = -1
    for r in rows:
        if type(r) is not list:
            return -1
        row: list[Any] = r
        if not row or (width >= 0 and len(row) != width):
            return -1
        width = len(row)
        if not all_numbers(row):
            return -1
    return width


def all_json(values: list[Any]) -> bool:
    """Every value is a JSON value (scalar, list or dict): not MISSING, not a tuple or an object."""
    for v in values:
        t = type(v)
        if t is float or t is int or t is str or t is list or t is dict or t is bool or v is None:
            continue
        if not (is_scalar(v) or isinstance(v, (list, dict))):
            return False
    return True


def positions(n: int) -> list[int]:
    """``[0, 1, ..., n - 1]``; compiled, the comprehension is a native loop where ``list(range(n))`` goes
    through the C API (half the time)."""
    return [i for i in range(n)]


def origins(n: int) -> list[int | None]:
    """``positions(n)`` typed as a table's ``col_origin``/``row_origin``: each column or row as it was read."""
    return [i for i in range(n)]


def clone(value: Any) -> Any:
    """A deep copy of a JSON value (dicts and lists are new; scalars shared); iterative, so depth is no issue."""
    if isinstance(value, dict):
        root: Any = {}
    elif isinstance(value, list):
        root = []
    else:
        return value
    stack: list[tuple[Any, Any]] = [(value, root)]
    while stack:
        src, dst = stack.pop()
        items = src.items() if isinstance(src, dict) else enumerate(src)
        for k, x in items:
            if isinstance(x, dict):
                y: Any = {}
                stack.append((x, y))
            elif isinstance(x, list):
                y = []
                stack.append((x, y))
            else:
                y = x
            if isinstance(dst, dict):
                dst[k] = y
            else:
                dst.append(y)
    return root


def copy_cells(values: list[Any]) -> list[Any]:
    """A new list of the values, with lists and dicts among them deep-copied."""
    for v in values:
        t = type(v)
        if not (t is float or t is int or t is str or t is bool or v is None):  # a list, dict or object
            return [clone(x) for x in values]
    return list(values)


def cells_equal(a: Any, b: Any) -> bool:
    """Equality of cells as JSON values: NaN equals NaN, a bool never equals a number."""
    if isinstance(a, bool) or isinstance(b, bool):
        return type(a) is type(b) and a == b
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b):
        return True
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(cells_equal(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(cells_equal(a[k], b[k]) for k in a)
    if type(a) is not type(b) and not (is_number(a) and is_number(b)):
        return False
    return bool(a == b)


def infer_dtype(values: Iterable[Any]) -> str:
    """``number``, ``string``, ``bool`` or ``mixed`` for a column read from a format without datatypes
    (nulls and missing keys aside; a column of nothing else is ``mixed``)."""
    seen = 0  # bits: 1 number, 2 string, 4 bool
    for v in values:
        t = type(v)
        if t is float or t is int:
            seen |= 1
        elif t is str:
            seen |= 2
        elif t is bool:
            seen |= 4
        elif v is not None and v is not MISSING:
            return "mixed"
    return _DTYPE_OF_SEEN[seen]


_DTYPE_OF_SEEN: Final = ("mixed", "number", "string", "mixed", "bool", "mixed", "mixed", "mixed")


class FeatureTable:
    # A plain class, not a dataclass: compiled, its __init__ is native (a dataclass's generated __init__
    # stays interpreted, ~8k instructions per table, two tables per chaos request).
    __slots__ = ("col_origin", "columns", "dtypes", "named", "names", "row_origin")

    def __init__(
        self, names: list[str], columns: list[list[Any]], dtypes: list[str], named: bool = True,
        col_origin: list[int | None] | None = None, row_origin: list[int | None] | None = None,
    ) -> None:
        self.names = names
        self.columns = columns
        self.dtypes = dtypes
        # False when the payload carries no feature names (a V2 matrix, V1 list rows): renaming is not
        # expressible.
        self.named = named
        # Per column, the index of the column it came from in the parsed payload (None: a new column).
        self.col_origin = col_origin
        # Per row, the index of the row it came from (None: a new row). Also keeps the row count of a table
        # whose every column was dropped.
        self.row_origin = row_origin

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, FeatureTable):
            return NotImplemented
        return (self.names, self.columns, self.dtypes, self.named, self.col_origin, self.row_origin) == \
            (other.names, other.columns, other.dtypes, other.named, other.col_origin, other.row_origin)

    def __reduce__(self) -> tuple[type[FeatureTable], tuple[Any, ...]]:
        # copy, deepcopy and pickle: a compiled class is rebuilt through its __init__.
        return FeatureTable, (self.names, self.columns, self.dtypes, self.named, self.col_origin, self.row_origin)

    def __repr__(self) -> str:
        return (f"FeatureTable(names={self.names!r}, columns={self.columns!r}, dtypes={self.dtypes!r}, "
                f"named={self.named!r}, col_origin={self.col_origin!r}, row_origin={self.row_origin!r})")

    @property
    def n_rows(self) -> int:
        if self.columns:
            return len(self.columns[0])
        return len(self.row_origin) if self.row_origin is not None else 0

    @property
    def n_cols(self) -> int:
        return len(self.names)

    def copy(self) -> FeatureTable:
        """A new table with new lists; cells themselves are shared (scalars are immutable)."""
        return self.with_columns([c[:] for c in self.columns])

    def with_columns(self, columns: list[list[Any]]) -> FeatureTable:
        """A new table of ``columns`` (new lists, one per column, taken as they are) with new lists of this
        table's names, dtypes and origins."""
        return FeatureTable(
            self.names[:], columns, self.dtypes[:], self.named,
            None if self.col_origin is None else self.col_origin[:],
            None if self.row_origin is None else self.row_origin[:],
        )

    def index(self, name: str) -> int:
        """Position of the feature ``name``; KeyError when absent."""
        try:
            return self.names.index(name)
        except ValueError:
            raise KeyError(name) from None

    def column(self, name: str) -> list[Any]:
        return self.columns[self.index(name)]

    def row(self, i: int) -> dict[str, Any]:
        """Row ``i`` as name → value, leaving out MISSING cells."""
        return {n: c[i] for n, c in zip(self.names, self.columns, strict=True) if c[i] is not MISSING}

    def rows(self) -> list[dict[str, Any]]:
        return [self.row(i) for i in range(self.n_rows)]

    def col_origins(self) -> list[int | None]:
        """``col_origin`` or, when unset, positions (the table is taken as read)."""
        return list(self.col_origin) if self.col_origin is not None else origins(len(self.names))

    def row_origins(self) -> list[int | None]:
        return list(self.row_origin) if self.row_origin is not None else origins(self.n_rows)

    def validate(self) -> None:
        """ValueError unless names, columns and dtypes agree and every column has ``n_rows`` cells."""
        if not (len(self.names) == len(self.columns) == len(self.dtypes)):
            raise ValueError("names, columns and dtypes differ in length")
        n = self.n_rows
        if any(len(c) != n for c in self.columns):
            raise ValueError("columns differ in length")
        if self.col_origin is not None and len(self.col_origin) != len(self.names):
            raise ValueError("col_origin does not match the columns")
        if self.row_origin is not None and len(self.row_origin) != n:
            raise ValueError("row_origin does not match the rows")

    @classmethod
    def from_rows(
        cls, names: Sequence[str], rows: Sequence[Sequence[Any]], dtypes: Sequence[str] | None = None,
        *, named: bool = True,
    ) -> FeatureTable:
        """A table from row lists (each as long as ``names``); dtypes inferred when not given."""
        columns = [[r[j] for r in rows] for j in range(len(names))]
        return cls(
            names=list(names), columns=columns,
            dtypes=list(dtypes) if dtypes is not None else [infer_dtype(c) for c in columns],
            named=named, col_origin=origins(len(names)), row_origin=origins(len(rows)),
        )


def resolve_col_origin(table: FeatureTable, original_names: Sequence[str]) -> list[int | None]:
    """Where each column of ``table`` came from: its ``col_origin``, else the original column of that name."""
    if table.col_origin is not None:
        return [o if o is not None and 0 <= o < len(original_names) else None for o in table.col_origin]
    first: dict[str, int] = {}
    for j, n in enumerate(original_names):
        first.setdefault(n, j)
    return [first.get(n) for n in table.names]


def resolve_row_origin(table: FeatureTable, original_rows: int) -> list[int | None]:
    """Where each row came from: ``row_origin``, else by position (rows past the original count are new)."""
    if table.row_origin is not None:
        return [o if o is not None and 0 <= o < original_rows else None for o in table.row_origin]
    return [i if i < original_rows else None for i in range(table.n_rows)]
