"""``drop``: close the client's connection with no response, politely (FIN) or rudely (RST)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar, Self

from ..declare.errors import Errors
from ..declare.fields import Field
from .base import Drop, Fault, FaultContext, Outcome


@dataclass(frozen=True, slots=True, kw_only=True)
class DropConnection(Fault):
    type: ClassVar[str] = "drop"
    HELP: ClassVar[str] = "Close the connection without answering: a FIN (close) or a TCP reset (reset)."
    FIELDS: ClassVar[tuple[Field, ...]] = (
        Field("mode", "choice", default="close", choices=("close", "reset"), help="close sends FIN, reset RST."),
    )

    drop: Drop = field(default_factory=Drop)

    @classmethod
    def from_values(cls, values: dict[str, Any], path: str, errors: Errors) -> Self | None:
        return cls(probability=values["probability"], drop=Drop(reset=values["mode"] == "reset"))

    def apply(self, ctx: FaultContext) -> Outcome:
        return self.drop
