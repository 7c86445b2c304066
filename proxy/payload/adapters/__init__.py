"""Payload adapters, one module per wire format, and their detection from the request path, headers and body.

The registry below is the only list of formats: detection walks it, and the policy's ``payload.format``
choices and help derive from it. A new format is one module with a ``BaseAdapter`` subclass (its ``name``,
``PATH``, ``sniff``, ``READS`` and readers/writers) and one line here. Order matters only for sniffing a body
whose path says nothing: the first adapter whose ``sniff`` accepts it wins.
"""

from __future__ import annotations

from typing import Any

from .base import (
    DEFAULT_OPTIONS,
    PREDICTIONS,
    REQUEST,
    RESPONSE,
    STREAM,
    Adapter,
    AdapterOptions,
    BaseAdapter,
    Headers,
    Parsed,
    Predictions,
)
from .feast import FeastAdapter
from .generic import GenericAdapter
from .mlflow import MLflowAdapter
from .mlflow_registry import MlflowRegistryAdapter
from .openai import OpenAIAdapter
from .v1 import V1Adapter
from .v2 import V2Adapter, binary_header_length, inline_binary, pack_binary, split_binary
from .v2_grpc import V2GrpcAdapter

__all__ = [
    "ADAPTERS", "DEFAULT_OPTIONS", "PREDICTIONS", "REQUEST", "RESPONSE", "STREAM", "Adapter", "AdapterOptions",
    "BaseAdapter", "FeastAdapter", "GenericAdapter", "MLflowAdapter", "MlflowRegistryAdapter", "OpenAIAdapter",
    "Parsed", "Predictions", "V1Adapter", "V2Adapter", "V2GrpcAdapter", "binary_header_length", "detect", "formats",
    "get_adapter", "inline_binary", "pack_binary", "split_binary",
]

ADAPTERS: dict[str, BaseAdapter] = {a.name: a for a in (
    V2Adapter(),
    V2GrpcAdapter(),
    MLflowAdapter(),
    MlflowRegistryAdapter(),
    V1Adapter(),
    FeastAdapter(),
    OpenAIAdapter(),
    GenericAdapter(),
)}


def formats() -> tuple[str, ...]:
    """What the policy's ``payload.format`` may say: ``auto`` (detect) or an adapter's name."""
    return ("auto", *ADAPTERS)


def get_adapter(name: str) -> BaseAdapter:
    """The adapter registered as ``name``; KeyError otherwise."""
    return ADAPTERS[name]


def detect(
    path: str, doc: Any, headers: Headers | None = None, *, options: AdapterOptions | None = None,
) -> BaseAdapter | None:
    """The adapter for an exchange, from the registry's declarations, in this order:

    1. an adapter the experiment's options choose (generic, when pointers are set: the policy said where to look);
    2. the request path (``PATH``, searched without the query);
    3. the headers (``sniff_headers``: the V2 binary extension's header);
    4. the body (``sniff``), in registry order.

    A path match wins even if the body turns out not to parse (``read`` returns None: pass through).
    """
    adapters = ADAPTERS.values()
    if options is not None:
        for adapter in adapters:
            if adapter.claims(options):
                return adapter
    p = path.split("?", 1)[0] if isinstance(path, str) else ""
    for adapter in adapters:
        pattern = adapter.PATH
        if pattern is not None and pattern.search(p) is not None:
            return adapter
    if headers is not None:
        for adapter in adapters:
            if adapter.sniff_headers(headers):
                return adapter
    if not isinstance(doc, dict):
        return None
    for adapter in adapters:
        if adapter.sniff(doc):
            return adapter
    return None
