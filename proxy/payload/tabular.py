"""What the tabular data-feed formats share: how a response says what it is, CSV cells as text and back, a table
written afresh in another format, and the headers a rewritten object's answer must not keep as they came.

Detection (``media_type``, ``suffix``): a data feed is recognised from the response's Content-Type, or, when
that says nothing specific (absent, ``application/octet-stream``, S3's ``binary/octet-stream``, ``text/plain``:
what ``boto3.upload_file`` and most object stores give a file whose type nobody set), from the request path's
suffix. An S3 ``GetObject`` is a GET of ``/bucket/key``: the same rules apply to its key. A body with a
Content-Encoding (gzip ...) is never read: it passes through untouched and is counted.

Header fixes (``fix_headers``), when a fault rewrote the body of an answer (the client must not reject it for
the wrong reason: a checksum that no longer matches is not the failure the fault means to inject):

- ``Content-Length``: set from the new body by the proxy when the response is sent (every rewrite).
- ``ETag``: a single-part ETag (a quoted MD5, no ``-``) becomes the quoted MD5 of the new body, as S3 computes
  it; one with a ``-`` (an S3 multipart upload's ``"<md5 of md5s>-<parts>"``, nginx's ``"<mtime>-<size>"``) is
  dropped: it cannot be recomputed from the body alone. A weak ``W/`` prefix is kept.
- ``Content-MD5``: recomputed (base64 of the new body's MD5).
- ``x-amz-checksum-crc32``/``-crc32c``/``-crc64nvme``/``-sha1``/``-sha256`` and ``x-amz-checksum-type``:
  dropped. botocore (read in 1.44: ``httpchecksum.handle_checksum_body``) validates the first of these present,
  in its priority order, against the body it read, and raises FlexibleChecksumError on a mismatch, whenever the
  GetObject asked for checksums: ``ChecksumMode: ENABLED``, which ``handlers._handle_request_validation_mode_member``
  sets by default (``response_checksum_validation="when_supported"``, the default since 1.36). It skips a
  composite value (with a ``-``); without any there is nothing to validate. It checks neither the ETag nor a
  Content-MD5 of an answer (Content-MD5 only goes on requests).
- ``Last-Modified``, ``x-amz-version-id`` and everything else: kept (``stale_object`` serves an older version's).
"""

from __future__ import annotations

import base64
import hashlib
import json
import math
import re
from collections.abc import Sequence
from typing import Any, Final

import orjson

from .table import MISSING, FeatureTable, is_number

__all__ = [
    "CHECKSUM_HEADERS",
    "GENERIC_MEDIA",
    "body_start",
    "encoded",
    "fix_headers",
    "format_cell",
    "json_bytes",
    "looks_typed",
    "media_type",
    "null_nonfinite",
    "render",
    "suffix",
    "type_cell",
]

# Content-Types that say nothing about the format: the path's suffix decides.
GENERIC_MEDIA: Final = frozenset({"", "application/octet-stream", "binary/octet-stream", "text/plain"})
CHECKSUM_HEADERS: Final = frozenset({
    b"x-amz-checksum-crc32", b"x-amz-checksum-crc32c", b"x-amz-checksum-crc64nvme", b"x-amz-checksum-sha1",
    b"x-amz-checksum-sha256", b"x-amz-checksum-type",
})


def _header(headers: Sequence[tuple[bytes, bytes]], name: bytes) -> bytes | None:
    for n, v in headers:
        if n.lower() == name:
            return v
    return None


def media_type(headers: Sequence[tuple[bytes, bytes]]) -> str:
    """The response's Content-Type, lowercased, without parameters; "" when absent."""
    value = _header(headers, b"content-type")
    if value is None:
        return ""
    return value.split(b";", 1)[0].strip().lower().decode("latin-1")


def encoded(headers: Sequence[tuple[bytes, bytes]]) -> bool:
    """Whether the body has a Content-Encoding other than identity (it is then never read)."""
    value = _header(headers, b"content-encoding")
    return value is not None and value.strip().lower() not in (b"", b"identity")


def suffix(path: str) -> str:
    """The lowercased extension of the path's last segment (".csv"), "" when it has none."""
    last = path.split("?", 1)[0].rsplit("/", 1)[-1]
    dot = last.rfind(".")
    return last[dot:].lower() if dot > 0 else ""


def body_start(body: bytes) -> int:
    """The first byte of the body past a UTF-8 byte order mark and white space (-1 for an empty body)."""
    i = 3 if body.startswith(b"\xef\xbb\xbf") else 0
    n = len(body)
    while i < n and body[i] in b" \t\r\n":
        i += 1
    return body[i] if i < n else -1


