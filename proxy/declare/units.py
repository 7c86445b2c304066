"""Parsers for the human units a policy uses: durations, percentages, byte sizes, addresses.

Each raises ``ValueError`` with a message that names the bad value; callers add the path.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

__all__ = ["Address", "parse_address", "parse_duration", "parse_percent", "parse_size"]

_DURATION_RE = re.compile(r"^\s*(\d+(?:\.\d+)?|\.\d+)\s*(us|µs|ms|s|m|h|d)?\s*$", re.ASCII)
_DURATION_UNITS = {"us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
# Same grammar as the schema's pattern: digits with an optional fraction, an optional % sign.
_PERCENT_RE = re.compile(r"^\s*(\d+(?:\.\d+)?|\.\d+)\s*%?\s*$", re.ASCII)
_SIZE_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(b|kb|kib|mb|mib|gb|gib|k|m|g)?\s*$", re.IGNORECASE | re.ASCII)
_SIZE_UNITS = {
    "b": 1, "k": 1024, "kb": 1000, "kib": 1024, "m": 1024**2, "mb": 1000**2, "mib": 1024**2,
    "g": 1024**3, "gb": 1000**3, "gib": 1024**3,
}


def parse_duration(value: object) -> float:
    """Seconds from ``1.5`` (seconds), ``"200ms"``, ``"2s"``, ``"5m"``, ``"1h"``."""
    if isinstance(value, bool):
        raise ValueError(f"expected a duration such as 200ms or 2s, got {value!r}")
    try:
        if isinstance(value, int | float):
            seconds = float(value)
        elif isinstance(value, str) and (m := _DURATION_RE.match(value)):
            seconds = float(m.group(1)) * _DURATION_UNITS[m.group(2) or "s"]
        else:
            raise ValueError(f"expected a duration such as 200ms or 2s, got {value!r}")
    except OverflowError:
        raise ValueError(f"duration too large: {value!r}") from None
    if seconds < 0 or seconds != seconds or seconds == float("inf"):
        raise ValueError(f"duration must be a finite number >= 0, got {value!r}")
    return seconds


def parse_percent(value: object) -> float:
    """Percent from ``2``, ``2.5`` or ``"2%"``; the result is in percent (2.0 means two percent)."""
    if isinstance(value, bool):
        raise ValueError(f"expected a percentage such as 2 or \"2%\", got {value!r}")
    if isinstance(value, str) and (m := _PERCENT_RE.match(value)):
        pct = float(m.group(1))
    elif isinstance(value, int | float):
        try:
            pct = float(value)
        except OverflowError:
            raise ValueError(f"must be between 0 and 100 percent, got {value!r}") from None
    else:
        raise ValueError(f"expected a percentage such as 2 or \"2%\", got {value!r}")
    if not 0.0 <= pct <= 100.0:
        raise ValueError(f"must be between 0 and 100 percent, got {value!r}")
    return pct


def parse_size(value: object) -> int:
    """Bytes from ``1048576``, ``"64KiB"``, ``"1MB"``, ``"10m"``."""
    if isinstance(value, bool):
        raise ValueError(f"expected a size such as 1MiB, got {value!r}")
    try:
        if isinstance(value, int):
            size = value
        elif isinstance(value, str) and (m := _SIZE_RE.match(value)):
            size = int(float(m.group(1)) * _SIZE_UNITS[(m.group(2) or "b").lower()])
        else:
            raise ValueError(f"expected a size such as 1MiB, got {value!r}")
    except OverflowError:
        raise ValueError(f"size too large: {value!r}") from None
    if size < 0:
        raise ValueError(f"size must be >= 0, got {value!r}")
    return size


@dataclass(frozen=True, slots=True)
class Address:
    host: str
    port: int

    def __str__(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"

    @property
    def is_loopback(self) -> bool:
        return self.host in ("localhost", "::1") or self.host.startswith("127.")


def parse_address(value: object) -> Address:
    """``host:port``, ``[v6]:port`` or ``:port`` (loopback); port 0 picks a free port."""
    if isinstance(value, int) and not isinstance(value, bool):
        host, port_text = "127.0.0.1", str(value)
    elif isinstance(value, str):
        text = value.strip()
        if text.startswith("["):
            host, sep, rest = text[1:].partition("]")
            if not sep or not rest.startswith(":"):
                raise ValueError(f"expected [host]:port, got {value!r}")
            port_text = rest[1:]
        else:
            host, sep, port_text = text.rpartition(":")
            if not sep:
                raise ValueError(f"expected host:port, got {value!r}")
            host = host or "127.0.0.1"
    else:
        raise ValueError(f"expected host:port, got {value!r}")
    if not port_text.isdigit() or not 0 <= int(port_text) <= 65535:
        raise ValueError(f"port must be 0-65535, got {value!r}")
    return Address(host, int(port_text))
