"""Client side of the data plane: one ``ClientConnection`` per accepted socket, one ``Exchange`` per request.

Requests on a connection are answered strictly in order (pipelining): the parser runs ahead and queues
them, and the next one starts when the previous response is complete. The common case (the body in
hand, a pooled upstream connection, faults that do not wait) runs entirely in protocol callbacks, with no
task, future or timer per request. A fault's ``Wait`` is a timer; a coroutine takes over only for what
has to wait on I/O: connecting, streaming a request body, throttling. A response is relayed from the
upstream's parser callbacks straight into the client's transport, one write per upstream read, so a
streaming (chunked, SSE) response reaches the client as it arrives.
"""

from __future__ import annotations

import asyncio
import logging
import random
import socket
import struct
from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING, cast

import httptools

from .. import _tasks
from ..cohort import CHAOS, COHORTS, NONE, sticky_value
from ..errors import (
    CLIENT_DISCONNECT,
    CLIENT_TIMEOUT,
    RESPONSE_TOO_LARGE,
    UPSTREAM_STALE_RETRY,
    BadRequest,
    BodyTooLarge,
    HeadersTooLarge,
    ProxyError,
    UpstreamResetError,
    UpstreamTimeout,
    error_response,
)
from ..faults.base import Drop, Outcome, Reply, ResponseHook, ResponseView, Wait
from .http import (
    CONTINUE,
    HOP_BY_HOP,
    LAST_CHUNK,
    PLAIN_CONNECTION,
    chunk,
    connection_tokens,
    parse_header_block,
    relay_headers,
    response_head,
    status_line,
)
from .payload import RequestPayload
from .request import Request
from .upstream import UpstreamConnection, UpstreamPool

if TYPE_CHECKING:
    from ..experiments import ExperimentState
    from .state import DataPlane

__all__ = ["ClientConnection", "client_protocol"]

_rand = random.random
log = logging.getLogger("mlchaos")
# Request headers the proxy handles itself instead of forwarding as they came.
_SPECIAL = frozenset({
    b"host", b"content-length", b"expect", b"x-forwarded-for", b"x-forwarded-proto",
    b"x-mlchaos-cohort", b"x-mlchaos-token", b"x-mlchaos-experiment",
}) | HOP_BY_HOP
_NO_BODY_STATUS = frozenset({204, 304})
_LINGER_RESET = struct.pack("ii", 1, 0)
_COHORT_HEADERS = tuple(b"x-mlchaos-cohort: %s\r\n" % c.encode() for c in COHORTS)
# Status of a request whose connection a fault dropped; counted as code="dropped".
DROPPED = 0


