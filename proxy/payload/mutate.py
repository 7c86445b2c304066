"""Feature faults: each takes a table and returns a ``Mutation`` holding a new one (the input is never changed).

Every function has the signature ``f(table, *, features=None, fraction=1.0, rng, **params) -> Mutation``:

- ``features``: the names it acts on (all when None; names the table lacks are listed in ``note``);
- ``fraction``: of cells (nan, out_of_range, type_swap), of rows (shift, default, stale, truncate_batch) or of
  the chosen features (drop_feature, rename_feature); ignored by reorder_features. A fraction of ``n`` things
  is ``floor(fraction * n)`` plus one more with probability equal to the remainder (the expected count is
  exact, and small batches still get hit); for features it is rounded half up, at least one when > 0;
- ``rng``: every random choice comes from it, so a seeded generator gives the same cells every time.

``changed`` counts cells whose value changed, columns dropped/renamed/moved, or rows dropped.
``applicable`` is False when the fault cannot be expressed on this table (``note`` says why): then
``changed`` is 0 and ``table`` is an unchanged copy.

Value faults only touch scalar cells (not tensor cells, not ``MISSING`` keys); numeric ones skip bools and
strings. Numbers keep their kind: a cell of a V2 INT column, or a Python int in a column without a V2
datatype, stays an int (rounded, clamped to the datatype's range, INT64 when unknown); floats stay finite and
within their datatype (FP16/FP32/FP64).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Final, Literal

import numpy as np

from .table import (
    FLOAT_DTYPES,
    FLOAT_MAX,
    INT_DTYPES,
    INT_RANGES,
    MISSING,
    V2_DATATYPES,
    FeatureTable,
    cells_equal,
    is_number,
    is_scalar,
    positions,
)

__all__ = [
    "MUTATIONS", "Mutation", "default", "drop_feature", "duplicate_rows", "feature_columns", "nan", "out_of_range",
    "pick_cells", "pick_cells_array", "rename_feature", "reorder_features", "reorder_rows", "shift", "stale",
    "truncate_batch", "type_swap",
]

_NON_NUMERIC: Final = frozenset({"BOOL", "BYTES", "bool", "string"})
_PLAIN: Final = frozenset({type(None), bool, int, float, str})


class Mutation:
    # A plain class, not a frozen dataclass: compiled, its __init__ is native; Final keeps it read-only.
    __slots__ = ("applicable", "changed", "note", "table")

    def __init__(self, table: FeatureTable, changed: int = 0, applicable: bool = True, note: str = "") -> None:
        self.table: Final = table
        self.changed: Final = changed
        self.applicable: Final = applicable
        self.note: Final = note

    def __repr__(self) -> str:
        return f"Mutation(changed={self.changed!r}, applicable={self.applicable!r}, note={self.note!r})"


# ------------------------------------------------------------------------------------------------- helpers


def _check_fraction(fraction: float) -> None:
    if not (isinstance(fraction, (int, float)) and 0.0 <= fraction <= 1.0):
        raise ValueError(f"fraction must be within [0, 1], not {fraction!r}")


def _count(n: int, fraction: float, rng: np.random.Generator) -> int:
    """How many of ``n`` things a ``fraction`` is, rounded at random so the expected count is exact."""
    x = fraction * n
    k = math.floor(x)
    rest = x - k
    if rest > 0 and rng.random() < rest:
        k += 1
    return min(k, n)


def _count_cols(n: int, fraction: float) -> int:
    if fraction <= 0 or n == 0:
        return 0
    return min(n, max(1, math.floor(fraction * n + 0.5)))


def _pick(n: int, k: int, rng: np.random.Generator) -> list[int]:
    """``k`` distinct indices below ``n``, sorted."""
    if k <= 0:
        return []
    if k >= n:
        return positions(n)
    chosen: list[int] = _sorted_choice(n, k, rng).tolist()
    return chosen


def _sorted_choice(n: int, k: int, rng: np.random.Generator) -> np.ndarray[Any, np.dtype[np.intp]]:
    """``rng.choice(n, k, replace=False)``, sorted: through a mask of ``n`` flags, half the time of a sort of
    ``k`` ints for the usual k (a tenth of n); the same indices either way, as they are distinct."""
    flags = np.zeros(n, dtype=np.bool_)
    flags[rng.choice(n, size=k, replace=False)] = True
    return np.flatnonzero(flags)


def pick_cells(n: int, fraction: float, rng: np.random.Generator) -> list[int]:
    """Which of ``n`` cells a value fault acting on a ``fraction`` of them changes (sorted indices): the draws
    ``nan`` makes."""
    return _pick(n, _count(n, fraction, rng), rng)


def pick_cells_array(n: int, fraction: float, rng: np.random.Generator) -> np.ndarray[Any, np.dtype[np.intp]]:
    """``pick_cells`` as an array: the same draws, for a reader that finds the cells without a table
    (``CsvAdapter.blank_cells``) and indexes arrays of offsets with them."""
    k = _count(n, fraction, rng)
    if k <= 0:
        return np.empty(0, dtype=np.intp)
    if k >= n:
        return np.arange(n, dtype=np.intp)
    return _sorted_choice(n, k, rng)


def feature_columns(names: Sequence[str], features: Sequence[str] | None) -> list[int]:
    """The indices of the columns named by ``features`` (all when None), in the table's order."""
    if features is None:
        return positions(len(names))
    wanted = {features} if isinstance(features, str) else set(features)
    return [j for j, n in enumerate(names) if n in wanted]


