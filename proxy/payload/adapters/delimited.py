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

On a body without quotes three kinds of fault do not read the whole table, giving the same bytes as reading,
mutating and writing would; anything else takes the table's way (~0.1-0.2 s for 1 MB compiled):

- ``nan`` (``blank_cells``): the cells are found by their delimiters and line breaks (in C, ``_cells.c``), picked
  with the same draws, and cut out: ~0.65 ms for 1 MB;
- the structural faults, which move, drop or repeat rows and columns or rename columns (``restructure``): the
  fault's mutation runs on a table of the body's names and shape whose cells are None, and its rows and columns
  are gathered from the body's bytes: 3-16 ms for 1 MB (the mutation's lists of rows are most of it);
- the faults that change cells of their features in place (``shift``, ``out_of_range``, ``type_swap``,
  ``default``: ``rewrite_values``): only those columns are read as values, and only the cells the fault changed
  are written: ~60 ms for one column of four on 1 MB (typing the column is most of it).
"""

from __future__ import annotations

import importlib
import re
from collections.abc import Callable, Sequence
from typing import Any, ClassVar, Final

import numpy as np

from ..mutate import Mutation, feature_columns, pick_cells_array
from ..table import FeatureTable, infer_dtype, origins, resolve_col_origin, resolve_row_origin
from ..tabular import GENERIC_MEDIA, format_cell, type_cell
from .base import DEFAULT_OPTIONS, RESPONSE, AdapterOptions, BaseAdapter, Parsed, Predictions

__all__ = ["CsvAdapter", "CsvDetail", "parse_csv", "sniff_delimiter"]

DELIMITERS: Final = (",", "\t", ";", "|")
MEDIA: Final = frozenset({"text/csv", "application/csv", "text/x-csv", "text/tab-separated-values"})
SUFFIXES: Final = frozenset({".csv", ".tsv"})
_BOM: Final = "\ufeff"
# The lines the delimiter is guessed from: enough to see a consistent count, few enough to cost nothing.
_SNIFF_LINES: Final = 16
_SNIFF_CHARS: Final = 65536
_FIELDS: dict[str, re.Pattern[str]] = {}
_QUOTED: Final = re.compile(r'"(?:[^"]|"")*"?')


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


def sniff_delimiter(text: str, prefer: str = ",") -> list[str]:
    """The candidate delimiters, most likely first: those that split the first lines into the same number of
    cells (more cells first), then the rest found in the first line by their count there; ``,`` alone when the
    first line holds none (a single column)."""
    sample = text[:_SNIFF_CHARS]
    if '"' in sample:
        sample = _QUOTED.sub("", sample)  # what quoted cells hold is no delimiter
    lines = [ln for ln in sample.split("\n", _SNIFF_LINES)[:_SNIFF_LINES] if ln.strip()]
    if len(lines) > 1 and len(text) > _SNIFF_CHARS:
        lines = lines[:-1]  # a line cut by the window
    scored: list[tuple[int, int, int, str]] = []
    for rank, d in enumerate(DELIMITERS):
        counts = {ln.count(d) for ln in lines}
        first = lines[0].count(d) if lines else 0
        consistent = 1 if len(counts) == 1 and first > 0 else 0
        scored.append((-consistent, -first, 0 if d == prefer else rank + 1, d))
    scored.sort()
    # A delimiter absent from the first line would read every line as one cell: only for a single column.
    return [d for _, first, _, d in scored if first < 0] or [","]


def _field_pattern(delimiter: str) -> re.Pattern[str]:
    pattern = _FIELDS.get(delimiter)
    if pattern is None:
        d = re.escape(delimiter)
        pattern = re.compile(r'"(?:[^"]|"")*"|[^"' + d + r"\r\n]*")
        _FIELDS[delimiter] = pattern
    return pattern


def parse_csv(text: str, delimiter: str, terminator: str) -> tuple[list[list[str]], bool] | None:
    """Rows of raw cells (quotes kept) and whether the text ends with a line break; None when it is not CSV
    with this delimiter (a bare quote inside a cell, a stray carriage return)."""
    final = text.endswith(terminator)
    if '"' not in text:
        body = text[: len(text) - len(terminator)] if final else text
        if terminator == "\n" and "\r" in body:
            return None
        return [line.split(delimiter) for line in body.split(terminator)], final
    field = _field_pattern(delimiter)
    rows: list[list[str]] = []
    row: list[str] = []
    pos, n, t = 0, len(text), len(terminator)
    while True:
        m = field.match(text, pos)
        if m is None:  # never: the pattern matches the empty string
            return None
        row.append(m.group())
        pos = m.end()
        if pos >= n:
            rows.append(row)
            return rows, False
        if text[pos] == delimiter:
            pos += 1
        elif text.startswith(terminator, pos):
            rows.append(row)
            row = []
            pos += t
            if pos >= n:
                return rows, True
        else:
            return None


def _value(raw: str) -> Any:
    if raw[:1] == '"':
        inner = raw[1:-1].replace('""', '"')
        return type_cell(inner) if inner else ""
    return type_cell(raw)


_INT_CELL: Final = r"[+-]?(?:0|[1-9][0-9]*)"
_FLOAT_CELL: Final = r"[+-]?(?:[0-9]+\.[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?|[+-]?[0-9]+[eE][+-]?[0-9]+"
# A whole column (its cells joined by line breaks) of integers, or of decimals, each cell possibly empty; or of
# cells one of which may be typed (starts like a number, is a bool word, or is empty).
_INTS: Final = re.compile(f"(?:{_INT_CELL})?(?:\n(?:{_INT_CELL})?)*")
_FLOATS: Final = re.compile(f"(?:{_FLOAT_CELL})?(?:\n(?:{_FLOAT_CELL})?)*")
_BOOL_WORDS: Final = {"true": True, "True": True, "TRUE": True, "false": False, "False": False, "FALSE": False}
_MAYBE_TYPED: Final = re.compile(r"(?m)^(?:[0-9+.\-]|(?:true|True|TRUE|false|False|FALSE)$|$)")


def _column(raws: list[str]) -> list[Any]:
    """The values of a column of raw cells: whole-column fast paths (a regex pass over the joined cells) for
    the usual integer, decimal and text columns, cell by cell otherwise; the same values either way."""
    words = set(raws)
    if len(words) <= 6 and words <= _BOOL_WORDS.keys():
        return [_BOOL_WORDS[x] for x in raws]
    joined = "\n".join(raws)
    if '"' not in joined and joined.count("\n") == len(raws) - 1:  # no quotes, no line break inside a cell
        if _INTS.fullmatch(joined) is not None:
            return [int(x) if x else None for x in raws]
        if _FLOATS.fullmatch(joined) is not None:
            return [float(x) if x else None for x in raws]
        if _MAYBE_TYPED.search(joined) is None:
            return raws[:]
    return [_value(c) for c in raws]


def _text(raw: str) -> str:
    return raw[1:-1].replace('""', '"') if raw[:1] == '"' else raw


def _is_header(first: list[str]) -> bool:
    seen: set[str] = set()
    for raw in first:
        text = _text(raw)
        if not text or text in seen or not isinstance(type_cell(text), str):
            return False
        seen.add(text)
    return True


def _bool_spelling(raws: list[str], values: list[Any]) -> tuple[str, str]:
    for raw, v in zip(raws, values, strict=True):
        if v is True or v is False:
            text = _text(raw)
            if text.isupper():
                return "TRUE", "FALSE"
            if text[0].isupper():
                return "True", "False"
            break
    return "true", "false"


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
        header: list[str] | None = rows[0] if _is_header(rows[0]) else None
        body_rows = rows[1:] if header is not None else rows
        if header is not None:
            names = [_text(c) for c in header]
        elif len(options.feature_names) == width:
            names = list(options.feature_names)
        else:
            names = [f"column_{j}" for j in range(width)]
        raw = [list(col) for col in zip(*body_rows, strict=True)] if body_rows else [[] for _ in range(width)]
        columns = [_column(col) for col in raw]
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
                    spelled = _bool_spelling(raws, before)
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
            return _blank_cells(body, options, features, fraction, rng)
        except Exception:  # never expected: the table is then read, which has its own safety net
            return False, None

    def rewrite_values(self, body: bytes, options: AdapterOptions, features: Sequence[str] | None,
                       change: Callable[[FeatureTable], Mutation]) -> tuple[bool, bytes | None]:
        try:
            return _rewrite_values(body, options, features, change)
        except Exception:  # never expected: the table is then read, which has its own safety net
            return False, None

    def restructure(self, body: bytes, options: AdapterOptions,
                    change: Callable[[FeatureTable], Mutation]) -> tuple[bool, bytes | None]:
        try:
            return _restructure(body, options, change)
        except Exception:  # never expected: the table is then read, which has its own safety net
            return False, None

    def predictions_strict(self, doc: Any, options: AdapterOptions) -> Predictions | None:
        return None

    def write_predictions_strict(self, doc: Any, preds: Predictions, options: AdapterOptions) -> Any | None:
        return None


# ------------------------------------------------------------------------------- nan without reading the table
#
# A 1 MB object read as a table costs ~0.3 s of event loop (every cell split out and typed, every row joined
# again); ``nan`` only needs to know which cells of its features hold a value and where they are. For a body
# without quotes the cell bounds are the delimiters and line breaks: one pass over them checks that every line
# has the header's count of cells and gives, for each feature column, where each line's cell starts and stops
# (``_cells.cells`` in C; numpy's way, ``_columns``, without it). The cells are picked with the same draws as
# ``mutate.nan`` on the table read, and only their bytes are cut out (``_cells.cut``). Anything that might read
# differently (quotes, a stray carriage return, an empty line of a single column) takes the table's way.
#
# Where a 1 MB body's ~0.65 ms go (48,636 lines, a tenth of one column cut, compiled, with C): the pass ~0.35 ms
# (counting the separators first, 0.09, then one step per separator), the draws ~0.1 ms, the checks for
# quotes, ASCII and empty cells ~0.1 ms, the cut 0.04 ms. Without C, numpy's masks and nonzero take ~0.55 ms and
# a join of a slice per cell ~0.45 ms. Memory is what to watch: a fresh array of a MB costs as much again in
# page faults when malloc gives blocks that large back to the kernel after each use (``mlchaos run`` keeps them:
# ``cli.keep_freed_memory``).

_LF: Final = 10
_CR: Final = 13
# Offsets into a body, as numpy gives them.
_Offsets = np.ndarray[Any, np.dtype[np.intp]]


def _load_native() -> Any:
    """``_cells`` (C), built with the compiled data plane; None without it (numpy then does the same)."""
    try:
        return importlib.import_module("proxy.payload.adapters._cells")
    except ImportError:
        return None


_NATIVE: Final[Any] = _load_native()


class _Cells:
    """The lines of a body read with one delimiter, every line with ``width`` cells: for each column asked, the
    offsets in the body where each line's cell starts and stops (``lo[c, r]``, ``hi[c, r]``: column ``c`` of
    those asked, line ``r``); a line break's ``\r`` is in no cell."""

    __slots__ = ("hi", "lines", "lo")

    def __init__(self, lines: int, lo: Any, hi: Any) -> None:
        self.lines = lines
        self.lo = lo
        self.hi = hi


