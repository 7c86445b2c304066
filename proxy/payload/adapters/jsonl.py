"""JSON Lines (NDJSON): a data feed of one JSON object per line, as a response to a GET.

Recognised by Content-Type (``application/x-ndjson``, ``application/jsonl``, ``application/jsonlines``,
``application/x-jsonlines``) or, when the Content-Type is generic or ``application/json``, the path's suffix
(``.jsonl``, ``.ndjson``); the body must start with ``{``. Read as ``jsonl.records``: one row per non-blank
line, one column per key (in first-seen order; a key a line lacks is a ``MISSING`` cell). A line that is not a
JSON object, or a cell that is not a JSON value, and the body is not read (it passes through, counted).

Written back with the same line ending and final line break: a row no fault changed (same origin, every cell
as read, no column renamed or dropped) keeps its original line byte for byte; a changed row is compact JSON
with its keys in their original order (NaN and infinities as null). Blank lines are not kept.
"""

from __future__ import annotations

from typing import Any, ClassVar, Final

from ..codec import loads
from ..table import FeatureTable, resolve_col_origin, resolve_row_origin
from ..tabular import GENERIC_MEDIA, body_start, json_bytes, null_nonfinite
from .base import (
    DEFAULT_OPTIONS,
    RESPONSE,
    AdapterOptions,
    BaseAdapter,
    Parsed,
    Predictions,
    RowsDetail,
    read_rows,
    write_rows,
)

__all__ = ["JsonLinesAdapter"]

MEDIA: Final = frozenset({"application/x-ndjson", "application/jsonl", "application/jsonlines",
                          "application/x-jsonlines"})
SUFFIXES: Final = frozenset({".jsonl", ".ndjson"})


class JsonLinesDetail:
    __slots__ = ("final", "lines", "rows", "terminator")

    def __init__(self, lines: list[bytes], rows: RowsDetail, terminator: bytes, final: bool) -> None:
        self.lines = lines  # each row's line as read
        self.rows = rows  # the RowsDetail of the records
        self.terminator = terminator
        self.final = final


class JsonLinesAdapter(BaseAdapter):
    name: ClassVar[str] = "jsonl"
    HELP: ClassVar[str] = "JSON Lines data feeds (responses): one object per line; unchanged lines kept byte for byte."
    READS: ClassVar[frozenset[str]] = frozenset({RESPONSE})
    RAW: ClassVar[bool] = True

    def sniff_response(self, suffix: str, media_type: str, body: bytes) -> bool:
        known = media_type in MEDIA or (
            suffix in SUFFIXES and (media_type in GENERIC_MEDIA or media_type == "application/json"))
        return known and body_start(body) == 0x7B  # "{"

    def read_strict(self, doc: Any, options: AdapterOptions) -> Parsed | None:
        return None

    def read_response_strict(self, doc: Any, options: AdapterOptions) -> Parsed | None:
        if not isinstance(doc, bytes):
            return None
        body: bytes = doc[3:] if doc.startswith(b"\xef\xbb\xbf") else doc
        nl = body.find(b"\n")
        terminator = b"\r\n" if nl > 0 and body[nl - 1:nl] == b"\r" else b"\n"
        final = body.endswith(b"\n")
        lines = [ln for ln in body.split(b"\n") if ln.strip()]
        records: list[Any] = []
        for ln in lines:
            rec = loads(ln)
            if not isinstance(rec, dict):
                return None
            records.append(rec)
        found = read_rows(records, options.feature_names, "row", allow_scalars=False)
        if found is None:
            return None
        table, detail = found
        if detail.kind != "records":
            return None
        return Parsed(doc=records, table=table, layout="jsonl.records", direction=RESPONSE,
                      detail=JsonLinesDetail([ln.rstrip(b"\r") for ln in lines], detail, terminator, final))

    def write(self, parsed: Parsed, table: FeatureTable, options: AdapterOptions = DEFAULT_OPTIONS) -> Any:
        detail: JsonLinesDetail = parsed.detail
        records = write_rows(detail.rows, table)
        rows = resolve_row_origin(table, len(detail.lines))
        # Columns as read, in order: a row whose cells are its own keeps its line.
        same_columns = table.names == detail.rows.names and resolve_col_origin(table, detail.rows.names) == \
            list(range(len(detail.rows.names)))
        original = parsed.table.columns
        out: list[bytes] = []
        for i, rec in enumerate(records):
            r = rows[i]
            if same_columns and r is not None and all(
                    c[i] is o[r] or (type(c[i]) is type(o[r]) and c[i] == o[r])
                    for c, o in zip(table.columns, original, strict=True)):
                out.append(detail.lines[r])
            else:
                out.append(json_bytes(null_nonfinite(rec)))
        text = detail.terminator.join(out)
        return text + detail.terminator if detail.final and out else text

    def predictions_strict(self, doc: Any, options: AdapterOptions) -> Predictions | None:
        return None

    def write_predictions_strict(self, doc: Any, preds: Predictions, options: AdapterOptions) -> Any | None:
        return None

