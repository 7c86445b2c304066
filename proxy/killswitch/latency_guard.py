"""The latency guard: a request slower than the SLO is a bad event; trips when chaos has more (CountGuard)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

from ..declare.fields import spec
from .guard import Guard
from .sequential import CountGuard

if TYPE_CHECKING:
    from ..policy.model import KillSwitch

__all__ = ["LatencyConfig", "LatencyGuard"]


@dataclass(frozen=True, slots=True)
class LatencyConfig:
    # None leaves the guard off.
    slo: float | None = spec("duration", None, exclusive_minimum=0,
                             help="A request slower than this is a bad event; trip when chaos has more.")


class LatencyGuard(Guard):
    name = "latency"
    HELP = "Compare the share of requests slower than an SLO; off without one."
    Config: ClassVar[type] = LatencyConfig

    __slots__ = ("count", "slo")

    def __init__(self, alpha: float, slo: float) -> None:
        self.count = CountGuard(alpha)
        self.slo = slo

    @classmethod
    def create(cls, config: Any, kill_switch: KillSwitch) -> Guard | None:
        return cls(kill_switch.alpha, config.slo) if config.slo is not None else None

    def observe(self, chaos: bool, bad: bool, seconds: float) -> bool:
        return self.count.observe(chaos, seconds > self.slo)

    def observe_abandoned(self, chaos: bool, seconds: float) -> bool:
        # Past the SLO a client that left is a slow request, on either side alike.
        return seconds > self.slo and self.count.observe(chaos, True)

    def reason(self) -> str:
        return f"more chaos requests than untouched ones are slower than {self.slo:g}s"

    def e_value(self) -> float | None:
        return self.count.e_value

    def snapshot(self) -> dict[str, Any]:
        return {**self.count.snapshot(), "threshold": self.count.threshold}