def _columns(body: bytes, start: int, delimiter: int, width: int, crlf: bool, columns: list[int],
             native: Any) -> _Cells | None:
    """``body`` from ``start`` read as lines of ``width`` cells (``_cells.cells``): the cells of ``columns``
    (ascending), or None unless every line has ``width`` cells and, with ``crlf``, every line break a carriage
    return before it and no other. By ``native`` (``_cells``) or, when None, numpy."""
    if native is not None:
        found = native.cells(body, start, delimiter, width, crlf, columns)
        if found is None:
            return None
        lines, lo, hi = found
        shape = (len(columns), lines)
        return _Cells(lines, np.frombuffer(lo, dtype=np.intp).reshape(shape),
                      np.frombuffer(hi, dtype=np.intp).reshape(shape))
    arr = np.frombuffer(body, dtype=np.uint8, offset=start)
    lf = arr == _LF
    n_lf = int(np.count_nonzero(lf))
    if crlf and int(np.count_nonzero(arr == _CR)) != n_lf:
        return None
    seps = arr == delimiter
    np.bitwise_or(seps, lf, out=seps)
    at: _Offsets = np.flatnonzero(seps)
    final = arr.size > 0 and int(arr[-1]) == _LF
    lines = n_lf if final else n_lf + 1
    if at.size != lines * width - (0 if final else 1):
        return None
    # With the count right, each line has ``width`` cells if each line's ``width``-th separator is a line break:
    # those are then all the line breaks, and the rest are delimiters, width - 1 before each.
    row_ends = at[width - 1::width]
    if not bool(lf[row_ends].all()):
        return None
    if crlf and not bool((arr[row_ends - 1] == _CR).all()):
        return None  # as many carriage returns as line breaks, but not each before one
    if not final:
        at = np.append(at, arr.size)  # the last line's last cell ends with the body
    # Cell j of line r ends at separator r * width + j (before a line break's "\r") and starts after the one
    # before it (line 0's first cell at 0).
    starts = np.empty(len(columns) * lines, dtype=np.intp).reshape(len(columns), lines)
    stops = np.empty_like(starts)
    ends_with_cr = crlf and n_lf > 0
    for c, j in enumerate(columns):
        stops[c] = at[j::width]
        if ends_with_cr and j == width - 1:
            stops[c, :n_lf] -= 1
        if j > 0:
            starts[c] = at[j - 1::width] + 1
        else:
            starts[c, 0] = 0
            starts[c, 1:] = at[width - 1::width][:-1] + 1
    return _Cells(lines, starts + start, stops + start)


