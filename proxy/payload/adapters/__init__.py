"""Payload adapters, one per wire format, and their detection from the request path, body and headers."""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any

from .base import DEFAULT_OPTIONS, Adapter, AdapterOptions, BaseAdapter, Parsed, Predictions
from .generic import GenericAdapter
from .mlflow import MLflowAdapter
from .v1 import V1Adapter
from .v2 import V2Adapter, inline_binary, pack_binary, split_binary

__all__ = [
    "ADAPTERS", "DEFAULT_OPTIONS", "Adapter", "AdapterOptions", "BaseAdapter", "GenericAdapter", "MLflowAdapter",
    "Parsed", "Predictions", "V1Adapter", "V2Adapter", "binary_header_length", "detect", "get_adapter",
    "inline_binary", "pack_binary", "split_binary",
]

ADAPTERS: dict[str, BaseAdapter] = {a.name: a for a in (V2Adapter(), V1Adapter(), MLflowAdapter(), GenericAdapter())}

_V2_PATH = re.compile(r"(?:^|/)v2/models/[^/]+(?:/versions/[^/]+)?/infer/?$")
_V1_PATH = re.compile(r"(?:^|/)v1/models/[^/:]+(?:/versions/[^/:]+)?:(?:predict|explain)$")
_MLFLOW_PATH = re.compile(r"(?:^|/)invocations/?$")
_BINARY_HEADER = "inference-header-content-length"

Headers = Mapping[str, str] | Mapping[bytes, bytes] | Iterable[tuple[str | bytes, str | bytes]]


def get_adapter(name: str) -> BaseAdapter:
    """The adapter registered as ``name`` ("v2", "v1", "mlflow", "generic"); KeyError otherwise."""
    return ADAPTERS[name]


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


def detect(
    path: str, doc: Any, headers: Headers | None = None, *, options: AdapterOptions | None = None,
) -> BaseAdapter | None:
    """The adapter for a request: from the path first, then the headers, then the body's keys.

    - V2 for ``/v2/models/<m>[/versions/<v>]/infer``, a binary-extension header, or ``inputs`` as a list of
      objects with ``name``/``shape``/``datatype``;
    - V1 for ``/v1/models/<m>[/versions/<v>]:predict`` (or ``:explain``), or an ``instances`` key;
    - MLflow for ``/invocations`` or a ``dataframe_split``/``dataframe_records`` key;
    - generic only when ``options`` carry a ``features_pointer`` or ``predictions_pointer`` (it then wins:
      the policy said where to look).

    A path match wins even if the body turns out not to parse (``read`` returns None: pass through).
    """
    if options is not None and (options.features_pointer or options.predictions_pointer):
        return ADAPTERS["generic"]
    p = path.split("?", 1)[0] if isinstance(path, str) else ""
    if _V2_PATH.search(p):
        return ADAPTERS["v2"]
    if _V1_PATH.search(p):
        return ADAPTERS["v1"]
    if _MLFLOW_PATH.search(p):
        return ADAPTERS["mlflow"]
    if binary_header_length(headers) is not None:
        return ADAPTERS["v2"]
    if not isinstance(doc, dict):
        return None
    if ADAPTERS["v2"].matches("", doc):
        return ADAPTERS["v2"]
    if "dataframe_split" in doc or "dataframe_records" in doc:
        return ADAPTERS["mlflow"]
    if "instances" in doc:
        return ADAPTERS["v1"]
    return None
