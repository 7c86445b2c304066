"""marker: a response header (such as ``x-model-version: fallback``) seen on at least ``min_share`` of the
faulted chaos responses: "the fallback activated". The data plane looks for it only in experiments that
declare one, only on faulted responses, in the response head it already holds (``seen``: bounded by
limits.max_header_bytes, no body read). An experiment with no faults of its own (at the sidecar in front of a
service, whose dependency's sidecar injects the faults under the same experiment name) counts every chaos
response: the fault acted downstream, and the marker is seen on the service's answer."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..declare.fields import spec
from .check import Check, Evidence, Result, at_least, too_few
from .intervals import wilson
from .scan import marker_bytes, seen

__all__ = ["MarkerCheck", "MarkerConfig", "marker_bytes", "seen"]


def _header(value: object) -> str:
    name, sep, want = str(value).partition(":")
    if not sep or not name.strip() or any(c in name for c in " \t\r\n"):
        raise ValueError(f"expected NAME: VALUE, got {value!r}")
    return f"{name.strip().lower()}: {want.strip()}"


@dataclass(frozen=True, slots=True)
class MarkerConfig:
    header: str | None = spec("string", None, parse=_header,
                              help="NAME: VALUE of a response header that marks the wanted behaviour "
                                   "(name case-insensitive, value exact).")
    min_share: float = spec("probability", 0.95, help="Smallest share of faulted responses that carry it.")
    min_sample: int = spec("integer", 50, minimum=1, help="Faulted responses before the check decides.")


class MarkerCheck(Check):
    name = "marker"
    HELP = "A response header that marks the wanted behaviour, on faulted responses."
    INTERVAL = "wilson"
    Config = MarkerConfig

    @classmethod
    def asked(cls, config: Any) -> bool:
        return config.header is not None

    @classmethod
    def judge(cls, config: Any, evidence: Evidence, confidence: float) -> Result:
        k, n = evidence.marker
        if n < config.min_sample:
            return too_few(cls.name, n, config.min_sample, f">= {config.min_share:g}", cls.INTERVAL,
                           "faulted responses")
        lo, hi = wilson(k, n, confidence)
        return at_least(cls.name, k / n, lo, hi, config.min_share, n, cls.INTERVAL, "marked share")
