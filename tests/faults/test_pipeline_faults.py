"""Pipeline faults on data feeds (CSV, JSON Lines, a JSON array of records, Parquet) answered to a GET: exact
effects per fault, the header fixes of a rewritten object, and each format end to end through a real sidecar
in front of a small aiohttp file server, read by the stdlib's csv and json readers."""

from __future__ import annotations

import base64
import csv
import hashlib
import io
from collections.abc import Awaitable, Callable

import aiohttp
from aiohttp import web
from multidict import CIMultiDict

from tests.conftest import Upstream, policy_from
from tests.dataplane.conftest import FORCE_CHAOS, FORCE_CONTROL, OVERRIDE_ENV, chaos_experiment

ROWS = 40
CSV_BODY = ("id,price,qty,city\n" + "".join(
    f"{i},{i * 1.25:.2f},{i % 7},{'Paris' if i % 2 else 'Lyon'}\n" for i in range(ROWS))).encode()


class Files:
    """A small object store: GET /bucket/KEY answers the bytes stored under KEY with S3's headers."""

    def __init__(self) -> None:
        self.objects: dict[str, tuple[bytes, str]] = {}
        self.gets = 0

    def put(self, key: str, body: bytes, content_type: str = "binary/octet-stream") -> None:
        self.objects[key] = (body, content_type)

    async def handle(self, request: web.Request) -> web.Response:
        self.gets += 1
        key = request.match_info["key"]
        if key not in self.objects:
            return web.Response(status=404)
        body, ctype = self.objects[key]
        md5 = hashlib.md5(body).digest()
        return web.Response(body=body, headers={
            "Content-Type": ctype, "ETag": f'"{md5.hex()}"', "Content-MD5": base64.b64encode(md5).decode(),
            "x-amz-checksum-crc32": "AAAAAA==", "x-amz-request-id": "4442587FB7D0A2F9", "Server": "AmazonS3",
            "Last-Modified": "Wed, 01 Jan 2025 00:00:00 GMT"})


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
    assert control == CSV_BODY and control_headers["x-amz-checksum-crc32"] == "AAAAAA=="
