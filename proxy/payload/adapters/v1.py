"""KServe V1 and TF Serving REST: ``POST /v1/models/<m>[/versions/<v>]:predict`` (and ``:explain``).

Requests hold ``instances`` (row format) or ``inputs`` (columnar format), never both:

- ``v1.rows``: ``instances``/``inputs`` as equal-length lists (unnamed: names from the policy; no rename);
- ``v1.scalars``: ``instances`` as one value per row (a single unnamed feature);
- ``v1.records``: ``instances`` as objects (named; rename changes keys, drop deletes them, reorder reorders);
- ``v1.columns``: ``inputs`` as an object of equal-length lists (TF columnar; named), or KServe's single
  instance holding a dict of lists (``{"instances":[{"a":[..],"b":[..]}]}``, read as a DataFrame).

Responses: ``predictions`` (a list, one item per row: scalar, ``[x]``, a vector, or an object of named
outputs) or ``outputs`` (a list like ``predictions``, or an object of per-row lists). Every other field
(``signature_name``, ``parameters``, …) is kept.
"""

from __future__ import annotations

import re
from typing import Any, ClassVar

from ..table import FeatureTable
from .base import (
    DEFAULT_OPTIONS,
    AdapterOptions,
    BaseAdapter,
    Parsed,
    Predictions,
    RowsDetail,
    clone,
    read_pred_items,
    read_rows,
    write_pred_items,
    write_rows,
)

__all__ = ["V1Adapter", "read_keyed_predictions", "read_keyed_rows", "write_keyed_predictions"]

_PATH = re.compile(r"(?:^|/)v1/models/[^/:]+(?:/versions/[^/:]+)?:(?:predict|explain)$")
_PREFIX = "v1"


def read_keyed_rows(
    doc: Any, key: str, options: AdapterOptions, prefix: str, *, allow_columns_in_list: bool,
) -> Parsed | None:
    """The table under ``doc[key]`` in one of the shared shapes, as layout ``<prefix>.<shape>``."""
    if not isinstance(doc, dict) or key not in doc:
        return None
    found = read_rows(doc[key], options.feature_names, key, allow_columns_in_list=allow_columns_in_list)
    if found is None:
        return None
    table, detail = found
    kind = "columns" if detail.kind == "columns_in_list" else detail.kind
    return Parsed(doc=doc, table=table, layout=f"{prefix}.{kind}", detail=(key, detail))


def write_keyed_rows(parsed: Parsed, table: FeatureTable) -> Any:
    key, detail = parsed.detail
    assert isinstance(detail, RowsDetail)
    value = write_rows(detail, table)
    return {k: (value if k == key else clone(v)) for k, v in parsed.doc.items()}


def read_keyed_predictions(doc: Any, options: AdapterOptions) -> Predictions | None:
    """``predictions`` or ``outputs`` of a V1/TF Serving/MLflow response (a bare list is ``predictions``)."""
    if isinstance(doc, list):
        doc = {"predictions": doc}
    if not isinstance(doc, dict):
        return None
    out: Predictions | None = None
    for key in ("predictions", "outputs"):
        value = doc.get(key)
        if isinstance(value, list):
            out = read_pred_items(value, key)
        elif isinstance(value, dict) and key == "outputs":
            out = {}
            for name, items in value.items():
                got = read_pred_items(items, name)
                if got is not None and set(got) == {name}:
                    out[name] = got[name]
        if out:
            break
    if not out:
        return None
    if options.output is not None:
        return {options.output: out[options.output]} if options.output in out else None
    return out


def write_keyed_predictions(doc: Any, preds: Predictions) -> Any | None:
    bare = isinstance(doc, list)
    d: Any = {"predictions": doc} if bare else doc
    if not isinstance(d, dict):
        return None
    for key in ("predictions", "outputs"):
        value = d.get(key)
        new: Any = None
        if isinstance(value, list) and read_pred_items(value, key):
            new = write_pred_items(value, preds, key)
        elif isinstance(value, dict) and key == "outputs" and value:
            if not set(preds) <= set(value):
                return None
            new = {}
            for name, items in value.items():
                if name in preds:
                    if not isinstance(items, list):
                        return None
                    w = write_pred_items(items, {name: preds[name]}, name)
                    if w is None:
                        return None
                    new[name] = w
                else:
                    new[name] = clone(items)
        else:
            continue
        if new is None:
            return None
        if bare:
            return new
        return {k: (new if k == key else clone(v)) for k, v in d.items()}
    return None


class V1Adapter(BaseAdapter):
    name: ClassVar[str] = "v1"
    HELP: ClassVar[str] = "KServe V1 / TF Serving: instances or inputs in, predictions out."
    PATH: ClassVar[re.Pattern[str] | None] = _PATH

    def sniff(self, doc: Any) -> bool:
        return isinstance(doc, dict) and "instances" in doc

    def read_strict(self, doc: Any, options: AdapterOptions) -> Parsed | None:
        if not isinstance(doc, dict) or ("instances" in doc) == ("inputs" in doc):
            return None
        key = "instances" if "instances" in doc else "inputs"
        return read_keyed_rows(doc, key, options, _PREFIX, allow_columns_in_list=key == "instances")

    def write(self, parsed: Parsed, table: FeatureTable, options: AdapterOptions = DEFAULT_OPTIONS) -> Any:
        return write_keyed_rows(parsed, table)

    def predictions_strict(self, doc: Any, options: AdapterOptions) -> Predictions | None:
        return read_keyed_predictions(doc, options)

    def write_predictions_strict(self, doc: Any, preds: Predictions, options: AdapterOptions) -> Any | None:
        return write_keyed_predictions(doc, preds)
