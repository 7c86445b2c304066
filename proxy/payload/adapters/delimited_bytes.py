"""Faults on a CSV body without quotes that do not read its whole table, each giving the same bytes as reading,
mutating and writing would (delimited.py calls them from ``CsvAdapter``; anything that might read differently
takes the table's way, ~0.1-0.2 s for 1 MB compiled):

- ``nan`` (``blank_cells``): the cells are found by their delimiters and line breaks (in C, ``_cells.c``), picked
  with the same draws, and cut out: ~0.65 ms for 1 MB;
- the structural faults, which move, drop or repeat rows and columns or rename columns (``restructure``): the
  fault's mutation runs on a table of the body's names and shape whose cells are None, and its rows and columns
  are gathered from the body's bytes: 3-17 ms for 1 MB (the mutation's lists of rows are most of it);
- the faults that change cells of their features in place (``shift``, ``out_of_range``, ``type_swap``,
  ``default``: ``rewrite_values``): only those columns are read as values, and only the cells the fault changed
  are written: ~60 ms for one column of four on 1 MB (typing the column is most of it).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Sequence
from typing import Any, Final

import numpy as np

from ..mutate import Mutation, feature_columns, pick_cells_array
from ..table import FeatureTable, infer_dtype, origins, resolve_col_origin, resolve_row_origin
from ..tabular import format_cell
from .base import AdapterOptions
from .delimited_text import SNIFF_CHARS, bool_spelling, is_header, sniff_delimiter, type_column

__all__ = ["blank_cells", "restructure", "rewrite_values"]

# ------------------------------------------------------------------------------- nan
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
        text = body[start:start + SNIFF_CHARS + 1].decode("ascii")
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
        header = is_header(first)
        if header:
            names = first
        elif len(options.feature_names) == width:
            names = list(options.feature_names)
        else:
            names = [f"column_{j}" for j in range(width)]
        shapes.append(_Shape(start, crlf, final, delimiter, first, header, names,
                             header or len(options.feature_names) == width))
    return shapes


def blank_cells(body: bytes, options: AdapterOptions, features: Sequence[str] | None, fraction: float,
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


def restructure(body: bytes, options: AdapterOptions,
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


def rewrite_values(body: bytes, options: AdapterOptions, features: Sequence[str] | None,
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
    # Per column read, each line's cell bounds (from h on) and text (the body is UTF-8: _shapes checked it).
    los: list[list[int]] = [cells.lo[c, h:].tolist() for c in range(len(cols))]
    his: list[list[int]] = [cells.hi[c, h:].tolist() for c in range(len(cols))]
    raws = [[body[lo[i]:hi[i]].decode("utf-8") for i in range(n)] for lo, hi in zip(los, his, strict=True)]
    columns: list[list[Any]] = [[None] * n for _ in range(width)]
    dtypes = ["mixed"] * width
    for c, j in enumerate(cols):
        columns[j] = type_column(raws[c])
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
                spelled = bool_spelling(raw, was_col)
            starts.append(los[c][i])
            stops.append(his[c][i])
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
