"""``truncate_context``: the oldest turns of a chat are lost on the way, as a context window trimmed too
hard (or a memory store that lags) would lose them. The last ``keep`` messages stay, and the system
messages unless ``keep_system: false``."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar, Self

from ..declare.errors import Errors
from ..declare.fields import Field
from .base import Fault, FaultContext, Outcome
from .llm_base import edit_request


@dataclass(frozen=True, slots=True, kw_only=True)
class TruncateContext(Fault):
    type: ClassVar[str] = "truncate_context"
    HELP: ClassVar[str] = "Drop the oldest turns of chat requests, keeping the last few (and the system messages)."
    FIELDS: ClassVar[tuple[Field, ...]] = (
        Field("keep", "integer", default=1, minimum=1, help="Most recent non-system messages kept."),
        Field("keep_system", "bool", default=True, help="Keep the system and developer messages."),
    )

    keep: int = 1
    keep_system: bool = True

    @classmethod
    def from_values(cls, values: dict[str, Any], path: str, errors: Errors) -> Self | None:
        return cls(**values)

    def _truncate(self, doc: dict[str, Any]) -> bool:
        messages = doc.get("messages")
        if not isinstance(messages, list):
            return False
        turns = [i for i, m in enumerate(messages)
                 if not (isinstance(m, dict) and m.get("role") in ("system", "developer"))]
        if len(turns) <= self.keep:
            return False
        dropped = set(turns[: len(turns) - self.keep])
        if not self.keep_system:
            dropped |= set(range(len(messages))) - set(turns)
        doc["messages"] = [m for i, m in enumerate(messages) if i not in dropped]
        return True

    def apply(self, ctx: FaultContext) -> Outcome:
        edit_request(ctx, self._truncate)
        return None
