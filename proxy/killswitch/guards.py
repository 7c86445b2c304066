"""The guards of one experiment, fed by the data plane with every finished request of its two cohorts.

Each guard is an anytime-valid test (``CountGuard``) or an absolute limit (``Seatbelt``); the first that
trips stops the experiment. Evaluation errors trip too: a kill switch that cannot judge fails closed.
"""

from __future__ import annotations

from typing import Any

from ..policy.model import KillSwitch
from .seatbelt import Seatbelt
from .sequential import CountGuard

__all__ = ["GUARD_NAMES", "ExperimentGuards", "is_error"]

GUARD_NAMES = ("errors", "latency", "ttft", "seatbelt", "evaluation")


def is_error(status: int, include_4xx: bool) -> bool:
    """5xx answers and connections closed without one (status 0) are errors; 4xx only when asked."""
    return status >= 500 or status < 100 or (include_4xx and 400 <= status < 500)


class ExperimentGuards:
    __slots__ = ("belt", "errors", "include_4xx", "latency", "slo", "spec", "trip_reason", "tripped_guard", "ttft",
                 "ttft_slo")

    def __init__(self, spec: KillSwitch) -> None:
        self.spec = spec
        self.include_4xx = spec.include_4xx
        self.errors = CountGuard(spec.alpha) if spec.errors else None
        self.slo = spec.latency_slo
        self.latency = CountGuard(spec.alpha) if spec.latency_slo is not None else None
        # Time to first token of streamed LLM answers, chaos against control (the exchanges that meter them).
        self.ttft_slo = spec.ttft_slo
        self.ttft = CountGuard(spec.alpha) if spec.ttft_slo is not None else None
        self.belt = Seatbelt(max_rate=spec.seatbelt_max_error_rate, min_requests=spec.seatbelt_min_requests) \
            if spec.seatbelt else None
        self.tripped_guard: str | None = None
        self.trip_reason = ""

    def observe(self, chaos: bool, status: int, seconds: float) -> str | None:
        """Feed one finished request; returns the guard's name the first time one trips."""
        if self.tripped_guard is not None:
            return None
        try:
            bad = is_error(status, self.include_4xx)
            if self.errors is not None and self.errors.observe(chaos, bad):
                return self._trip("errors", "the chaos cohort has more errors than the untouched traffic")
            if self.latency is not None and self.latency.observe(chaos, seconds > self.slo):  # type: ignore[operator]
                return self._trip("latency", f"more chaos requests than untouched ones are slower than {self.slo:g}s")
            if self.belt is not None and chaos and self.belt.observe(True, bad):
                return self._trip("seatbelt", f"the chaos cohort's error rate is above "
                                              f"{self.spec.seatbelt_max_error_rate:g}")
        except Exception as exc:
            return self._trip("evaluation", f"guard evaluation failed: {exc!r}")
        return None

    def observe_abandoned(self, chaos: bool, seconds: float) -> str | None:
        """A client that left before its answer. Why it left is unknown (a benchmark ending, a timeout of
        its own), so it is no error; past the latency SLO it is a slow request, on either side alike."""
        if self.tripped_guard is not None or self.latency is None or seconds <= self.slo:  # type: ignore[operator]
            return None
        try:
            if self.latency.observe(chaos, True):
                return self._trip("latency", f"more chaos requests than untouched ones are slower than {self.slo:g}s")
        except Exception as exc:
            return self._trip("evaluation", f"guard evaluation failed: {exc!r}")
        return None

    def observe_ttft(self, chaos: bool, seconds: float, abandoned: bool) -> str | None:
        """Feed one streamed LLM answer's time to first token (the whole wait when no token came). A client
        that left is a slow answer past the SLO and no evidence before it, as for the latency guard."""
        guard, slo = self.ttft, self.ttft_slo
        if self.tripped_guard is not None or guard is None or slo is None or (abandoned and seconds <= slo):
            return None
        try:
            if guard.observe(chaos, seconds > slo):
                return self._trip("ttft", f"more chaos streams than control ones wait over {slo:g}s for a first "
                                          f"token")
        except Exception as exc:
            return self._trip("evaluation", f"guard evaluation failed: {exc!r}")
        return None

    def _trip(self, guard: str, reason: str) -> str:
        self.tripped_guard, self.trip_reason = guard, reason
        return guard

    def e_values(self) -> dict[str, float]:
        out = {}
        if self.errors is not None:
            out["errors"] = self.errors.e_value
        if self.latency is not None:
            out["latency"] = self.latency.e_value
        if self.ttft is not None:
            out["ttft"] = self.ttft.e_value
        return out

    def snapshot(self) -> dict[str, Any]:
        guards: dict[str, Any] = {}
        for name, guard in (("errors", self.errors), ("latency", self.latency), ("ttft", self.ttft),
                            ("seatbelt", self.belt)):
            if guard is not None:
                guards[name] = {**guard.snapshot(), "threshold": 1 / self.spec.alpha if name != "seatbelt"
                                else self.spec.seatbelt_max_error_rate}
        return guards
