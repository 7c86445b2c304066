"""The guard registry: the one place that lists the kill switch's guards, in the order they are fed.

A guard is one module (see guard.py) and one entry here. Its policy section (``kill_switch.<name>``), its
schema (``$defs/<name>_guard``), its metric label values and its part of every snapshot follow from it.
"""

from __future__ import annotations

from .errors_guard import ErrorsGuard
from .guard import Guard
from .latency_guard import LatencyGuard
from .seatbelt_guard import SeatbeltGuard
from .ttft_guard import TtftGuard

__all__ = ["EVALUATION", "GUARDS", "GUARD_NAMES"]

GUARDS: tuple[type[Guard], ...] = (
    ErrorsGuard,
    LatencyGuard,
    TtftGuard,
    SeatbeltGuard,
)

# The pseudo-guard of a guard that raised: a kill switch that cannot judge fails closed.
EVALUATION = "evaluation"
# Every value the metrics' guard label takes.
GUARD_NAMES: tuple[str, ...] = (*(guard.name for guard in GUARDS), EVALUATION)
