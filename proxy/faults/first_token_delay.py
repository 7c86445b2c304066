"""``first_token_delay``: hold an LLM answer's first content chunk, as a queued or cold-starting model would.

The delay is drawn like ``delay``'s (fixed, uniform, normal, lognormal, pareto). Chunks before it (the role
chunk) go on at once; every chunk after it waits behind it, so the whole stream shifts, as it does when the
prefill is slow. A ``stream: false`` answer is held as a whole: its first token is its whole answer.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from ..payload.adapters.openai import CONTENT
from .base import FaultContext, Hold, Outcome, StreamStep
from .delay import Delay
from .llm_base import EventHook


class _FirstToken(EventHook):
    def __init__(self, seconds: float) -> None:
        super().__init__()
        self.seconds = seconds
        self.held = False

    def event(self, ev: bytes, data: bytes | None, kind: int) -> StreamStep:
        if kind == CONTENT and not self.held:
            self.held = True
            return Hold(self.seconds, ev)
        return ev

    def plain(self, data: bytes) -> StreamStep:
        if self.held:
            return data
        self.held = True
        return Hold(self.seconds, data)


@dataclass(frozen=True, slots=True, kw_only=True)
class FirstTokenDelay(Delay):
    type: ClassVar[str] = "first_token_delay"
    HELP: ClassVar[str] = ("Hold an LLM answer's first content chunk (time to first token), drawn as delay draws; "
                           "a stream: false answer is held whole.")

    def apply(self, ctx: FaultContext) -> Outcome:
        ctx.on_stream(_FirstToken(self.sample()))
        return None
