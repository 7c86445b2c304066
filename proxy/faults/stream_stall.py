"""``stream_stall``: an LLM stream stops half-way for a while, then goes on, closes, or resets.

After ``after`` content chunks, nothing more is sent for ``duration``; then the stream resumes where it
stopped (``then: continue``: what the upstream sent meanwhile waits upstream, not in the proxy), or the
connection is closed or reset without the stream's end. A client's read timeout decides which it sees first.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar, Self

from ..declare.errors import Errors
from ..declare.fields import Field
from ..payload.adapters.openai import CONTENT
from .base import Cut, Fault, FaultContext, Hold, Outcome, StreamStep
from .llm_base import EventHook


class _Stall(EventHook):
    def __init__(self, fault: StreamStall) -> None:
        super().__init__()
        self.fault = fault

    def event(self, ev: bytes, data: bytes | None, kind: int) -> StreamStep:
        f = self.fault
        if kind != CONTENT or self.content != f.after:
            return ev
        if f.then == "continue":
            return Hold(f.duration, ev)
        self.stopped = True
        return Hold(f.duration, b""), Cut(b"", f.then == "reset")


@dataclass(frozen=True, slots=True, kw_only=True)
class StreamStall(Fault):
    type: ClassVar[str] = "stream_stall"
    HELP: ClassVar[str] = ("Stop an LLM stream after some content chunks for a while, then continue, close or "
                           "reset the connection.")
    FIELDS: ClassVar[tuple[Field, ...]] = (
        Field("after", "integer", default=1, minimum=0, help="Content chunks sent before the stall."),
        Field("duration", "duration", default=5.0, help="How long nothing is sent."),
        Field("then", "choice", default="continue", choices=("continue", "close", "reset"),
              help="After the stall: the rest of the stream, or the connection closed (FIN) or reset (RST)."),
    )

    after: int = 1
    duration: float = 5.0
    then: str = "continue"

    @classmethod
    def from_values(cls, values: dict[str, Any], path: str, errors: Errors) -> Self | None:
        return cls(**values)

    def apply(self, ctx: FaultContext) -> Outcome:
        ctx.on_stream(_Stall(self))
        return None
