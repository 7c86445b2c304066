"""The check registry: the one place that lists the hypothesis checks, in the order they are reported.

A check is one module (see check.py) and one entry here. Its policy section (``hypothesis.<name>``), its
schema (``$defs/<name>_check``) and its ``mlchaos_hypothesis`` label follow from it.
"""

from __future__ import annotations

from .agreement import AgreementCheck
from .check import Check
from .drift import DriftCheck
from .error_rate import ErrorRateCheck
from .latency import LatencyCheck
from .marker import MarkerCheck

__all__ = ["CHECKS", "CHECK_NAMES"]

CHECKS: tuple[type[Check], ...] = (
    ErrorRateCheck,
    LatencyCheck,
    DriftCheck,
    AgreementCheck,
    MarkerCheck,
)

CHECK_NAMES: tuple[str, ...] = tuple(check.name for check in CHECKS)
