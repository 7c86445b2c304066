"""``malformed_chunk``: one chunk of an LLM stream that is not valid JSON, and the stream goes on.

``truncated`` cuts the chunk's JSON in half (a proxy or server that split a write badly); ``garbage`` sends
bytes that were never JSON. The official SDK raises a JSON decoding error; some clients skip the chunk and
return an answer with a hole in it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar, Self

from ..declare.errors import Errors
from ..declare.fields import Field
from ..payload.adapters.openai import CONTENT
from .base import Fault, FaultContext, Outcome, StreamStep
from .llm_base import EventHook, event_bytes


class _Malformed(EventHook):
    def __init__(self, fault: MalformedChunk) -> None:
        super().__init__()
        self.fault = fault

    def event(self, ev: bytes, data: bytes | None, kind: int) -> StreamStep:
        if kind != CONTENT or self.content != self.fault.after or data is None:
            return ev
        if self.fault.mode == "truncated":
            return event_bytes(data[: max(1, len(data) // 2)], self.eol)
        return event_bytes(b"{\"choices\": [{\"delta\": <<not json>>", self.eol)


@dataclass(frozen=True, slots=True, kw_only=True)
class MalformedChunk(Fault):
    type: ClassVar[str] = "malformed_chunk"
    HELP: ClassVar[str] = "Replace one content chunk of an LLM stream by invalid JSON (cut in half, or garbage)."
    FIELDS: ClassVar[tuple[Field, ...]] = (
        Field("after", "integer", default=2, minimum=0, help="Content chunks sent intact before the bad one."),
        Field("mode", "choice", default="truncated", choices=("truncated", "garbage"),
              help="truncated: the chunk's JSON cut in half; garbage: bytes that are not JSON."),
    )

    after: int = 2
    mode: str = "truncated"

    @classmethod
    def from_values(cls, values: dict[str, Any], path: str, errors: Errors) -> Self | None:
        return cls(**values)

    def apply(self, ctx: FaultContext) -> Outcome:
        ctx.on_stream(_Malformed(self))
        return None
