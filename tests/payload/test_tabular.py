"""The data-feed formats (CSV, JSON Lines, a JSON array of records, Parquet): detection from the response, and
round trips: what no fault changed is read back equal, with its type, and byte for byte where the format
promises it (CSV cells, JSON Lines lines)."""

from __future__ import annotations

import csv
import io
import json
import math
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from proxy.payload import mutate
from proxy.payload.adapters import ADAPTERS, detect_response, get_adapter
from proxy.payload.adapters.base import Parsed
from proxy.payload.table import MISSING
from proxy.payload.tabular import fix_headers, render, type_cell

CSV = get_adapter("csv")
JSONL = get_adapter("jsonl")
RECORDS = get_adapter("json_records")
PARQUET = get_adapter("parquet")


def read(adapter: Any, body: bytes) -> Parsed:
    parsed = adapter.read(body, direction="response")
    assert parsed is not None, body[:200]
    return parsed


# ------------------------------------------------------------------------------------------------ detection

@pytest.mark.parametrize(("path", "ctype", "body", "expected"), [
    ("/bucket/day.csv", "binary/octet-stream", b"a,b\n1,2\n", "csv"),
    ("/bucket/day.tsv", "", b"a\tb\n1\t2\n", "csv"),
    ("/export", "text/csv; charset=utf-8", b"a,b\n1,2\n", "csv"),
    ("/bucket/day.jsonl", "application/octet-stream", b'{"a": 1}\n', "jsonl"),
    ("/feed", "application/x-ndjson", b'{"a": 1}\n', "jsonl"),
    ("/bucket/day.ndjson", "application/json", b'{"a": 1}\n', "jsonl"),
    ("/bucket/day.json", "binary/octet-stream", b' [{"a": 1}]', "json_records"),
    ("/api/rows", "application/json", b'[{"a": 1}]', "json_records"),
    ("/bucket/day.parquet", "binary/octet-stream", b"PAR1....PAR1", "parquet"),
    ("/bucket/blob", "application/vnd.apache.parquet", b"PAR1....PAR1", "parquet"),
    ("/bucket/blob", "application/octet-stream", b"PAR1....PAR1", "parquet"),
    # not a data feed: a model's JSON object answer, a label that says otherwise, a file without a suffix
    ("/v1/models/m:predict", "application/json", b'{"predictions": [1]}', None),
    ("/bucket/day.csv", "application/json", b'{"a": 1}', None),
    ("/bucket/day", "binary/octet-stream", b"a,b\n1,2\n", None),
    ("/bucket/day.parquet", "binary/octet-stream", b"PAR1 cut short", None),
])
def test_a_data_feed_is_known_by_its_content_type_or_its_suffix(path: str, ctype: str, body: bytes,
                                                                 expected: str | None) -> None:
    headers = [(b"Content-Type", ctype.encode())] if ctype else []
    found = detect_response(path, headers, body)
    assert (found.name if found is not None else None) == expected


def test_an_encoded_body_is_never_read() -> None:
    assert detect_response("/b/x.csv", [(b"content-type", b"text/csv"), (b"Content-Encoding", b"gzip")],
                           b"\x1f\x8b") is None
    assert detect_response("/b/x.csv", [(b"content-type", b"text/csv"), (b"Content-Encoding", b"identity")],
                           b"a,b\n") is CSV


def test_file_formats_read_responses_only() -> None:
    for name in ("csv", "jsonl", "json_records", "parquet"):
        adapter = ADAPTERS[name]
        assert adapter.RAW and adapter.READS == {"response"}
        assert adapter.read(b"a,b\n1,2\n") is None  # a request body is never a data feed


# ---------------------------------------------------------------------------------------------------- CSV

