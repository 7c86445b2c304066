"""Helpers shared by the payload tests."""

from __future__ import annotations

import math
from typing import Any

import orjson

from proxy.payload.table import MISSING, FeatureTable


def same(a: Any, b: Any) -> bool:
    """Strict equality of JSON values: object member order ignored; bool, int and float are distinct kinds;
    NaN equals NaN."""
    if type(a) is not type(b):
        return False
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    if isinstance(a, list):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, float) and math.isnan(a):
        return math.isnan(b)
    return bool(a == b)


def wire(doc: Any) -> Any:
    """What the upstream would parse: the doc through orjson (NaN becomes null)."""
    return orjson.loads(orjson.dumps(doc))


def nan_to_none(v: Any) -> Any:
    if isinstance(v, float) and math.isnan(v):
        return None
    if isinstance(v, list):
        return [nan_to_none(x) for x in v]
    return v


def cells(table: FeatureTable) -> list[list[Any]]:
    """Columns with NaN as None (as they come back after a trip through JSON) and MISSING kept."""
    return [[v if v is MISSING else nan_to_none(v) for v in c] for c in table.columns]


def same_cells(a: FeatureTable, b: FeatureTable) -> bool:
    return a.n_rows == b.n_rows and same(
        [[("<missing>" if v is MISSING else v) for v in c] for c in cells(a)],
        [[("<missing>" if v is MISSING else v) for v in c] for c in cells(b)],
    )
