"""The gRPC side of one exchange: the request side of ``FaultContext`` over a call's facts, and the outcome
the faults chose, handed to the edge's relay (``relay``), which talks HTTP/2.

The protocol-neutral ``Exchange`` runs the faults synchronously and ends in ``forward``, ``local_reply`` or
``drop_client``; here each of them only records the decision and, when a fault waited first, calls the edge's
``resume`` (``relay.Relay._decided``). The relay then forwards, answers or drops, runs the response hooks over
the answer message (``respond``) and calls ``done``. This module is compiled with the data plane (a compiled
``Exchange`` cannot be subclassed by an interpreted class).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import TYPE_CHECKING

from ...cohort import sticky_value
from ...exchange import DROPPED, Exchange
from ...faults.base import Cut, Drop, Hold, Reply, ResponseView
from ...payload.bodies import ExchangePayload
from .call import GrpcCall, metadata_bytes
from .payload import GrpcPayload
from .status import CODES, OK, code_of_http, http_of_code

if TYPE_CHECKING:
    from ...dataplane.state import DataPlane
    from ...metrics import CohortMetrics
    from ...routing import Assignment

__all__ = ["GrpcExchange", "Metadata", "reply_code"]

log = logging.getLogger("mlchaos")
Metadata = list[tuple[str, str | bytes]]
# Metadata a fault may not set: the transport's own (the edge sets them per connection or call).
_RESERVED = frozenset({"content-type", "te", "user-agent", "host", "connection", "keep-alive", "upgrade",
                       "transfer-encoding", "proxy-connection", "grpc-timeout", "grpc-encoding",
                       "grpc-accept-encoding", "grpc-status", "grpc-message", "grpc-status-details-bin"})


def reply_code(reply: Reply) -> int:
    """A reply's gRPC code: its ``grpc-status`` header (abort's ``grpc_status``), or the code of its HTTP status
    by gRPC's HTTP-to-gRPC table."""
    code = code_of_http(reply.status)
    for name, value in reply.headers:
        if name.lower() == "grpc-status":
            code = int(value) if value.isdigit() else CODES.get(value.upper(), code)
    return code


