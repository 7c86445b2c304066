"""``empty_completion``: the model answers, successfully, with nothing.

HTTP 200, the same shape as ever, ``content`` (or ``text``) empty and ``finish_reason: stop`` (``keep``
leaves the server's): what a model that emits its end token at once, or a safety filter that blanks the
answer, sends. In a stream the content chunks are dropped and the rest (the role chunk, the last chunk,
``[DONE]``) goes on. Nothing raises: the application has to notice.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar, Self

from ..declare.errors import Errors
from ..declare.fields import Field
from ..payload.adapters.openai import CONTENT, FINISH
from ..payload.codec import loads
from .base import Fault, FaultContext, Outcome, StreamStep
from .llm_base import EventHook, edit_answer, event_bytes, streams


def _blank(doc: dict[str, Any], reason: str | None, delta: bool) -> bool:
    """Every choice's text emptied; True when a choice is left that still says something (a finish_reason)."""
    choices = doc.get("choices")
    if not isinstance(choices, list):
        return False
    said = False
    for c in choices:
        if not isinstance(c, dict):
            continue
        if "text" in c:
            c["text"] = ""
        msg = c.get("delta" if delta else "message")
        if isinstance(msg, dict):
            for key in ("content", "reasoning_content"):
                if isinstance(msg.get(key), str):
                    msg[key] = ""
        if c.get("finish_reason") is not None:
            said = True
            if reason is not None:
                c["finish_reason"] = reason
    return said


class _Empty(EventHook):
    def __init__(self, reason: str | None) -> None:
        super().__init__()
        self.reason = reason

    def event(self, ev: bytes, data: bytes | None, kind: int) -> StreamStep:
        if kind not in (CONTENT, FINISH) or data is None:
            return ev
        try:
            doc = loads(data)
        except ValueError:
            return ev
        if not isinstance(doc, dict):
            return ev
        keep = _blank(doc, self.reason, delta=True)
        return event_bytes(doc, self.eol) if keep else b""


@dataclass(frozen=True, slots=True, kw_only=True)
class EmptyCompletion(Fault):
    type: ClassVar[str] = "empty_completion"
    HELP: ClassVar[str] = "Answer LLM requests with empty content (HTTP 200, finish_reason stop), streamed or not."
    FIELDS: ClassVar[tuple[Field, ...]] = (
        Field("finish_reason", "choice", default="stop", choices=("stop", "length", "content_filter", "keep"),
              help="The finish_reason the empty answer gives (keep: the server's)."),
    )

    finish_reason: str = "stop"

    @classmethod
    def from_values(cls, values: dict[str, Any], path: str, errors: Errors) -> Self | None:
        return cls(**values)

    def apply(self, ctx: FaultContext) -> Outcome:
        reason = None if self.finish_reason == "keep" else self.finish_reason
        if streams(ctx):
            ctx.on_stream(_Empty(reason))
        else:
            ctx.on_response(lambda view: edit_answer(view, lambda doc: _blank(doc, reason, delta=False) or True))
        return None
