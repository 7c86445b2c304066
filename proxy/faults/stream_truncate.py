"""``stream_truncate``: an LLM stream that stops after N chunks or tokens, and how it ends.

- ``done``: ``data: [DONE]`` at once, with no ``finish_reason``: it looks complete to most clients;
- ``length``, ``abort``, ``stop``: a last chunk with that ``finish_reason``, then ``[DONE]`` (vLLM sends
  ``abort`` when the engine drops a request: HTTP 200, truncated, looks complete);
- ``eof``: the answer just ends, with neither (the HTTP body ends properly);
- ``close``, ``reset``: the connection is closed (FIN) or reset (RST) without the body's end.

Tokens are counted as the chunks' ``usage.completion_tokens`` where the server streams usage (vLLM's
``continuous_usage_stats``), else one per content chunk (vLLM, TGI and llama.cpp send one token a chunk).
What the upstream sends after the cut is swallowed; the answer ends when the upstream's does.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar, Self

from ..declare.errors import Errors
from ..declare.fields import Field
from ..payload.adapters.openai import CONTENT, completion_tokens
from .base import Fault, FaultContext, Outcome, StreamStep
from .llm_base import EventHook, event_bytes, finish_chunk

ENDINGS = ("done", "length", "abort", "stop", "eof", "close", "reset")


class _Truncate(EventHook):
    def __init__(self, fault: StreamTruncate) -> None:
        super().__init__()
        self.fault = fault
        self.tokens = 0

    def event(self, ev: bytes, data: bytes | None, kind: int) -> StreamStep:
        if kind != CONTENT:
            return ev
        f = self.fault
        count = self.content if f.unit == "chunks" else self.tokens
        if count < f.after:
            used = completion_tokens(data) if data is not None else None
            self.tokens = used if used is not None else self.tokens + 1
            return ev
        ending = f.ending
        if ending in ("close", "reset"):
            return self.cut(ending == "reset")
        self.stopped = True
        if ending == "eof":
            return b""
        if ending == "done":
            return event_bytes(b"[DONE]", self.eol)
        return event_bytes(finish_chunk(self.template, ending), self.eol) + event_bytes(b"[DONE]", self.eol)


@dataclass(frozen=True, slots=True, kw_only=True)
class StreamTruncate(Fault):
    type: ClassVar[str] = "stream_truncate"
    HELP: ClassVar[str] = ("End an LLM stream after N content chunks or tokens: with [DONE] so it looks complete, "
                           "with a finish_reason (length, abort, stop), with neither, or by closing the connection.")
    FIELDS: ClassVar[tuple[Field, ...]] = (
        Field("after", "integer", default=5, minimum=0, help="Chunks or tokens sent before the end."),
        Field("unit", "choice", default="chunks", choices=("chunks", "tokens"), help="What `after` counts."),
        Field("ending", "choice", default="done", choices=ENDINGS, help="How the shortened stream ends."),
    )

    after: int = 5
    unit: str = "chunks"
    ending: str = "done"

    @classmethod
    def from_values(cls, values: dict[str, Any], path: str, errors: Errors) -> Self | None:
        return cls(**values)

    def apply(self, ctx: FaultContext) -> Outcome:
        ctx.on_stream(_Truncate(self))
        return None