class _Shape:
    """How a body without quotes reads with one delimiter, as the table's read would take it: where its lines
    start (past a byte order mark), its line break, its first line's cells, and the names of its columns."""

    __slots__ = ("crlf", "delimiter", "final", "first", "header", "named", "names", "start", "terminator")

    def __init__(self, start: int, crlf: bool, final: bool, delimiter: str, first: list[str], header: bool,
                 names: list[str], named: bool) -> None:
        self.start = start
        self.crlf = crlf
        self.terminator = b"\r\n" if crlf else b"\n"
        self.final = final
        self.delimiter = delimiter
        self.first = first
        self.header = header
        self.names = names
        self.named = named


def _shapes(body: bytes, options: AdapterOptions) -> list[_Shape]:
    """The ways a body may read without the table, one per delimiter sniffed, in the order the table's read
    tries them; none for a body with quotes or a stray carriage return, or that is not UTF-8 text."""
    if body.find(b'"') >= 0:
        return []
    bom = body.startswith(b"\xef\xbb\xbf")
    start = 3 if bom else 0
    if body.isascii():  # valid UTF-8, and the delimiter is guessed from the first 64 KiB: decode no more
        text = body[start:start + _SNIFF_CHARS + 1].decode("ascii")
    else:
        try:
            text = body[start:].decode("utf-8")
        except UnicodeDecodeError:
            return []  # not read either way: the table's way counts it
    if not text or text.isspace():
        return []
    nl = body.find(b"\n")
    crlf = nl > 0 and body[nl - 1] == _CR
    if not crlf and body.find(b"\r") >= 0:
        return []
    terminator = b"\r\n" if crlf else b"\n"
    final = body.endswith(terminator)
    line_end = body.find(terminator, start)
    first_line = body[start:line_end if line_end >= 0 else len(body)].decode("utf-8")
    shapes: list[_Shape] = []
    for delimiter in sniff_delimiter(text):
        first = first_line.split(delimiter)  # no quotes: each cell's text is its name (_text)
        width = len(first)
        header = _is_header(first)
        if header:
            names = first
        elif len(options.feature_names) == width:
            names = list(options.feature_names)
        else:
            names = [f"column_{j}" for j in range(width)]
        shapes.append(_Shape(start, crlf, final, delimiter, first, header, names,
                             header or len(options.feature_names) == width))
    return shapes