def _candidates(table: FeatureTable, features: Sequence[str] | None) -> tuple[list[int], str]:
    """Column indices to act on and a note naming requested features the table lacks."""
    cols = feature_columns(table.names, features)
    if features is None:
        return cols, ""
    if isinstance(features, str):
        features = [features]
    missing = [f for f in dict.fromkeys(features) if f not in table.names]
    return cols, (f"not in the payload: {', '.join(missing)}" if missing else "")


def _na(table: FeatureTable, note: str) -> Mutation:
    return Mutation(table.copy(), 0, False, note)


def _join(*notes: str) -> str:
    return "; ".join(n for n in notes if n)


def _no_features(table: FeatureTable, features: Sequence[str] | None, note: str) -> Mutation:
    if features is not None:
        return _na(table, note or "no features selected")
    return _na(table, "the payload has no features")


def _numeric_kind(dtype: str, v: Any) -> str | None:
    """"int" or "float" for a finite number the column's datatype treats as numeric, else None."""
    if not is_number(v) or dtype in _NON_NUMERIC or (isinstance(v, float) and not math.isfinite(v)):
        return None
    if dtype in INT_DTYPES:
        return "int"
    if dtype in FLOAT_DTYPES:
        return "float"
    return "int" if isinstance(v, int) else "float"


# Int limits stay ints: 2**63 - 1 as a float is 2**63 (compiled code keeps a `float` as a C double).
Limits = tuple[int, int] | tuple[float, float]


def _limits(dtype: str, kind: str) -> Limits:
    if dtype in INT_RANGES:
        return INT_RANGES[dtype]
    if dtype in FLOAT_MAX:
        m = FLOAT_MAX[dtype]
        return -m, m
    if kind == "int":
        return INT_RANGES["INT64"]
    return -FLOAT_MAX["FP64"], FLOAT_MAX["FP64"]


# The kind each common datatype forces (None: each cell's own) with the int and float limits, for shift's loop.
_KIND_LIMITS: Final[dict[str, tuple[str | None, Limits, Limits]]] = {
    dtype: ("int" if dtype in INT_DTYPES else "float" if dtype in FLOAT_DTYPES else None,
            _limits(dtype, "int"), _limits(dtype, "float"))
    for dtype in (*INT_DTYPES, *FLOAT_DTYPES, "number", "mixed")
}


# The float limits of the datatypes whose cells shift's fast path may take (not the integer ones).
_FLOAT_LIMITS: Final[dict[str, tuple[float, float]]] = {
    dtype: (float(limits[0]), float(limits[1]))
    for dtype in (*FLOAT_DTYPES, "number", "mixed") for limits in (_limits(dtype, "float"),)
}


def _finite(x: float) -> bool:
    return x - x == 0.0  # compiled: native, where math.isfinite is a call through the module


