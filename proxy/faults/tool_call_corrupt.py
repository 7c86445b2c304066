"""``tool_call_corrupt``: the model calls a tool with arguments that are not valid JSON.

A whole answer's ``tool_calls[].function.arguments`` (and the legacy ``function_call``) are cut in half;
in a stream, the first piece of the arguments loses its first character (the opening brace), so the
arguments the client puts together do not parse. The HTTP answer is fine: the agent's tool dispatch is
what has to cope.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

from ..payload.adapters.openai import CONTENT
from ..payload.codec import loads
from .base import Fault, FaultContext, Outcome, StreamStep
from .llm_base import EventHook, edit_answer, event_bytes, streams


def _calls(holder: Any) -> list[dict[str, Any]]:
    """The function objects of a message's (or a delta's) tool calls and legacy function call."""
    if not isinstance(holder, dict):
        return []
    out = [c["function"] for c in holder.get("tool_calls") or ()
           if isinstance(c, dict) and isinstance(c.get("function"), dict)]
    if isinstance(holder.get("function_call"), dict):
        out.append(holder["function_call"])
    return [f for f in out if isinstance(f.get("arguments"), str) and f["arguments"]]


def _corrupt_whole(doc: dict[str, Any]) -> bool:
    changed = False
    for choice in doc.get("choices") or ():
        for fn in _calls(choice.get("message") if isinstance(choice, dict) else None):
            args: str = fn["arguments"]
            fn["arguments"] = args[: len(args) // 2] if len(args) > 1 else "{"
            changed = True
    return changed


class _Corrupt(EventHook):
    def __init__(self) -> None:
        super().__init__()
        self.done = False

    def event(self, ev: bytes, data: bytes | None, kind: int) -> StreamStep:
        if self.done or kind != CONTENT or data is None or b"arguments" not in data:
            return ev
        try:
            doc = loads(data)
        except ValueError:
            return ev
        for choice in doc.get("choices") or () if isinstance(doc, dict) else ():
            for fn in _calls(choice.get("delta") if isinstance(choice, dict) else None):
                args: str = fn["arguments"]
                stripped = args.lstrip()
                fn["arguments"] = stripped[1:] if stripped.startswith("{") else "}" + args
                self.done = True
        return event_bytes(doc, self.eol) if self.done else ev


@dataclass(frozen=True, slots=True, kw_only=True)
class ToolCallCorrupt(Fault):
    type: ClassVar[str] = "tool_call_corrupt"
    HELP: ClassVar[str] = "Make the arguments of the model's tool calls invalid JSON, streamed or not."

    def apply(self, ctx: FaultContext) -> Outcome:
        if streams(ctx):
            ctx.on_stream(_Corrupt())
        else:
            ctx.on_response(lambda view: edit_answer(view, _corrupt_whole))
        return None