def _blank_cells(body: bytes, options: AdapterOptions, features: Sequence[str] | None, fraction: float,
                 rng: Any) -> tuple[bool, bytes | None]:
    """``CsvAdapter.blank_cells``: reading, ``mutate.nan`` and writing, for a body without quotes."""
    if not 0.0 <= fraction <= 1.0:
        return False, None
    for shape in _shapes(body, options):
        width = len(shape.names)
        cols = feature_columns(shape.names, features)
        # A single column is checked for empty lines whichever features are asked.
        found = _columns(body, shape.start, ord(shape.delimiter), width, shape.crlf, [0] if width == 1 else cols,
                         _NATIVE)
        if found is not None:
            return _blank(body, found, cols, 1 if shape.header else 0, width, fraction, rng)
    return False, None


def _restructure(body: bytes, options: AdapterOptions,
                 change: Callable[[FeatureTable], Mutation]) -> tuple[bool, bytes | None]:
    """``CsvAdapter.restructure``: reading, ``change`` and writing, for a body without quotes."""
    for shape in _shapes(body, options):
        width = len(shape.names)
        if width < 2:
            return False, None  # an empty line of one column is written back as '""': the table's way
        found = _columns(body, shape.start, ord(shape.delimiter), width, shape.crlf, [0, width - 1], _NATIVE)
        if found is not None:
            return _rearrange(body, shape, found, change)
    return False, None