def _fit(x: float, dtype: str, kind: str) -> int | float:
    """``x`` as a value of the column's kind, clamped into its datatype's range."""
    lo, hi = _limits(dtype, kind)
    if kind == "int":
        if math.isinf(x):
            return int(hi if x > 0 else lo)
        return int(min(max(round(x), lo), hi))
    return float(min(max(x, lo), hi))


def _numeric_cells(table: FeatureTable, cols: Sequence[int]) -> list[tuple[int, int]]:
    """(column, row) of the finite numbers (not bools) in numeric columns."""
    cells: list[tuple[int, int]] = []
    for j in cols:
        dt, col = table.dtypes[j], table.columns[j]
        if dt in _NON_NUMERIC:
            continue
        if set(map(type, col)) <= _PLAIN:  # JSON-parsed: exact types, a fast test (v - v is NaN for ±inf, NaN)
            cells.extend((j, i) for i, v in enumerate(col) if (type(v) is float or type(v) is int) and v - v == 0)
        else:
            cells.extend((j, i) for i, v in enumerate(col) if _numeric_kind(dt, v))
    return cells


def _has_numeric(table: FeatureTable, cols: Sequence[int]) -> bool:
    return any(_numeric_kind(table.dtypes[j], v) for j in cols for v in table.columns[j])


def _present_cells(table: FeatureTable, cols: Sequence[int]) -> list[tuple[int, int]]:
    """(column, row) of the scalar cells that hold a value (not null, not NaN, not a tensor or MISSING)."""
    cells: list[tuple[int, int]] = []
    for j in cols:
        col = table.columns[j]
        if set(map(type, col)) <= _PLAIN:
            cells.extend((j, i) for i, v in enumerate(col) if v is not None and v == v)
        else:
            cells.extend((j, i) for i, v in enumerate(col)
                         if is_scalar(v) and v is not None and not (isinstance(v, float) and math.isnan(v)))
    return cells


def _zero(dtype: str, column: Sequence[Any]) -> Any:
    if dtype in INT_DTYPES:
        return 0
    if dtype in FLOAT_DTYPES:
        return 0.0
    if dtype in ("BOOL", "bool"):
        return False
    if dtype in ("BYTES", "string"):
        return ""
    if dtype == "number":
        return 0.0 if any(isinstance(v, float) for v in column) else 0
    return None


# ----------------------------------------------------------------------------------------------- mutations


def nan(
    table: FeatureTable, *, rng: np.random.Generator, features: Sequence[str] | None = None, fraction: float = 1.0,
) -> Mutation:
    """Missing values: a ``fraction`` of the selected scalar cells become ``float("nan")`` (written as
    ``null``, or the ``NaN`` token when the caller serializes with ``nan_token``)."""
    _check_fraction(fraction)
    cols, note = _candidates(table, features)
    if not cols:
        return _no_features(table, features, note)
    cells = _present_cells(table, cols)
    out = table.copy()
    chosen = pick_cells(len(cells), fraction, rng)
    for c in chosen:
        j, i = cells[c]
        out.columns[j][i] = math.nan
    return Mutation(out, len(chosen), True, note)


def out_of_range(
    table: FeatureTable, *, rng: np.random.Generator, features: Sequence[str] | None = None, fraction: float = 1.0,
    factor: float = 1e6, at: Literal["scaled", "extreme"] = "scaled", sign: Literal["both", "+", "-"] = "both",
) -> Mutation:
    """Extreme values in a ``fraction`` of the numeric cells, within the datatype: ``±factor × max|column|``
    (at least ``±factor``) clamped to the datatype's finite range (``at="scaled"``), or the datatype's own
    extremes (``at="extreme"``: INT32 → ±2³¹, FP32 → ±3.4e38; INT64/FP64 when the datatype is unknown).
    Unsigned datatypes only go up."""
    _check_fraction(fraction)
    if at not in ("scaled", "extreme") or sign not in ("both", "+", "-"):
        raise ValueError(f"bad out_of_range parameters: at={at!r} sign={sign!r}")
    cols, note = _candidates(table, features)
    if not cols:
        return _no_features(table, features, note)
    cells = _numeric_cells(table, cols)
    if not cells:
        return _na(table, _join("no numeric values in the selected features", note))
    absmax: dict[int, float] = dict.fromkeys(cols, 1.0)
    for j, i in cells:
        absmax[j] = max(absmax[j], abs(float(table.columns[j][i])))
    out = table.copy()
    changed = 0
    for c in _pick(len(cells), _count(len(cells), fraction, rng), rng):
        j, i = cells[c]
        dtype, v = table.dtypes[j], table.columns[j][i]
        kind = _numeric_kind(dtype, v)
        assert kind is not None
        lo, hi = _limits(dtype, kind)
        s = 1.0 if sign == "+" or lo >= 0 else -1.0 if sign == "-" else (1.0 if rng.random() < 0.5 else -1.0)
        x = (hi if s > 0 else lo) if at == "extreme" else s * factor * absmax[j]
        new = _fit(x, dtype, kind)
        if not cells_equal(new, v):
            out.columns[j][i] = new
            changed += 1
    return Mutation(out, changed, True, note)


