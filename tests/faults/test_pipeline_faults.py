"""Pipeline faults on data feeds (CSV, JSON Lines, a JSON array of records, Parquet) answered to a GET: exact
effects per fault, the header fixes of a rewritten object, and each format end to end through a real sidecar
in front of a small aiohttp file server, read by the stdlib's csv and json readers."""

from __future__ import annotations

import base64
import csv
import hashlib
import io
import json
import xml.etree.ElementTree as ET
import zlib
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from multidict import CIMultiDict

from tests.conftest import Upstream, policy_from
from tests.dataplane.conftest import FORCE_CHAOS, FORCE_CONTROL, OVERRIDE_ENV, chaos_experiment

ROWS = 40
CSV_BODY = ("id,price,qty,city\n" + "".join(
    f"{i},{i * 1.25:.2f},{i % 7},{'Paris' if i % 2 else 'Lyon'}\n" for i in range(ROWS))).encode()


class Files:
    """A small object store: GET /bucket/KEY answers the bytes stored under KEY with S3's headers (ETag and
    Content-MD5 of the body, a CRC32 checksum, the Last-Modified of its version); a Range header gets a 206."""

    def __init__(self) -> None:
        self.objects: dict[str, tuple[bytes, str, str]] = {}
        self.gets = 0

    def put(self, key: str, body: bytes, content_type: str = "binary/octet-stream",
            modified: str = "Wed, 01 Jan 2025 00:00:00 GMT") -> None:
        self.objects[key] = (body, content_type, modified)

    async def handle(self, request: web.Request) -> web.Response:
        if request.method != "GET":
            return web.Response(status=200, headers={"ETag": '"d41d8cd98f00b204e9800998ecf8427e"'})  # PutObject
        self.gets += 1
        key = request.match_info["key"]
        if key not in self.objects:
            return web.Response(status=404)
        body, ctype, modified = self.objects[key]
        md5 = hashlib.md5(body).digest()
        headers = {
            "Content-Type": ctype, "ETag": f'"{md5.hex()}"', "Content-MD5": base64.b64encode(md5).decode(),
            "x-amz-checksum-crc32": base64.b64encode(zlib.crc32(body).to_bytes(4, "big")).decode(),
            "x-amz-request-id": "4442587FB7D0A2F9", "Server": "AmazonS3", "Last-Modified": modified}
        if "Range" in request.headers:
            first, last = (int(x) for x in request.headers["Range"].removeprefix("bytes=").split("-"))
            headers["Content-Range"] = f"bytes {first}-{last}/{len(body)}"
            return web.Response(status=206, body=body[first:last + 1], headers=headers)
        return web.Response(body=body, headers=headers)


async def _store(start_upstream: Callable[..., Awaitable[Upstream]]) -> tuple[Upstream, Files]:
    files = Files()
    up = await start_upstream({"/bucket/{key:.*}": files.handle})
    return up, files


async def _get(port: int, key: str, headers: dict[str, str] = FORCE_CHAOS) -> tuple[int, CIMultiDict[str], bytes]:
    async with aiohttp.ClientSession() as s, \
            s.get(f"http://127.0.0.1:{port}/bucket/{key}", headers=headers) as r:
        return r.status, r.headers.copy(), await r.read()


def _missing(body: bytes) -> int:
    return sum(1 for row in csv.DictReader(io.StringIO(body.decode())) for v in row.values() if v == "")