def _rearrange(body: bytes, shape: _Shape, lines: _Cells, change: Callable[[FeatureTable], Mutation],
               ) -> tuple[bool, bytes | None]:
    """``change`` on a table of the body's shape without its values (each cell None), then its rows and columns
    gathered from the body as the table's write would give them: untouched lines and cells byte for byte."""
    width = len(shape.names)
    h = 1 if shape.header else 0
    n = lines.lines - h
    as_read = origins(n)
    skeleton = FeatureTable(list(shape.names), [[None] * n for _ in range(width)], ["mixed"] * width, shape.named,
                            origins(width), as_read[:])
    mutation = change(skeleton)
    if not (mutation.applicable and mutation.changed):
        return True, None
    out = mutation.table
    cols = [o for o in resolve_col_origin(out, shape.names) if o is not None]
    if out.row_origin is None or out.row_origin == as_read:  # a column fault: the rows as read (one C compare)
        n_rows, at = n, np.arange(h, n + h, dtype=np.intp)
    else:
        rows = [r for r in resolve_row_origin(out, n) if r is not None]
        n_rows, at = len(rows), np.asarray(rows, dtype=np.intp) + h
    if len(cols) != out.n_cols or n_rows != out.n_rows:
        raise ValueError("a structural fault made a new column or row")  # the caller's safety net: the table's way
    d = shape.delimiter
    head = body[:shape.start]
    if shape.header:
        head += d.join([shape.first[o] if name == shape.names[o] else format_cell(name, d)
                        for name, o in zip(out.names, cols, strict=True)]).encode("utf-8")
    term = shape.terminator
    tail = term if shape.final and n_rows + h else b""
    if not cols:  # every column dropped: the write gives an empty header line and '""' per row
        return True, head + term.join([b""] * h + [b'""'] * n_rows) + tail
    if cols == list(range(width)):  # rows moved, dropped or repeated: each line as it was
        starts: _Offsets = lines.lo[0, at]
        stops: _Offsets = lines.hi[1, at]
        glue = np.full(at.size, 2, dtype=np.intp)
    else:  # columns dropped or moved: each line's cells gathered in their new order
        used = sorted(set(cols))
        cells = lines if used == [0, width - 1] else _columns(body, shape.start, ord(d), width, shape.crlf, used,
                                                              _NATIVE)
        if cells is None:
            raise ValueError("the body read differently the second time")
        slots = [used.index(o) for o in cols]
        starts = cells.lo[slots][:, at].T.ravel()
        stops = cells.hi[slots][:, at].T.ravel()
        grid = np.ones((at.size, len(cols)), dtype=np.intp)
        grid[:, 0] = 2
        glue = grid.ravel()
        if len(cols) == 1:  # a line of one empty cell is written back as '""' (a blank line is no row)
            glue[stops == starts] = 3
    if not shape.header and glue.size:
        glue[0] = 4 if glue[0] == 3 else 0  # the first line has no line break before it
    seps = (b"", d.encode("ascii"), term, term + b'""', b'""')  # what glue's 0 to 4 put before a piece
    if _NATIVE is not None:
        return True, _NATIVE.gather(body, starts, stops, glue, seps, head, tail)
    return True, _gather(body, starts.tolist(), stops.tolist(), glue.tolist(), seps, head, tail)