def _shift_floats(src: list[Any], scale: float, offset: float, lo: float, hi: float) -> tuple[list[Any], int] | None:
    """``src`` as ``x * scale + offset`` clamped to [lo, hi] and how many cells changed, when every cell is a
    finite float; None otherwise. A value that comes out equal keeps its cell as it was (0.0, not -0.0)."""
    out: list[Any] = []
    differ = 0
    for v in src:
        if type(v) is not float:
            return None
        x: float = v
        if not _finite(x):
            return None
        y = x * scale + offset
        if y < lo:
            y = lo
        elif y > hi:
            y = hi
        if y != x:
            differ += 1
            out.append(y)
        else:
            out.append(v)
    return out, differ


def shift(
    table: FeatureTable, *, rng: np.random.Generator, features: Sequence[str] | None = None, fraction: float = 1.0,
    scale: float = 1.0, offset: float = 0.0, noise_std: float = 0.0,
) -> Mutation:
    """Training/serving skew on a ``fraction`` of the rows: each numeric cell of the selected features becomes
    ``x * scale + offset`` plus Gaussian noise of ``noise_std`` (ints rounded, values clamped to the datatype)."""
    _check_fraction(fraction)
    if noise_std < 0:
        raise ValueError("noise_std must be >= 0")
    cols, note = _candidates(table, features)
    if not cols:
        return _no_features(table, features, note)
    n = table.n_rows
    rows = _pick(n, _count(n, fraction, rng), rng)
    # Per column: its index, datatype, the kind the datatype forces (None: each cell's own) and both kinds'
    # limits. The cell loop below is _numeric_kind and _fit inlined: it runs for every cell of every chaos
    # request whose columns the fast path above it does not take.
    plan: list[tuple[int, str, str | None, Limits, Limits]] = []
    for j in cols:
        dtype = table.dtypes[j]
        if dtype not in _NON_NUMERIC:
            known = _KIND_LIMITS.get(dtype)
            forced, int_limits, float_limits = known if known is not None \
                else (None, _limits(dtype, "int"), _limits(dtype, "float"))
            plan.append((j, dtype, forced, int_limits, float_limits))
    # The new table's columns: a shifted column is a new list; the others are copied (once) before a cell
    # of theirs changes, or at the end, so the result never shares a list with ``table``.
    src = table.columns
    columns = src[:]
    own = [False] * len(src)
    changed = 0
    numeric = False
    if len(rows) == n and noise_std == 0 and _finite(scale) and _finite(offset):
        # Whole columns of finite floats (what JSON parsers give for most feature vectors): one native
        # loop per column; a column with any other cell goes to the cell loop below.
        rest = []
        for entry in plan:
            limits = _FLOAT_LIMITS.get(entry[1])
            shifted = _shift_floats(src[entry[0]], scale, offset, limits[0], limits[1]) \
                if limits is not None else None
            if shifted is None:
                rest.append(entry)
                continue
            numeric = True
            columns[entry[0]] = shifted[0]
            own[entry[0]] = True
            changed += shifted[1]
        plan = rest
    for i in rows:
        for j, dtype, forced, int_limits, float_limits in plan:
            v = src[j][i]
            t = type(v)
            plain = t is float or t is int
            if t is float:
                if v - v != 0:  # inf or NaN
                    continue
                kind = forced or "float"
            elif t is int:
                kind = forced or "int"
            else:
                found = _numeric_kind(dtype, v)  # bools, strings, tensors, numpy scalars
                if found is None:
                    continue
                kind = found
            numeric = True
            x = float(v) * scale + offset
            if noise_std > 0:
                x += float(rng.normal(0.0, noise_std))
            if x != x:
                continue
            if kind == "int":
                lo, hi = int_limits
                new: int | float = int(hi if x > 0 else lo) if math.isinf(x) else int(min(max(round(x), lo), hi))
            else:
                lo, hi = float_limits
                new = float(min(max(x, lo), hi))
            if (new != v) if plain else not cells_equal(new, v):
                if not own[j]:
                    columns[j] = src[j][:]
                    own[j] = True
                columns[j][i] = new
                changed += 1
    for j in range(len(src)):
        if not own[j]:
            columns[j] = src[j][:]
    out = table.with_columns(columns)
    # Seen a number, or none in the rows picked but some elsewhere: the fault applies (and may change nothing).
    if not numeric and (len(rows) == n or not _has_numeric(table, cols)):
        return _na(table, _join("no numeric values in the selected features", note))
    return Mutation(out, changed, True, note)


