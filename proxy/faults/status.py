"""``status``: let the model answer, then replace the status the client sees (the work was done)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar, Self

from ..declare.errors import Errors
from ..declare.fields import Field
from .base import Fault, FaultContext, Outcome, ResponseView


@dataclass(frozen=True, slots=True, kw_only=True)
class Status(Fault):
    type: ClassVar[str] = "status"
    HELP: ClassVar[str] = ("Call the model, then give the client another status code with the model's body "
                           "(a retry after it repeats work the model already did).")
    FIELDS: ClassVar[tuple[Field, ...]] = (
        Field("status", "integer", minimum=200, maximum=599, help="The status the client sees."),
    )

    status: int = 500

    @classmethod
    def from_values(cls, values: dict[str, Any], path: str, errors: Errors) -> Self | None:
        return cls(probability=values["probability"], status=values["status"])

    def _replace(self, view: ResponseView) -> None:
        view.status = self.status

    def apply(self, ctx: FaultContext) -> Outcome:
        ctx.on_response(self._replace)
        return None
