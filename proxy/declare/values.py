"""Value parsers of the policy: each turns a checked YAML value into the model's, or raises a ValueError
that says what is wrong (the loader reports it at the field's path). The model's ``spec(parse=...)``
declarations name them, so a field's check sits beside its declaration."""

from __future__ import annotations

import re
import reprlib
from datetime import UTC, date, datetime, time
from urllib.parse import urlsplit

__all__ = [
    "BUCKETS", "CLOCK_RE", "DAYS", "ENV_NAME_RE", "EXPERIMENT_NAME_RE", "STICKY_KEY_RE", "TOKEN_RE", "UPSTREAM_NAME_RE",
    "buckets", "clock", "compile_glob", "env_name", "experiment_name", "percent", "show", "upstream_parts",
    "utc_datetime",
]

EXPERIMENT_NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,62}")
UPSTREAM_NAME_RE = re.compile(r"[a-z0-9_-]+")
ENV_NAME_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
# RFC 9110 token: header names and methods.
TOKEN_RE = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")
STICKY_KEY_RE = re.compile(r"(header|metadata|query|cookie|entity):(.+)|client_ip")
CLOCK_RE = re.compile(r"(\d{1,2}):(\d{2})")
DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
# Cohorts are assigned by hashing into this many buckets: one bucket is 0.01% of traffic.
BUCKETS = 10_000

_REPR = reprlib.Repr()
_REPR.maxstring = 80
_REPR.maxother = 80


def show(value: object) -> str:
    """A bounded repr: a policy value quoted in an error message may be arbitrarily large."""
    return _REPR.repr(value)


def percent(buckets: int) -> str:
    return f"{buckets * 100 / BUCKETS:g}%"


def buckets(share: float) -> int:
    """Buckets for a share in percent; a share between two buckets would be silently rounded, so refuse it."""
    scaled = share * BUCKETS / 100
    whole = round(scaled)
    if abs(scaled - whole) > 1e-6:
        raise ValueError(f"must be a multiple of 0.01% (the cohort resolution), got {share:g}")
    return whole


def env_name(name: str) -> str:
    if not ENV_NAME_RE.fullmatch(name):
        raise ValueError(f"must be an environment variable name, got {show(name)}")
    return name


def experiment_name(name: str) -> str:
    if not EXPERIMENT_NAME_RE.fullmatch(name):
        raise ValueError("must be 1-63 letters, digits, '_', '.' or '-', starting with a letter or "
                         f"digit; got {show(name)}")
    return name


_GLOB_CHARS = {"*": "[^/]*", "?": "[^/]"}


def compile_glob(glob: str) -> re.Pattern[str]:
    """An anchored regex for a path glob: ``*`` stays within a segment, ``**`` crosses segments (``/**/``
    also matches a single ``/``), ``?`` is one character other than ``/``; all else is literal."""
    if not glob.startswith("/"):
        raise ValueError(f"must start with /, got {show(glob)}")
    out: list[str] = []
    i = 0
    while i < len(glob):
        if glob.startswith("/**/", i):
            out.append("/(?:.*/)?")
            i += 4
        elif glob.startswith("**", i):
            out.append(".*")
            i += 2
        else:
            out.append(_GLOB_CHARS.get(glob[i]) or re.escape(glob[i]))
            i += 1
    return re.compile(r"\A" + "".join(out) + r"\Z", re.DOTALL)


_DATETIME_HINT = "expected an ISO-8601 date-time such as 2026-11-22T10:00:00Z"


def utc_datetime(value: object) -> datetime:
    """A UTC datetime from an ISO-8601 string or what YAML makes of an unquoted timestamp or date."""
    if isinstance(value, str):
        try:
            value = datetime.fromisoformat(value.strip())
        except ValueError:
            raise ValueError(f"{_DATETIME_HINT}, got {show(value)}") from None
    if isinstance(value, datetime):
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
    if isinstance(value, date):
        return datetime.combine(value, time(), tzinfo=UTC)
    raise ValueError(f"{_DATETIME_HINT}, got {show(value)}")


def clock(value: object) -> time:
    """A time of day from "HH:MM" (UTC)."""
    if isinstance(value, int) and not isinstance(value, bool) and 0 <= value < 24 * 60:
        # YAML 1.1 reads an unquoted 17:00 as the base-60 integer 1020.
        raise ValueError(f"quote times of day: YAML reads an unquoted {value // 60}:{value % 60:02d} as the "
                         f"number {value}; write \"{value // 60:02d}:{value % 60:02d}\"")
    m = CLOCK_RE.fullmatch(value.strip()) if isinstance(value, str) else None
    if m is None or int(m.group(1)) > 23 or int(m.group(2)) > 59:
        raise ValueError(f"expected a time of day HH:MM (UTC) such as \"09:30\", got {show(value)}")
    return time(int(m.group(1)), int(m.group(2)))


_HOSTNAME_RE = re.compile(r"[A-Za-z0-9._-]+")


def upstream_parts(url: object) -> tuple[str, int, str]:
    """(host, port, authority) of ``http://host[:port][/]``; ``ValueError`` says what is wrong with the URL."""
    if not isinstance(url, str):
        raise ValueError(f"expected an http:// URL, got {show(url)}")
    scheme = url.strip().partition("://")[0].lower() if "://" in url else ""
    if scheme == "https":
        raise ValueError("https upstreams are not supported yet")
    if scheme != "http":
        raise ValueError(f"expected an http:// URL such as http://127.0.0.1:8080, got {show(url)}")
    parts = urlsplit(url.strip())  # raises ValueError for a bad port or unbalanced [v6] brackets
    port = parts.port
    host = parts.hostname or ""
    if parts.username is not None or parts.password is not None:
        raise ValueError("credentials in an upstream URL are not supported")
    if parts.path not in ("", "/"):
        raise ValueError(f"must not have a path (got {parts.path!r}): the client's path is forwarded as is")
    if parts.query or parts.fragment:
        raise ValueError("must not have a query or a fragment")
    if not (_HOSTNAME_RE.fullmatch(host) or ":" in host):
        raise ValueError(f"has no valid host: {show(url)}")
    if port == 0:
        raise ValueError("port must be 1-65535")
    port = 80 if port is None else port
    bracketed = f"[{host}]" if ":" in host else host
    return host, port, bracketed if port == 80 else f"{bracketed}:{port}"
