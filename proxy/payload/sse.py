"""Server-sent events as they cross the proxy: whole events out of upstream reads, and their ``data`` field.

An upstream read may end in the middle of an event, or hold several; ``SseFramer`` keeps the unfinished tail
(at most one event, a few hundred bytes for a token) until the rest arrives. Events are passed on byte for
byte: the framer never rewrites line endings, so an unchanged stream leaves the proxy as it came.
"""

from __future__ import annotations

__all__ = ["SseFramer", "data_of", "event_name"]


class SseFramer:
    """Splits a body into events, each with the blank line that ends it (``\\n\\n`` or ``\\r\\n\\r\\n``)."""

    __slots__ = ("buf",)

    def __init__(self) -> None:
        self.buf = b""

    def feed(self, data: bytes) -> list[bytes]:
        """The events ``data`` completes, in order; what is left of an unfinished one waits for the next read."""
        buf = self.buf + data if self.buf else data
        out: list[bytes] = []
        start = 0
        crlf = 13 in buf  # "\r" as an int: `bytes in bytes` first fails as an integer (an exception per call)
        while True:
            end = buf.find(b"\n\n", start)
            if end >= 0:
                end += 2
            if crlf:
                other = buf.find(b"\r\n\r\n", start)
                if other >= 0 and (end < 0 or other + 4 < end):
                    end = other + 4
            if end < 0:
                break
            out.append(buf[start:end] if start or end != len(buf) else buf)
            start = end
        self.buf = buf[start:] if start else buf
        return out

    @property
    def pending(self) -> int:
        return len(self.buf)

    def rest(self) -> bytes:
        """What is left at the end of the body (an event without its blank line), emptied."""
        rest, self.buf = self.buf, b""
        return rest


def data_of(event: bytes) -> bytes | None:
    """The event's data: its ``data:`` lines joined by newlines (one leading space dropped from each, as the
    SSE spec says); None for an event with none (a comment such as ``: ping``, or only ``event:``)."""
    if event.startswith(b"data:") and event.count(b"data:") == 1:
        value = event[5:].rstrip(b"\r\n")  # the common case: one data line, no other field
        if 10 not in value:  # "\n"
            return value[1:] if value.startswith(b" ") else value
    parts: list[bytes] = []
    for line in event.splitlines():
        if line.startswith(b"data:"):
            value = line[5:]
            parts.append(value[1:] if value.startswith(b" ") else value)
        elif line == b"data":
            parts.append(b"")
    return b"\n".join(parts) if parts else None


def event_name(event: bytes) -> bytes | None:
    """The value of the event's ``event:`` field, if it has one."""
    if event.find(b"event:") < 0:
        return None
    for line in event.splitlines():
        if line.startswith(b"event:"):
            return line[6:].strip()
    return None
