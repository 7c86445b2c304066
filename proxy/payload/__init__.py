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

from . import feast, mutate
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
from .codec import dumps, loads
from .jsonpatch import apply_patch, parse_patch, parse_pointer, resolve
from .mutate import MUTATIONS, Mutation
from .predictions import perturb, read_predictions, write_predictions
from .stale import StaleCache
from .table import MISSING, FeatureTable

__all__ = [
    "ADAPTERS", "DEFAULT_OPTIONS", "MISSING", "MUTATIONS", "Adapter", "AdapterOptions", "BaseAdapter", "FeatureTable",
    "Mutation", "Parsed", "Predictions", "StaleCache", "apply_patch", "binary_header_length", "detect", "dumps",
    "feast", "get_adapter", "inline_binary", "loads", "mutate", "pack_binary", "parse_patch", "parse_pointer",
    "perturb", "read_predictions", "resolve", "split_binary", "write_predictions",
]
