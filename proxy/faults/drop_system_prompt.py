"""``drop_system_prompt``: the chat request reaches the model without its system (and developer) messages,
as when a gateway, a template or a truncation loses them. The model answers without its instructions."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

from .base import Fault, FaultContext, Outcome
from .llm_base import edit_request

_ROLES = ("system", "developer")


def _drop(doc: dict[str, Any]) -> bool:
    messages = doc.get("messages")
    if not isinstance(messages, list):
        return False
    kept = [m for m in messages if not (isinstance(m, dict) and m.get("role") in _ROLES)]
    if len(kept) == len(messages) or not kept:
        return False  # nothing to drop, or nothing would be left to send
    doc["messages"] = kept
    return True


@dataclass(frozen=True, slots=True, kw_only=True)
class DropSystemPrompt(Fault):
    type: ClassVar[str] = "drop_system_prompt"
    HELP: ClassVar[str] = "Remove the system and developer messages from chat requests."

    def apply(self, ctx: FaultContext) -> Outcome:
        edit_request(ctx, _drop)
        return None
