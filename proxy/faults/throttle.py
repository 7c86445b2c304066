"""``throttle``: deliver the response at a bounded number of bytes per second."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar, Self

from ..declare.errors import Errors
from ..declare.fields import Field
from .base import Fault, FaultContext, Outcome


@dataclass(frozen=True, slots=True, kw_only=True)
class Throttle(Fault):
    type: ClassVar[str] = "throttle"
    HELP: ClassVar[str] = "Send the response to the client at most `rate` bytes per second."
    FIELDS: ClassVar[tuple[Field, ...]] = (
        Field("rate", "size", help="Bytes per second, e.g. 16KiB.", minimum=1),
    )

    rate: int = 1

    @classmethod
    def from_values(cls, values: dict[str, Any], path: str, errors: Errors) -> Self | None:
        if values["rate"] < 1:
            errors.add(f"{path}.rate", "must be at least 1 byte per second")
            return None
        return cls(probability=values["probability"], rate=values["rate"])

    def apply(self, ctx: FaultContext) -> Outcome:
        ctx.throttle_bps = float(self.rate)
        return None
