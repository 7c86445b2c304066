"""One gRPC call through the edge: the client's stream, the exchange, the upstream's stream.

A call flows one way: the client's HEADERS (``Relay.__init__``), its message (a unary inference method's is
held whole, for the faults and the observer; any other method's are relayed as they come), the assignment and
the faults (``GrpcExchange``), the upstream stream, the answer (held whole when a response hook or the
observer reads it, else relayed frame by frame), the trailers, the record. Callbacks all the way: no task per
call; a fault's wait is the exchange's timer, and its end calls ``_decided``.

The upstream's headers, messages and trailers reach the client as they came (the same fields in the same
order, HPACK re-encoded); the proxy's own answers (an injected status, an upstream failure, a deadline) are
trailers-only responses, and its own failures carry ``x-mlchaos-error: upstream``.
"""

from __future__ import annotations

import base64
import logging
import math
from typing import TYPE_CHECKING, Final

from ...cohort import COHORTS
from ...faults.base import Cut, Drop, Reply
from .call import HOP_METADATA, GrpcCall
from .exchange import GrpcExchange, Metadata, reply_code
from .h2.connection import CANCEL
from .status import CODES, DEADLINE_EXCEEDED, OK, UNAVAILABLE, code_of_http

if TYPE_CHECKING:
    import asyncio

    from .h2.headers import Headers
    from .server import ClientSide, DownStream, GrpcEdge
    from .upstream import UpstreamConnection, UpstreamStream

__all__ = ["UNARY_METHODS", "Relay", "framed", "parse_timeout", "unframe"]

log = logging.getLogger("mlchaos")
# The unary methods of the Open Inference Protocol (KServe's and Triton's inference.GRPCInferenceService): their
# request message is held whole, so faults and the observer can read it; any other method's messages are relayed
# as they come (unary, server streaming and bidirectional calls alike: on the wire each is one HTTP/2 stream).
UNARY_METHODS: Final = frozenset(f"/inference.GRPCInferenceService/{m}" for m in (
    "ServerLive", "ServerReady", "ModelReady", "ServerMetadata", "ModelMetadata", "ModelInfer",
    "RepositoryIndex", "RepositoryModelLoad", "RepositoryModelUnload", "ModelConfig", "ModelStatistics",
    "SystemSharedMemoryStatus", "SystemSharedMemoryRegister", "SystemSharedMemoryUnregister",
    "CudaSharedMemoryStatus", "CudaSharedMemoryRegister", "CudaSharedMemoryUnregister", "TraceSetting",
    "LogSettings"))
RESPONSE_START: Final[Headers] = [(b":status", b"200"), (b"content-type", b"application/grpc")]
UPSTREAM_ERROR: Final = (b"x-mlchaos-error", b"upstream")
# Seconds a fault's answer to a streaming call waits for the call's first message (Relay._decided).
_REPLY_WAIT: Final = 0.05
_TIMEOUT_UNITS: Final = {ord("H"): 3600.0, ord("M"): 60.0, ord("S"): 1.0, ord("m"): 1e-3, ord("u"): 1e-6,
                         ord("n"): 1e-9}
# Request headers that are the transport's, not the call's metadata: set again for the upstream hop.
_TRANSPORT: Final = frozenset(name.encode() for name in HOP_METADATA)


def parse_timeout(value: bytes) -> float | None:
    """Seconds of a ``grpc-timeout`` (at most 8 digits and a unit); None when it is not one."""
    if 2 <= len(value) <= 9 and value[:-1].isdigit():
        unit = _TIMEOUT_UNITS.get(value[-1])
        if unit is not None:
            return int(value[:-1]) * unit
    return None


def format_timeout(seconds: float) -> bytes:
    """A ``grpc-timeout`` of at least ``seconds``, in whole milliseconds (seconds past 8 digits of them)."""
    ms = max(1, math.ceil(seconds * 1000.0))
    return b"%dm" % ms if ms < 100_000_000 else b"%dS" % math.ceil(seconds)


def percent_encode(text: str) -> bytes:
    """A ``grpc-message``: UTF-8, with bytes outside printable ASCII and '%' percent-encoded."""
    raw = text.encode("utf-8")
    if all(0x20 <= b <= 0x7E and b != 0x25 for b in raw):
        return raw
    return b"".join(bytes((b,)) if 0x20 <= b <= 0x7E and b != 0x25 else b"%%%02X" % b for b in raw)