async def test_nan_on_a_csv_object_empties_cells_and_fixes_the_headers(start_upstream, start_sidecar):
    up, files = await _store(start_upstream)
    files.put("daily.csv", CSV_BODY)
    fault = {"type": "nan", "target": "response", "features": ["price"], "fraction": 0.5}
    sc = await start_sidecar(policy_from(up.url, chaos_experiment([fault])), env=OVERRIDE_ENV)
    status, headers, body = await _get(sc.proxy_port, "daily.csv")
    assert status == 200
    rows = list(csv.DictReader(io.StringIO(body.decode())))
    original = list(csv.DictReader(io.StringIO(CSV_BODY.decode())))
    assert len(rows) == ROWS and _missing(body) == ROWS // 2
    for got, was in zip(rows, original, strict=True):
        assert got["price"] in ("", was["price"])
        assert {k: got[k] for k in ("id", "qty", "city")} == {k: was[k] for k in ("id", "qty", "city")}
    md5 = hashlib.md5(body).digest()
    assert headers["ETag"] == f'"{md5.hex()}"' and headers["Content-MD5"] == base64.b64encode(md5).decode()
    assert "x-amz-checksum-crc32" not in headers and headers["Last-Modified"] == "Wed, 01 Jan 2025 00:00:00 GMT"
    assert int(headers["Content-Length"]) == len(body)
    _, control_headers, control = await _get(sc.proxy_port, "daily.csv", FORCE_CONTROL)
    assert control == CSV_BODY and "x-amz-checksum-crc32" in control_headers


async def test_nan_on_a_csv_with_quoted_line_breaks_reads_the_table(start_upstream, start_sidecar):
    # A quoted cell may hold a line break: such a body is not cut by its line breaks but read as a table; the
    # answer is the same kind of answer (every price emptied, every other cell as it was written).
    body = ('id,note,price\n' + "".join(f'{i},"line {i}\nand, more",{i * 1.5}\n' for i in range(12))).encode()
    fault = {"type": "nan", "target": "response", "features": ["price"], "fraction": 1.0}
    sc, _ = await _faulted(start_upstream, start_sidecar, [fault], "notes.csv", body)
    status, headers, got = await _get(sc.proxy_port, "notes.csv")
    assert status == 200
    assert got == b"id,note,price\n" + b"".join(b'%d,"line %d\nand, more",\n' % (i, i) for i in range(12))
    assert int(headers["Content-Length"]) == len(got) and headers["ETag"] == f'"{hashlib.md5(got).hexdigest()}"'


async def _faulted(start_upstream: Any, start_sidecar: Any, faults: list[dict[str, Any]], key: str, body: bytes,
                   content_type: str = "binary/octet-stream", **policy: Any) -> tuple[Any, Files]:
    up, files = await _store(start_upstream)
    files.put(key, body, content_type)
    sc = await start_sidecar(policy_from(up.url, {**chaos_experiment(faults), **policy}), env=OVERRIDE_ENV)
    return sc, files


def _rows(body: bytes, delimiter: str = ",") -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(body.decode()), delimiter=delimiter))


ORIGINAL = _rows(CSV_BODY)


async def test_drop_feature_on_json_lines_removes_the_key_from_every_line(start_upstream, start_sidecar):
    body = b"".join(json.dumps({"id": i, "price": i / 4, "city": "Paris"}).encode() + b"\n" for i in range(ROWS))
    sc, _ = await _faulted(start_upstream, start_sidecar,
                           [{"type": "drop_feature", "target": "response", "features": ["price"]}], "day.jsonl", body)
    status, headers, got = await _get(sc.proxy_port, "day.jsonl")
    records = [json.loads(line) for line in got.splitlines()]
    assert status == 200 and records == [{"id": i, "city": "Paris"} for i in range(ROWS)]
    assert headers["ETag"] == f'"{hashlib.md5(got).hexdigest()}"'


async def test_rename_feature_on_json_records(start_upstream, start_sidecar):
    records = [{"id": i, "price": i / 4} for i in range(ROWS)]
    fault = {"type": "rename_feature", "target": "response", "mapping": {"price": "cost"}}
    sc, _ = await _faulted(start_upstream, start_sidecar, [fault], "day.json", json.dumps(records).encode(),
                           "application/json")
    _, _, got = await _get(sc.proxy_port, "day.json")
    assert json.loads(got) == [{"id": r["id"], "cost": r["price"]} for r in records]


