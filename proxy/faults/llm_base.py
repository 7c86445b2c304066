"""What the LLM faults share: a stream hook that sees an OpenAI-style answer one server-sent event at a time,
and the reading and rewriting of OpenAI-compatible request and answer bodies.

``EventHook`` frames events across upstream reads (an event cut by a read waits, in the hook, for its end:
at most one event is ever held) and hands each to ``event``, which returns what to send in its place: the
same bytes, others, a Hold (a delay before it), a Cut, or a tuple of those. A read whose events all pass
unchanged goes on as the very same bytes object. Answers that are not event streams (an error, a
``stream: false`` answer) go to ``plain`` instead, whole reads at a time.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from typing import Any

from ..payload.adapters.openai import CONTENT, classify, endpoint
from ..payload.codec import dumps, loads
from ..payload.sse import SseFramer, data_of
from .base import Cut, FaultContext, Hold, Piece, ResponseView, StreamStep

__all__ = ["EventHook", "edit_answer", "edit_request", "event_bytes", "finish_chunk", "is_llm_request", "streams",
           "text_of"]


def event_bytes(doc: Any, eol: bytes = b"\n") -> bytes:
    """One ``data:`` event holding ``doc`` as JSON (or ``doc`` itself when it is bytes, such as b"[DONE]")."""
    body = doc if isinstance(doc, bytes) else dumps(doc)
    return b"data: " + body + eol + eol


def finish_chunk(template: bytes | None, reason: str) -> dict[str, Any]:
    """A last chunk with ``finish_reason: reason``, with the id, model and object of ``template`` (the data of
    a chunk of the same stream) so that a client cannot tell it from the server's own."""
    doc: dict[str, Any] = {}
    if template is not None:
        try:
            doc = loads(template)
        except ValueError:
            doc = {}
    out: dict[str, Any] = {k: doc[k] for k in ("id", "object", "created", "model", "system_fingerprint") if k in doc}
    out.setdefault("object", "chat.completion.chunk")
    choice: dict[str, Any] = {"index": 0}
    if out["object"] == "text_completion":
        choice["text"] = ""
    else:
        choice["delta"] = {}
    choice.update(logprobs=None, finish_reason=reason)
    out["choices"] = [choice]
    return out


def _join(pieces: list[Piece]) -> StreamStep:
    """Neighbouring bytes merged: one write where nothing is held."""
    out: list[Piece] = []
    for p in pieces:
        if isinstance(p, bytes) and out and isinstance(out[-1], bytes):
            prev = out[-1]
            assert isinstance(prev, bytes)
            out[-1] = prev + p
        else:
            out.append(p)
    if not out:
        return b""
    if len(out) == 1:
        return out[0]
    return tuple(out)


