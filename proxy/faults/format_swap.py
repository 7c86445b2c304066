"""``format_swap``: a data feed's file format changes silently: CSV served as JSON Lines or with another
delimiter, JSON served as CSV, Parquet as any of them.

The answer's table (read by the format adapters: CSV, JSON Lines, a JSON array of records, Parquet) is written
in the format ``to`` names: ``csv`` (``,``), ``tsv``, ``csv_semicolon``, ``csv_pipe``, ``jsonl`` or
``json_records``. CSV to CSV keeps each cell's text (re-quoted when it holds the new delimiter), its header row
and line ending; anything else is written afresh (``proxy.payload.tabular.render``: a header row, numbers in
their shortest form, missing cells empty or null). The Content-Type follows the new format (``content_type:
keep`` leaves the old label on the new bytes); ETag, Content-MD5 and checksum headers are fixed as for every
rewritten body (``feature_base.rewrite``). An answer already in the target format, or one no adapter reads
(counted), goes on as it came.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, Final

from ..declare.fields import Field
from ..payload import Parsed
from ..payload.tabular import render
from .base import Fault, FaultContext, Outcome, ResponseView
from .feature_base import rewrite

# to -> (format, delimiter, Content-Type)
TARGETS: Final = {
    "csv": ("csv", ",", b"text/csv; charset=utf-8"),
    "tsv": ("csv", "\t", b"text/tab-separated-values; charset=utf-8"),
    "csv_semicolon": ("csv", ";", b"text/csv; charset=utf-8"),
    "csv_pipe": ("csv", "|", b"text/csv; charset=utf-8"),
    "jsonl": ("jsonl", "", b"application/x-ndjson"),
    "json_records": ("json_records", "", b"application/json"),
}


def _requote(raw: str, delimiter: str) -> str:
    if raw[:1] != '"' and delimiter in raw:
        return '"' + raw + '"'
    return raw


def swapped(parsed: Parsed, to: str) -> bytes | None:
    """The table of ``parsed`` in the format ``to``; None when it already is in it."""
    fmt, delimiter, _ = TARGETS[to]
    layout = parsed.layout
    if layout == "csv.table":
        detail = parsed.detail
        if fmt == "csv":
            if detail.delimiter == delimiter:
                return None
            lines = [] if detail.header is None else [delimiter.join(_requote(c, delimiter) for c in detail.header)]
            for i in range(detail.n_rows):
                lines.append(delimiter.join(_requote(col[i], delimiter) for col in detail.raw))
            text = detail.terminator.join(lines) + (detail.terminator if detail.final and lines else "")
            return text.encode("utf-8")
    elif layout.split(".", 1)[0] == fmt:
        return None
    return render(parsed.table, fmt, delimiter or ",")


@dataclass(frozen=True, slots=True, kw_only=True)
class FormatSwap(Fault):
    type: ClassVar[str] = "format_swap"
    HELP: ClassVar[str] = ("A data feed's file format changes silently: the answer's table (CSV, JSON Lines, JSON "
                           "records, Parquet) served as `to` (CSV with another delimiter, JSON Lines, JSON).")
    FIELDS: ClassVar[tuple[Field, ...]] = (
        Field("to", "choice", default="jsonl", choices=tuple(TARGETS), help="The format the answer is served in."),
        Field("content_type", "choice", default="follow", choices=("follow", "keep"),
              help="follow: the Content-Type says the new format; keep: the old label on the new bytes."),
    )

    to: str = "jsonl"
    content_type: str = "follow"

    def apply(self, ctx: FaultContext) -> Outcome:
        ctx.on_response(lambda view: self._swap(view, ctx))
        return None

    def _swap(self, view: ResponseView, ctx: FaultContext) -> None:
        if not 200 <= view.status < 300 or view.status == 206:
            return
        parsed = ctx.payload().response_table(view.body, view.headers)
        if parsed is None:
            return
        body = swapped(parsed, self.to)
        if body is None:
            return
        rewrite(view, body)
        if self.content_type == "follow":
            view.set_header(b"Content-Type", TARGETS[self.to][2])