async def test_parquet_through_the_sidecar(start_upstream, start_sidecar):
    pa = pytest.importorskip("pyarrow")
    pq = pytest.importorskip("pyarrow.parquet")
    sink = pa.BufferOutputStream()
    pq.write_table(pa.table({"id": list(range(ROWS)), "price": [i / 4 for i in range(ROWS)]}), sink,
                   compression="snappy")
    body = sink.getvalue().to_pybytes()
    fault = {"type": "nan", "target": "response", "features": ["price"], "fraction": 0.25}
    sc, _ = await _faulted(start_upstream, start_sidecar, [fault], "day.parquet", body)
    _, _, got = await _get(sc.proxy_port, "day.parquet")
    table = pq.read_table(pa.BufferReader(got))
    assert table.schema == pq.read_table(pa.BufferReader(body)).schema
    assert table.column("price").null_count == ROWS // 4 and table.column("id").to_pylist() == list(range(ROWS))


async def test_parquet_without_pyarrow_passes_through_counted(start_upstream, start_sidecar, monkeypatch):
    from proxy.payload.adapters import parquet

    monkeypatch.setitem(parquet._ARROW, "pa", None)
    body = b"PAR1" + bytes(range(256)) + b"PAR1"
    sc, _ = await _faulted(start_upstream, start_sidecar, [{"type": "nan", "target": "response"}], "d.parquet", body)
    status, _, got = await _get(sc.proxy_port, "d.parquet")
    assert status == 200 and got == body
    assert sc.metrics.payload_unparsed.labels("e1", "chaos", "response").value == 1


async def test_a_body_over_the_inspection_limit_passes_through_counted(start_upstream, start_sidecar):
    big = CSV_BODY * 2000  # ~1.3 MB
    sc, _ = await _faulted(start_upstream, start_sidecar, [{"type": "nan", "target": "response"}], "big.csv", big,
                           limits={"inspect_body_bytes": "256KiB"})
    _, headers, got = await _get(sc.proxy_port, "big.csv")
    assert got == big and headers["ETag"] == f'"{hashlib.md5(big).hexdigest()}"'
    assert sc.metrics.registry.get_sample_value("mlchaos_proxy_errors_total",
                                                {"kind": "response_over_inspect_limit"}) == 1


async def test_a_range_read_is_not_rewritten(start_upstream, start_sidecar):
    sc, _ = await _faulted(start_upstream, start_sidecar, [{"type": "nan", "target": "response"}], "d.csv", CSV_BODY)
    status, headers, got = await _get(sc.proxy_port, "d.csv", {**FORCE_CHAOS, "Range": "bytes=0-99"})
    assert status == 206 and got == CSV_BODY[:100] and headers["Content-Range"] == f"bytes 0-99/{len(CSV_BODY)}"


