"""The payload layer: read feature tables out of inference requests, corrupt them, write them back.

No networking here. The flow the proxy runs for one chaos request::

    doc = loads(body)                                      # ValueError: pass through, count as unparsed
    adapter = detect(path, doc, headers) or get_adapter(experiment_adapter)
    parsed = adapter.read(doc, options)                    # None: pass through, count as unparsed
    m = mutate.nan(parsed.table, features=..., fraction=..., rng=rng)
    if m.applicable and m.changed:
        body = dumps(adapter.write(parsed, m.table, options), nan_token=policy_says_so)

V2 binary-extension bodies: ``split_binary`` → ``inline_binary`` → read/mutate/write as above →
``pack_binary`` (which gives the new ``Inference-Header-Content-Length``).
"""

from __future__ import annotations

import json
import math
from typing import Any

import orjson

from . import mutate
from .adapters import (
    ADAPTERS,
    DEFAULT_OPTIONS,
    Adapter,
    AdapterOptions,
    BaseAdapter,
    Parsed,
    Predictions,
    binary_header_length,
    detect,
    get_adapter,
    inline_binary,
    pack_binary,
    split_binary,
)
from .jsonpatch import apply_patch, parse_patch, parse_pointer, resolve
from .mutate import MUTATIONS, Mutation
from .predictions import perturb, read_predictions, write_predictions
from .stale import StaleCache
from .table import MISSING, FeatureTable

__all__ = [
    "ADAPTERS", "DEFAULT_OPTIONS", "MISSING", "MUTATIONS", "Adapter", "AdapterOptions", "BaseAdapter", "FeatureTable",
    "Mutation", "Parsed", "Predictions", "StaleCache", "apply_patch", "binary_header_length", "detect", "dumps",
    "get_adapter", "inline_binary", "loads", "mutate", "pack_binary", "parse_patch", "parse_pointer", "perturb",
    "read_predictions", "resolve", "split_binary", "write_predictions",
]


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
