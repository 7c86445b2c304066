"""The time-to-first-token guard: a streamed LLM answer whose first token took longer than the SLO is a bad
event; trips when chaos has more than control (CountGuard). Fed by the exchanges that meter streamed answers
(chaos and control of an OpenAI-compatible path), not by every request."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ..declare.fields import spec
from .guard import Guard
from .sequential import CountGuard

if TYPE_CHECKING:
    from ..policy.model import KillSwitch

__all__ = ["TtftConfig", "TtftGuard"]


@dataclass(frozen=True, slots=True)
class TtftConfig:
    # None leaves the guard off.
    slo: float | None = spec("duration", None, exclusive_minimum=0,
                             help="A streamed answer whose first token comes later than this is a bad event; trip "
                                  "when chaos has more than control.")


class TtftGuard(Guard):
    name = "ttft"
    HELP = "Compare the share of streamed LLM answers whose first token is later than an SLO; off without one."
    Config = TtftConfig

    __slots__ = ("count", "slo")

    def __init__(self, alpha: float, slo: float) -> None:
        self.count = CountGuard(alpha)
        self.slo = slo

    @classmethod
    def create(cls, config: Any, kill_switch: KillSwitch) -> Guard | None:
        return TtftGuard(kill_switch.alpha, config.slo) if config.slo is not None else None

    def observe(self, chaos: bool, bad: bool, seconds: float) -> bool:
        return False  # a first token is not a finished request: observe_ttft is its feed

    def observe_ttft(self, chaos: bool, seconds: float, abandoned: bool) -> bool:
        # A client that left before its first token is a slow answer past the SLO and no evidence before it.
        if abandoned and seconds <= self.slo:
            return False
        return self.count.observe(chaos, seconds > self.slo)

    def reason(self) -> str:
        return f"more chaos streams than control ones wait over {self.slo:g}s for a first token"

    def e_value(self) -> float | None:
        return self.count.e_value

    def snapshot(self) -> dict[str, Any]:
        return {**self.count.snapshot(), "threshold": self.count.threshold}