def _keep_columns(table: FeatureTable, keep: Sequence[int]) -> FeatureTable:
    origins = table.col_origins()
    return FeatureTable(
        names=[table.names[j] for j in keep], columns=[list(table.columns[j]) for j in keep],
        dtypes=[table.dtypes[j] for j in keep], named=table.named,
        col_origin=[origins[j] for j in keep], row_origin=table.row_origins(),
    )


def drop_feature(
    table: FeatureTable, *, rng: np.random.Generator, features: Sequence[str] | None = None, fraction: float = 1.0,
) -> Mutation:
    """Schema drift: remove a ``fraction`` of the selected features (all of them by default) from every row."""
    _check_fraction(fraction)
    cols, note = _candidates(table, features)
    if not cols:
        return _no_features(table, features, note)
    dropped = {cols[c] for c in _pick(len(cols), _count_cols(len(cols), fraction), rng)}
    out = _keep_columns(table, [j for j in range(table.n_cols) if j not in dropped])
    return Mutation(out, len(dropped), True, note)


def rename_feature(
    table: FeatureTable, *, rng: np.random.Generator, features: Sequence[str] | None = None, fraction: float = 1.0,
    mapping: Mapping[str, str] | None = None, suffix: str = "_renamed",
) -> Mutation:
    """Schema drift: rename features, by ``mapping`` (old → new) or by appending ``suffix`` to a ``fraction``
    of the selected ones. Not applicable to layouts without names in the payload; a new name that another
    feature already has is skipped (and noted)."""
    _check_fraction(fraction)
    if not table.named:
        return _na(table, "rename needs named features; this layout carries none (names come from the policy)")
    cols, note = _candidates(table, features)
    if mapping is not None:
        cols = [j for j in cols if table.names[j] in mapping]
        chosen = cols
    else:
        chosen = [cols[c] for c in _pick(len(cols), _count_cols(len(cols), fraction), rng)]
    if not cols:
        return _no_features(table, features if mapping is None else list(mapping), note)
    out = table.copy()
    out.col_origin = table.col_origins()
    out.row_origin = table.row_origins()
    changed = 0
    clashes = []
    for j in chosen:
        old = table.names[j]
        new = mapping[old] if mapping is not None else old + suffix
        if new == old:
            continue
        if new in out.names:
            clashes.append(new)
            continue
        out.names[j] = new
        changed += 1
    if clashes:
        note = _join(note, f"names already taken: {', '.join(clashes)}")
    return Mutation(out, changed, True, note)


