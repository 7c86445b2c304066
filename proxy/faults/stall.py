"""``stall``: hold the request without an answer until the client gives up, or a cap runs out."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar, Self

from ..declare.errors import Errors
from ..declare.fields import Field
from .base import Drop, Fault, FaultContext, Outcome, Wait


@dataclass(frozen=True, slots=True, kw_only=True)
class Stall(Fault):
    type: ClassVar[str] = "stall"
    HELP: ClassVar[str] = (
        "Hold the request with no answer until the client gives up or the cap runs out; "
        "then close, reset, or let the request through (then: pass)."
    )
    FIELDS: ClassVar[tuple[Field, ...]] = (
        # A bound, so a client with no timeout of its own cannot pin a connection forever.
        Field("cap", "duration", default=30.0, minimum=0, help="Longest hold."),
        Field("then", "choice", default="close", choices=("close", "reset", "pass"),
              help="What happens when the cap runs out."),
    )

    cap: float = 30.0
    then: str = "close"

    @classmethod
    def from_values(cls, values: dict[str, Any], path: str, errors: Errors) -> Self | None:
        return cls(probability=values["probability"], cap=values["cap"], then=values["then"])

    def apply(self, ctx: FaultContext) -> Outcome:
        # A client that gives up closes its socket; the data plane cancels this wait then.
        return Wait(self.cap, None if self.then == "pass" else Drop(reset=self.then == "reset"))
