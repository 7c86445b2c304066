"""Fixtures shared by the kill-switch tests."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any

import pytest


@pytest.fixture
def log_events() -> Iterator[list[tuple[str, int, dict[str, Any]]]]:
    """(event, level, fields) of every mlchaos log line while the test runs."""
    seen: list[tuple[str, int, dict[str, Any]]] = []

    class Grab(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            seen.append((record.getMessage(), record.levelno, dict(getattr(record, "fields", {}) or {})))

    log = logging.getLogger("mlchaos")
    handler, level = Grab(), log.level
    log.addHandler(handler)
    log.setLevel(logging.DEBUG)
    try:
        yield seen
    finally:
        log.removeHandler(handler)
        log.setLevel(level)
