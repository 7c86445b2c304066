"""``fallback``: send the request to a named alternate upstream, such as a fallback model."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar, Self

from ..declare.errors import Errors
from ..declare.fields import Field
from .base import Fault, FaultContext, Outcome


@dataclass(frozen=True, slots=True, kw_only=True)
class Fallback(Fault):
    type: ClassVar[str] = "fallback"
    HELP: ClassVar[str] = "Send the request to an alternate upstream named under `upstreams` (a fallback model)."
    FIELDS: ClassVar[tuple[Field, ...]] = (
        Field("upstream", "string", help="A name from the policy's `upstreams`."),
    )

    upstream: str = ""

    @classmethod
    def from_values(cls, values: dict[str, Any], path: str, errors: Errors) -> Self | None:
        return cls(probability=values["probability"], upstream=values["upstream"])

    def upstream_refs(self) -> tuple[str, ...]:
        return (self.upstream,)

    def apply(self, ctx: FaultContext) -> Outcome:
        ctx.upstream_name = self.upstream
        return None