def _rewrite_values(body: bytes, options: AdapterOptions, features: Sequence[str] | None,
                    change: Callable[[FeatureTable], Mutation]) -> tuple[bool, bytes | None]:
    """``CsvAdapter.rewrite_values``: reading, ``change`` and writing, for a body without quotes, with only the
    columns of ``features`` read as values."""
    for shape in _shapes(body, options):
        width = len(shape.names)
        if width < 2:
            return False, None  # a cell written empty on a line of one column is written '""': the table's way
        cols = feature_columns(shape.names, features)
        found = _columns(body, shape.start, ord(shape.delimiter), width, shape.crlf, cols, _NATIVE)
        if found is not None:
            return _retype(body, shape, found, cols, change)
    return False, None


def _retype(body: bytes, shape: _Shape, cells: _Cells, cols: list[int], change: Callable[[FeatureTable], Mutation],
            ) -> tuple[bool, bytes | None]:
    """``change`` on a table whose columns ``cols`` hold their values as the table's read types them (the
    others None), then each cell it changed written as the table's write would write it, in place."""
    width = len(shape.names)
    h = 1 if shape.header else 0
    n = cells.lines - h
    text = body.decode("utf-8") if not body.isascii() else ""
    raws: list[list[str]] = []
    for c in range(len(cols)):
        lo, hi = cells.lo[c, h:].tolist(), cells.hi[c, h:].tolist()
        if text:  # offsets count bytes: slice the bytes, then decode
            raws.append([body[lo[i]:hi[i]].decode("utf-8") for i in range(n)])
        else:
            raws.append([body[lo[i]:hi[i]].decode("ascii") for i in range(n)])
    columns: list[list[Any]] = [[None] * n for _ in range(width)]
    dtypes = ["mixed"] * width
    for c, j in enumerate(cols):
        columns[j] = _column(raws[c])
        dtypes[j] = infer_dtype(columns[j])
    before = [columns[j] for j in cols]
    as_read = origins(n)
    mutation = change(FeatureTable(list(shape.names), columns[:], dtypes, shape.named, origins(width), as_read[:]))
    if not (mutation.applicable and mutation.changed):
        return True, None
    out = mutation.table
    if out.names != shape.names or (out.col_origin is not None and out.col_origin != origins(width)) or \
            not (out.row_origin is None or out.row_origin == as_read) or out.n_rows != n:
        raise ValueError("a value fault moved a row or column")  # the caller's safety net: the table's way
    for j in range(width):
        if j not in cols and out.columns[j].count(None) != n:
            raise ValueError("a value fault changed a column it did not read")
    d = shape.delimiter
    starts: list[int] = []
    stops: list[int] = []
    texts: list[bytes] = []
    for c, j in enumerate(cols):
        column, was_col, raw = out.columns[j], before[c], raws[c]
        spelled: tuple[str, str] | None = None
        for i in range(n):
            v = column[i]
            if v is was_col[i]:
                continue
            was = was_col[i]
            if type(v) is type(was) and v == was:
                continue
            if spelled is None:
                spelled = _bool_spelling(raw, was_col)
            starts.append(int(cells.lo[c, h + i]))
            stops.append(int(cells.hi[c, h + i]))
            texts.append(format_cell(v, d, False, spelled[0], spelled[1]).encode("utf-8"))
    if not texts:
        return True, None
    order = sorted(range(len(starts)), key=starts.__getitem__)
    # Pieces of the body between the changed cells, each after the new text of the cell before it (gather's
    # glue k puts seps[k] before piece k: seps is the empty string and then the new texts in order).
    piece_lo = [0] + [stops[k] for k in order]
    piece_hi = [starts[k] for k in order] + [len(body)]
    seps = (b"", *[texts[k] for k in order])
    glue = list(range(len(seps)))
    if _NATIVE is not None:
        return True, _NATIVE.gather(body, np.array(piece_lo, dtype=np.intp), np.array(piece_hi, dtype=np.intp),
                                    np.array(glue, dtype=np.intp), seps, b"", b"")
    return True, _gather(body, piece_lo, piece_hi, glue, seps, b"", b"")


