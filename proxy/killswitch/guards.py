"""The guards of one experiment, fed by the data plane with every finished request of its two cohorts.

The guards are those of the registry (registry.GUARDS) that the experiment's kill switch turns on, fed in
registry order; the first that trips stops the experiment. Evaluation errors trip too, as the pseudo-guard
"evaluation": a kill switch that cannot judge fails closed.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .guard import Guard, is_error
from .registry import EVALUATION, GUARD_NAMES, GUARDS

if TYPE_CHECKING:
    from ..policy.model import KillSwitch

__all__ = ["GUARD_NAMES", "ExperimentGuards", "is_error"]


class ExperimentGuards:
    __slots__ = ("chain", "include_4xx", "spec", "trip_reason", "tripped_guard")

    def __init__(self, spec: KillSwitch) -> None:
        self.spec = spec
        self.include_4xx: bool = spec.config("errors").include_4xx
        chain: list[Guard] = []
        for cls, config in zip(GUARDS, spec.guards, strict=True):
            guard = cls.create(config, spec)
            if guard is not None:
                chain.append(guard)
        # A tuple walked per request: no lookups, no allocation.
        self.chain: tuple[Guard, ...] = tuple(chain)
        self.tripped_guard: str | None = None
        self.trip_reason = ""

    def guard(self, name: str) -> Guard | None:
        """The experiment's guard of that name, if its kill switch turned it on."""
        for guard in self.chain:
            if guard.name == name:
                return guard
        return None

    def observe(self, chaos: bool, status: int, seconds: float) -> str | None:
        """Feed one finished request; returns the guard's name the first time one trips."""
        if self.tripped_guard is not None:
            return None
        try:
            bad = is_error(status, self.include_4xx)
            for guard in self.chain:
                if guard.observe(chaos, bad, seconds):
                    return self._trip(guard.name, guard.reason())
        except Exception as exc:
            return self._trip(EVALUATION, f"guard evaluation failed: {exc!r}")
        return None

    def observe_abandoned(self, chaos: bool, seconds: float) -> str | None:
        """A client that left before its answer. Why it left is unknown (a benchmark ending, a timeout of
        its own), so it is no error; each guard decides what else it is (latency: slow past its SLO)."""
        if self.tripped_guard is not None:
            return None
        try:
            for guard in self.chain:
                if guard.observe_abandoned(chaos, seconds):
                    return self._trip(guard.name, guard.reason())
        except Exception as exc:
            return self._trip(EVALUATION, f"guard evaluation failed: {exc!r}")
        return None

    def observe_ttft(self, chaos: bool, seconds: float, abandoned: bool) -> str | None:
        """One streamed LLM answer's time to first token (the whole wait when no token came; ``abandoned``: the
        client left first). Only guards that judge first tokens (ttft_guard) look at it."""
        if self.tripped_guard is not None:
            return None
        try:
            for guard in self.chain:
                if guard.observe_ttft(chaos, seconds, abandoned):
                    return self._trip(guard.name, guard.reason())
        except Exception as exc:
            return self._trip(EVALUATION, f"guard evaluation failed: {exc!r}")
        return None

    def _trip(self, guard: str, reason: str) -> str:
        self.tripped_guard, self.trip_reason = guard, reason
        return guard

    def e_values(self) -> dict[str, float]:
        out = {}
        for guard in self.chain:
            value = guard.e_value()
            if value is not None:
                out[guard.name] = value
        return out

    def snapshot(self) -> dict[str, Any]:
        return {guard.name: guard.snapshot() for guard in self.chain}
