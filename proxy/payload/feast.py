"""Faults only a Feast answer can carry: statuses, event timestamps and names that no longer fit the values.

Each function takes a ``feast.response`` ``Parsed`` (``FeastAdapter.read_response_strict``) and returns a
``FeastChange``: a new ``Parsed`` whose ``FeastDetail`` holds the statuses, timestamps or feature names to write,
and the table to write with it (the input is never changed), with the count of cells or names it changed.
The adapter's ``write`` then turns them into the answer. Row and feature picks follow ``mutate``'s rules
(``fraction`` of rows rounded at random so the expected count is exact; of features rounded half up, at least
one), all drawn from ``rng``.

- ``not_found``: a materialization that never ran: values null, status NOT_FOUND, timestamp the epoch, for a
  fraction of the entity rows (``by="rows"``) or of the features (``by="features"``).
- ``misalign``: a feature-view version mismatch: ``metadata.feature_names`` no longer matches ``results``:
  the selected names rotate by one (``rotate``: every value under its neighbour's name), or the first
  selected name is missing (``drop_name``: the names after it slide onto the wrong results, one short).
- ``stale``: feature store lag on the answer: in a fraction of the rows, the selected features take the
  values, statuses and timestamps an earlier answer gave for the same entity (``StaleCache``, bounded memory),
  event timestamps aged by ``age`` seconds, optionally with status OUTSIDE_MAX_AGE.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Final, Literal

import numpy as np

from .adapters.base import Parsed
from .adapters.feast import EPOCH, NOT_FOUND, OUTSIDE_MAX_AGE, FeastDetail, age_timestamp
from .mutate import _candidates, _check_fraction, _count, _count_cols, _pick
from .stale import StaleCache
from .table import FeatureTable, cells_equal

__all__ = ["FeastChange", "misalign", "not_found", "stale"]

# Keys of a cached row beside the feature's own name: its status and its event timestamp.
_STATUS: Final = "\x00status:"
_TS: Final = "\x00ts:"


class FeastChange:
    __slots__ = ("changed", "note", "parsed", "table")

    def __init__(self, parsed: Parsed, table: FeatureTable, changed: int, note: str = "") -> None:
        self.parsed = parsed
        self.table = table
        self.changed = changed
        self.note = note

    def __repr__(self) -> str:
        return f"FeastChange(changed={self.changed!r}, note={self.note!r})"


def _detail(parsed: Parsed) -> FeastDetail | None:
    detail = parsed.detail
    return detail if parsed.layout == "feast.response" and isinstance(detail, FeastDetail) else None


def _overrides(table: FeatureTable) -> tuple[list[list[str | None]], list[list[str | None]]]:
    n = table.n_rows
    return [[None] * n for _ in table.names], [[None] * n for _ in table.names]


def _with(parsed: Parsed, detail: FeastDetail, table: FeatureTable) -> Parsed:
    return Parsed(parsed.doc, table, parsed.layout, detail, parsed.direction)


def not_found(
    parsed: Parsed, *, rng: np.random.Generator, features: Sequence[str] | None = None, fraction: float = 1.0,
    by: Literal["rows", "features"] = "rows",
) -> FeastChange | None:
    """Values null, NOT_FOUND, epoch timestamp: every selected feature of a ``fraction`` of the rows, or every
    row of a ``fraction`` of the selected features. None when the answer is not Feast's or nothing is
    selected."""
    _check_fraction(fraction)
    if by not in ("rows", "features"):
        raise ValueError(f"by must be 'rows' or 'features', not {by!r}")
    d = _detail(parsed)
    if d is None:
        return None
    table = parsed.table
    cols, note = _candidates(table, features)
    if not cols:
        return None
    n = table.n_rows
    if by == "rows":
        rows, chosen = _pick(n, _count(n, fraction, rng), rng), cols
    else:
        rows, chosen = list(range(n)), [cols[c] for c in _pick(len(cols), _count_cols(len(cols), fraction), rng)]
    out = table.copy()
    statuses, stamps = _overrides(out)
    changed = 0
    for j in chosen:
        for i in rows:
            if out.columns[j][i] is not None or d.status(j, i) != NOT_FOUND:
                changed += 1
            out.columns[j][i] = None
            statuses[j][i] = NOT_FOUND
            stamps[j][i] = EPOCH
    detail = d.copy()
    detail.statuses, detail.timestamps = statuses, stamps
    return FeastChange(_with(parsed, detail, out), out, changed, note)


def misalign(
    parsed: Parsed, *, rng: np.random.Generator, features: Sequence[str] | None = None, fraction: float = 1.0,
    mode: Literal["rotate", "drop_name"] = "rotate",
) -> FeastChange | None:
    """``metadata.feature_names`` no longer matching ``results``. ``rotate``: a ``fraction`` of the selected
    features (at least two) trade names, each taking the next one's; ``drop_name``: the first of them loses its
    name, so every later name sits on the result before its own and the last result has none. Values,
    statuses and timestamps stay where they were. None when not applicable (not Feast's, too few features)."""
    _check_fraction(fraction)
    if mode not in ("rotate", "drop_name"):
        raise ValueError(f"mode must be 'rotate' or 'drop_name', not {mode!r}")
    d = _detail(parsed)
    if d is None:
        return None
    table = parsed.table
    cols, note = _candidates(table, features)
    k = _count_cols(len(cols), fraction)
    if mode == "rotate":
        k = max(k, 2)
        if len(cols) < 2:
            return None
    elif not cols:
        return None
    chosen = [cols[c] for c in _pick(len(cols), k, rng)]
    names = list(table.names)
    if mode == "rotate":
        for a, b in zip(chosen, chosen[1:] + chosen[:1], strict=True):
            names[a] = table.names[b]
    else:
        del names[chosen[0]]
    detail = d.copy()
    detail.feature_names = d.keys + names
    same = table.copy()
    return FeastChange(_with(parsed, detail, same), same, len(chosen), note)


def stale(
    parsed: Parsed, *, rng: np.random.Generator, cache: StaleCache, features: Sequence[str] | None = None,
    fraction: float = 1.0, age: float | None = None, age_requests: int | None = None,
    age_seconds: float | None = None, outside_max_age: bool = False,
) -> FeastChange | None:
    """Feature store lag per entity row. Every row of the answer is remembered under its entity key (after the
    lookup); in a ``fraction`` of the rows, each selected feature takes the value, status and timestamp the
    same entity got ``age_requests`` answers or ``age_seconds`` ago, when the cache has one; then its timestamp
    is aged by ``age`` seconds, and with ``outside_max_age`` a cell holding a value gets OUTSIDE_MAX_AGE.
    None when the answer is not Feast's or nothing is selected."""
    _check_fraction(fraction)
    d = _detail(parsed)
    if d is None:
        return None
    table = parsed.table
    cols, note = _candidates(table, features)
    if not cols:
        return None
    n = table.n_rows
    picked = _pick(n, _count(n, fraction, rng), rng)
    keys = [d.row_key(i) for i in range(n)]
    # Look every picked row up before remembering this answer: "earlier" is an earlier answer, not an earlier
    # row of this one (a request may name one entity twice).
    past = {i: cache.get(keys[i], age_seconds=age_seconds, age_requests=age_requests) for i in picked}
    for i in range(n):
        row: dict[str, Any] = {}
        for j in range(table.n_cols):
            name = table.names[j]
            row[name] = table.columns[j][i]
            row[_STATUS + name] = d.status(j, i)
            row[_TS + name] = d.timestamp(j, i)
        cache.put(keys[i], [row])
    out = table.copy()
    statuses, stamps = _overrides(out)
    changed = 0
    for i in picked:
        rows = past[i]
        old = rows[0] if rows else None
        for j in cols:
            name = table.names[j]
            value, status, ts = table.columns[j][i], d.status(j, i), d.timestamp(j, i)
            if old is not None and name in old:
                value, status, ts = old[name], old.get(_STATUS + name, status), old.get(_TS + name, ts)
            if age:
                ts = age_timestamp(ts, age)
            if outside_max_age and value is not None:
                status = OUTSIDE_MAX_AGE
            if not (cells_equal(value, table.columns[j][i]) and status == d.status(j, i)
                    and ts == d.timestamp(j, i)):
                changed += 1
            out.columns[j][i] = value
            statuses[j][i] = status
            stamps[j][i] = ts
    detail = d.copy()
    detail.statuses, detail.timestamps = statuses, stamps
    return FeastChange(_with(parsed, detail, out), out, changed, note)
