"""Structured logs: one JSON object per line on stderr, one line per event (never per request)."""

from __future__ import annotations

import logging
import sys
import time
from typing import Any

import orjson

__all__ = ["event", "setup_logging"]

log = logging.getLogger("mlchaos")


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "event": record.getMessage(),
        }
        fields = getattr(record, "fields", None)
        if fields:
            line.update(fields)
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        return orjson.dumps(line, default=str).decode()


def setup_logging(level: str = "info") -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter())
    log.handlers[:] = [handler]
    log.setLevel(level.upper())
    log.propagate = False


def event(name: str, level: int = logging.INFO, **fields: Any) -> None:
    """Log one event; a logging failure never reaches the caller."""
    try:
        log.log(level, name, extra={"fields": fields})
    except Exception:
        pass