class Exchange:
    """One request/response pair: runs the faults, talks to the upstream, relays the response."""

    __slots__ = (
        "applied", "client", "close_delimited", "cohort", "finished", "head_received", "keep_alive", "loop",
        "outbound", "plane", "pool", "recorded", "relay", "req", "retried", "reused", "rx", "rx_at", "rx_seen",
        "st", "status", "t0", "t_up", "task", "throttle_bps", "to_chunk", "upstream", "upstream_done",
        "upstream_keep", "upstream_name", "waiting", "hooks", "held", "_payload", "tee", "resume_at", "timer",
    )

    def __init__(self, client: ClientConnection, req: Request, st: ExperimentState | None, cohort: int) -> None:
        self.client = client
        self.plane = client.plane
        self.req = req
        self.st = st
        self.cohort = cohort
        self.loop = client.loop
        self.t0 = self.t_up = self.rx_at = client.loop.time()
        self.upstream_name: str | None = None
        self.throttle_bps: float | None = None
        self.applied: list[str] | None = None
        self.resume_at = 0
        self.status = 0
        self.head_received = False
        self.to_chunk = False
        self.close_delimited = False
        self.keep_alive = req.keep_alive
        self.upstream: UpstreamConnection | None = None
        self.pool: UpstreamPool | None = None
        self.outbound: bytes | None = None
        self.reused = False
        self.retried = False
        # True from sending to the upstream until its response ends or fails: deadlines apply.
        self.waiting = False
        self.upstream_done = False
        self.upstream_keep = False
        self.finished = False
        self.recorded = False
        self.task: asyncio.Task[None] | None = None
        self.timer: asyncio.TimerHandle | None = None
        self.rx = 0
        self.rx_seen = 0
        self.relay: deque[bytes] | None = None
        # Response hooks of faults (and observers); with any, the response is held until complete.
        self.hooks: list[ResponseHook] | None = None
        self.held: tuple[ResponseView, list[bytes]] | None = None
        self._payload: RequestPayload | None = None
        # A copy of the response body for the experiment's prediction observer (chaos and control only,
        # JSON only, at most inspect_body_bytes); parsed later in a background task, never here.
        self.tee: list[bytes] | None = [] if st is not None and st.observer is not None and st.observer.wants() \
            else None

    # -- FaultContext
    @property
    def method(self) -> str:
        return self.req.method

    @property
    def target(self) -> str:
        return self.req.target

    def header(self, name: bytes) -> bytes | None:
        return self.req.header(name)

    def request_body(self) -> bytes | None:
        body = self.req.body
        if self.req.streamed or not body.done:
            return None
        data = body.take() if body.chunks else b""
        body.chunks.append(data)
        return data

    def replace_request_body(self, data: bytes) -> None:
        req = self.req
        if req.streamed:
            raise ValueError("a streamed request body cannot be replaced")
        req.body.chunks.clear()
        req.body.chunks.append(data)
        if req.content_length is None:
            req.content_length = len(data)  # a body where there was none needs a length upstream

    def set_request_header(self, name: bytes, value: bytes) -> None:
        """Send one ``name`` header (any case) with ``value`` upstream in place of the client's."""
        req = self.req
        lname = name.lower()
        if lname in _SPECIAL:
            raise ValueError(f"the proxy sets {name!r} itself")
        req.headers = [(n, v) for n, v in req.headers if n != lname] + [(lname, value)]
        req.lines = [ln for ln in req.lines if ln.split(b":", 1)[0].lower() != lname]
        req.lines.append(name + b": " + value + b"\r\n")

    def set_target(self, target: str) -> None:
        if not target.startswith("/"):
            raise ValueError(f"a request target starts with '/': {target!r}")
        self.req.url = target.encode("latin-1")
        self.req._path = self.req._query = None

    def payload(self) -> RequestPayload:
        """The request's payload, parsed on first use with the experiment's payload settings."""
        if self._payload is None:
            assert self.st is not None
            self._payload = RequestPayload(self, self.st.spec.payload, self.st.adapter_options)
        return self._payload

    def sticky_value(self) -> bytes | None:
        st = self.st
        key = st.spec.sticky_key if st is not None else None
        return sticky_value(key, self.req) if key is not None else None

    def count_unparsed(self, direction: str) -> None:
        if self.st is not None:
            self.st.unparsed[self.cohort][direction].value += 1

    def on_response(self, hook: ResponseHook) -> None:
        if self.hooks is None:
            self.hooks = []
        self.hooks.append(hook)

    # -- start
    def start(self) -> None:
        req = self.req
        if req.error is not None:
            self.fail(req.error)
            return
        if self.cohort == CHAOS and self.st is not None and self.st.spec.faults:
            outcome = self.run_faults(0)
            if isinstance(outcome, Wait):
                self.hold(outcome)
                return
            if outcome is not None:
                self.short_circuit(outcome)
                return
        self.forward()

    def forward(self) -> None:
        """After the faults: send upstream at once on a pooled connection, or from a task when it has to wait."""
        if not self.req.streamed and self.throttle_bps is None:
            pool = self.plane.pools[self.upstream_name] if self.upstream_name else self.plane.primary
            conn = pool.take_idle()
            if conn is not None:
                self._send(pool, conn, reused=True)
                return
        self.task = _tasks.spawn(self._run())

    def hold(self, wait: Wait) -> None:
        """A fault's wait: a timer, not a task; the client leaving cancels it (``abandon``)."""
        self.timer = self.loop.call_later(wait.seconds, self._resume, wait)

    def _resume(self, wait: Wait) -> None:
        self.timer = None
        if self.finished:
            return
        outcome = wait.then if wait.then is not None else self.run_faults(self.resume_at)
        if isinstance(outcome, Wait):
            self.hold(outcome)
        elif outcome is not None:
            self.short_circuit(outcome)
        else:
            self.forward()

    async def _run(self) -> None:
        """The path that has to wait: a new upstream connection, a streamed body, throttling."""
        try:
            plane = self.plane
            pool = plane.pools[self.upstream_name] if self.upstream_name else plane.primary
            if self.throttle_bps:
                self.relay = deque()
            conn = pool.take_idle()
            reused = conn is not None
            if conn is None:
                conn = await pool.connect()
            if self.finished:
                conn.close()
                return
            req = self.req
            if req.streamed and req.expect_continue and not req.continued and req.version == "1.1":
                req.continued = True
                self.client.write(CONTINUE)
            self._send(pool, conn, reused)
            if req.streamed:
                await self._stream_body(conn)
            if self.relay is not None:
                await self._drain_throttled()
        except ProxyError as exc:
            self.fail(exc)

    def run_faults(self, start: int) -> Outcome:
        """The experiment's faults from index ``start``, each drawn by its probability, in policy order,
        until one answers or waits (then ``resume_at`` is where to go on after the wait)."""
        assert self.st is not None
        st = self.st
        faults = st.spec.faults
        for i in range(start, len(faults)):
            fault = faults[i]
            p = fault.probability
            if p < 1.0 and (p <= 0.0 or _rand() >= p):
                continue
            if self.applied is None:
                self.applied = []
            self.applied.append(fault.type)
            st.fault_counters[i].value += 1
            st.faults_injected += 1
            try:
                outcome = fault.apply(self)
            except Exception:  # a fault's bug must not fail the request: it goes on without that fault
                self.plane.metrics.errors["internal"].value += 1
                log.exception("fault %s failed; the request goes on without it", fault.type)
                continue
            if outcome is not None:
                if isinstance(outcome, Wait):
                    self.resume_at = i + 1
                return outcome
        return None

    def short_circuit(self, outcome: Reply | Drop) -> None:
        """A fault answered instead of the upstream, or dropped the connection."""
        if isinstance(outcome, Reply):
            self.local_reply(outcome)
        else:
            self.keep_alive = False
            self.client.drop(outcome)
            self.status = DROPPED
        self.finish()

    # -- upstream
    def _send(self, pool: UpstreamPool, conn: UpstreamConnection, reused: bool) -> None:
        self.pool, self.upstream, self.reused = pool, conn, reused
        outbound = self.outbound
        if outbound is None:
            req = self.req
            if req.streamed:
                outbound = self._upstream_head(pool, None)
            else:
                body = req.body.take() if req.body.chunks else b""
                framed = req.content_length is not None or req.chunked
                outbound = self._upstream_head(pool, len(body) if framed else None) + body
            # Kept whole, so a stale pooled connection can be retried with the same bytes.
            self.outbound = outbound
        self.t_up = self.rx_at = self.loop.time()
        self.waiting = True
        conn.send(self, outbound)

    def _upstream_head(self, pool: UpstreamPool, body_len: int | None) -> bytes:
        req = self.req
        lines = req.lines
        if req.conn_tokens is not None:
            extra = connection_tokens(req.conn_tokens) - PLAIN_CONNECTION
            if extra:
                lines = [ln for ln in lines if ln.split(b":", 1)[0].strip().lower() not in extra]
        host = req.host if self.plane.preserve_host and req.host else pool.authority
        xff = req.client_ip if req.xff is None else req.xff + b", " + req.client_ip
        parts = [req.method.encode("latin-1"), b" ", req.url, b" HTTP/1.1\r\n", *lines,
                 b"host: ", host, b"\r\nx-forwarded-for: ", xff,
                 b"\r\nx-forwarded-proto: ", req.xfp or b"http", b"\r\n"]
        if body_len is not None:
            parts.append(b"content-length: %d\r\n" % body_len)
        elif req.chunked:
            parts.append(b"transfer-encoding: chunked\r\n")
        elif req.content_length is not None:
            parts.append(b"content-length: %d\r\n" % req.content_length)
        parts.append(b"\r\n")
        return b"".join(parts)

    async def _stream_body(self, conn: UpstreamConnection) -> None:
        req, body, client = self.req, self.req.body, self.client
        while not self.finished:
            if body.error is not None:
                raise body.error
            if body.chunks:
                data = body.take()
                conn.write(chunk(data) if req.chunked else data)
                client.body_drained()
            if body.done:
                if req.chunked:
                    conn.write(LAST_CHUNK)
                return
            await body.wait()

    async def _drain_throttled(self) -> None:
        """Deliver the relayed body at ``throttle_bps``, 20 slices a second."""
        assert self.relay is not None and self.throttle_bps is not None
        tick = 0.05
        budget_per_tick = max(1, int(self.throttle_bps * tick))
        relay, client = self.relay, self.client
        while not self.finished:
            if relay:
                budget = budget_per_tick
                while relay and budget > 0:
                    piece = relay.popleft()
                    if len(piece) > budget:
                        relay.appendleft(piece[budget:])
                        piece = piece[:budget]
                    budget -= len(piece)
                    client.write(chunk(piece) if self.to_chunk else piece)
                if self.upstream is not None and sum(map(len, relay)) < 65536:
                    self.upstream.resume_reading()
            elif self.upstream_done:
                if self.to_chunk:
                    client.write(LAST_CHUNK)
                self.finish(self.upstream_keep)
                return
            await asyncio.sleep(tick)

    def check_deadline(self, now: float) -> None:
        """Called by the data plane's sweeper (every 100 ms) while the upstream is being waited on."""
        if not self.waiting:
            return
        timeouts = self.plane.timeouts
        if self.head_received:
            if self.rx != self.rx_seen:
                self.rx_seen, self.rx_at = self.rx, now
                return
            if now - self.rx_at < timeouts.idle:
                return
            what = "stalled mid-response"
        elif now - self.t_up < timeouts.response:
            return
        else:
            what = f"did not answer within {timeouts.response:g}s"
        self.fail(UpstreamTimeout(f"upstream {what}"))

    # -- ResponseSink: called from the upstream connection's parser
    def on_head(self, status: int, block: bytes) -> None:
        now = self.loop.time()
        self.head_received = True
        self.status = status
        self.rx_at = now
        req = self.req
        kept, has_length, is_json = response_head(block)
        if self.st is not None:
            self.st.cohort_metrics[self.cohort].upstream.observe(now - self.t_up)
            if self.tee is not None and (status >= 300 or not is_json):
                self.tee = None
        if self.hooks is not None and req.method != "HEAD" and status not in _NO_BODY_STATUS:
            self.held = (ResponseView(status, parse_header_block(block), b""), [])
            return
        self.client.wbuf.append(self._head(status, kept, has_length))
        if req.method == "HEAD":
            # llhttp cannot be told that a HEAD response has no body: end here, don't reuse the socket.
            up, self.upstream = self.upstream, None
            if up is not None:
                up.close()
            self.on_complete(False)

    def _head(self, status: int, lines: bytes, has_length: bool) -> bytes:
        """The response head for this client: the status, the upstream's header ``lines`` (hop-by-hop ones
        already gone), then this connection's framing and the experiment's reveal headers."""
        req = self.req
        out = [status_line(status), lines]
        no_body = req.method == "HEAD" or status in _NO_BODY_STATUS
        if not no_body and not has_length:
            if req.version == "1.1":
                self.to_chunk = True
                out.append(b"transfer-encoding: chunked\r\n")
            else:
                self.close_delimited = True
                self.keep_alive = False
        if self.plane.draining or not req.body.done:
            self.keep_alive = False
        if not self.keep_alive:
            out.append(b"connection: close\r\n")
        elif req.version == "1.0":
            out.append(b"connection: keep-alive\r\n")
        if self.st is not None:
            out.extend(self._reveal())
        out.append(b"\r\n")
        return b"".join(out)

    def _release_held(self) -> None:
        """The held response grew past the inspection limit: send it on as it came, hooks skipped."""
        assert self.held is not None
        view, chunks = self.held
        self.held = None
        self.plane.metrics.errors[RESPONSE_TOO_LARGE].value += 1
        self.client.wbuf.append(self._head(view.status, *relay_headers(view.headers)))
        for data in chunks:
            self._emit(data)

    def _finish_held(self) -> None:
        assert self.held is not None and self.hooks is not None
        view, chunks = self.held
        self.held = None
        view.body = b"".join(chunks)
        for hook in self.hooks:
            try:
                hook(view)
            except Exception:  # a hook never fails the request: the response goes on as it came
                self.plane.metrics.errors["internal"].value += 1
                log.exception("response hook failed; the response is sent as it is")
        self.status = view.status
        if self.tee is not None:
            # Observe what the client gets: after the faults changed it.
            self.tee = [view.body] if 200 <= view.status < 300 else None
        lines, _ = relay_headers(view.headers, drop_length=True)
        self.client.wbuf.append(self._head(view.status, lines + b"content-length: %d\r\n" % len(view.body), True))
        self._emit(view.body)

    def _emit(self, data: bytes) -> None:
        relay = self.relay
        if relay is None:
            self.client.wbuf.append(chunk(data) if self.to_chunk else data)
        else:
            relay.append(data)
            if self.upstream is not None and sum(map(len, relay)) > 262144:
                self.upstream.pause_reading()

    def _reveal(self) -> list[bytes]:
        assert self.st is not None
        reveal = self.st.spec.reveal
        out = []
        if reveal.cohort:
            out.append(_COHORT_HEADERS[self.cohort])
        if reveal.fault and self.applied:
            out.append(b"x-mlchaos-fault: " + ",".join(self.applied).encode() + b"\r\n")
        return out

    def on_body(self, data: bytes) -> None:
        self.rx += 1
        tee = self.tee
        if tee is not None:
            tee.append(data)
            if len(tee) > 1 and sum(map(len, tee)) > self.plane.limits.inspect_body_bytes:
                self.tee = None
        held = self.held
        if held is not None:
            held[1].append(data)
            if sum(map(len, held[1])) > self.plane.limits.inspect_body_bytes:
                self._release_held()
            return
        relay = self.relay
        if relay is None:
            self.client.wbuf.append(chunk(data) if self.to_chunk else data)
        else:
            relay.append(data)
            if self.upstream is not None and sum(map(len, relay)) > 262144:
                self.upstream.pause_reading()

    def on_complete(self, keep_alive: bool) -> None:
        self.waiting = False
        if self.held is not None:
            self._finish_held()
        if self.tee is not None and self.st is not None and self.st.observer is not None:
            obs = self.st.observer
            obs.submit(self.cohort, self.req.path, self.tee)
            original = self._payload.original if self._payload is not None else None
            if original is not None and obs.spec.shadow.enabled:
                req = self.req
                named = connection_tokens(req.conn_tokens) if req.conn_tokens is not None else frozenset()
                obs.submit_shadow(req.target, original, self.tee,
                                  [(n.decode("latin-1"), v.decode("latin-1")) for n, v in req.headers
                                   if n not in _SPECIAL and n not in named])
            self.tee = None
        if self.relay is not None:
            self.upstream_done, self.upstream_keep = True, keep_alive  # the throttled drain finishes
            return
        if self.to_chunk:
            self.client.wbuf.append(LAST_CHUNK)
        self.finish(keep_alive)

    def on_error(self, exc: ProxyError, got_bytes: bool) -> None:
        if self.finished:
            return
        if self.head_received and self.close_delimited and isinstance(exc, UpstreamResetError):
            self.on_complete(False)  # the end of a close-delimited body is the upstream's FIN
            return
        self.waiting = False
        self.upstream = None
        # Retry once, on a fresh connection, only when the upstream closed a reused connection
        # without a byte of answer and the whole request is still in hand to send again.
        if isinstance(exc, UpstreamResetError) and self.reused and not got_bytes and not self.head_received \
                and not self.req.streamed and not self.retried:
            self.retried = True
            self.plane.metrics.errors[UPSTREAM_STALE_RETRY].value += 1
            self.task = _tasks.spawn(self._retry())
            return
        self.fail(exc)

    async def _retry(self) -> None:
        assert self.pool is not None
        try:
            conn = await self.pool.connect()
        except ProxyError as exc:
            self.fail(exc)
            return
        if self.finished:
            conn.close()
            return
        self._send(self.pool, conn, reused=False)

    def flush(self) -> None:
        self.client.flush()

    # -- endings
    def fail(self, exc: ProxyError) -> None:
        """Answer a proxy or upstream failure; once part of a response is out, cut the connection instead."""
        if self.finished:
            return
        self.plane.metrics.errors[exc.kind].value += 1
        if self.head_received:
            self.keep_alive = False
            self.client.flush()
            self.client.transport.abort()
        else:
            self.status = exc.status
            self.keep_alive = self.keep_alive and self.req.body.done and not self.plane.draining
            self.client.write(error_response(exc, keep_alive=self.keep_alive))
        self.finish(False)

    def finish(self, upstream_keep: bool = False) -> None:
        if self.finished:
            return
        self.finished = True
        self.waiting = False
        self._unlink()
        up, self.upstream = self.upstream, None
        if up is not None:
            if upstream_keep and self.pool is not None:
                self.pool.release(up)
            else:
                up.close()
        self.record()
        self.client.exchange_done(self)

    def _unlink(self) -> None:
        """Drop what points back at this exchange (its payload, the faults' response hooks): without the
        cycles, reference counting frees a finished exchange at once. Left to the cyclic GC, every chaos
        request with a payload fault kept its parsed body alive until the next collection, and the
        collections it caused cost ~300 instructions per request (callgrind) with a colder heap."""
        self._payload = None
        self.hooks = None

    def abandon(self) -> None:
        """The client went away: stop everything, keep nothing of the upstream connection."""
        if self.finished:
            return
        self.finished = True
        self.waiting = False
        self._unlink()
        self.plane.metrics.errors[CLIENT_DISCONNECT].value += 1
        up, self.upstream = self.upstream, None
        if up is not None:
            up.abort()
        if self.task is not None and not self.task.done():
            self.task.cancel()
        if self.timer is not None:
            self.timer.cancel()
        if self.status:
            self.record()
            return
        # Gone before an answer: no error (the client's reasons are its own), but a slow request for the
        # latency guard when it waited past the SLO, on the chaos side and the comparison side alike.
        self.recorded = True
        st, chaos = (self.st, self.cohort == CHAOS) if self.st is not None else (self.req.matched, False)
        if st is not None and st.guards is not None and st.tripped is None:
            tripped = st.guards.observe_abandoned(chaos, self.loop.time() - self.t0)
            if tripped is not None:
                self.plane.experiments.trip(st, tripped)

    # -- answering without the upstream
    def local_reply(self, reply: Reply) -> None:
        req = self.req
        self.status = reply.status
        close = not req.body.done or not req.keep_alive or self.plane.draining
        self.keep_alive = not close
        parts = [status_line(reply.status), b"content-type: ", reply.content_type.encode("latin-1"),
                 b"\r\ncontent-length: %d\r\n" % len(reply.body)]
        for name, value in reply.headers:
            parts.append(f"{name}: {value}\r\n".encode("latin-1"))
        parts.append(b"connection: close\r\n" if close else b"")
        if self.st is not None:
            parts.extend(self._reveal())
        parts.append(b"\r\n")
        if req.method != "HEAD":
            parts.append(reply.body)
        self.client.write(b"".join(parts))

    def record(self) -> None:
        """Count the finished exchange once."""
        if self.recorded:
            return
        self.recorded = True
        seconds = self.loop.time() - self.t0
        st = self.st
        if st is None:
            self.plane.metrics.untouched.count(self.status, seconds)
            matched = self.req.matched
            if matched is not None and matched.tripped is None:
                tripped = matched.observe_untouched(self.status, seconds)
                if tripped is not None:
                    self.plane.experiments.trip(matched, tripped)
            return
        st.cohort_metrics[self.cohort].count(self.status, seconds)
        tripped = st.observe(self.cohort, self.status, seconds)
        if tripped is not None:
            self.plane.experiments.trip(st, tripped)


