"""``token_delay``: slow generation down, a delay between an LLM answer's content chunks.

Each content chunk after the first waits a fresh draw (distributions as ``delay``'s) after the one before it
went out, so the time between tokens grows while the first token comes as fast as ever. Chunks that reached
the proxy together are paced apart too.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from ..payload.adapters.openai import CONTENT
from .base import FaultContext, Hold, Outcome, StreamStep
from .delay import Delay
from .llm_base import EventHook


class _Between(EventHook):
    def __init__(self, fault: TokenDelay) -> None:
        super().__init__()
        self.fault = fault

    def event(self, ev: bytes, data: bytes | None, kind: int) -> StreamStep:
        if kind == CONTENT and self.content > 0:
            return Hold(self.fault.sample(), ev)
        return ev


@dataclass(frozen=True, slots=True, kw_only=True)
class TokenDelay(Delay):
    type: ClassVar[str] = "token_delay"
    HELP: ClassVar[str] = ("Wait before each content chunk of an LLM stream after the first (time between tokens), "
                           "drawn per chunk as delay draws.")

    def apply(self, ctx: FaultContext) -> Outcome:
        ctx.on_stream(_Between(self))
        return None