@pytest.mark.parametrize(("body", "delimiter", "header"), [
    (b"a,b,c\n1,2,3\n", ",", ["a", "b", "c"]),
    (b"a;b\n1,5;2,5\n", ";", ["a", "b"]),   # decimal commas: the semicolon splits every line alike
    (b"a|b\n1|x\n", "|", ["a", "b"]),
    (b"a\tb\n1\t2\n", "\t", ["a", "b"]),
    (b'a,b\n"x,y",2\n"p,q",3\n', ",", ["a", "b"]),   # quoted delimiters do not count
    (b"1,2\n3,4\n", ",", None),   # numbers: no header row
    (b"a,a\nx,y\n", ",", None),   # repeated names: not a header
])
def test_csv_delimiter_and_header_are_detected(body: bytes, delimiter: str, header: list[str] | None) -> None:
    parsed = read(CSV, body)
    assert parsed.detail.delimiter == delimiter
    assert (parsed.detail.header is not None) == (header is not None)
    if header is not None:
        assert parsed.table.names == header and parsed.table.named
    else:
        assert parsed.table.names == [f"column_{j}" for j in range(2)] and not parsed.table.named
    assert CSV.write(parsed, parsed.table) == body


def test_csv_cells_are_typed() -> None:
    parsed = read(CSV, b'n,f,b,e,s,id,q\n7,1.50,TRUE,,x,007,""\n-2,1e3,false,,"3",01,"a ""b"""\n')
    assert parsed.table.columns == [[7, -2], [1.5, 1000.0], [True, False], [None, None], ["x", 3], ["007", "01"],
                                    ["", 'a "b"']]
    assert parsed.table.dtypes == ["number", "number", "bool", "mixed", "mixed", "string", "string"]


def test_csv_keeps_line_endings_bom_and_the_missing_final_break() -> None:
    for body in (b"a,b\r\n1,2\r\n3,4\r\n", "\ufeffa,b\n1,2".encode(), b"a,b\n1,2"):
        parsed = read(CSV, body)
        out = CSV.write(parsed, mutate.nan(parsed.table, rng=np.random.default_rng(0), features=["a"]).table)
        nl = "\r\n" if b"\r\n" in body else "\n"
        assert out.startswith(b"\xef\xbb\xbf") == body.startswith(b"\xef\xbb\xbf")
        assert out.endswith(nl.encode()) == body.endswith(b"\n")
        assert out.decode("utf-8-sig").split(nl)[1] == ",2"


@pytest.mark.parametrize("body", [b'a,b\n1,x"y\n', b"a,b\n1,2,3\n4\n", b"\xff\xfe,\n", b"a,b\r1,2\n"])
def test_csv_that_does_not_parse_is_not_read(body: bytes) -> None:
    assert CSV.read(body, direction="response") is None


NAMES = st.lists(st.from_regex(r"[a-z][a-z0-9_]{0,6}", fullmatch=True).filter(lambda s: s not in ("true", "false")),
                 min_size=2, max_size=5, unique=True)
TEXT = st.text(st.characters(codec="utf-8"), min_size=1, max_size=8).filter(
    lambda s: isinstance(type_cell(s), str) and s.strip() == s)


@st.composite
def csv_cell(draw: Any) -> tuple[str, Any]:
    """(text as written, value as read)."""
    kind = draw(st.sampled_from(("int", "float", "bool", "empty", "text")))
    if kind == "int":
        v = draw(st.integers(-10**12, 10**12))
        return str(v), v
    if kind == "float":
        x = draw(st.floats(-1e6, 1e6, allow_nan=False).map(lambda f: round(f, 3)))
        text = draw(st.sampled_from((f"{x:.3f}", repr(x), f"{x:.2e}")))
        return text, float(text)
    if kind == "bool":
        b = draw(st.booleans())
        return draw(st.sampled_from((("true", "false"), ("True", "False"), ("TRUE", "FALSE"))))[0 if b else 1], b
    if kind == "empty":
        return "", None
    t = draw(TEXT)
    return t, t


@st.composite
def csv_files(draw: Any) -> tuple[bytes, str, list[str], list[list[Any]]]:
    names = draw(NAMES)
    delimiter = draw(st.sampled_from((",", ";", "\t", "|")))
    terminator = draw(st.sampled_from(("\n", "\r\n")))
    rows = draw(st.lists(st.lists(csv_cell(), min_size=len(names), max_size=len(names)), min_size=1, max_size=12))
    out = io.StringIO()
    writer = csv.writer(out, delimiter=delimiter, lineterminator=terminator)
    writer.writerow(names)
    writer.writerows([[t for t, _ in r] for r in rows])
    return out.getvalue().encode(), delimiter, names, [[v for _, v in r] for r in rows]