@pytest.mark.parametrize(("fault", "check"), [
    ({"type": "truncate_batch", "fraction": 0.25},
     lambda rows: len(rows) == ROWS * 3 // 4 and all(r in ORIGINAL for r in rows)),
    ({"type": "truncate_batch", "fraction": 0.25, "where": "tail"}, lambda rows: rows == ORIGINAL[: ROWS * 3 // 4]),
    ({"type": "shift", "features": ["qty"], "scale": 2.0},
     lambda rows: [int(r["qty"]) for r in rows] == [2 * int(r["qty"]) for r in ORIGINAL]
     and [r["price"] for r in rows] == [r["price"] for r in ORIGINAL]),
    ({"type": "out_of_range", "features": ["price"], "fraction": 0.5, "factor": 1000.0},
     lambda rows: sum(abs(float(r["price"])) >= 1000 * 48.75 for r in rows) == ROWS // 2),
    ({"type": "drop_feature", "features": ["city"]},
     lambda rows: rows == [{k: v for k, v in r.items() if k != "city"} for r in ORIGINAL]),
])
async def test_table_faults_on_a_csv_answer(start_upstream, start_sidecar, fault, check):
    sc, _ = await _faulted(start_upstream, start_sidecar, [{**fault, "target": "response"}], "d.csv", CSV_BODY)
    _, _, got = await _get(sc.proxy_port, "d.csv")
    assert check(_rows(got)), got[:300]


async def test_type_swap_on_a_csv_answer_quotes_the_numbers(start_upstream, start_sidecar):
    fault = {"type": "type_swap", "target": "response", "features": ["qty"]}
    sc, _ = await _faulted(start_upstream, start_sidecar, [fault], "d.csv", CSV_BODY)
    _, _, got = await _get(sc.proxy_port, "d.csv")
    lines = got.decode().splitlines()
    assert all(line.split(",")[2] == f'"{i % 7}"' for i, line in enumerate(lines[1:]))
    assert _rows(got) == ORIGINAL  # a reader that types by content sees the same values


async def test_reorder_rows_with_a_seed_moves_every_chosen_row_the_same_way_each_time(start_upstream, start_sidecar):
    fault = {"type": "reorder_rows", "target": "response", "fraction": 0.5, "seed": 7}
    sc, _ = await _faulted(start_upstream, start_sidecar, [fault], "d.csv", CSV_BODY)
    first = _rows((await _get(sc.proxy_port, "d.csv"))[2])
    second = _rows((await _get(sc.proxy_port, "d.csv"))[2])
    assert first == second and first != ORIGINAL
    assert sorted(first, key=lambda r: int(r["id"])) == ORIGINAL
    assert sum(a != b for a, b in zip(first, ORIGINAL, strict=True)) == ROWS // 2


async def test_duplicate_rows_repeats_a_fraction_right_after_themselves(start_upstream, start_sidecar):
    fault = {"type": "duplicate_rows", "target": "response", "fraction": 0.25}
    sc, _ = await _faulted(start_upstream, start_sidecar, [fault], "d.csv", CSV_BODY)
    rows = _rows((await _get(sc.proxy_port, "d.csv"))[2])
    assert len(rows) == ROWS + ROWS // 4
    deduped = [r for i, r in enumerate(rows) if i == 0 or r != rows[i - 1]]
    assert deduped == ORIGINAL


@pytest.mark.parametrize(("to", "ctype", "parse"), [
    ("jsonl", "application/x-ndjson", lambda b: [json.loads(x) for x in b.splitlines()]),
    ("json_records", "application/json", json.loads),
    ("csv_semicolon", "text/csv; charset=utf-8", lambda b: _rows(b, ";")),
    ("tsv", "text/tab-separated-values; charset=utf-8", lambda b: _rows(b, "\t")),
])
async def test_format_swap_serves_the_csv_in_another_format(start_upstream, start_sidecar, to, ctype, parse):
    sc, _ = await _faulted(start_upstream, start_sidecar, [{"type": "format_swap", "to": to}], "d.csv", CSV_BODY)
    _, headers, got = await _get(sc.proxy_port, "d.csv")
    assert headers["Content-Type"] == ctype and headers["ETag"] == f'"{hashlib.md5(got).hexdigest()}"'
    rows = parse(got)
    if to.startswith(("csv", "tsv")):
        assert rows == ORIGINAL and b"1.25" in got  # each cell's text kept
    else:
        assert rows == [{"id": int(r["id"]), "price": float(r["price"]), "qty": int(r["qty"]), "city": r["city"]}
                        for r in ORIGINAL]
    assert _rows(got) != ORIGINAL  # a pipeline reading it as the CSV it was no longer gets its table


async def test_format_swap_keep_leaves_the_old_label_and_json_becomes_csv(start_upstream, start_sidecar):
    records = [{"a": 1, "b": "x"}, {"a": 2, "b": None}]
    fault = {"type": "format_swap", "to": "csv", "content_type": "keep"}
    sc, _ = await _faulted(start_upstream, start_sidecar, [fault], "d.json", json.dumps(records).encode(),
                           "application/json")
    _, headers, got = await _get(sc.proxy_port, "d.json")
    assert headers["Content-Type"] == "application/json" and got == b"a,b\n1,x\n2,\n"


async def test_stale_object_serves_the_earlier_version_with_its_own_headers(start_upstream, start_sidecar):
    sc, files = await _faulted(start_upstream, start_sidecar, [{"type": "stale_object"}], "d.csv", CSV_BODY)
    _, first, body = await _get(sc.proxy_port, "d.csv")
    assert body == CSV_BODY  # nothing older known yet
    newer = CSV_BODY + b"40,50.00,5,Paris\n"
    files.put("d.csv", newer, modified="Thu, 02 Jan 2025 00:00:00 GMT")
    for _ in range(2):  # stays stale while the object does not change again
        _, headers, body = await _get(sc.proxy_port, "d.csv")
        assert body == CSV_BODY and headers["Last-Modified"] == "Wed, 01 Jan 2025 00:00:00 GMT"
        assert headers["ETag"] == first["ETag"] and headers["x-amz-checksum-crc32"] == first["x-amz-checksum-crc32"]
        assert int(headers["Content-Length"]) == len(CSV_BODY)
    _, headers, body = await _get(sc.proxy_port, "d.csv", FORCE_CONTROL)
    assert body == newer and headers["Last-Modified"] == "Thu, 02 Jan 2025 00:00:00 GMT"


def test_the_object_cache_keeps_to_its_bounds() -> None:
    from proxy.faults.stale_object import ObjectCache

    cache = ObjectCache(max_bytes=10_000, max_objects=3)
    for k in range(5):
        assert cache.observe(f"k{k}", b"a" * 1000, []) is None
        assert cache.observe(f"k{k}", b"b" * 1000, []).body == b"a" * 1000  # type: ignore[union-attr]
        assert cache.bytes <= 10_000 and len(cache.entries) <= 3
    assert list(cache.entries) == ["k2", "k3", "k4"]  # the least recently seen went first
    assert cache.bytes == sum(cache._size(e) for e in cache.entries.values())
    # Two versions over the budget: the newest alone is kept; one over it alone is not kept at all.
    assert cache.observe("k4", b"c" * 6000, []).body == b"b" * 1000  # type: ignore[union-attr]
    assert cache.observe("big", b"x" * 20_000, []) is None and "big" not in cache.entries
    assert cache.bytes <= 10_000


@pytest.mark.parametrize(("code", "status"), [("SlowDown", 503), ("NoSuchKey", 404), ("AccessDenied", 403),
                                              ("InternalError", 500)])
async def test_abort_answers_an_s3_error(start_upstream, start_sidecar, code, status):
    sc, files = await _faulted(start_upstream, start_sidecar, [{"type": "abort", "s3_error": code}], "d.csv",
                               CSV_BODY)
    ids = set()
    for _ in range(2):
        got_status, headers, body = await _get(sc.proxy_port, "d.csv")
        error = ET.fromstring(body)
        assert got_status == status and headers["Content-Type"] == "application/xml"
        assert error.tag == "Error" and error.findtext("Code") == code and error.findtext("Message")
        assert error.findtext("RequestId") == headers["x-amz-request-id"]
        ids.add(headers["x-amz-request-id"])
    assert len(ids) == 2 and files.gets == 0


@pytest.mark.parametrize(("fault", "where"), [
    ({"s3_error": "NoSuchKey", "status": 500}, "status"),
    ({"s3_error": "NoSuchKey", "body": "x"}, "s3_error"),
    ({"s3_error": "NoSuchKey", "error_code": "X"}, "s3_error"),
    ({"s3_error": "Nope"}, "s3_error"),
])
def test_abort_s3_error_conflicts_are_refused(fault: dict[str, Any], where: str) -> None:
    from proxy.declare.errors import Errors
    from proxy.faults import parse_fault

    errors = Errors()
    assert parse_fault({"type": "abort", **fault}, "f", errors) is None
    assert any(path == f"f.{where}" for path, _ in errors.problems), errors.problems


def test_format_swap_of_a_file_already_in_the_format_changes_nothing() -> None:
    from proxy.faults.format_swap import swapped
    from proxy.payload.adapters import get_adapter

    csv_table = get_adapter("csv").read(CSV_BODY, direction="response")
    assert csv_table is not None and swapped(csv_table, "csv") is None
    assert swapped(csv_table, "csv_pipe") == CSV_BODY.replace(b",", b"|")
    lines = get_adapter("jsonl").read(b'{"a": 1}\n', direction="response")
    assert lines is not None and swapped(lines, "jsonl") is None and swapped(lines, "csv") == b"a\n1\n"


def test_format_swap_writes_parquet_cells_as_text() -> None:
    import datetime

    from proxy.faults.format_swap import swapped
    from proxy.payload.adapters import get_adapter

    pa = pytest.importorskip("pyarrow")
    pq = pytest.importorskip("pyarrow.parquet")
    sink = pa.BufferOutputStream()
    pq.write_table(pa.table({"ts": [datetime.datetime(2025, 1, 1, 12)], "x": [1.5]}), sink)
    table = get_adapter("parquet").read(sink.getvalue().to_pybytes(), direction="response")
    assert table is not None
    assert swapped(table, "csv") == b"ts,x\n2025-01-01 12:00:00,1.5\n"
    assert swapped(table, "jsonl") == b'{"ts":"2025-01-01T12:00:00","x":1.5}\n'


async def test_stale_object_remembers_gets_only(start_upstream, start_sidecar):
    sc, _ = await _faulted(start_upstream, start_sidecar, [{"type": "stale_object"}], "d.csv", CSV_BODY)
    async with aiohttp.ClientSession() as s, \
            s.put(f"http://127.0.0.1:{sc.proxy_port}/bucket/d.csv", data=b"x", headers=FORCE_CHAOS) as r:
        assert r.status == 200 and await r.read() == b""
    _, _, body = await _get(sc.proxy_port, "d.csv")
    assert body == CSV_BODY  # the PUT's answer was not taken for an earlier version


async def test_a_key_without_a_suffix_is_read_when_the_policy_names_the_format(start_upstream, start_sidecar):
    up, files = await _store(start_upstream)
    files.put("exports/daily", CSV_BODY)  # binary/octet-stream and no suffix: nothing says CSV
    fault = {"type": "truncate_batch", "target": "response", "fraction": 0.5, "where": "tail"}
    plain = await start_sidecar(policy_from(up.url, chaos_experiment([fault])), env=OVERRIDE_ENV)
    assert (await _get(plain.proxy_port, "exports/daily"))[2] == CSV_BODY
    assert plain.metrics.payload_unparsed.labels("e1", "chaos", "response").value == 1
    extra = chaos_experiment([fault])
    extra["experiments"][0]["payload"] = {"format": "csv"}
    told = await start_sidecar(policy_from(up.url, extra), env=OVERRIDE_ENV)
    assert _rows((await _get(told.proxy_port, "exports/daily"))[2]) == ORIGINAL[: ROWS // 2]


async def test_two_faults_on_one_answer_each_read_what_the_one_before_wrote(start_upstream, start_sidecar):
    faults = [{"type": "nan", "target": "response", "features": ["price"], "fraction": 0.5},
              {"type": "duplicate_rows", "target": "response", "fraction": 0.25}]
    sc, _ = await _faulted(start_upstream, start_sidecar, faults, "d.csv", CSV_BODY)
    _, headers, got = await _get(sc.proxy_port, "d.csv")
    rows = _rows(got)
    deduped = [r for i, r in enumerate(rows) if i == 0 or r != rows[i - 1]]
    assert len(rows) == ROWS + ROWS // 4 and len(deduped) == ROWS
    assert sum(r["price"] == "" for r in deduped) == ROWS // 2
    assert headers["ETag"] == f'"{hashlib.md5(got).hexdigest()}"'