def client_protocol(plane: DataPlane) -> Callable[[], asyncio.Protocol]:
    """The protocol factory for ``loop.create_server``."""
    return lambda: cast(asyncio.Protocol, ClientConnection(plane))


class ClientConnection:
    """One client socket. Not an ``asyncio.Protocol`` subclass, though it is one by its methods: a plain class
    compiles to a native mypyc class (attributes in a C struct), 22% more requests per second, measured."""

    __slots__ = (
        "client_ip",
        "closed",
        "exchange",
        "head_bytes",
        "header_limit",
        "in_body",
        "last_active",
        "loop",
        "parser",
        "paused",
        "plane",
        "queue",
        "req",
        "transport",
        "wbuf",
    )

    def __init__(self, plane: DataPlane) -> None:
        self.plane = plane
        self.loop = plane.loop
        self.parser = httptools.HttpRequestParser(self)
        self.req: Request | None = None
        self.queue: deque[Request] = deque()
        self.wbuf: list[bytes] = []
        self.exchange: Exchange | None = None
        self.closed = False
        self.client_ip = b""
        self.last_active = self.loop.time()
        self.paused = False
        self.header_limit = plane.limits.max_header_bytes
        # Bytes read while a request head is incomplete: llhttp buffers a partial header line itself,
        # so the limit is enforced on what arrives, not only on the lines it hands over.
        self.head_bytes = 0
        self.in_body = False

    # -- asyncio.Protocol
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports implement asyncio.Transport without subclassing it.
        self.transport = cast(asyncio.Transport, transport)
        peer = transport.get_extra_info("peername")
        self.client_ip = peer[0].encode("latin-1") if peer else b""
        self.plane.connections.add(self)
        self.plane.metrics.connections.inc()

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.plane.connections.discard(self)
        self.plane.metrics.connections.dec()
        if self.exchange is not None:
            self.exchange.abandon()
        if self.req is not None:
            self.req.body.fail(BadRequest("client closed the connection mid-request"))

    def data_received(self, data: bytes) -> None:
        self.last_active = self.loop.time()
        if not self.in_body:
            self.head_bytes += len(data)
        try:
            self.parser.feed_data(data)
            if not self.in_body and self.head_bytes > self.header_limit + 8192 and self.req is not None:
                raise HeadersTooLarge("request line and headers exceed the limit")
        except httptools.HttpParserUpgrade as exc:
            # The request was answered as plain HTTP/1.1 (Upgrade is hop-by-hop and never forwarded), as
            # RFC 9110 allows; llhttp stops after it, so a fresh parser takes whatever follows.
            self.parser = httptools.HttpRequestParser(self)
            offset = exc.args[0] if exc.args and isinstance(exc.args[0], int) else len(data)
            self.in_body, self.head_bytes = False, 0
            if offset < len(data):
                self.data_received(data[offset:])
        except httptools.HttpParserCallbackError as exc:
            cause = exc.__context__
            self._fail(cause if isinstance(cause, ProxyError) else BadRequest(f"malformed request: {exc}"))
        except httptools.HttpParserError as exc:
            self._fail(BadRequest(f"malformed request: {exc}"))
        except HeadersTooLarge as exc:
            self._fail(exc)

    def eof_received(self) -> bool | None:
        return None  # as asyncio.Protocol does: the transport closes itself

    def pause_writing(self) -> None:
        ex = self.exchange
        if ex is not None and ex.upstream is not None and ex.relay is None:
            ex.upstream.pause_reading()

    def resume_writing(self) -> None:
        ex = self.exchange
        if ex is not None and ex.upstream is not None and ex.relay is None:
            ex.upstream.resume_reading()

    # -- llhttp callbacks
    def on_message_begin(self) -> None:
        self.req = Request(self.client_ip)

    def on_url(self, url: bytes) -> None:
        req = self.req
        assert req is not None
        req.url += url
        req.header_bytes += len(url)
        if req.header_bytes > self.header_limit:
            raise HeadersTooLarge("request line and headers exceed the limit")

    def on_header(self, name: bytes, value: bytes) -> None:
        req = self.req
        assert req is not None
        req.header_bytes += len(name) + len(value) + 4
        if req.header_bytes > self.header_limit:
            raise HeadersTooLarge("request headers exceed the limit")
        lname = name.lower()
        req.headers.append((lname, value))
        if lname not in _SPECIAL:
            req.lines.append(name + b": " + value + b"\r\n")
        elif lname == b"host":
            req.host = value
        elif lname == b"content-length":
            if req.content_length is not None or not value.strip().isdigit():
                raise BadRequest("invalid or repeated Content-Length")
            req.content_length = int(value)
        elif lname == b"transfer-encoding":
            req.chunked = True
        elif lname == b"expect":
            if value.strip().lower() == b"100-continue":
                req.expect_continue = True
        elif lname == b"connection":
            req.conn_tokens = value if req.conn_tokens is None else req.conn_tokens + b"," + value
        elif lname == b"x-forwarded-for":
            req.xff = value if req.xff is None else req.xff + b", " + value
        elif lname == b"x-forwarded-proto":
            req.xfp = value
        elif lname == b"x-mlchaos-cohort":
            req.cohort_header = value
        elif lname == b"x-mlchaos-token":
            req.token_header = value
        elif lname == b"x-mlchaos-experiment":
            req.experiment_header = value
        # other hop-by-hop headers (keep-alive, te, trailer, upgrade, proxy-*) are dropped

    def on_headers_complete(self) -> None:
        req = self.req
        assert req is not None
        self.in_body, self.head_bytes = True, 0
        parser = self.parser
        raw = parser.get_method()
        # The usual methods as the module's own str constants: their hash is computed once, where a freshly
        # decoded str is hashed again by every set or dict it is looked up in (the router's method match).
        req.method = "POST" if raw == b"POST" else "GET" if raw == b"GET" else raw.decode("latin-1")
        req.version = parser.get_http_version()
        req.keep_alive = parser.should_keep_alive()
        url = req.url
        if url[:1] != b"/":
            if req.method == "CONNECT":
                # The upstream comes from the policy only: this is not a forward proxy.
                raise BadRequest("CONNECT is not supported: mlchaos is a reverse proxy")
            if url.startswith((b"http://", b"https://")):
                # absolute-form: keep the path only; the authority in it is never dialled.
                slash = url.find(b"/", url.find(b"//") + 2)
                req.url = url[slash:] if slash > 0 else b"/"
            elif url != b"*":
                raise BadRequest("invalid request target")
        if req.content_length is not None and req.chunked:
            raise BadRequest("both Content-Length and Transfer-Encoding")
        if parser.should_upgrade() and (req.chunked or req.content_length):
            # llhttp hands the bytes after an upgrade request to the new protocol, not to its body.
            raise BadRequest("protocol upgrades with a request body are not supported")
        if req.version == "1.1" and req.host is None:
            raise BadRequest("missing Host header")
        limits = self.plane.limits
        if req.content_length is not None and req.content_length > limits.max_body_bytes:
            req.error = BodyTooLarge(f"request body over {limits.max_body_bytes} bytes")
            req.body.discard = True
            req.keep_alive = False
            req.ready = True
        elif req.content_length is None and not req.chunked:
            req.body.done = req.ready = True
        elif req.chunked or req.content_length > limits.inspect_body_bytes:  # type: ignore[operator]
            req.streamed = req.ready = True
        else:
            # Held until complete (at most inspect_body_bytes): reading must not pause for it.
            req.body.high_water = limits.inspect_body_bytes + 1
        self.queue.append(req)
        if len(self.queue) > limits.pipeline_depth:
            self._pause()
        if req.ready or req.expect_continue:  # else its body completes it (on_message_complete)
            self._next()

    def on_body(self, body: bytes) -> None:
        req = self.req
        assert req is not None
        behind = req.body.feed(body)
        if req.body.size > self.plane.limits.max_body_bytes and req.body.error is None:
            req.body.discard = True
            req.body.chunks.clear()
            req.body.fail(BodyTooLarge(f"request body over {self.plane.limits.max_body_bytes} bytes"))
            self._pause()
        elif behind:
            self._pause()

    def on_message_complete(self) -> None:
        req = self.req
        assert req is not None
        req.body.finish()
        self.req = None
        self.in_body, self.head_bytes = False, 0
        if not req.ready:
            req.ready = True
            if self.exchange is None and self.queue and self.queue[0] is req:
                self._next()

    # -- queue
    def _next(self) -> None:
        """Start the oldest queued request if nothing is in progress and it is ready."""
        if self.exchange is not None or self.closed or not self.queue:
            return
        req = self.queue[0]
        if not req.ready:
            if req.expect_continue and not req.continued and req.version == "1.1":
                # Its turn has come: ask for the body now, after every earlier response.
                req.continued = True
                self.write(CONTINUE)
            return
        router = self.plane.experiments.router
        st, cohort = router.assign(req) if router.active and req.error is None else (None, NONE)
        self.exchange = Exchange(self, req, st, cohort)
        self.exchange.start()

    def exchange_done(self, ex: Exchange) -> None:
        self.exchange = None
        self.flush()
        queue = self.queue
        if queue and queue[0] is ex.req:
            queue.popleft()
        self.last_active = self.loop.time()
        if not ex.keep_alive or self.closed:
            if not self.closed:
                self.transport.close()
            return
        if self.paused and len(queue) <= self.plane.limits.pipeline_depth \
                and (self.req is None or self.req.body.error is None):
            self.paused = False
            self.transport.resume_reading()
        if queue:
            self._next()

    def _fail(self, exc: ProxyError) -> None:
        """A request that cannot be parsed: answer it in its turn, then close; read nothing more."""
        self._pause()
        req = self.req
        self.req = None
        if req is not None and req in self.queue:
            if req.ready:
                req.body.fail(exc)  # its body broke while streaming: the exchange answers
                return
            req.error, req.ready, req.keep_alive = exc, True, False
        else:
            marker = req or Request(self.client_ip)
            marker.error, marker.ready, marker.keep_alive = exc, True, False
            marker.body.done = True
            self.queue.append(marker)
        self._next()

    def _pause(self) -> None:
        if not self.paused and not self.closed:
            self.paused = True
            self.transport.pause_reading()

    def body_drained(self) -> None:
        if self.paused and self.req is not None and self.req.body.error is None \
                and len(self.queue) <= self.plane.limits.pipeline_depth:
            self.paused = False
            self.transport.resume_reading()

    def flush(self) -> None:
        wbuf = self.wbuf
        if wbuf:
            data = wbuf[0] if len(wbuf) == 1 else b"".join(wbuf)
            wbuf.clear()
            if not self.closed and not self.transport.is_closing():
                self.transport.write(data)

    def write(self, data: bytes) -> None:
        """Write after whatever is already buffered; uvloop raises on a closed transport, so check."""
        if self.wbuf:
            self.wbuf.append(data)
            self.flush()
        elif not self.closed and not self.transport.is_closing():
            self.transport.write(data)

    def drop(self, drop: Drop) -> None:
        self.flush()
        if drop.reset:
            sock = self.transport.get_extra_info("socket")
            if sock is not None:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _LINGER_RESET)
            self.transport.abort()
        else:
            self.transport.close()

    @property
    def busy(self) -> bool:
        return self.exchange is not None or bool(self.queue)

    def check_deadline(self, now: float) -> None:
        ex = self.exchange
        if ex is not None:
            ex.check_deadline(now)

    def idle_check(self, now: float, idle: float) -> None:
        """Close a connection whose client has owed us bytes, or said nothing, for longer than ``idle``.

        A client waiting for a response (a long stream, a slow model) owes nothing and is left alone.
        """
        if now - self.last_active <= idle or self.closed:
            return
        req = self.req
        if req is not None and not req.body.done:
            # Mid-head or mid-body: the client stopped sending. Anything in flight for it is abandoned.
            self.plane.metrics.errors[CLIENT_TIMEOUT].value += 1
            self.transport.abort()
        elif not self.busy:
            self.transport.close()
