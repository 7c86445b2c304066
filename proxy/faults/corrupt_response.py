"""``corrupt_response``: the model's answer arrives broken: malformed JSON, cut short, or mislabelled."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar, Self

from ..declare.errors import Errors
from ..declare.fields import Field
from .base import Fault, FaultContext, Outcome, ResponseView

_MODES = ("malformed_json", "truncate", "content_type", "empty")


@dataclass(frozen=True, slots=True, kw_only=True)
class CorruptResponse(Fault):
    type: ClassVar[str] = "corrupt_response"
    HELP: ClassVar[str] = (
        "Break the model's answer: malformed_json (a syntax error inside), truncate (cut at `keep` of its "
        "length), content_type (the same bytes labelled `content_type`), empty (no body).")
    FIELDS: ClassVar[tuple[Field, ...]] = (
        Field("mode", "choice", default="malformed_json", choices=_MODES),
        Field("keep", "probability", default=0.5, help="truncate: the share of the body kept."),
        Field("content_type", "string", default="text/html; charset=utf-8",
              help="content_type: the type the answer claims."),
    )

    mode: str = "malformed_json"
    keep: float = 0.5
    content_type: str = "text/html; charset=utf-8"

    @classmethod
    def from_values(cls, values: dict[str, Any], path: str, errors: Errors) -> Self | None:
        if "\r" in values["content_type"] or "\n" in values["content_type"]:
            errors.add(f"{path}.content_type", "must be a single line")
            return None
        return cls(probability=values["probability"], mode=values["mode"], keep=values["keep"],
                   content_type=values["content_type"])

    def _corrupt(self, view: ResponseView) -> None:
        body = view.body
        if self.mode == "malformed_json":
            # Drop the last closing bracket and add a stray one: no JSON parser accepts the result.
            view.body = (body.rstrip()[:-1] if body.rstrip()[-1:] in (b"}", b"]") else body) + b',"}'
        elif self.mode == "truncate":
            view.body = body[: int(len(body) * self.keep)]
        elif self.mode == "content_type":
            view.set_header(b"Content-Type", self.content_type.encode("latin-1"))
        else:
            view.body = b""

    def apply(self, ctx: FaultContext) -> Outcome:
        ctx.on_response(self._corrupt)
        return None
