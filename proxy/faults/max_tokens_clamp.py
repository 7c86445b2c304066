"""``max_tokens_clamp``: the request's completion budget is cut down on the way (a gateway default, a quota),
so answers stop early with ``finish_reason: length``. Sets ``max_tokens`` (and ``max_completion_tokens`` when
the client used it) to at most ``max_tokens``."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar, Self

from ..declare.errors import Errors
from ..declare.fields import Field
from .base import Fault, FaultContext, Outcome
from .llm_base import edit_request


@dataclass(frozen=True, slots=True, kw_only=True)
class MaxTokensClamp(Fault):
    type: ClassVar[str] = "max_tokens_clamp"
    HELP: ClassVar[str] = "Lower the completion budget (max_tokens) of LLM requests, so answers stop early."
    FIELDS: ClassVar[tuple[Field, ...]] = (
        Field("max_tokens", "integer", default=16, minimum=1, help="The most tokens an answer may have."),
    )

    max_tokens: int = 16

    @classmethod
    def from_values(cls, values: dict[str, Any], path: str, errors: Errors) -> Self | None:
        return cls(**values)

    def _clamp(self, doc: dict[str, Any]) -> bool:
        if "messages" not in doc and "prompt" not in doc:
            return False  # embeddings have no completion to clamp
        keys = [k for k in ("max_tokens", "max_completion_tokens") if k in doc] or ["max_tokens"]
        changed = False
        for key in keys:
            value = doc.get(key)
            if not isinstance(value, int) or isinstance(value, bool) or value > self.max_tokens:
                doc[key] = self.max_tokens
                changed = True
        return changed

    def apply(self, ctx: FaultContext) -> Outcome:
        edit_request(ctx, self._clamp)
        return None
