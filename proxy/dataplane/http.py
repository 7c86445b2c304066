"""HTTP/1.1 bits shared by both sides of the proxy: hop-by-hop headers, status lines, chunk framing."""

from __future__ import annotations

from http import HTTPStatus

__all__ = ["HOP_BY_HOP", "chunk", "connection_tokens", "status_line"]

# RFC 9110 7.6.1: these describe one connection and are never forwarded.
HOP_BY_HOP = frozenset({
    b"connection", b"keep-alive", b"proxy-connection", b"te", b"trailer", b"transfer-encoding",
    b"upgrade", b"proxy-authenticate", b"proxy-authorization",
})

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