def _blank(body: bytes, cells: _Cells, cols: list[int], h: int, width: int, fraction: float,
           rng: Any) -> tuple[bool, bytes | None]:
    """The cells ``mutate.nan`` would pick of ``cols`` (the columns ``cells`` holds, or with one column perhaps
    none of them), from line ``h`` on (past a header row), cut out of ``body``."""
    if width == 1 and bool((cells.hi[0, h:] == cells.lo[0, h:]).any()):
        return False, None  # an empty line is written back as '""' (a blank line is no row): the table's way
    if not cols:
        return True, None
    rows = cells.lines - h
    # Per feature column, the lines whose cell holds a value (None: every line from h on, the usual case).
    present: list[_Offsets | None] = []
    counts: list[int] = []
    for c in range(len(cols)):
        filled = cells.hi[c, h:] > cells.lo[c, h:]
        if bool(filled.all()):
            present.append(None)
            counts.append(rows)
        else:
            lines = np.flatnonzero(filled) + h
            present.append(lines)
            counts.append(lines.size)
    chosen = pick_cells_array(sum(counts), fraction, rng)
    if not chosen.size:
        return True, None
    # In mutate.nan's order: column by column, line by line; chosen (ascending) indexes that list of cells.
    los: list[_Offsets] = []
    his: list[_Offsets] = []
    base = 0
    for c, lines_c, n in zip(range(len(cols)), present, counts, strict=True):
        a, b = np.searchsorted(chosen, (base, base + n)).tolist()
        if b > a:
            mine = chosen[a:b] - base
            at = mine + h if lines_c is None else lines_c[mine]
            los.append(cells.lo[c, at])
            his.append(cells.hi[c, at])
        base += n
    if len(los) == 1:
        cut_from, cut_stop = los[0], his[0]  # one column: already in the body's order
    else:
        cut_from, cut_stop = np.concatenate(los), np.concatenate(his)
        order = np.argsort(cut_from, kind="stable")
        cut_from, cut_stop = cut_from[order], cut_stop[order]
    blank = b'""' if width == 1 else b""
    if _NATIVE is not None:
        return True, _NATIVE.cut(body, cut_from, cut_stop, blank)  # both fresh arrays of intp, as it needs
    return True, _cut(body, cut_from.tolist(), cut_stop.tolist(), blank)


def _cut(body: bytes, starts: list[int], stops: list[int], blank: bytes) -> bytes:
    """``body`` with each ``body[starts[i]:stops[i]]`` (ascending, apart) replaced by ``blank``, in one join
    (``_cells.cut`` without C)."""
    pieces: list[bytes] = []
    pos = 0
    for i in range(len(starts)):  # by index: compiled, a zip would build a tuple per cell
        pieces.append(body[pos:starts[i]])
        if blank:
            pieces.append(blank)
        pos = stops[i]
    pieces.append(body[pos:])
    return b"".join(pieces)

def _gather(body: bytes, starts: list[int], stops: list[int], glue: list[int], seps: tuple[bytes, ...], head: bytes,
            tail: bytes) -> bytes:
    """``head``, each ``seps[glue[i]] + body[starts[i]:stops[i]]``, ``tail``, in one join (``_cells.gather``
    without C)."""
    pieces: list[bytes] = [head]
    for i in range(len(starts)):  # by index: compiled, a zip would build a tuple per piece
        pieces.append(seps[glue[i]])
        pieces.append(body[starts[i]:stops[i]])
    pieces.append(tail)
    return b"".join(pieces)