def _same_values(a: list[Any], b: list[Any]) -> bool:
    return all(type(x) is type(y) and x == y for x, y in zip(a, b, strict=True)) and len(a) == len(b)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(csv_files(), st.sampled_from(("nan", "drop_feature", "truncate_batch", "reorder_rows", "duplicate_rows")),
       st.integers(0, 2**32 - 1))
def test_csv_round_trip_keeps_every_untouched_cell_byte_for_byte(
        case: tuple[bytes, str, list[str], list[list[Any]]], fault: str, seed: int) -> None:
    body, delimiter, names, rows = case
    parsed = read(CSV, body)
    assert parsed.detail.delimiter == delimiter and parsed.table.names == names
    for j in range(len(names)):
        assert _same_values(parsed.table.columns[j], [r[j] for r in rows])
    assert CSV.write(parsed, parsed.table.copy()) == body
    m = mutate.MUTATIONS[fault](parsed.table, rng=np.random.default_rng(seed), fraction=0.5)
    out = CSV.write(parsed, m.table)
    # Every cell the mutation left as it was has its original text: compare the stdlib reader's raw fields.
    sep = "\r\n" if "\r\n" in body.decode() else "\n"
    before = list(csv.reader(io.StringIO(body.decode(), newline=""), delimiter=delimiter))
    after = list(csv.reader(io.StringIO(out.decode(), newline=""), delimiter=delimiter))
    assert after[0] == m.table.names
    origins = m.table.row_origins()
    col_of = {n: j for j, n in enumerate(names)}
    for i, r in enumerate(origins):
        for j, name in enumerate(m.table.names):
            v = m.table.columns[j][i]
            was = parsed.table.columns[col_of[name]][r] if r is not None else None
            if r is not None and (v is was or (type(v) is type(was) and v == was)):
                assert after[i + 1][j] == before[r + 1][col_of[name]]
            else:
                assert after[i + 1][j] == ""  # nan: missing, written empty
    assert out.endswith(sep.encode())
    if m.table.n_cols > 1:  # one column has no delimiter to find
        assert read(CSV, out).detail.delimiter == delimiter


def _nan_the_table_way(body: bytes, features: tuple[str, ...] | None, fraction: float, seed: int,
                       names: tuple[str, ...] = ()) -> bytes | None:
    """What reading the table, ``mutate.nan`` and writing give (None: the body is left as it came)."""
    from proxy.payload.adapters.base import AdapterOptions

    options = AdapterOptions(feature_names=names)
    parsed = CSV.read(body, options, direction="response")
    assert parsed is not None
    m = mutate.nan(parsed.table, features=features, fraction=fraction, rng=np.random.default_rng(seed))
    return CSV.write(parsed, m.table, options) if m.applicable and m.changed else None


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(csv_files(), st.floats(0, 1), st.integers(0, 2**32 - 1), st.booleans(), st.booleans(), st.booleans(),
       st.data())
def test_csv_nan_without_the_table_is_the_table_s_result(
        case: tuple[bytes, str, list[str], list[list[Any]]], fraction: float, seed: int, bom: bool, final: bool,
        header: bool, data: Any) -> None:
    body, _, names, _ = case
    sep = b"\r\n" if body.endswith(b"\r\n") else b"\n"
    if not header:
        body = body[body.index(sep) + len(sep):]
    if not final:
        body = body[: -len(sep)]
    if bom:
        body = b"\xef\xbb\xbf" + body
    features = data.draw(st.one_of(st.none(), st.lists(st.sampled_from([*names, "absent"]), max_size=3).map(tuple)))
    from proxy.payload.adapters.base import AdapterOptions

    done, out = CSV.blank_cells(body, AdapterOptions(), features, fraction, np.random.default_rng(seed))
    if b'"' not in body and body.removeprefix(b"\xef\xbb\xbf").strip():
        assert done  # nothing that might read differently: the cells are found without the table
    if not body.removeprefix(b"\xef\xbb\xbf").strip():  # white space alone (a tab-separated empty row)
        assert (done, out) == (False, None) and CSV.read(body, direction="response") is None
    if done:
        assert out == _nan_the_table_way(body, features, fraction, seed)
        if out is not None:
            assert len(out) < len(body)
    else:
        assert out is None


