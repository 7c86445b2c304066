"""``stream_error``: an error event in the middle of an LLM stream, in the shape the servers send.

- ``vllm``: ``data: {"error": {"object": "error", "message": ..., "type": "InternalServerError", "param": null,
  "code": 500}}`` then ``data: [DONE]``, as vLLM (and TGI's OpenAI route) do when the engine fails mid-way;
- ``openai``: ``data: {"error": {"message": ..., "type": "server_error", "param": null, "code": null}}``, and
  the stream ends.

The official SDK raises ``APIError`` on either; clients that skip what they cannot parse end up with a
silently short answer. The HTTP status was 200 already: the kill switch counts the stream as an error.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar, Self

from ..declare.errors import Errors
from ..declare.fields import Field
from ..payload.adapters.openai import CONTENT
from .base import Fault, FaultContext, Outcome, StreamStep
from .llm_base import EventHook, event_bytes


class _Error(EventHook):
    def __init__(self, fault: StreamError) -> None:
        super().__init__()
        self.fault = fault

    def event(self, ev: bytes, data: bytes | None, kind: int) -> StreamStep:
        f = self.fault
        if kind != CONTENT or self.content != f.after:
            return ev
        self.stopped = True
        if f.shape == "vllm":
            error = {"object": "error", "message": f.message, "type": "InternalServerError", "param": None,
                     "code": 500}
            return event_bytes({"error": error}, self.eol) + event_bytes(b"[DONE]", self.eol)
        error = {"message": f.message, "type": "server_error", "param": None, "code": None}
        return event_bytes({"error": error}, self.eol)


@dataclass(frozen=True, slots=True, kw_only=True)
class StreamError(Fault):
    type: ClassVar[str] = "stream_error"
    HELP: ClassVar[str] = "Send an error event after N content chunks of an LLM stream (vLLM's or OpenAI's shape)."
    FIELDS: ClassVar[tuple[Field, ...]] = (
        Field("after", "integer", default=3, minimum=0, help="Content chunks sent before the error."),
        Field("shape", "choice", default="vllm", choices=("vllm", "openai"),
              help="vllm: the error then [DONE]; openai: the error, and the stream ends."),
        Field("message", "string", default="The engine failed while generating (injected by mlchaos).",
              help="The error's message."),
    )

    after: int = 3
    shape: str = "vllm"
    message: str = "The engine failed while generating (injected by mlchaos)."

    @classmethod
    def from_values(cls, values: dict[str, Any], path: str, errors: Errors) -> Self | None:
        return cls(**values)

    def apply(self, ctx: FaultContext) -> Outcome:
        ctx.on_stream(_Error(self))
        return None