def reorder_features(
    table: FeatureTable, *, rng: np.random.Generator, features: Sequence[str] | None = None, fraction: float = 1.0,
    order: Sequence[str] | None = None, mode: Literal["reverse", "shuffle"] = "reverse",
) -> Mutation:
    """Features sent in another order: the selected features trade places among the positions they hold,
    reversed, shuffled (never the identity), or in ``order``. Unnamed layouts (matrix, list rows) then carry
    values under the wrong feature; named ones change key or input order. ``fraction`` is not used."""
    _check_fraction(fraction)
    if mode not in ("reverse", "shuffle"):
        raise ValueError(f"mode must be 'reverse' or 'shuffle', not {mode!r}")
    cols, note = _candidates(table, features)
    if order is not None:
        allowed = set(cols)
        wanted = [table.names.index(n) for n in dict.fromkeys(order) if n in table.names]
        cols = sorted(j for j in wanted if j in allowed)
        perm = [j for j in wanted if j in allowed]
    else:
        perm = list(reversed(cols))
        if mode == "shuffle" and len(cols) >= 2:
            for _ in range(8):
                perm = [cols[int(k)] for k in rng.permutation(len(cols))]
                if perm != cols:
                    break
            else:
                perm = cols[1:] + cols[:1]
    if len(cols) < 2:
        return _na(table, _join("reordering needs at least two features", note))
    layout = positions(table.n_cols)
    for pos, src in zip(cols, perm, strict=True):
        layout[pos] = src
    out = _keep_columns(table, layout)
    changed = sum(1 for pos, src in enumerate(layout) if pos != src)
    return Mutation(out, changed, True, note)


def type_swap(
    table: FeatureTable, *, rng: np.random.Generator, features: Sequence[str] | None = None, fraction: float = 1.0,
) -> Mutation:
    """Numbers sent as strings (``3.5`` → ``"3.5"``) in a ``fraction`` of the numeric cells. A column with a
    V2 datatype that had any cell swapped becomes ``BYTES`` (the V2 writer changes the input's datatype)."""
    _check_fraction(fraction)
    cols, note = _candidates(table, features)
    if not cols:
        return _no_features(table, features, note)
    cells = _numeric_cells(table, cols)
    if not cells:
        return _na(table, _join("no numeric values in the selected features", note))
    out = table.copy()
    touched: set[int] = set()
    chosen = _pick(len(cells), _count(len(cells), fraction, rng), rng)
    for c in chosen:
        j, i = cells[c]
        v = table.columns[j][i]
        out.columns[j][i] = str(v) if isinstance(v, int) else repr(float(v))
        touched.add(j)
    for j in touched:
        if out.dtypes[j] in V2_DATATYPES:
            out.dtypes[j] = "BYTES"
        else:
            rest = [v for v in out.columns[j] if v is not None and v is not MISSING]
            out.dtypes[j] = "string" if all(isinstance(v, str) for v in rest) else "mixed"
    return Mutation(out, len(chosen), True, note)


def default(
    table: FeatureTable, *, rng: np.random.Generator, features: Sequence[str] | None = None, fraction: float = 1.0,
    values: Mapping[str, Any] | None = None,
) -> Mutation:
    """Feature store down: in a ``fraction`` of the rows, the selected features hold their configured default
    (``values[name]``; otherwise 0, 0.0, "" or False by datatype). Features default to the keys of ``values``."""
    _check_fraction(fraction)
    if features is None and values:
        cols, note = _candidates(table, list(values))
        if not cols:
            return _na(table, _join("no default values for features in the payload", note))
    else:
        cols, note = _candidates(table, features)
    if not cols:
        return _no_features(table, features, note)
    out = table.copy()
    changed = 0
    n = table.n_rows
    for i in _pick(n, _count(n, fraction, rng), rng):
        for j in cols:
            v = table.columns[j][i]
            if not is_scalar(v):
                continue
            name = table.names[j]
            new = values[name] if values is not None and name in values else _zero(table.dtypes[j], table.columns[j])
            if not cells_equal(new, v):
                out.columns[j][i] = new
                changed += 1
    return Mutation(out, changed, True, note)


def stale(
    table: FeatureTable, *, rng: np.random.Generator, features: Sequence[str] | None = None, fraction: float = 1.0,
    rows: Sequence[Mapping[str, Any]] | None = None,
) -> Mutation:
    """Feature store lag: in a ``fraction`` of the rows, the selected features take the values of ``rows`` (what
    this sticky key sent earlier, from ``StaleCache.get``); row ``i`` takes ``rows[i % len(rows)]``."""
    _check_fraction(fraction)
    if not rows:
        return _na(table, "no earlier values for this key yet")
    cols, note = _candidates(table, features)
    if not cols:
        return _no_features(table, features, note)
    if not any(table.names[j] in r for r in rows for j in cols):
        return _na(table, _join("the earlier values hold none of the selected features", note))
    out = table.copy()
    changed = 0
    n = table.n_rows
    for i in _pick(n, _count(n, fraction, rng), rng):
        past = rows[i % len(rows)]
        for j in cols:
            name, v = table.names[j], table.columns[j][i]
            if name in past and is_scalar(v) and is_scalar(past[name]) and not cells_equal(past[name], v):
                out.columns[j][i] = past[name]
                changed += 1
    return Mutation(out, changed, True, note)


