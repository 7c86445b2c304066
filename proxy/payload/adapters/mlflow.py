"""MLflow scoring server: ``POST /invocations`` with exactly one of four keys (plus an optional ``params``).

- ``mlflow.split``: ``dataframe_split`` = ``{"columns": [...], "index"?: [...], "data": [[...], ...]}``; named
  by ``columns`` (unnamed when ``columns`` is absent: names from the policy, no rename). Truncation trims
  ``index`` to the rows kept; other keys of the object are kept.
- ``mlflow.records``: ``dataframe_records`` = a list of objects (named).
- ``mlflow.rows`` / ``mlflow.scalars`` / ``mlflow.records`` / ``mlflow.columns``: ``instances`` or ``inputs``,
  read like V1 (``inputs`` may be an object of lists or a list of rows).

A body with two of the keys is refused by MLflow (400): it is not read (passes through). Responses are
``{"predictions": ...}`` (MLflow 2+) or a bare list (1.x), read like V1.
"""

from __future__ import annotations

import re
from typing import Any, ClassVar

from ..table import FeatureTable, infer_dtype, origins, resolve_row_origin
from .base import DEFAULT_OPTIONS, AdapterOptions, BaseAdapter, Parsed, Predictions, clone, rows_of
from .v1 import read_keyed_predictions, read_keyed_rows, write_keyed_predictions, write_keyed_rows

__all__ = ["MLflowAdapter"]

_PATH = re.compile(r"(?:^|/)invocations/?$")
_KEYS = ("dataframe_split", "dataframe_records", "instances", "inputs")


class MLflowAdapter(BaseAdapter):
    name: ClassVar[str] = "mlflow"
    HELP: ClassVar[str] = "MLflow scoring server (/invocations): dataframe_split, dataframe_records, instances, inputs."
    PATH: ClassVar[re.Pattern[str] | None] = _PATH

    def sniff(self, doc: Any) -> bool:
        return isinstance(doc, dict) and ("dataframe_split" in doc or "dataframe_records" in doc)

    def read_strict(self, doc: Any, options: AdapterOptions) -> Parsed | None:
        if not isinstance(doc, dict):
            return None
        keys = [k for k in _KEYS if k in doc]
        if len(keys) != 1:
            return None
        key = keys[0]
        if key == "dataframe_split":
            return self._read_split(doc, options)
        if key == "dataframe_records":
            value = doc[key]
            if not isinstance(value, list) or not value or not all(isinstance(r, dict) for r in value):
                return None
        return read_keyed_rows(doc, key, options, "mlflow", allow_columns_in_list=False)

    def _read_split(self, doc: dict[str, Any], options: AdapterOptions) -> Parsed | None:
        split = doc["dataframe_split"]
        if not isinstance(split, dict):
            return None
        data = split.get("data")
        if not isinstance(data, list) or not all(isinstance(r, list) for r in data):
            return None
        columns = split.get("columns")
        if columns is None:
            width = len(data[0]) if data else 0
            named = False
            names = (list(options.feature_names) if len(options.feature_names) == width and width
                     else [f"dataframe_split[{j}]" for j in range(width)])
        elif isinstance(columns, list) and all(isinstance(c, str) for c in columns):
            named, names, width = True, list(columns), len(columns)
        else:
            return None
        if not all(len(r) == width for r in data):
            return None
        index = split.get("index")
        if index is not None and (not isinstance(index, list) or len(index) != len(data)):
            return None
        cols = [[r[j] for r in data] for j in range(width)]
        table = FeatureTable(
            names=names, columns=cols, dtypes=[infer_dtype(c) for c in cols], named=named,
            col_origin=origins(width), row_origin=origins(len(data)),
        )
        return Parsed(doc=doc, table=table, layout="mlflow.split", detail=("dataframe_split", names, len(data)))

    def write(self, parsed: Parsed, table: FeatureTable, options: AdapterOptions = DEFAULT_OPTIONS) -> Any:
        if parsed.layout != "mlflow.split":
            return write_keyed_rows(parsed, table)
        table.validate()
        _key, _names, n_orig = parsed.detail
        split = parsed.doc["dataframe_split"]
        rows = resolve_row_origin(table, n_orig)
        data = rows_of(table.columns, table.n_rows)
        new_split: dict[str, Any] = {}
        for k, v in split.items():
            if k == "columns":
                new_split[k] = list(table.names)
            elif k == "data":
                new_split[k] = data
            elif k == "index" and isinstance(v, list):
                new_split[k] = _index(v, rows)
            else:
                new_split[k] = clone(v)
        return {k: (new_split if k == "dataframe_split" else clone(v)) for k, v in parsed.doc.items()}

    def predictions_strict(self, doc: Any, options: AdapterOptions) -> Predictions | None:
        return read_keyed_predictions(doc, options)

    def write_predictions_strict(self, doc: Any, preds: Predictions, options: AdapterOptions) -> Any | None:
        return write_keyed_predictions(doc, preds)


def _index(index: list[Any], rows: list[int | None]) -> list[Any]:
    """The index entries of the rows kept; new rows get integers past the largest integer entry."""
    ints = [v for v in index if isinstance(v, int) and not isinstance(v, bool)]
    nxt = max(ints) + 1 if ints else len(index)
    out = []
    for r in rows:
        if r is not None:
            out.append(clone(index[r]))
        else:
            out.append(nxt)
            nxt += 1
    return out

