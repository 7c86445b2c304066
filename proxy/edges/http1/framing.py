"""HTTP/1.1 framing shared by both sides of the edge: hop-by-hop headers, status lines, chunk framing."""

from __future__ import annotations

from http import HTTPStatus

__all__ = [
    "COMMON_NAMES",
    "CONTINUE",
    "HOP_BY_HOP",
    "LAST_CHUNK",
    "LOWER",
    "PLAIN_CONNECTION",
    "SPECIAL_REQUEST_HEADERS",
    "chunk",
    "connection_tokens",
    "is_chunked",
    "lookalike",
    "mimics_special",
    "parse_header_block",
    "relay_headers",
    "response_head",
    "status_line",
]

# RFC 9110 7.6.1: these describe one connection and are never forwarded.
HOP_BY_HOP = frozenset({
    b"connection", b"keep-alive", b"proxy-connection", b"te", b"trailer", b"transfer-encoding",
    b"upgrade", b"proxy-authenticate", b"proxy-authorization",
})

# Request headers the proxy handles itself instead of forwarding as they came.
SPECIAL_REQUEST_HEADERS = frozenset({
    b"host", b"content-length", b"expect", b"x-forwarded-for", b"x-forwarded-proto",
    b"x-mlchaos-cohort", b"x-mlchaos-token", b"x-mlchaos-experiment", b"x-mlchaos-shadow",
}) | HOP_BY_HOP



def mimics_special(lname: bytes) -> bool:
    """Whether a lower-cased header name spells one the proxy handles itself with ``_`` for ``-`` or with
    repeated separators (``content_length``, ``transfer--encoding``, ``x_forwarded_for``). Such a name is
    dropped: servers that map names to CGI variables read it as the real header. Called only for names that
    hold ``_`` or ``--``."""
    canonical = b"-".join(part for part in lname.replace(b"_", b"-").split(b"-") if part)
    return canonical in SPECIAL_REQUEST_HEADERS


# Names clients send most that hold neither "_" nor "--": a set lookup (the name's hash is already computed by
# the SPECIAL_REQUEST_HEADERS test before it) spares them lookalike's byte loop (~30 instructions a byte).
COMMON_NAMES = frozenset({
    b"content-type", b"user-agent", b"accept", b"accept-encoding", b"accept-language", b"authorization",
    b"cache-control", b"cookie", b"origin", b"referer", b"traceparent", b"tracestate", b"x-request-id",
    b"x-user-id", b"x-api-key", b"x-amz-date", b"x-amz-content-sha256", b"x-amz-security-token", b"range",
    b"if-none-match", b"if-modified-since", b"pragma", b"baggage",
})


def lookalike(lname: bytes) -> bool:
    """Whether a lower-cased header name not handled by the proxy spells one it handles (``mimics_special``).
    A byte loop, compiled: about 430 instructions a name fewer than ``95 in lname or lname.find(b"--") >= 0``,
    whose method call goes through the type (callgrind; `b"--" in lname` is dearer still: the bytes argument
    first fails as an integer, an exception raised and cleared)."""
    prev = 0
    n = len(lname)
    i = 0
    while i < n:
        c = lname[i]
        if c == 95 or (c == 45 and prev == 45):  # "_", "--"
            return mimics_special(lname)
        prev = c
        i += 1
    return False


# bytes.lower() as a table: ``name.translate(LOWER)`` is a direct C call once compiled (a mypyc primitive), where
# ``name.lower()`` is a method looked up on the type: about 240 instructions a header name fewer (callgrind).
LOWER = bytes(range(256)).lower()


def is_chunked(value: bytes) -> bool:
    """A Transfer-Encoding value the proxy accepts: exactly ``chunked`` (any case), optional SP/HTAB around it.
    A coding list, another coding, or any other byte around it is refused (RFC 9112 6.1 and 6.3)."""
    return value.strip(b" \t").lower() == b"chunked"


_STATUS_LINES: dict[int, bytes] = {
    s.value: f"HTTP/1.1 {s.value} {s.phrase}\r\n".encode("latin-1") for s in HTTPStatus
}

LAST_CHUNK = b"0\r\n\r\n"
CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"


def status_line(status: int, reason: bytes = b"") -> bytes:
    line = _STATUS_LINES.get(status)
    if line is None:
        line = b"HTTP/1.1 %d %s\r\n" % (status, reason or b"Unknown")
    return line


def chunk(data: bytes) -> bytes:
    return b"%x\r\n%b\r\n" % (len(data), data)


def connection_tokens(value: bytes) -> frozenset[bytes]:
    """Lower-cased tokens of a Connection header: the extra headers it names are hop-by-hop too."""
    return frozenset(t.strip().lower() for t in value.split(b",") if t.strip())


# Connection header values that name no other header.
PLAIN_CONNECTION = frozenset({b"close", b"keep-alive"})


def parse_header_block(block: bytes) -> list[tuple[bytes, bytes]]:
    """(name, value) pairs of a header block as llhttp accepted it: ``Name: value\\r\\n`` lines, values trimmed."""
    out = []
    for line in block.split(b"\r\n"):
        if line:
            name, _, value = line.partition(b":")
            out.append((name, value.strip(b" \t")))
    return out


def relay_headers(headers: list[tuple[bytes, bytes]], *, drop_length: bool = False) -> tuple[bytes, bool]:
    """The header lines to send on to the client, and whether they include a Content-Length.

    Hop-by-hop headers go, and so do those a Connection header names (Transfer-Encoding included: the
    proxy frames the body itself); with ``drop_length`` the Content-Length goes too (the proxy sets it).
    """
    lines = []
    has_length = False
    drop: frozenset[bytes] = frozenset()
    for name, value in headers:
        lname = name.lower()
        if lname in HOP_BY_HOP:
            if lname == b"connection" and value.lower() not in PLAIN_CONNECTION:
                drop |= connection_tokens(value) - PLAIN_CONNECTION
            continue
        if lname == b"content-length":
            if drop_length:
                continue
            has_length = True
        lines.append((lname, name + b": " + value + b"\r\n"))
    return b"".join(line for lname, line in lines if lname not in drop), has_length and b"content-length" not in drop


def _is_json(headers: list[tuple[bytes, bytes]]) -> bool:
    for name, value in headers:
        if name.lower() == b"content-type":
            media = value.split(b";", 1)[0].strip().lower()
            return media == b"application/json" or media.endswith(b"+json")
    return False


# A model server answers with the same few header blocks (they differ in Date once a second and in
# Content-Length): each block is worked out once. Bounded: emptied when full.
_HEADS: dict[bytes, tuple[bytes, bool, bool]] = {}
_HEADS_MAX = 1024


def response_head(block: bytes) -> tuple[bytes, bool, bool]:
    """For an upstream response's header block: the lines relayed to the client, whether they carry a
    Content-Length, and whether the body is JSON."""
    found = _HEADS.get(block)
    if found is None:
        headers = parse_header_block(block)
        kept, has_length = relay_headers(headers)
        found = (kept, has_length, _is_json(headers))
        if len(_HEADS) >= _HEADS_MAX:
            _HEADS.clear()
        _HEADS[block] = found
    return found