def fix_headers(headers: list[tuple[bytes, bytes]], body: bytes) -> list[tuple[bytes, bytes]]:
    """``headers`` fixed for a rewritten ``body`` (see the module's docstring, per header)."""
    out: list[tuple[bytes, bytes]] = []
    digest: bytes | None = None
    for name, value in headers:
        lname = name.lower()
        if lname in CHECKSUM_HEADERS:
            continue
        if lname == b"etag" or lname == b"content-md5":
            tag = value.strip()
            if lname == b"etag" and tag.find(b"-") >= 0:
                continue  # multipart (or not an MD5 at all): cannot be recomputed from the body
            if digest is None:  # only when needed: the MD5 of 1 MB is ~1.5 ms of the loop
                digest = hashlib.md5(body, usedforsecurity=False).digest()
            if lname == b"content-md5":
                out.append((name, base64.b64encode(digest)))
                continue
            weak = tag[:2].upper() == b"W/"
            out.append((name, (b'W/"' if weak else b'"') + digest.hex().encode() + b'"'))
            continue
        out.append((name, value))
    return out


# ----------------------------------------------------------------------------------------------- CSV cells

_INT: Final = re.compile(r"[+-]?(?:0|[1-9][0-9]*)")
# A decimal point or an exponent: "007" stays text (an identifier), "7.0" and "7e3" are floats.
_FLOAT: Final = re.compile(r"[+-]?(?:[0-9]+\.[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?|[+-]?[0-9]+[eE][+-]?[0-9]+")
_BOOLS: Final = {"true": True, "True": True, "TRUE": True, "false": False, "False": False, "FALSE": False}


def type_cell(text: str) -> Any:
    """A CSV cell's value: "" is missing (None); an integer, a decimal number, true/false in three cases; any
    other text is itself."""
    if not text:
        return None
    c = text[0]
    if c.isdigit() or c in "+-.":
        if _INT.fullmatch(text) is not None:
            return int(text)
        if _FLOAT.fullmatch(text) is not None:
            return float(text)
        return text
    b = _BOOLS.get(text)
    if b is not None:
        return b
    return text


def looks_typed(text: str) -> bool:
    """Whether text read back unquoted would be something else than this text (a number, a bool, missing)."""
    return not isinstance(type_cell(text), str)


def format_cell(value: Any, delimiter: str, quote: bool = False, true: str = "true", false: str = "false") -> str:
    """A value as CSV cell text: missing (None, NaN, MISSING) is empty; a string is quoted when it must be
    (the delimiter, a quote, a line break), when ``quote`` says so, or when unquoted it would read back as a
    number, a bool or missing (a number sent as a string stays a string to readers that honour quoting)."""
    if value is None or value is MISSING:
        return ""
    if isinstance(value, bool):
        return true if value else false
    if isinstance(value, float):
        if math.isnan(value):
            return ""
        return repr(value) if math.isfinite(value) else ("inf" if value > 0 else "-inf")
    if is_number(value):
        return str(value)
    if isinstance(value, str):
        text = value
    elif isinstance(value, (list, dict)):
        text = json_bytes(value).decode("utf-8")
    else:
        text = str(value)  # a Parquet timestamp, date or decimal
    if quote or delimiter in text or '"' in text or "\n" in text or "\r" in text or looks_typed(text) \
            or text != text.strip():
        return '"' + text.replace('"', '""') + '"'
    return text


# --------------------------------------------------------------------------------------- a table, written anew

def null_nonfinite(rec: dict[str, Any]) -> dict[str, Any]:
    """A record with NaN and infinities as None (JSON has no token for them)."""
    return {k: None if isinstance(v, float) and not math.isfinite(v) else v for k, v in rec.items()}


def _records(table: FeatureTable) -> list[dict[str, Any]]:
    out = []
    for i in range(table.n_rows):
        rec: dict[str, Any] = {}
        for name, col in zip(table.names, table.columns, strict=True):
            v = col[i]
            if v is MISSING:
                continue
            rec[name] = None if isinstance(v, float) and not math.isfinite(v) else v
        out.append(rec)
    return out


def _json_default(value: Any) -> Any:
    return str(value)  # a Parquet timestamp, date or decimal: as text


def json_bytes(value: Any) -> bytes:
    """Compact JSON of a record or a cell; integers past 64 bits go through the stdlib encoder (orjson refuses
    them), any other non-JSON value (a date) as its text."""
    try:
        return orjson.dumps(value, default=_json_default)
    except TypeError:
        return json.dumps(value, default=str, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def render(table: FeatureTable, fmt: str, delimiter: str = ",", terminator: str = "\n") -> bytes:
    """``table`` written afresh as ``csv`` (with ``delimiter`` and a header row), ``jsonl`` (one object per
    row) or ``json_records`` (an array of objects); ValueError for another format."""
    table.validate()
    if fmt == "csv":
        lines = [delimiter.join(format_cell(n, delimiter) for n in table.names)]
        for i in range(table.n_rows):
            lines.append(delimiter.join(format_cell(c[i], delimiter) for c in table.columns))
        return (terminator.join(lines) + terminator).encode("utf-8")
    if fmt == "jsonl":
        return b"".join(json_bytes(r) + b"\n" for r in _records(table))
    if fmt == "json_records":
        return json_bytes(_records(table))
    raise ValueError(f"cannot write a table as {fmt!r}")