class GrpcExchange(Exchange):
    """One gRPC call through the exchange."""

    __slots__ = ("call", "decided", "delay", "grpc_code", "outcome", "resume")

    def __init__(self, plane: DataPlane, call: GrpcCall, assignment: Assignment,
                 loop: asyncio.AbstractEventLoop) -> None:
        super().__init__(plane, assignment, loop)
        self.call = call
        self.decided = False
        # What the faults chose instead of the upstream: a reply, or a drop; None forwards.
        self.outcome: Reply | Drop | None = None
        # Called once the faults decided, when they decided after a wait (set by the edge).
        self.resume: Callable[[], None] | None = None
        # The status code the client got; -1 until known (a dropped call has none).
        self.grpc_code = -1
        # Seconds a stream hook held the answer (sent after this long).
        self.delay = 0.0

    # -- FaultContext: the request side
    @property
    def method(self) -> str:
        return self.call.method

    @property
    def target(self) -> str:
        return self.call.path

    @property
    def path(self) -> str:
        return self.call.path

    def header(self, name: bytes) -> bytes | None:
        return self.call.header(name)

    def request_body(self) -> bytes | None:
        return self.call.body

    def replace_request_body(self, data: bytes) -> None:
        if self.call.body is None:
            raise ValueError("a streaming call's messages cannot be replaced")
        self.call.body = data

    def set_request_header(self, name: bytes, value: bytes) -> None:
        """Send one metadata entry ``name`` (lower-cased) with ``value`` upstream in place of the client's."""
        key = name.decode("latin-1").lower()
        if key in _RESERVED or key.startswith(":"):
            raise ValueError(f"the transport sets {key!r} itself")
        text: str | bytes = value if key.endswith("-bin") else value.decode("latin-1")
        self.call.metadata = [(k, v) for k, v in self.call.metadata if k != key] + [(key, text)]

    def set_target(self, target: str) -> None:
        """Call another method on the same upstream (``/package.Service/Method``)."""
        if not target.startswith("/") or "?" in target:
            raise ValueError(f"a gRPC method path is /package.Service/Method: {target!r}")
        self.call.path = target

    def sticky_value(self) -> bytes | None:
        st = self.st
        key = st.spec.sticky_key if st is not None else None
        return sticky_value(key, self.call) if key is not None else None

    def payload(self) -> ExchangePayload:
        """The call's messages, read as protobuf (``GrpcPayload``)."""
        if self._payload is None:
            assert self.st is not None
            self._payload = GrpcPayload(self, self.st.spec.payload, self.st.adapter_options)
        return self._payload

    # -- the decision, for the edge's coroutine
    def forward(self) -> None:
        self._decide()

    def local_reply(self, reply: Reply) -> None:
        """The reply's gRPC code: its ``grpc-status`` header (abort's ``grpc_status``), or the code of its HTTP
        status by gRPC's HTTP-to-gRPC table; the status recorded is that code's HTTP equivalent."""
        code = self.grpc_code = reply_code(reply)
        self.status = reply.status if code == OK else http_of_code(code)
        self.outcome = reply
        self._decide()

    def drop_client(self, drop: Drop) -> None:
        self.outcome = drop
        self._decide()

    def _decide(self) -> None:
        self.decided = True
        resume = self.resume
        if resume is not None:
            resume()

    def finish(self, upstream_keep: bool = False) -> None:
        if self.finished:
            return
        self.finished = True
        self.unlink()
        self.record()

    def done(self, code: int) -> None:
        """The call ended with gRPC status ``code`` (-1: dropped without one)."""
        self.grpc_code = code
        self.status = DROPPED if code < 0 else http_of_code(code)
        self.finish()

    def abandon(self) -> None:
        """The client cancelled the call, or its deadline passed, before the answer."""
        if self.finished:
            return
        self.finished = True
        self.unlink()
        self.plane.metrics.errors["client_disconnect"].value += 1
        self.cancel_waits()
        self.record_abandoned()

    def count(self, metrics: CohortMetrics, seconds: float) -> None:
        metrics.count_grpc(self.grpc_code if self.status != DROPPED else -1, seconds)

    # -- the answer
    def wants_response(self) -> bool:
        return self.hooks is not None or self.stream_hooks is not None

    def respond(self, metadata: Metadata, message: bytes) -> bytes | Cut | Reply:
        """The upstream's answer message through the faults' response hooks, then their stream hooks (as one
        chunk, then the end); a Hold becomes ``delay``; a Cut drops the call; a hook that changed the status
        (the ``status`` fault) makes the answer that status's gRPC code (a Reply)."""
        view = ResponseView(200, [(k.encode("latin-1"), metadata_bytes(v)) for k, v in metadata], message)
        if self.hooks is not None:
            for hook in self.hooks:
                try:
                    hook(view)
                except Exception:  # a hook never fails the call: the answer goes on as it came
                    self.plane.metrics.errors["internal"].value += 1
                    log.exception("response hook failed; the answer is sent as it is")
        if view.status != 200:
            return Reply(view.status, b"", tuple((n.decode("latin-1"), v.decode("latin-1")) for n, v in view.headers
                                                 if n.lower() in (b"grpc-status", b"grpc-message")))
        data = view.body
        hooks = self.stream_hooks
        if hooks is None:
            return data
        # A unary answer is one chunk: each hook sees it whole, then its end, before the next hook does.
        for stream_hook in hooks:
            pieces: list[bytes] = []
            try:
                steps = (stream_hook.chunk(data), stream_hook.end())
            except Exception:
                self.plane.metrics.errors["internal"].value += 1
                log.exception("stream hook failed; the answer is sent as it is")
                continue
            for step in steps:
                for piece in step if isinstance(step, tuple) else (step,):
                    if isinstance(piece, Hold):
                        self.delay += piece.seconds
                        pieces.append(piece.data)
                    elif isinstance(piece, Cut):
                        return piece
                    else:
                        pieces.append(piece)
            data = b"".join(pieces)
        return data
