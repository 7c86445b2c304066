"""The marker scan of a response head: on the per-request path (compiled), for experiments whose hypothesis
declares a marker, on faulted responses only."""

from __future__ import annotations

__all__ = ["marker_bytes", "seen"]


def marker_bytes(header: str) -> tuple[bytes, bytes]:
    """(b"\\nname:", value) of a ``name: value`` marker, as ``seen`` looks for them."""
    name, _, value = header.partition(": ")
    return b"\n" + name.encode("latin-1") + b":", value.encode("latin-1")


def seen(lines: bytes, marker: tuple[bytes, bytes]) -> bool:
    """Whether the header ``lines`` (b"name: value\\r\\n" each) carry the marker: the name case-insensitive,
    the value exact. Bounded by the head's size (limits.max_header_bytes)."""
    key, want = marker
    low = b"\n" + lines.lower()
    at = low.find(key)
    if at < 0:
        return False
    # Offsets in ``low`` are one past those in ``lines``; the value is read from ``lines``, in its own case.
    start = at + len(key) - 1
    end = low.find(b"\r\n", at)
    return lines[start:(end - 1 if end >= 0 else len(lines))].strip() == want
