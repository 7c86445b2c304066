"""JSON as model servers speak it: NaN and Infinity tokens on the way in, null or the tokens on the way out."""

from __future__ import annotations

import json
import math
from typing import Any

import orjson

__all__ = ["dumps", "loads"]


def _nan_to_null(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _nan_to_null(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_nan_to_null(v) for v in value]
    return value


def dumps(doc: Any, *, nan_token: bool = False) -> bytes:
    """Compact JSON. NaN and ±Infinity become ``null`` (orjson), or, with ``nan_token``, the bare tokens
    ``NaN``/``Infinity``/``-Infinity`` that TF Serving, MLflow and KServe V2 accept (MLServer and KServe V1
    reject them at the JSON parser). Integers past 64 bits fall back to the stdlib encoder."""
    if not nan_token:
        try:
            return orjson.dumps(doc)
        except TypeError:
            doc = _nan_to_null(doc)
    return json.dumps(doc, allow_nan=True, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def loads(body: bytes | str) -> Any:
    """A JSON body; accepts the ``NaN``/``Infinity`` tokens some clients send (orjson refuses them).
    ValueError when the body is not JSON."""
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError:
        pass
    try:
        return json.loads(body)
    except (json.JSONDecodeError, UnicodeDecodeError, RecursionError) as e:
        raise ValueError(f"not JSON: {e}") from None