@pytest.mark.parametrize(("body", "why"), [
    (b'id,note,price\n1,"two\nlines",3.5\n2,plain,4.5\n', "a quoted cell with a line break"),
    (b'id,note,price\n1,"a,b",3.5\n', "a quoted delimiter"),
    (b"id,note,price\r\n1,a\nb,3.5\r\n2,c,4.5\r\n", "a bare line break inside a CRLF file's cell"),
    (b"id,note,price\r\n1,a\rb,3.5\r\n2,c,4.5\r\n", "a bare carriage return inside a CRLF file's cell"),
    (b"price\n1.5\n\n2.5\n", "an empty line of a single column, written back as \"\""),
])
def test_csv_nan_takes_the_table_s_way_for_what_might_read_differently(body: bytes, why: str) -> None:
    from proxy.payload.adapters.base import AdapterOptions

    assert CSV.blank_cells(body, AdapterOptions(), ("price",), 1.0, np.random.default_rng(0)) == (False, None), why
    out = _nan_the_table_way(body, ("price",), 1.0, 0)
    assert out is not None and b"3.5" not in out and b"2.5" not in out  # the table's way still changes it


@pytest.mark.parametrize("body", [b"a,b\n1,2,3\n4\n", b"\xff\xfe,\n", b"a,b\r1,2\n",
                                  b" \n\n"])
def test_csv_nan_leaves_what_the_table_cannot_read_to_the_table(body: bytes) -> None:
    from proxy.payload.adapters.base import AdapterOptions

    assert CSV.blank_cells(body, AdapterOptions(), None, 1.0, np.random.default_rng(0)) == (False, None)
    assert CSV.read(body, direction="response") is None  # which counts it as unparsed


