"""The fault contract: a fault returns a reply (short-circuit), a drop, a wait, or ``None`` (let it through).

Faults are plain functions of the request: they never await and never touch sockets. A fault that holds
the request (delay, stall) returns a ``Wait``, and the exchange does the waiting; so a chaos request
whose faults do not wait runs inline in the parser's callbacks, with no task of its own. What faults may
change on the way through (the body, the upstream, the response rate, the answer whole or chunk by chunk)
is the small surface of ``FaultContext``, which every protocol edge's exchange implements.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar, Protocol, Self

from ..declare.errors import Errors
from ..declare.fields import Field

if TYPE_CHECKING:
    from ..payload.bodies import ExchangePayload

__all__ = [
    "COMMON_FIELDS", "Cut", "Drop", "Fault", "FaultContext", "Hold", "Outcome", "Piece", "Reply", "ResponseHook",
    "ResponseView", "StreamHook", "StreamStep", "Wait",
]


@dataclass(frozen=True, slots=True)
class Reply:
    """A response made up by a fault, sent instead of the upstream's."""

    status: int
    body: bytes = b""
    headers: tuple[tuple[str, str], ...] = ()
    content_type: str = "application/json"


@dataclass(frozen=True, slots=True)
class Drop:
    """Close the client connection without a response; ``reset`` sends a TCP RST instead of a FIN; ``stream``
    resets only the request's HTTP/2 stream where there is one (gRPC), and closes the connection elsewhere."""

    reset: bool = False
    stream: bool = False


@dataclass(frozen=True, slots=True)
class Wait:
    """Hold the request for ``seconds``, then answer with ``then``; with ``then`` None, go on with the
    remaining faults and the upstream. A client that leaves meanwhile ends the wait."""

    seconds: float
    then: Reply | Drop | None = None


Outcome = Reply | Drop | Wait | None


@dataclass(slots=True)
class ResponseView:
    """A complete upstream response held in memory (at most ``limits.inspect_body_bytes``) so that a
    fault or an observer can read or change it before the client sees it. Framing headers are the
    proxy's business: Content-Length is set from ``body`` when the response is sent."""

    status: int
    headers: list[tuple[bytes, bytes]]
    body: bytes

    def header(self, name: bytes) -> bytes | None:
        lname = name.lower()
        for n, v in self.headers:
            if n.lower() == lname:
                return v
        return None

    def set_header(self, name: bytes, value: bytes | None) -> None:
        """Replace every ``name`` header (any case) by one with ``value``; ``None`` removes them."""
        lname = name.lower()
        self.headers = [(n, v) for n, v in self.headers if n.lower() != lname]
        if value is not None:
            self.headers.append((name, value))


ResponseHook = Callable[[ResponseView], None]


@dataclass(frozen=True, slots=True)
class Hold:
    """A stream hook's answer for one chunk: send ``data`` after ``seconds``; what comes after it waits too."""

    seconds: float
    data: bytes


@dataclass(frozen=True, slots=True)
class Cut:
    """A stream hook's answer for one chunk: send ``data``, then end the answer there, without its proper
    end (the client sees the connection close, or reset with ``reset``)."""

    data: bytes = b""
    reset: bool = False


# One piece of what a stream hook sends for a chunk: bytes (the same object when unchanged, b"" to swallow
# it), a Hold or a Cut.
Piece = bytes | Hold | Cut
# What a stream hook returns for a chunk: one piece, or a tuple of pieces sent one after the other, each
# Hold timed from the piece before it (events of one upstream read paced apart: a token delay between
# server-sent events that arrived together). The hooks after it see each piece on its own.
StreamStep = Piece | tuple[Piece, ...]


class StreamHook(Protocol):
    """Sees a streamed answer (chunked, SSE, or any body) as it arrives, one upstream read at a time, without
    the exchange buffering it. The body is then framed by the proxy (its length may change)."""

    def head(self, view: ResponseView) -> None:
        """The status and headers, before the first chunk; may change them (``view.body`` is empty)."""
        ...

    def chunk(self, data: bytes) -> StreamStep:
        """One piece of the body as the upstream sent it."""
        ...

    def end(self) -> StreamStep:
        """The upstream's answer is complete: bytes to add at the end (b"" for none), or a Hold or Cut."""
        ...


class FaultContext(Protocol):
    """What a fault can read and change about the request it acts on."""

    @property
    def method(self) -> str: ...

    @property
    def target(self) -> str: ...

    @property
    def path(self) -> str:
        """The target without its query."""
        ...

    # Name of the alternate upstream to send the request to; None is the primary.
    upstream_name: str | None
    # Response bytes per second to the client; None is unthrottled.
    throttle_bps: float | None

    def header(self, name: bytes) -> bytes | None: ...

    def request_body(self) -> bytes | None:
        """The whole request body when held in memory; None when it streams (over the inspection limit)."""
        ...

    def replace_request_body(self, body: bytes) -> None:
        """Send this body upstream instead; Content-Length follows."""
        ...

    def set_request_header(self, name: bytes, value: bytes) -> None:
        """Send one ``name`` header with ``value`` upstream in place of the client's."""
        ...

    def set_target(self, target: str) -> None:
        """Send the request to this path (and query) instead, on the same upstream."""
        ...

    def payload(self) -> ExchangePayload:
        """The exchange's inference payloads (request and response), parsed on first use per the
        experiment's payload settings."""
        ...

    def sticky_value(self) -> bytes | None:
        """The request's value of the experiment's sticky key, if it has one."""
        ...

    def count_unparsed(self, direction: str) -> None:
        """Count a body of ``direction`` (request, response) that a fault could not read."""
        ...

    def on_response(self, hook: ResponseHook) -> None:
        """Call ``hook`` with the complete response before the client gets it (bodies over the inspection
        limit stream through untouched instead)."""
        ...

    def on_stream(self, hook: StreamHook) -> None:
        """Pass the answer's body through ``hook`` chunk by chunk as it arrives (after response hooks, if
        any: then the held body is one chunk)."""
        ...


COMMON_FIELDS: tuple[Field, ...] = (
    Field("type", "string", help="Fault type."),
    Field("probability", "probability", default=1.0,
          help="Chance (0-1) that this fault acts on a request of the chaos cohort, drawn per request."),
)


@dataclass(frozen=True, slots=True, kw_only=True)
class Fault(ABC):
    type: ClassVar[str]
    # The fault's own fields; ``type`` and ``probability`` are common to all.
    FIELDS: ClassVar[tuple[Field, ...]] = ()
    HELP: ClassVar[str] = ""

    probability: float = 1.0

    @classmethod
    def from_values(cls, values: dict[str, Any], path: str, errors: Errors) -> Self | None:
        """Build from checked field values; override for checks that span fields."""
        return cls(**values)

    def upstream_refs(self) -> tuple[str, ...]:
        """Names of alternate upstreams this fault sends to; the loader checks they exist."""
        return ()

    @abstractmethod
    def apply(self, ctx: FaultContext) -> Outcome:
        """Act on one chaos request; called in the data plane's callbacks, so never blocks."""
