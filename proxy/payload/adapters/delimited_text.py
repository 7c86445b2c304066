"""CSV text: the delimiter guessed, rows split into cells (RFC 4180 quoting), cells typed, a header row told
apart. What reading a CSV body as a table (delimited.py) and the faults that work on its bytes without the table
(delimited_bytes.py) both take the text to mean."""

from __future__ import annotations

import re
from typing import Any, Final

from ..tabular import type_cell

__all__ = ["DELIMITERS", "SNIFF_CHARS", "bool_spelling", "cell_text", "is_header", "parse_csv", "sniff_delimiter",
           "type_column"]

DELIMITERS: Final = (",", "\t", ";", "|")
# The lines the delimiter is guessed from: enough to see a consistent count, few enough to cost nothing.
_SNIFF_LINES: Final = 16
SNIFF_CHARS: Final = 65536
_FIELDS: dict[str, re.Pattern[str]] = {}
_QUOTED: Final = re.compile(r'"(?:[^"]|"")*"?')


def sniff_delimiter(text: str, prefer: str = ",") -> list[str]:
    """The candidate delimiters, most likely first: those that split the first lines into the same number of
    cells (more cells first), then the rest found in the first line by their count there; ``,`` alone when the
    first line holds none (a single column)."""
    sample = text[:SNIFF_CHARS]
    if '"' in sample:
        sample = _QUOTED.sub("", sample)  # what quoted cells hold is no delimiter
    lines = [ln for ln in sample.split("\n", _SNIFF_LINES)[:_SNIFF_LINES] if ln.strip()]
    if len(lines) > 1 and len(text) > SNIFF_CHARS:
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


def type_column(raws: list[str]) -> list[Any]:
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


def cell_text(raw: str) -> str:
    """A cell's text: a quoted cell without its quotes, ``""`` inside as ``"``."""
    return raw[1:-1].replace('""', '"') if raw[:1] == '"' else raw


def is_header(first: list[str]) -> bool:
    """Whether a first row is a header: every cell non-empty text, distinct, and not a number or a bool."""
    seen: set[str] = set()
    for raw in first:
        text = cell_text(raw)
        if not text or text in seen or not isinstance(type_cell(text), str):
            return False
        seen.add(text)
    return True


def bool_spelling(raws: list[str], values: list[Any]) -> tuple[str, str]:
    """How a column writes its bools (``true``, ``True`` or ``TRUE``), from the first it holds."""
    for raw, v in zip(raws, values, strict=True):
        if v is True or v is False:
            text = cell_text(raw)
            if text.isupper():
                return "TRUE", "FALSE"
            if text[0].isupper():
                return "True", "False"
            break
    return "true", "false"
