"""Generic JSON: the policy says where the features and predictions are, as RFC 6901 pointers.

``features_pointer`` points at rows (a list of lists: ``generic.rows``, unnamed, names from the policy; a list
of objects: ``generic.records``; a list of scalars: ``generic.scalars``) or at columns (an object of lists:
``generic.columns``). ``predictions_pointer`` points at one item per row (scalar, ``[x]``, vector or object of
named outputs) or an object of per-row lists. Everything outside the pointed-at value is kept.
"""

from __future__ import annotations

from typing import Any, ClassVar

from ..jsonpatch import resolve, set_pointer
from ..table import FeatureTable
from .base import (
    DEFAULT_OPTIONS,
    AdapterOptions,
    BaseAdapter,
    Parsed,
    Predictions,
    read_pred_items,
    read_rows,
    write_pred_items,
    write_rows,
)

__all__ = ["GenericAdapter"]


def _at(doc: Any, pointer: str | None) -> tuple[bool, Any]:
    if pointer is None:
        return False, None
    try:
        return True, resolve(doc, pointer)
    except ValueError:
        return False, None


class GenericAdapter(BaseAdapter):
    name: ClassVar[str] = "generic"
    HELP: ClassVar[str] = "Any JSON: the features and predictions where payload.features_pointer and " \
        "predictions_pointer point."

    def claims(self, options: AdapterOptions) -> bool:
        # Never detected from a path or a body: used when the policy configures pointers (it said where to
        # look) or names this adapter.
        return bool(options.features_pointer or options.predictions_pointer)

    def read_strict(self, doc: Any, options: AdapterOptions) -> Parsed | None:
        ok, value = _at(doc, options.features_pointer)
        if not ok:
            return None
        base = (options.features_pointer or "").rsplit("/", 1)[-1] or "features"
        found = read_rows(value, options.feature_names, base)
        if found is None:
            return None
        table, detail = found
        kind = "columns" if detail.kind == "columns_in_list" else detail.kind
        return Parsed(doc=doc, table=table, layout=f"generic.{kind}", detail=(options.features_pointer, detail))

    def write(self, parsed: Parsed, table: FeatureTable, options: AdapterOptions = DEFAULT_OPTIONS) -> Any:
        pointer, detail = parsed.detail
        return set_pointer(parsed.doc, pointer, write_rows(detail, table))

    def predictions_strict(self, doc: Any, options: AdapterOptions) -> Predictions | None:
        ok, value = _at(doc, options.predictions_pointer)
        if not ok:
            return None
        out: Predictions | None
        if isinstance(value, dict):
            out = {}
            for name, items in value.items():
                got = read_pred_items(items, name)
                if got is not None and set(got) == {name}:
                    out[name] = got[name]
        else:
            base = (options.predictions_pointer or "").rsplit("/", 1)[-1] or "predictions"
            out = read_pred_items(value, base)
        if not out:
            return None
        if options.output is not None:
            return {options.output: out[options.output]} if options.output in out else None
        return out

    def write_predictions_strict(self, doc: Any, preds: Predictions, options: AdapterOptions) -> Any | None:
        ok, value = _at(doc, options.predictions_pointer)
        if not ok or options.predictions_pointer is None:
            return None
        new: Any
        if isinstance(value, dict):
            if not set(preds) <= set(value):
                return None
            new = {}
            for name, items in value.items():
                if name in preds:
                    w = write_pred_items(items, {name: preds[name]}, name) if isinstance(items, list) else None
                    if w is None:
                        return None
                    new[name] = w
                else:
                    new[name] = items
        elif isinstance(value, list):
            base = options.predictions_pointer.rsplit("/", 1)[-1] or "predictions"
            new = write_pred_items(value, preds, base)
            if new is None:
                return None
        else:
            return None
        return set_pointer(doc, options.predictions_pointer, new)
