"""The seatbelt guard: an absolute limit on the chaos cohort's error rate beside the statistical guards."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ..declare.fields import spec
from .guard import Guard
from .seatbelt import Seatbelt

if TYPE_CHECKING:
    from ..policy.model import KillSwitch

__all__ = ["SeatbeltConfig", "SeatbeltGuard"]


@dataclass(frozen=True, slots=True)
class SeatbeltConfig:
    enabled: bool = spec("bool", True, help="An absolute limit beside the statistical guards.")
    max_error_rate: float = spec("probability", 0.5, help="Trip when the chaos cohort's error rate is above this ...")
    min_requests: int = spec("integer", 20, minimum=1, help="... after at least this many chaos requests.")


class SeatbeltGuard(Guard):
    name = "seatbelt"
    HELP = "Trip on the chaos cohort's error rate alone: needs no control traffic."
    Config = SeatbeltConfig

    __slots__ = ("belt",)

    def __init__(self, max_rate: float, min_requests: int) -> None:
        self.belt = Seatbelt(max_rate=max_rate, min_requests=min_requests)

    @classmethod
    def create(cls, config: Any, kill_switch: KillSwitch) -> Guard | None:
        return SeatbeltGuard(config.max_error_rate, config.min_requests) if config.enabled else None

    def observe(self, chaos: bool, bad: bool, seconds: float) -> bool:
        return chaos and self.belt.observe(True, bad)

    def reason(self) -> str:
        return f"the chaos cohort's error rate is above {self.belt.max_rate:g}"

    def snapshot(self) -> dict[str, Any]:
        return {**self.belt.snapshot(), "threshold": self.belt.max_rate}
