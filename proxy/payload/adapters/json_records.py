"""A JSON array of records (``[{"a": 1, "b": "x"}, ...]``, pandas' ``orient="records"``): a data feed, as a
response to a GET.

Recognised by Content-Type ``application/json`` or, when the Content-Type is generic, the path's suffix
(``.json``), for a body that starts with ``[`` (a JSON object answer belongs to the other adapters). Read as
``json_records.records``: one row per object, one column per key (a key an object lacks is a ``MISSING`` cell).
Written back as compact JSON, every object's keys in their original order (NaN and infinities as null);
untouched cells keep their values and types (not their original spacing).
"""

from __future__ import annotations

from typing import Any, ClassVar, Final

from ..codec import loads
from ..table import FeatureTable
from ..tabular import GENERIC_MEDIA, body_start, json_bytes, null_nonfinite
from .base import DEFAULT_OPTIONS, RESPONSE, AdapterOptions, BaseAdapter, Parsed, Predictions, read_rows, write_rows

__all__ = ["JsonRecordsAdapter"]

SUFFIXES: Final = frozenset({".json"})


class JsonRecordsAdapter(BaseAdapter):
    name: ClassVar[str] = "json_records"
    HELP: ClassVar[str] = "A JSON array of records as a data feed (responses)."
    READS: ClassVar[frozenset[str]] = frozenset({RESPONSE})
    RAW: ClassVar[bool] = True

    def sniff_response(self, suffix: str, media_type: str, body: bytes) -> bool:
        known = media_type == "application/json" or (media_type in GENERIC_MEDIA and suffix in SUFFIXES)
        return known and body_start(body) == 0x5B  # "["

    def read_strict(self, doc: Any, options: AdapterOptions) -> Parsed | None:
        return None

    def read_response_strict(self, doc: Any, options: AdapterOptions) -> Parsed | None:
        if not isinstance(doc, bytes):
            return None
        records = loads(doc[3:] if doc.startswith(b"\xef\xbb\xbf") else doc)
        if not isinstance(records, list) or not records or not isinstance(records[0], dict):
            return None
        found = read_rows(records, options.feature_names, "row", allow_scalars=False)
        if found is None or found[1].kind != "records":
            return None
        table, detail = found
        return Parsed(doc=records, table=table, layout="json_records.records", detail=detail, direction=RESPONSE)

    def write(self, parsed: Parsed, table: FeatureTable, options: AdapterOptions = DEFAULT_OPTIONS) -> Any:
        records = write_rows(parsed.detail, table)
        return json_bytes([null_nonfinite(rec) for rec in records])

    def predictions_strict(self, doc: Any, options: AdapterOptions) -> Predictions | None:
        return None

    def write_predictions_strict(self, doc: Any, preds: Predictions, options: AdapterOptions) -> Any | None:
        return None