def unframe(data: bytes) -> bytes | None:
    """The message of a gRPC length-prefixed frame (flag 0, 4-byte length); None when ``data`` is compressed or
    not exactly one message (then it is relayed as it came, unread)."""
    rest = data[5:]
    return rest if len(data) >= 5 and data[0] == 0 and int.from_bytes(data[1:5]) == len(rest) else None


def framed(message: bytes) -> bytes:
    """``message`` in a gRPC length-prefixed frame, uncompressed."""
    return b"\x00" + len(message).to_bytes(4) + message


def _wire_value(key: str, value: str | bytes) -> bytes:
    if isinstance(value, bytes):  # a -bin value a fault set: base64 on the wire, unpadded as gRPC emits it
        return base64.b64encode(value).rstrip(b"=") if key.endswith("-bin") else value
    return value.encode("latin-1")


def grpc_code(headers: Headers, default: int) -> int:
    for name, value in headers:
        if name == b"grpc-status":
            return int(value) if value.isdigit() else CODES.get(value.decode("latin-1").upper(), 2)
    return default


class Relay:
    """One call: the client's stream on ``down``, the upstream's once forwarded."""

    __slots__ = ("body", "ctype", "deadline", "down", "ds", "edge", "ended", "ex", "frame", "got_data", "got_headers",
                 "held", "held_headers", "hold", "loop", "message", "metadata", "path", "pending_end",
                 "pending_reply", "queued", "raw_metadata", "req_ended", "sent_headers", "t_up", "timer",
                 "timer_client", "up", "us")

    def __init__(self, edge: GrpcEdge, down: ClientSide, ds: DownStream, headers: Headers, end: bool) -> None:
        self.edge = edge
        self.down = down
        self.ds = ds
        self.loop: asyncio.AbstractEventLoop = edge.loop
        path = b""
        ctype = b"application/grpc"
        timeout: float | None = None
        metadata: list[tuple[str, str | bytes]] = []
        raw: Headers = []
        for name, value in headers:
            if name[:1] == b":":
                if name == b":path":
                    path = value
                continue
            if name in _TRANSPORT:
                if name == b"grpc-timeout":
                    timeout = parse_timeout(value)
                elif name == b"content-type":
                    ctype = value
                continue
            raw.append((name, value))
            metadata.append((name.decode("latin-1"), value.decode("latin-1")))
        self.path = path.decode("latin-1")
        self.ctype = ctype
        self.raw_metadata = raw
        self.metadata = metadata
        self.deadline = None if timeout is None else self.loop.time() + timeout
        self.timer: asyncio.TimerHandle | None = None
        self.timer_client = False
        self.req_ended = end
        # A unary method's request message, held whole (with its 5-byte gRPC prefix); None: relayed.
        self.body: bytearray | None = bytearray() if self.path in UNARY_METHODS else None
        self.queued: list[bytes] = []  # a streaming call's messages before its upstream stream is open
        # A unary call's request as it came: the whole frame, and its message (None: unread; a fault may replace
        # the call's).
        self.frame = b""
        self.message: bytes | None = None
        self.t_up = 0.0
        # A status held back until the client's first message (``_wait_for_first_message``): a fault's or the
        # upstream's.
        self.pending_reply: Reply | None = None
        self.pending_end: tuple[Headers, int] | None = None
        self.got_data = False
        self.ex: GrpcExchange | None = None
        self.up: UpstreamConnection | None = None
        self.us: UpstreamStream | None = None
        self.got_headers = False
        self.sent_headers = False
        self.hold = False
        self.held = bytearray()  # a held answer's DATA (bounded by the message limit)
        self.held_headers: Headers = []
        self.ended = False
        if not path:
            edge.plane.metrics.errors["malformed_request"].value += 1
            self._answer(13, "mlchaos: a gRPC call without :path", [], False)
        elif self.body is None or end:
            self._start()

    # -- the client's side
    def req_data(self, payload: bytes, end: bool, flow: int) -> None:
        down, ds = self.down, self.ds
        if flow > len(payload):
            down.credit(ds, flow - len(payload))  # padding
        if end:
            self.req_ended = True
        if self.ended:
            down.credit(ds, len(payload))
            return
        body = self.body
        if body is not None:
            down.credit(ds, len(payload))  # held whole: bounded by the message limit below
            body += payload
            if len(body) > self.edge.max_message_bytes + 5:
                self.edge.plane.metrics.errors["body_too_large"].value += 1
                self._answer(8, f"mlchaos: the request message is over {self.edge.max_message_bytes} bytes", [],
                             False)
            elif end:
                self._start()
            return
        self.got_data = True
        if self.pending_end is not None:  # the upstream has answered: its status goes now, the message nowhere
            down.credit(ds, len(payload))
            self._send_pending()
            return
        us = self.us
        if us is not None and self.up is not None:
            self.up.send_data(us, payload, end)
        elif self.ex is not None and self.ex.outcome is not None:
            down.credit(ds, len(payload))  # answered by a fault: nothing goes upstream
            if self.pending_reply is not None:
                self._send_pending()
        else:
            self.queued.append(payload)

    def client_gone(self) -> None:
        """The client reset the stream or its connection closed."""
        if self.ended:
            return
        self.ended = True
        self._cancel_timer()
        if self.us is not None and self.up is not None:
            self.up.cancel(self.us)
        if self.ex is not None:
            self.ex.abandon()

    # -- the exchange
    def _start(self) -> None:
        body = self.body
        message: bytes | None = None
        if body is not None:
            self.frame = bytes(body)
            message = self.message = unframe(self.frame)
        edge = self.edge
        plane = edge.plane
        call = GrpcCall(self.path, self.metadata, self.down.peer, message)
        ex = self.ex = GrpcExchange(plane, call, plane.experiments.router.assign(call), self.loop)
        deadline = self.deadline
        if deadline is not None:
            self.timer_client = True
        elif body is not None:
            deadline = self.loop.time() + plane.timeouts.response
        if deadline is not None:
            self.timer = self.loop.call_at(deadline, self._expired)
        ex.start()
        if ex.decided:
            self._decided()
        else:  # a fault waits first: its timer decides, then calls back
            ex.resume = self._decided

    def _decided(self) -> None:
        ex = self.ex
        assert ex is not None
        ex.resume = None
        if self.ended:
            return
        outcome = ex.outcome
        if outcome is None:
            self._forward(ex)
        elif isinstance(outcome, Drop):  # the exchange has recorded it
            if outcome.stream:  # this call only: the others on the connection go on
                self.down.reset(self.ds, CANCEL)
            else:
                self.down.drop(outcome.reset)
            self._close()
        elif self._wait_for_first_message():
            self.pending_reply = outcome
        else:
            self._reply(ex, outcome)

    def _wait_for_first_message(self) -> bool:
        """Whether a streaming call's status would come before the client's first message. Then it waits for
        that message (or the end of the request, at most _REPLY_WAIT): grpc's clients fail a write made after
        the status, and grpc.aio's then replaces the status with INTERNAL "Internal error from Core" (1-2 calls
        in 80 of an upstream's UNIMPLEMENTED, 4 runs in 5 of an injected abort, here). The status the fault or
        the upstream gave is what the client should see."""
        if self.body is not None or self.req_ended or self.got_data:
            return False
        self._cancel_timer()
        self.timer = self.loop.call_later(_REPLY_WAIT, self._send_pending)
        return True

    def _send_pending(self) -> None:
        self._cancel_timer()
        reply, self.pending_reply = self.pending_reply, None
        end, self.pending_end = self.pending_end, None
        if self.ended or self.ex is None:
            return
        if reply is not None:
            self._reply(self.ex, reply)
        elif end is not None:
            self.down.send_headers(self.ds, end[0], True)
            self._finish(end[1])

    def _forward(self, ex: GrpcExchange) -> None:
        call = ex.call
        self.hold = self.body is not None and (ex.wants_response() or ex.tee is not None)
        pool = self.edge.pool(ex.upstream_name)
        headers: Headers = [(b":method", b"POST"), (b":scheme", b"http"), (b":path", call.path.encode("latin-1")),
                            (b":authority", pool.authority), (b"content-type", self.ctype), (b"te", b"trailers")]
        deadline = self.deadline
        if deadline is None and self.body is not None:
            deadline = ex.t0 + self.edge.plane.timeouts.response
        if deadline is not None:
            headers.append((b"grpc-timeout", format_timeout(deadline - self.loop.time())))
        if call.metadata is self.metadata:  # untouched: the client's bytes as they came
            headers += self.raw_metadata
        else:
            headers += [(k.encode("latin-1"), _wire_value(k, v)) for k, v in call.metadata]
        body = self.body
        if body is None:
            data = b"".join(self.queued)
            if data:
                self.down.credit(self.ds, len(data))
            self.queued.clear()
        elif call.body is None or call.body is self.message:  # not replaced: the client's bytes as they came
            data = self.frame
        else:
            data = framed(call.body)
        up = self.up = pool.connection()
        us = self.us = up.open(self, headers, data, self.req_ended)
        if body is None:
            us.credit_back = (self.down, self.ds)
        if not self.hold:  # relayed answer bytes go back to the upstream's windows once written to the client
            self.ds.credit_back = (up, us)
        self.t_up = self.loop.time()

    # -- the upstream's side
    def up_headers(self, headers: Headers, end: bool) -> None:
        if self.ended:
            return
        ex = self.ex
        assert ex is not None
        if not self.got_headers:
            self.got_headers = True
            st = ex.st
            if st is not None:
                st.cohort_metrics[ex.cohort].upstream.observe(self.loop.time() - self.t_up)
            if end:  # trailers-only: a status and no message
                status = next((v for k, v in headers if k == b":status"), b"200")
                http_code = OK if status == b"200" else code_of_http(int(status)) if status.isdigit() else 2
                code = grpc_code(headers, http_code)
                self._trailers(headers, code, True)
                return
            if self.hold:
                self.held_headers = headers
                return
            self.sent_headers = True
            self.down.send_headers(self.ds, headers + self._reveal(ex) if st is not None else headers, False)
            return
        self._trailers(headers, grpc_code(headers, 2), False)

    def up_data(self, payload: bytes, end: bool, flow: int) -> None:
        if self.ended:
            return
        if self.hold:
            assert self.up is not None and self.us is not None
            self.up.credit(self.us, len(payload))
            self.held += payload
            if len(self.held) > self.edge.max_message_bytes + 5:
                self.edge.plane.metrics.errors["upstream_bad_response"].value += 1
                self.up.cancel(self.us)
                self._answer(8, f"mlchaos: the answer is over {self.edge.max_message_bytes} bytes", [UPSTREAM_ERROR],
                             True)
                return
        elif payload:
            self.down.send_data(self.ds, payload, False)
        if end:  # DATA ended the stream: no trailers, so no status (a client reads it as INTERNAL)
            self._trailers([], 2, False)

    def up_failed(self, kind: str, message: str) -> None:
        if self.ended:
            return
        self.edge.plane.metrics.errors[kind].value += 1
        self._answer(UNAVAILABLE, f"mlchaos: upstream {message}", [UPSTREAM_ERROR], True)

    def _trailers(self, trailers: Headers, code: int, only: bool) -> None:
        ex = self.ex
        assert ex is not None
        if self.hold and not only:
            self._answer_held(ex, trailers, code)
            return
        if ex.st is not None and only:
            trailers = trailers + self._reveal(ex)
        if self.hold:  # trailers-only: the held nothing goes with them
            self.hold = False
        if only and self._wait_for_first_message():
            self.pending_end = (trailers, code)
            return
        self.down.send_headers(self.ds, trailers, True)
        self._finish(code)

    def _answer_held(self, ex: GrpcExchange, trailers: Headers, code: int) -> None:
        data = bytes(self.held)
        self.held = bytearray()
        message = unframe(data)
        if message is not None and code == OK and ex.wants_response():
            initial: Metadata = [(k.decode("latin-1"), v.decode("latin-1")) for k, v in self.held_headers
                                 if k[:1] != b":"]
            answer = ex.respond(initial, message)
            if isinstance(answer, Cut):
                self._finish(-1)
                self.down.drop(answer.reset)
                return
            if isinstance(answer, Reply):  # the status fault: the model answered, the client gets an error
                reply_status = reply_code(answer)
                text = dict(answer.headers).get("grpc-message") or f"mlchaos: status {answer.status}"
                self._answer(reply_status, text, self._reveal(ex), False)
                return
            if answer is not message:
                message = answer
                data = framed(answer)
        if message is not None and ex.tee is not None:
            self._tee(ex, message)
        if ex.delay > 0.0:
            self.loop.call_later(ex.delay, self._send_held, ex, data, trailers, code)
        else:
            self._send_held(ex, data, trailers, code)

    def _send_held(self, ex: GrpcExchange, data: bytes, trailers: Headers, code: int) -> None:
        if self.ended:
            return
        down, ds = self.down, self.ds
        headers = self.held_headers
        down.send_headers(ds, headers + self._reveal(ex) if ex.st is not None else headers, False)
        self.sent_headers = True
        down.send_data(ds, data, False)
        down.send_headers(ds, trailers, True)
        self._finish(code)

    def _close(self) -> None:
        """Nothing more goes either way on this call: its timer, its client stream and its upstream one end."""
        self.ended = True
        self._cancel_timer()
        self.down.done(self.ds)
        if self.us is not None and self.up is not None:
            self.up.release(self.us)

    def _finish(self, code: int) -> None:
        """``_close``, and the exchange is recorded with gRPC status ``code`` (-1: dropped)."""
        self._close()
        ex = self.ex
        if ex is not None:
            ex.done(code)

    # -- the proxy's own answers
    def _expired(self) -> None:
        """The client's deadline passed (the call is abandoned, as a server ends it), or without one the
        policy's ``timeouts.response`` did (an upstream timeout, answered as ours)."""
        self.timer = None
        if self.ended:
            return
        if self.us is not None and self.up is not None:
            self.up.cancel(self.us)
        if self.timer_client:
            self._answer(DEADLINE_EXCEEDED, "Deadline Exceeded", [], False, record=False)
            if self.ex is not None:
                self.ex.abandon()
            return
        self.edge.plane.metrics.errors["upstream_timeout"].value += 1
        self._answer(DEADLINE_EXCEEDED, "mlchaos: upstream Deadline Exceeded", [UPSTREAM_ERROR], True)

    def _answer(self, code: int, details: str, trailing: Headers, reveal: bool, record: bool = True) -> None:
        """End the call with a status of the proxy's (headers already sent: as trailers)."""
        ex = self.ex
        fields = [] if self.sent_headers else list(RESPONSE_START)
        fields += [(b"grpc-status", b"%d" % code), (b"grpc-message", percent_encode(details))]
        fields += trailing
        if reveal and ex is not None and ex.st is not None:
            fields += self._reveal(ex)
        self.down.send_headers(self.ds, fields, True)
        if record:
            self._finish(code)
        else:
            self._close()

    def _reply(self, ex: GrpcExchange, reply: Reply) -> None:
        """A fault's answer with the code the exchange chose (``GrpcExchange.local_reply``): its body is the
        status details (the message of an OK answer), its other headers become trailers. The exchange has
        recorded it already."""
        details = reply.body.decode("utf-8", "replace")
        trailing: Headers = []
        for name, value in reply.headers:
            lname = name.lower()
            if lname == "grpc-message":
                details = value
            elif lname != "grpc-status" and lname not in HOP_METADATA:
                trailing.append((lname.encode("latin-1"), value.encode("latin-1")))
        trailing += self._reveal(ex)
        self._close()
        down, ds = self.down, self.ds
        if ex.grpc_code == OK:
            down.send_headers(ds, RESPONSE_START, False)
            down.send_data(ds, framed(reply.body), False)
            down.send_headers(ds, [(b"grpc-status", b"0"), *trailing], True)
        else:
            down.send_headers(ds, [*RESPONSE_START, (b"grpc-status", b"%d" % ex.grpc_code),
                                   (b"grpc-message", percent_encode(details)), *trailing], True)
        queued = sum(len(q) for q in self.queued)
        if queued:
            down.credit(ds, queued)
        self.queued.clear()

    # -- pieces
    def _cancel_timer(self) -> None:
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None

    @staticmethod
    def _reveal(ex: GrpcExchange) -> Headers:
        st = ex.st
        if st is None:
            return []
        reveal = st.spec.reveal
        out: Headers = []
        if reveal.cohort:
            out.append((b"x-mlchaos-cohort", COHORTS[ex.cohort].encode()))
        if reveal.fault and ex.applied:
            out.append((b"x-mlchaos-fault", ",".join(ex.applied).encode()))
        return out

    def _tee(self, ex: GrpcExchange, message: bytes) -> None:
        """Hand the answer to the experiment's prediction observer (chaos and control only)."""
        st = ex.st
        if st is not None and st.observer is not None and len(message) <= self.edge.plane.limits.inspect_body_bytes:
            st.observer.submit(ex.cohort, ex.call.path, [message])
        ex.tee = None
