"""The time-to-first-token guard: a streamed LLM answer whose first token took longer than the SLO is a bad
event; trips when chaos has more than control. The latency guard's test on another signal: it is fed by the
exchanges that meter streamed answers (chaos and control of an OpenAI-compatible path), not by every request."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from ..declare.fields import spec
from .latency_guard import LatencyGuard

__all__ = ["TtftConfig", "TtftGuard"]


@dataclass(frozen=True, slots=True)
class TtftConfig:
    # None leaves the guard off.
    slo: float | None = spec("duration", None, exclusive_minimum=0,
                             help="A streamed answer whose first token comes later than this is a bad event; trip "
                                  "when chaos has more than control.")


class TtftGuard(LatencyGuard):
    name = "ttft"
    HELP = "Compare the share of streamed LLM answers whose first token is later than an SLO; off without one."
    Config: ClassVar[type] = TtftConfig

    def observe(self, chaos: bool, bad: bool, seconds: float) -> bool:
        return False  # a first token is not a finished request: observe_ttft is its feed

    def observe_abandoned(self, chaos: bool, seconds: float) -> bool:
        return False  # a client that left before its first token reaches observe_ttft, abandoned

    def observe_ttft(self, chaos: bool, seconds: float, abandoned: bool) -> bool:
        # A client that left before its first token is a slow answer past the SLO and no evidence before it.
        if abandoned and seconds <= self.slo:
            return False
        return self.count.observe(chaos, seconds > self.slo)

    def reason(self) -> str:
        return f"more chaos streams than control ones wait over {self.slo:g}s for a first token"