class EventHook:
    """A stream hook over an OpenAI-style event stream. Subclasses override ``event`` (and ``finish``,
    ``plain``); ``content`` counts the content chunks passed so far, ``stopped`` swallows the rest."""

    def __init__(self) -> None:
        self.framer = SseFramer()
        self.sse = False
        self.ok = False
        self.stopped = False
        self.content = 0
        self.template: bytes | None = None
        self.eol = b"\n"

    def head(self, view: ResponseView) -> None:
        self.ok = 200 <= view.status < 300
        self.sse = self.ok and b"event-stream" in (view.header(b"content-type") or b"").lower()

    def chunk(self, data: bytes) -> StreamStep:
        if not self.sse:
            return self.plain(data) if self.ok else data
        if self.stopped:
            return b""
        whole = not self.framer.pending
        events = self.framer.feed(data)
        pieces: list[Piece] = []
        same = True
        for ev in events:
            step = self._one(ev)
            if step is not ev:
                same = False
            if isinstance(step, tuple):
                pieces.extend(step)
            else:
                pieces.append(step)
            if self.halted():
                same = False
                break  # the rest of the stream is swallowed
        if same and whole and not self.framer.pending:
            return data
        return _join(pieces)

    def _one(self, ev: bytes) -> StreamStep:
        data = data_of(ev)
        kind = classify(data)
        if data is not None and kind >= CONTENT and data.startswith(b"{"):
            self.template = data
            if ev.endswith(b"\r\n\r\n"):
                self.eol = b"\r\n"
        step = self.event(ev, data, kind)
        if kind == CONTENT:
            self.content += 1
        return step

    def end(self) -> StreamStep:
        if not self.sse:
            return b""
        rest = self.framer.rest()
        pieces: list[Piece] = []
        if rest and not self.stopped:
            step = self._one(rest)
            pieces.extend(step if isinstance(step, tuple) else (step,))
        if not self.stopped:
            step = self.finish()
            pieces.extend(step if isinstance(step, tuple) else (step,))
        return _join(pieces)

    def halted(self) -> bool:
        """Whether the hook stopped the stream (a method: ``event`` may set ``stopped`` during a loop)."""
        return self.stopped

    # -- what subclasses change
    def event(self, ev: bytes, data: bytes | None, kind: int) -> StreamStep:
        """What to send for one event (``data``: its data field; ``kind``: ``openai.classify``'s)."""
        return ev

    def finish(self) -> StreamStep:
        """What to add when the upstream's stream ends (not called once ``stopped``)."""
        return b""

    def plain(self, data: bytes) -> StreamStep:
        """A read of a 2xx answer that is not an event stream."""
        return data

    def cut(self, reset: bool) -> Cut:
        self.stopped = True
        return Cut(b"", reset)

    def hold(self, seconds: float, ev: bytes) -> Hold:
        return Hold(seconds, ev)


def is_llm_request(ctx: FaultContext) -> bool:
    return endpoint(ctx.path) is not None


_STREAM = re.compile(rb'"stream"\s*:\s*true')


def streams(ctx: FaultContext) -> bool:
    """Whether the request asks for a streamed answer (``"stream": true``): a fault that changes whole answers
    then needs a stream hook, since a response hook would hold the stream until its end."""
    body = ctx.request_body()
    return body is not None and _STREAM.search(body) is not None


def edit_request(ctx: FaultContext, change: Callable[[dict[str, Any]], bool]) -> None:
    """Parse the request body as JSON, let ``change`` edit it (True when it did), and send the result on.
    A body that is not a JSON object passes untouched and is counted as unparsed."""
    body = ctx.request_body()
    doc: Any = None
    if body:
        try:
            doc = loads(body)
        except ValueError:
            doc = None
    if not isinstance(doc, dict):
        ctx.count_unparsed("request")
        return
    if change(doc):
        ctx.replace_request_body(dumps(doc))


def edit_answer(view: ResponseView, change: Callable[[dict[str, Any]], bool]) -> None:
    """The same for a whole (``stream: false``) 2xx JSON answer held by a response hook."""
    if not 200 <= view.status < 300 or b"json" not in (view.header(b"content-type") or b"json").lower():
        return
    try:
        doc = loads(view.body)
    except ValueError:
        return
    if isinstance(doc, dict) and change(doc):
        view.body = dumps(doc)


def text_of(content: Any) -> int:
    """Characters of text in a message's content (a string, or a list of parts)."""
    if isinstance(content, str):
        return len(content)
    if isinstance(content, list):
        return sum(len(p.get("text", "")) for p in content if isinstance(p, dict) and isinstance(p.get("text"), str))
    return 0


def estimate_tokens(doc: dict[str, Any]) -> int:
    """A rough prompt size in tokens (four characters a token, as OpenAI's rule of thumb has it)."""
    chars = 0
    messages = doc.get("messages")
    if isinstance(messages, list):
        chars = sum(text_of(m.get("content")) for m in messages if isinstance(m, dict))
    prompt = doc.get("prompt")
    if isinstance(prompt, str):
        chars += len(prompt)
    elif isinstance(prompt, list):
        chars += sum(len(p) for p in prompt if isinstance(p, str))
    return math.ceil(chars / 4)