def truncate_batch(
    table: FeatureTable, *, rng: np.random.Generator, features: Sequence[str] | None = None, fraction: float = 1.0,
    keep_min: int = 0, where: Literal["random", "tail"] = "random",
) -> Mutation:
    """Partial data: drop a ``fraction`` of the rows (at random, or the last ones), keeping at least
    ``keep_min``. ``features`` is not used."""
    _check_fraction(fraction)
    if where not in ("random", "tail") or keep_min < 0:
        raise ValueError(f"bad truncate_batch parameters: where={where!r} keep_min={keep_min!r}")
    n = table.n_rows
    if n <= keep_min:
        return _na(table, f"the batch has {n} row(s); keep_min is {keep_min}")
    k = min(_count(n, fraction, rng), n - keep_min)
    drop = set(range(n - k, n)) if where == "tail" else set(_pick(n, k, rng))
    keep = [i for i in range(n) if i not in drop]
    origins = table.row_origins()
    out = FeatureTable(
        names=list(table.names), columns=[[c[i] for i in keep] for c in table.columns], dtypes=list(table.dtypes),
        named=table.named, col_origin=table.col_origins(), row_origin=[origins[i] for i in keep],
    )
    return Mutation(out, k, True, "")


def _with_rows(table: FeatureTable, order: Sequence[int]) -> FeatureTable:
    """``table`` with its rows in ``order`` (an index may repeat: a duplicated row keeps its origin)."""
    origins = table.row_origins()
    return FeatureTable(
        names=list(table.names), columns=[[c[i] for i in order] for c in table.columns], dtypes=list(table.dtypes),
        named=table.named, col_origin=table.col_origins(), row_origin=[origins[i] for i in order],
    )


def reorder_rows(
    table: FeatureTable, *, rng: np.random.Generator, features: Sequence[str] | None = None, fraction: float = 1.0,
) -> Mutation:
    """Data out of order: a ``fraction`` of the rows trade places among the positions they hold (every chosen
    row moves when there are two or more). ``features`` is not used."""
    _check_fraction(fraction)
    n = table.n_rows
    chosen = _pick(n, _count(n, fraction, rng), rng)
    if len(chosen) < 2:
        return _na(table, f"{len(chosen)} row(s) chosen: nothing to reorder")
    # A random rotation of a random permutation: no chosen row keeps its place.
    perm = [chosen[int(k)] for k in rng.permutation(len(chosen))]
    shift = 1 + int(rng.integers(len(chosen) - 1))
    order = positions(n)
    for k in range(len(perm)):
        order[perm[k]] = perm[(k + shift) % len(perm)]
    return Mutation(_with_rows(table, order), len(chosen), True, "")


def duplicate_rows(
    table: FeatureTable, *, rng: np.random.Generator, features: Sequence[str] | None = None, fraction: float = 1.0,
) -> Mutation:
    """Duplicated records: a ``fraction`` of the rows appear twice, the copy right after the row.
    ``features`` is not used."""
    _check_fraction(fraction)
    n = table.n_rows
    chosen = set(_pick(n, _count(n, fraction, rng), rng))
    if not chosen:
        return _na(table, "no row chosen")
    order: list[int] = []
    for i in range(n):
        order.append(i)
        if i in chosen:
            order.append(i)
    return Mutation(_with_rows(table, order), len(chosen), True, "")


MUTATIONS: Mapping[str, Callable[..., Mutation]] = {
    "nan": nan, "out_of_range": out_of_range, "shift": shift, "drop_feature": drop_feature,
    "rename_feature": rename_feature, "reorder_features": reorder_features, "type_swap": type_swap,
    "default": default, "stale": stale, "truncate_batch": truncate_batch, "reorder_rows": reorder_rows,
    "duplicate_rows": duplicate_rows,
}