def test_csv_nan_without_the_table_cuts_only_the_chosen_cells() -> None:
    from proxy.payload.adapters.base import AdapterOptions

    rows = [f"{i};{i * 1.5};{'x' if i % 3 else ''};{i % 4}" for i in range(200)]
    body = ("\ufeffid;amount;tag;qty\r\n" + "\r\n".join(rows)).encode()  # a BOM, CRLF, no final break
    done, out = CSV.blank_cells(body, AdapterOptions(), ("amount", "tag"), 0.25, np.random.default_rng(7))
    assert done and out is not None and out == _nan_the_table_way(body, ("amount", "tag"), 0.25, 7)
    assert out.startswith(b"\xef\xbb\xbfid;amount;tag;qty\r\n") and not out.endswith(b"\r\n")
    got = [line.split(";") for line in out.decode("utf-8-sig").split("\r\n")[1:]]
    was = [line.split(";") for line in rows]
    emptied = sum(1 for g, w in zip(got, was, strict=True) for j in (1, 2) if g[j] == "" and w[j] != "")
    present = sum(1 for w in was for j in (1, 2) if w[j] != "")  # the tag's empty cells are never picked
    assert emptied in (present // 4, present // 4 + 1)
    for g, w in zip(got, was, strict=True):
        assert (g[0], g[3]) == (w[0], w[3]) and all(g[j] in ("", w[j]) for j in (1, 2))
    # No header row: the policy's feature names name the columns, as they do for the table.
    plain = "\n".join(rows).encode() + b"\n"
    options = AdapterOptions(feature_names=("id", "amount", "tag", "qty"))
    done, out = CSV.blank_cells(plain, options, ("amount",), 0.5, np.random.default_rng(3))
    assert done and out == _nan_the_table_way(plain, ("amount",), 0.5, 3, ("id", "amount", "tag", "qty"))


@st.composite
def feeds(draw: Any, min_width: int = 1, min_rows: int = 1) -> tuple[bytes, bytes, bytes, int, list[list[bytes]]]:
    """A data feed of up to 300 rows of numbers (no quotes): often no empty cell at all (every cell of a
    feature is a candidate), sometimes a few or many. Returns the body, its delimiter and line ending, where its
    lines start (past a byte order mark) and its rows of cells as written, the header row first when present."""
    width = draw(st.integers(min_width, 5))
    delimiter = draw(st.sampled_from((b",", b";", b"\t", b"|")))
    terminator = draw(st.sampled_from((b"\n", b"\r\n")))
    n = draw(st.integers(min_rows, 300))
    empty = draw(st.sampled_from((0.0, 0.0, 0.02, 0.5)))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    rows = [[b"" if rng.random() < empty else b"%.*f" % (int(rng.integers(0, 4)), rng.uniform(-1e3, 1e3))
             for _ in range(width)] for _ in range(n)]
    if draw(st.booleans()):
        rows.insert(0, [b"c%d" % j for j in range(width)])
    bom = b"\xef\xbb\xbf" if draw(st.booleans()) else b""
    # A last line of one empty cell is only there with a line break after it.
    final = draw(st.booleans()) or rows[-1] == [b""]
    body = bom + terminator.join(delimiter.join(r) for r in rows) + (terminator if final else b"")
    return body, delimiter, terminator, len(bom), rows


def _rows_of(body: bytes, delimiter: bytes, terminator: bytes, start: int) -> list[list[bytes]]:
    text = body[start:]
    if text.endswith(terminator):
        text = text[: -len(terminator)]
    return [line.split(delimiter) for line in text.split(terminator)]


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(feeds(), st.floats(0, 1), st.integers(0, 2**32 - 1), st.data())
def test_csv_nan_without_the_table_on_a_feed_cuts_exactly_the_chosen_cells(
        case: tuple[bytes, bytes, bytes, int, list[list[bytes]]], fraction: float, seed: int, data: Any) -> None:
    body, delimiter, terminator, start, rows = case
    width = len(rows[0])
    names = [f"c{j}" for j in range(width)]
    features = data.draw(st.one_of(st.none(), st.lists(st.sampled_from(names), min_size=1, max_size=3).map(tuple)))
    from proxy.payload.adapters.base import AdapterOptions

    options = AdapterOptions(feature_names=tuple(names))
    done, out = CSV.blank_cells(body, options, features, fraction, np.random.default_rng(seed))
    header = rows[0] == [n.encode() for n in names]
    data_rows = rows[1:] if header else rows
    if (width == 1 and any(r == [b""] for r in data_rows)) or not body[start:].strip():
        # An empty line of a single column: the table's way; nothing but white space: not read either way.
        assert (done, out) == (False, None)
        return
    assert done
    assert out == _nan_the_table_way(body, features, fraction, seed, tuple(names))
    if out is None:
        return
    assert out[:start] == body[:start]
    cols = set(range(width)) if features is None else {names.index(f) for f in features}
    after = _rows_of(out, delimiter, terminator, start)
    assert len(after) == len(rows) and (not header or after[0] == rows[0])
    emptied = 0
    for was, now in zip(rows[1 if header else 0:], after[1 if header else 0:], strict=True):
        for j, (w, c) in enumerate(zip(was, now, strict=True)):
            if c != w:  # only a feature's cell that held a value is cut, and then to nothing
                assert j in cols and w != b"" and c == (b'""' if width == 1 else b"")
                emptied += 1
    present = sum(1 for r in data_rows for j in cols if r[j] != b"")
    assert emptied in (math.floor(fraction * present), math.floor(fraction * present) + 1)


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(feeds(min_width=2, min_rows=3), st.data())
def test_csv_nan_leaves_rows_of_different_widths_to_the_table_even_with_the_delimiters_counted_right(
        case: tuple[bytes, bytes, bytes, int, list[list[bytes]]], data: Any) -> None:
    """A delimiter moved from one line to another keeps the body's count of delimiters: each line's is checked.
    (Not from the first line, whose cells say how many there are: without its only delimiter, every line would
    be one cell of a single column, as the table reads it too; nor with a first line of white space alone, which
    the delimiter's guess skips.)"""
    body, delimiter, terminator, start, rows = case
    assume(any(rows[0]))
    a, b = data.draw(st.lists(st.integers(1, len(rows) - 1), min_size=2, max_size=2, unique=True))
    j = data.draw(st.integers(0, len(rows[a]) - 2))
    moved = [r[:] for r in rows]
    moved[a][j:j + 2] = [moved[a][j] + moved[a][j + 1]]
    moved[b].append(b"7")
    final = terminator if body.endswith(terminator) else b""
    ragged = body[:start] + terminator.join(delimiter.join(r) for r in moved) + final
    from proxy.payload.adapters.base import AdapterOptions

    assert ragged.count(delimiter) == body.count(delimiter)
    assert CSV.blank_cells(ragged, AdapterOptions(), None, 1.0, np.random.default_rng(0)) == (False, None)
    assert CSV.read(ragged, direction="response") is None  # not read either way: passed through, counted


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(feeds(), st.data())
def test_csv_nan_on_a_feed_with_a_quoted_cell_takes_the_table_s_way(
        case: tuple[bytes, bytes, bytes, int, list[list[bytes]]], data: Any) -> None:
    body, delimiter, terminator, start, rows = case
    i = data.draw(st.integers(0, len(rows) - 1))
    j = data.draw(st.integers(0, len(rows[i]) - 1))
    quoted = [r[:] for r in rows]
    quoted[i][j] = b'"' + quoted[i][j] + b'"'
    final = terminator if body.endswith(terminator) else b""
    body = body[:start] + terminator.join(delimiter.join(r) for r in quoted) + final
    from proxy.payload.adapters.base import AdapterOptions

    assert CSV.blank_cells(body, AdapterOptions(), None, 1.0, np.random.default_rng(0)) == (False, None)


def test_csv_type_swap_quotes_the_number_and_a_nonnumeric_reader_sees_text() -> None:
    body = b'"a","b"\n1.5,"x"\n2,"y"\n'  # as csv.writer(quoting=QUOTE_NONNUMERIC) writes it
    assert list(csv.reader(io.StringIO(body.decode()), quoting=csv.QUOTE_NONNUMERIC))[1] == [1.5, "x"]
    parsed = read(CSV, body)
    out = CSV.write(parsed, mutate.type_swap(parsed.table, rng=np.random.default_rng(0)).table)
    assert out == b'"a","b"\n"1.5","x"\n"2","y"\n'
    rows = list(csv.reader(io.StringIO(out.decode()), quoting=csv.QUOTE_NONNUMERIC))
    assert rows[1:] == [["1.5", "x"], ["2", "y"]]


def test_csv_renamed_and_shifted_cells() -> None:
    parsed = read(CSV, b"id,price\n1,1.50\n2,2.00\n")
    m = mutate.rename_feature(parsed.table, rng=np.random.default_rng(0), mapping={"price": "cost"})
    assert CSV.write(parsed, m.table) == b"id,cost\n1,1.50\n2,2.00\n"
    s = mutate.shift(parsed.table, rng=np.random.default_rng(0), features=["price"], scale=2.0)
    assert CSV.write(parsed, s.table) == b"id,price\n1,3.0\n2,4.0\n"


# ---------------------------------------------------------------------------------------------- JSON Lines

JSON_SCALAR = st.one_of(st.none(), st.booleans(), st.integers(-10**15, 10**15),
                        st.floats(allow_nan=False, allow_infinity=False), st.text(max_size=6))


@st.composite
def jsonl_files(draw: Any) -> tuple[bytes, list[dict[str, Any]]]:
    keys = draw(st.lists(st.text(min_size=1, max_size=4), min_size=1, max_size=4, unique=True))
    records = draw(st.lists(st.dictionaries(st.sampled_from(keys), JSON_SCALAR, min_size=1), min_size=1, max_size=10))
    seps = draw(st.sampled_from(((",", ":"), (", ", ": "))))
    terminator = draw(st.sampled_from(("\n", "\r\n")))
    final = draw(st.booleans())
    text = terminator.join(json.dumps(r, separators=seps) for r in records) + (terminator if final else "")
    return text.encode(), records


@settings(max_examples=150, deadline=None)
@given(jsonl_files(), st.integers(0, 2**32 - 1))
def test_jsonl_round_trip_keeps_unchanged_lines_byte_for_byte(case: tuple[bytes, list[dict[str, Any]]],
                                                               seed: int) -> None:
    body, records = case
    parsed = read(JSONL, body)
    assert parsed.table.rows() == records  # every value, with its type (bool stays bool, int stays int)
    assert JSONL.write(parsed, parsed.table.copy()) == body
    m = mutate.nan(parsed.table, rng=np.random.default_rng(seed), fraction=0.3)
    out = JSONL.write(parsed, m.table)
    lines_in, lines_out = body.splitlines(), out.splitlines()
    assert len(lines_out) == len(lines_in)
    for i, (a, b) in enumerate(zip(lines_in, lines_out, strict=True)):
        row = m.table.row(i)
        if all(type(row[k]) is type(v) and row[k] == v for k, v in records[i].items()):
            assert a == b
        else:
            got = json.loads(b)
            assert set(got) == set(records[i])
            assert all(got[k] == v or (got[k] is None and isinstance(row[k], float) and math.isnan(row[k]))
                       for k, v in records[i].items())


def test_jsonl_drop_and_rename_rewrite_the_lines() -> None:
    parsed = read(JSONL, b'{"a": 1, "b": 2}\n{"a": 3}\n')
    m = mutate.rename_feature(parsed.table, rng=np.random.default_rng(0), mapping={"a": "A"})
    assert JSONL.write(parsed, m.table) == b'{"A":1,"b":2}\n{"A":3}\n'
    assert parsed.table.columns[1] == [2, MISSING]


# ------------------------------------------------------------------------------------------- JSON records

@settings(max_examples=100, deadline=None)
@given(st.lists(st.dictionaries(st.text(min_size=1, max_size=4), JSON_SCALAR, min_size=1), min_size=1, max_size=8),
       st.integers(0, 2**32 - 1))
def test_json_records_round_trip(records: list[dict[str, Any]], seed: int) -> None:
    parsed = read(RECORDS, json.dumps(records, indent=1).encode())
    assert json.loads(RECORDS.write(parsed, parsed.table.copy())) == records
    m = mutate.truncate_batch(parsed.table, rng=np.random.default_rng(seed), fraction=0.5)
    kept = [records[r] for r in m.table.row_origins() if r is not None]
    assert json.loads(RECORDS.write(parsed, m.table)) == kept


# ------------------------------------------------------------------------------------------------ Parquet


def _parquet(columns: dict[str, Any], compression: str = "zstd") -> bytes:
    pa = pytest.importorskip("pyarrow")
    pq = pytest.importorskip("pyarrow.parquet")
    sink = pa.BufferOutputStream()
    pq.write_table(pa.table(columns), sink, compression=compression)
    data: bytes = sink.getvalue().to_pybytes()
    return data


@settings(max_examples=40, deadline=None)
@given(st.lists(st.tuples(st.integers(-2**31, 2**31 - 1), st.one_of(st.none(), st.floats(allow_nan=False)),
                          st.one_of(st.none(), st.text(max_size=5)), st.booleans()), min_size=1, max_size=20),
       st.sampled_from(("snappy", "zstd", "gzip", "none")),
       st.sampled_from(("nan", "truncate_batch", "reorder_rows", "type_swap", "shift")), st.integers(0, 2**32 - 1))
def test_parquet_round_trip_keeps_schema_codec_and_untouched_cells(
        rows: list[tuple[Any, ...]], codec: str, fault: str, seed: int) -> None:
    pa = pytest.importorskip("pyarrow")
    pq = pytest.importorskip("pyarrow.parquet")
    cols = {"id": pa.array([r[0] for r in rows], pa.int32()), "x": pa.array([r[1] for r in rows], pa.float64()),
            "s": pa.array([r[2] for r in rows], pa.string()), "ok": pa.array([r[3] for r in rows], pa.bool_())}
    body = _parquet(cols, codec)
    parsed = read(PARQUET, body)
    assert parsed.table.columns == [[r[j] for r in rows] for j in range(4)]
    m = mutate.MUTATIONS[fault](parsed.table, rng=np.random.default_rng(seed), fraction=0.5)
    out = PARQUET.write(parsed, m.table)
    meta = pq.ParquetFile(pa.BufferReader(out)).metadata
    assert meta.row_group(0).column(0).compression == ("UNCOMPRESSED" if codec == "none" else codec.upper())
    got = pq.read_table(pa.BufferReader(out))
    original = pq.read_table(pa.BufferReader(body))
    for j, name in enumerate(got.column_names):
        # A number column that type_swap gave strings holds strings: Parquet has no mixed columns.
        drift = fault == "type_swap" and name != "s" and any(isinstance(v, str) for v in m.table.columns[j])
        assert got.schema.field(name).type == (pa.string() if drift else original.schema.field(name).type)
        values = got.column(name).to_pylist()
        for i, r in enumerate(m.table.row_origins()):
            assert r is not None  # no row faults make new rows
            v, was = m.table.columns[j][i], parsed.table.columns[j][r]
            if v is was:
                assert values[i] == (str(was) if drift and was is not None else was)
            elif isinstance(v, float) and math.isnan(v):
                assert values[i] is None  # a cell made missing is null


def test_parquet_without_pyarrow_is_not_read(monkeypatch: pytest.MonkeyPatch) -> None:
    from proxy.payload.adapters import parquet

    monkeypatch.setitem(parquet._ARROW, "pa", None)
    assert PARQUET.read(b"PAR1 anything PAR1", direction="response") is None
    assert detect_response("/b/x.parquet", [], b"PAR1 anything PAR1") is PARQUET


# --------------------------------------------------------------------------------------- render, headers

def test_render_writes_a_table_in_each_format() -> None:
    parsed = read(JSONL, b'{"a": 1, "b": "x,y"}\n{"a": 2.5, "b": null}\n')
    assert render(parsed.table, "csv") == b'a,b\n1,"x,y"\n2.5,\n'
    assert render(parsed.table, "csv", "|") == b"a|b\n1|x,y\n2.5|\n"
    assert render(parsed.table, "jsonl") == b'{"a":1,"b":"x,y"}\n{"a":2.5,"b":null}\n'
    assert json.loads(render(parsed.table, "json_records")) == [{"a": 1, "b": "x,y"}, {"a": 2.5, "b": None}]


def test_fix_headers_recomputes_single_part_etags_and_drops_the_rest() -> None:
    import base64
    import hashlib

    body = b"new"
    md5 = hashlib.md5(body).digest()
    headers = [(b"ETag", b'"0123456789abcdef0123456789abcdef"'), (b"Content-MD5", b"x"),
               (b"x-amz-checksum-crc32", b"AAAAAA=="), (b"x-amz-checksum-type", b"FULL_OBJECT"),
               (b"Last-Modified", b"Wed, 01 Jan 2025 00:00:00 GMT")]
    assert fix_headers(headers, body) == [
        (b"ETag", b'"' + md5.hex().encode() + b'"'), (b"Content-MD5", base64.b64encode(md5)),
        (b"Last-Modified", b"Wed, 01 Jan 2025 00:00:00 GMT")]
    assert fix_headers([(b"etag", b'"9b2cf535f27731c974343645a3985328-3"')], body) == []  # multipart
    assert fix_headers([(b"ETag", b'"5f2b1c3a-1a2"')], body) == []  # nginx: mtime-size
    assert fix_headers([(b"ETag", b'W/"abc"')], body) == [(b"ETag", b'W/"' + md5.hex().encode() + b'"')]
