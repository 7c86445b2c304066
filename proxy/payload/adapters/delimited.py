"""CSV (and TSV, and ``;``/``|``-separated text): a data feed's table, as a response to a GET.

Recognised by Content-Type (``text/csv``, ``application/csv``, ``text/tab-separated-values``) or, when the
Content-Type says nothing specific, the path's suffix (``.csv``, ``.tsv``); an S3 GetObject of such a key
alike. Read as ``csv.table``:

- the delimiter is the one of ``, \\t ; |`` that splits the first lines into the same number (> 1) of cells,
  the most cells winning (``\\t`` first for ``.tsv``); a single column reads with ``,``;
- a header row is there when every cell of the first row is non-empty text, distinct, and not a number or a
  bool; without one, columns are named by the policy's ``payload.features`` (when as many) or ``column_<j>``;
- cells are typed (``tabular.type_cell``): integers, decimal numbers, true/false, empty → missing (None), any
  other text as text; a quoted cell is typed the same by its content (as pandas does), except ``""``, which is
  the empty string;
- quoting is RFC 4180's (``"`` around a cell, ``""`` inside it; line breaks inside quotes); a body with a bare
  quote inside an unquoted cell, rows of different lengths, or text that is not UTF-8 is not read (it passes
  through, counted).

Written back with the same delimiter, line ending (``\\r\\n`` or ``\\n``, of the first line), final line break
or its absence, byte order mark and header row: every cell a fault did not change keeps its original text byte
for byte (``007``, ``1.50``, ``"quoted"``); a changed cell is written by ``tabular.format_cell`` (quoted if it
was, or if it must be). CSV has no types: a number sent as a string (``type_swap``) is written quoted, which
readers that honour quoting (``csv.QUOTE_NONNUMERIC``) read as text and pandas reads as the number.

The text itself (delimiter, cells, types, header) is read by delimited_text.py. On a body without quotes,
``nan``, the structural faults and the faults that change their features' cells in place do not read the whole
table (delimited_bytes.py).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, ClassVar, Final

from ..mutate import Mutation
from ..table import FeatureTable, infer_dtype, origins, resolve_col_origin, resolve_row_origin
from ..tabular import GENERIC_MEDIA, format_cell
from . import delimited_bytes
from .base import DEFAULT_OPTIONS, RESPONSE, AdapterOptions, BaseAdapter, Parsed, Predictions
from .delimited_text import bool_spelling, cell_text, is_header, parse_csv, sniff_delimiter, type_column

__all__ = ["CsvAdapter", "CsvDetail", "parse_csv", "sniff_delimiter"]

MEDIA: Final = frozenset({"text/csv", "application/csv", "text/x-csv", "text/tab-separated-values"})
SUFFIXES: Final = frozenset({".csv", ".tsv"})
_BOM: Final = "\ufeff"


class CsvDetail:
    """How the body was written, to write it back the same way."""

    __slots__ = ("bom", "delimiter", "final", "header", "names", "n_rows", "raw", "terminator")

    def __init__(self, delimiter: str, terminator: str, final: bool, bom: bool, header: list[str] | None,
                 names: list[str], raw: list[list[str]], n_rows: int) -> None:
        self.delimiter = delimiter
        self.terminator = terminator
        self.final = final  # the body ends with a line break
        self.bom = bom
        self.header = header  # the header row's cells as written (None: no header row)
        self.names = names
        self.raw = raw  # per column, per row: each cell's text as written (quotes included)
        self.n_rows = n_rows

    def __repr__(self) -> str:
        return f"CsvDetail({self.delimiter!r}, {self.terminator!r}, header={self.header is not None})"


class CsvAdapter(BaseAdapter):
    name: ClassVar[str] = "csv"
    HELP: ClassVar[str] = ("CSV/TSV data feeds (responses): delimiter and header row detected, cells typed, "
                           "untouched cells written back byte for byte.")
    READS: ClassVar[frozenset[str]] = frozenset({RESPONSE})
    RAW: ClassVar[bool] = True

    def sniff_response(self, suffix: str, media_type: str, body: bytes) -> bool:
        return media_type in MEDIA or (media_type in GENERIC_MEDIA and suffix in SUFFIXES)

    def read_strict(self, doc: Any, options: AdapterOptions) -> Parsed | None:
        return None

    def read_response_strict(self, doc: Any, options: AdapterOptions) -> Parsed | None:
        if not isinstance(doc, bytes):
            return None
        try:
            text = doc.decode("utf-8")
        except UnicodeDecodeError:
            return None
        bom = text.startswith(_BOM)
        if bom:
            text = text[1:]
        if not text.strip():
            return None
        nl = text.find("\n")
        terminator = "\r\n" if nl > 0 and text[nl - 1] == "\r" else "\n"
        for delimiter in sniff_delimiter(text):
            parsed = self._read(text, delimiter, terminator, bom, options)
            if parsed is not None:
                return parsed
        return None

    def _read(self, text: str, delimiter: str, terminator: str, bom: bool, options: AdapterOptions) -> Parsed | None:
        found = parse_csv(text, delimiter, terminator)
        if found is None:
            return None
        rows, final = found
        width = len(rows[0])
        for r in rows:
            if len(r) != width:
                return None
        header: list[str] | None = rows[0] if is_header(rows[0]) else None
        body_rows = rows[1:] if header is not None else rows
        if header is not None:
            names = [cell_text(c) for c in header]
        elif len(options.feature_names) == width:
            names = list(options.feature_names)
        else:
            names = [f"column_{j}" for j in range(width)]
        raw = [list(col) for col in zip(*body_rows, strict=True)] if body_rows else [[] for _ in range(width)]
        columns = [type_column(col) for col in raw]
        table = FeatureTable(names, columns, [infer_dtype(c) for c in columns],
                             header is not None or len(options.feature_names) == width,
                             origins(width), origins(len(body_rows)))
        detail = CsvDetail(delimiter, terminator, final, bom, header, names[:], raw, len(body_rows))
        return Parsed(doc=None, table=table, layout="csv.table", detail=detail, direction=RESPONSE)

    def write(self, parsed: Parsed, table: FeatureTable, options: AdapterOptions = DEFAULT_OPTIONS) -> Any:
        table.validate()
        detail: CsvDetail = parsed.detail
        d = detail.delimiter
        cols = resolve_col_origin(table, detail.names)
        rows = resolve_row_origin(table, detail.n_rows)
        original = parsed.table.columns
        lines: list[str] = []
        if detail.header is not None:
            lines.append(d.join(
                detail.header[o] if o is not None and name == detail.names[o] else format_cell(name, d)
                for name, o in zip(table.names, cols, strict=True)))
        n = table.n_rows
        # Rows as read, in order (value faults): each column starts as its raw cells; only the cells that are not
        # the very objects read are looked at.
        in_place = n == detail.n_rows and rows == list(range(n))
        out_cols: list[list[str]] = []
        for j, column in enumerate(table.columns):
            o = cols[j]
            if o is None:
                out_cols.append([format_cell(v, d) for v in column])
                continue
            before, raws = original[o], detail.raw[o]
            if in_place:
                texts = raws[:]
                looked = [i for i in range(n) if column[i] is not before[i]]
            else:
                texts = [raws[r] if r is not None else "" for r in rows]
                looked = [i for i, r in enumerate(rows) if r is None or column[i] is not before[r]]
            spelled: tuple[str, str] | None = None
            for i in looked:
                v, r = column[i], rows[i]
                if r is not None:
                    was = before[r]
                    if type(v) is type(was) and v == was:
                        continue
                if spelled is None:
                    spelled = bool_spelling(raws, before)
                texts[i] = format_cell(v, d, r is not None and raws[r][:1] == '"', spelled[0], spelled[1])
            out_cols.append(texts)
        body = [d.join(cells) for cells in zip(*out_cols, strict=True)] if out_cols else ["" for _ in range(n)]
        # A blank line is no row to most readers (pandas skips them): one empty cell is written quoted, as the
        # stdlib's csv writer does.
        lines.extend([line or '""' for line in body])
        text = detail.terminator.join(lines)
        if detail.final and lines:
            text += detail.terminator
        return ((_BOM if detail.bom else "") + text).encode("utf-8")

    def blank_cells(self, body: bytes, options: AdapterOptions, features: Sequence[str] | None, fraction: float,
                    rng: Any) -> tuple[bool, bytes | None]:
        try:
            return delimited_bytes.blank_cells(body, options, features, fraction, rng)
        except Exception:  # never expected: the table is then read, which has its own safety net
            return False, None

    def rewrite_values(self, body: bytes, options: AdapterOptions, features: Sequence[str] | None,
                       change: Callable[[FeatureTable], Mutation]) -> tuple[bool, bytes | None]:
        try:
            return delimited_bytes.rewrite_values(body, options, features, change)
        except Exception:  # never expected: the table is then read, which has its own safety net
            return False, None

    def restructure(self, body: bytes, options: AdapterOptions,
                    change: Callable[[FeatureTable], Mutation]) -> tuple[bool, bytes | None]:
        try:
            return delimited_bytes.restructure(body, options, change)
        except Exception:  # never expected: the table is then read, which has its own safety net
            return False, None

    def predictions_strict(self, doc: Any, options: AdapterOptions) -> Predictions | None:
        return None

    def write_predictions_strict(self, doc: Any, preds: Predictions, options: AdapterOptions) -> Any | None:
        return None
