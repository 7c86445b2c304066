"""The errors guard: trips when the chaos cohort has more errors than the untouched traffic (CountGuard)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ..declare.fields import spec
from .guard import Guard
from .sequential import CountGuard

if TYPE_CHECKING:
    from ..policy.model import KillSwitch

__all__ = ["ErrorsConfig", "ErrorsGuard"]


@dataclass(frozen=True, slots=True)
class ErrorsConfig:
    enabled: bool = spec("bool", True, help="Trip when chaos has more errors than the untouched traffic.")
    # What counts as an error for every guard and the per-cohort counts: 5xx and dropped, 4xx when asked.
    include_4xx: bool = spec("bool", False, help="Count 4xx answers as errors too.")


class ErrorsGuard(Guard):
    name = "errors"
    HELP = "Compare error rates: anytime-valid, at most alpha chance of tripping on an unharmed experiment."
    Config = ErrorsConfig

    __slots__ = ("count",)

    def __init__(self, alpha: float) -> None:
        self.count = CountGuard(alpha)

    @classmethod
    def create(cls, config: Any, kill_switch: KillSwitch) -> Guard | None:
        return ErrorsGuard(kill_switch.alpha) if config.enabled else None

    def observe(self, chaos: bool, bad: bool, seconds: float) -> bool:
        return self.count.observe(chaos, bad)

    def reason(self) -> str:
        return "the chaos cohort has more errors than the untouched traffic"

    def e_value(self) -> float | None:
        return self.count.e_value

    def snapshot(self) -> dict[str, Any]:
        return {**self.count.snapshot(), "threshold": self.count.threshold}
