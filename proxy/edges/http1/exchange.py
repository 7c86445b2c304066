"""The HTTP/1.1 side of one exchange: send the request upstream, relay the answer to the client.

The common case (the body in hand, a pooled upstream connection, faults that do not wait) runs entirely in
protocol callbacks, with no task, future or timer per request. A coroutine takes over only for what has to
wait on I/O: connecting, streaming a request body, throttling. A response is relayed from the upstream's
parser callbacks straight into the client's transport, one write per upstream read, so a streaming
(chunked, SSE) response reaches the client as it arrives; stream hooks see each read on the way, and one
that holds a chunk queues the ones after it (``pacing.Paced``).
"""

from __future__ import annotations

import logging
from collections import deque
from typing import TYPE_CHECKING

from ... import _tasks
from ...cohort import COHORTS, sticky_value
from ...errors import (
    CLIENT_DISCONNECT,
    RESPONSE_TOO_LARGE,
    UPSTREAM_STALE_NOT_RETRIED,
    UPSTREAM_STALE_RETRY,
    ProxyError,
    UpstreamResetError,
    UpstreamTimeout,
    error_response,
)
from ...exchange import DROPPED, Exchange
from ...faults.base import Cut, Drop, Hold, Reply, ResponseView
from ...hypothesis.scan import seen
from .framing import (
    CONTINUE,
    LAST_CHUNK,
    PLAIN_CONNECTION,
    SPECIAL_REQUEST_HEADERS,
    chunk,
    connection_tokens,
    parse_header_block,
    relay_headers,
    response_head,
    status_line,
)
from .pacing import RELAY_HIGH, Paced, drain_throttled
from .request import Request
from .upstream import UpstreamConnection, UpstreamPool

if TYPE_CHECKING:
    from ...routing import Assignment
    from .connection import ClientConnection

__all__ = ["Http1Exchange"]

log = logging.getLogger("mlchaos")
_NO_BODY_STATUS = frozenset({204, 304})
# RFC 9110 9.2.2: sending these twice has the effect of sending them once.
_IDEMPOTENT = frozenset({"GET", "HEAD", "OPTIONS", "TRACE", "PUT", "DELETE"})
_COHORT_HEADERS = tuple(b"x-mlchaos-cohort: %s\r\n" % c.encode() for c in COHORTS)


class Http1Exchange(Exchange):
    """One HTTP/1.1 request/response pair on a client connection."""

    __slots__ = (
        "client", "close_delimited", "head_received", "held", "keep_alive", "outbound", "paced", "pool", "relay",
        "req", "retried", "reused", "rx", "rx_at", "rx_seen", "t_up", "to_chunk", "upstream", "upstream_done",
        "upstream_keep", "waiting",
    )

    def __init__(self, client: ClientConnection, req: Request, assignment: Assignment) -> None:
        super().__init__(client.plane, assignment, client.loop)
        self.client = client
        self.req = req
        self.t_up = self.rx_at = self.t0
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
        self.rx = 0
        self.rx_seen = 0
        self.relay: deque[bytes] | None = None
        self.held: tuple[ResponseView, list[bytes]] | None = None
        self.paced: Paced | None = None

    # -- FaultContext: the request side
    @property
    def method(self) -> str:
        return self.req.method

    @property
    def target(self) -> str:
        return self.req.target

    @property
    def path(self) -> str:
        return self.req.path

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
        if lname in SPECIAL_REQUEST_HEADERS:
            raise ValueError(f"the proxy sets {name!r} itself")
        req.headers = [(n, v) for n, v in req.headers if n != lname] + [(lname, value)]
        req.lines = [ln for ln in req.lines if ln.split(b":", 1)[0].lower() != lname]
        req.lines.append(name + b": " + value + b"\r\n")

    def set_target(self, target: str) -> None:
        if not target.startswith("/"):
            raise ValueError(f"a request target starts with '/': {target!r}")
        self.req.url = target.encode("latin-1")
        self.req._path = self.req._query = None

    def sticky_value(self) -> bytes | None:
        st = self.st
        key = st.spec.sticky_key if st is not None else None
        return sticky_value(key, self.req) if key is not None else None

    def end_to_end_headers(self) -> list[tuple[str, str]]:
        """The client's headers that a second request to the upstream may carry (the shadow twin)."""
        req = self.req
        named = connection_tokens(req.conn_tokens) if req.conn_tokens is not None else frozenset()
        return [(n.decode("latin-1"), v.decode("latin-1")) for n, v in req.headers
                if n not in SPECIAL_REQUEST_HEADERS and n not in named]

    # -- to the upstream
    def forward(self) -> None:
        """After the faults: send upstream at once on a pooled connection, or from a task when it has to wait."""
        if not self.req.streamed and self.throttle_bps is None:
            pool = self.plane.pool(self.upstream_name)
            conn = pool.take_idle()
            if conn is not None:
                self._send(pool, conn, reused=True)
                return
        self.task = _tasks.spawn(self._run())

    async def _run(self) -> None:
        """The path that has to wait: a new upstream connection, a streamed body, throttling."""
        try:
            plane = self.plane
            pool = plane.pool(self.upstream_name)
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
                await drain_throttled(self)
        except ProxyError as exc:
            self.fail(exc)

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

    def check_deadline(self, now: float) -> None:
        """Called by the data plane's sweep (every 100 ms) while the upstream is being waited on."""
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
        st = self.st
        if st is not None:
            st.cohort_metrics[self.cohort].upstream.observe(now - self.t_up)
            if self.tee is not None and (status >= 300 or not is_json):
                self.tee = None
            if self.sample is not None:
                self._sample_head(status, block)
            if st.llm is not None and 200 <= status < 300 and req.method == "POST":
                self.meter = st.llm.meter(self.cohort, req.path, self.t0, block)
        if (self.hooks is not None or self.stream_hooks is not None) and req.method != "HEAD" \
                and status not in _NO_BODY_STATUS:
            view = ResponseView(status, parse_header_block(block), b"")
            if self.hooks is not None:
                self.held = (view, [])
                return
            # Stream hooks may change the body's length: it is framed by this connection, not the upstream.
            self._stream_head(view)
            return
        self.client.wbuf.append(self._head(status, kept, has_length))
        if req.method == "HEAD":
            # llhttp cannot be told that a HEAD response has no body: end here, don't reuse the socket.
            up, self.upstream = self.upstream, None
            if up is not None:
                up.close()
            self.on_complete(False)

    def _sample_head(self, status: int, block: bytes) -> None:
        """Samples take 2xx bodies only, and note their Content-Type (how the client is told to read them)."""
        if not 200 <= status < 300:
            self.sample = None
            return
        for name, value in parse_header_block(block):
            if name.lower() == b"content-type":
                self.sample_type = value.decode("latin-1")

    def _head(self, status: int, lines: bytes, has_length: bool) -> bytes:
        """The response head for this client: the status, the upstream's header ``lines`` (hop-by-hop ones
        already gone), then this connection's framing and the experiment's reveal headers."""
        req = self.req
        st = self.st
        if st is not None and st.marker is not None and self.marked() and seen(lines, st.marker):
            st.marker_seen += 1  # only experiments whose hypothesis declares a marker pay this head scan
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

    def _reveal(self) -> list[bytes]:
        assert self.st is not None
        reveal = self.st.spec.reveal
        out = []
        if reveal.cohort:
            out.append(_COHORT_HEADERS[self.cohort])
        if reveal.fault and self.applied:
            out.append(b"x-mlchaos-fault: " + ",".join(self.applied).encode() + b"\r\n")
        return out

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
        if self.sample is not None:
            self.sample = [view.body] if 200 <= view.status < 300 else None  # what the client gets, as above
        if self.stream_hooks is not None:
            self._stream_head(view)
            self._stream_chunk(view.body)
            return
        lines, _ = relay_headers(view.headers, drop_length=True)
        head = self._head(view.status, lines + b"content-length: %d\r\n" % len(view.body), True)
        if self.meter is None and self.relay is None:  # one writev: joined by flush, a held MB is copied again
            self.client.write_parts(head, view.body)
            return
        self.client.wbuf.append(head)
        self._emit(view.body)

    def _emit(self, data: bytes) -> None:
        if self.meter is not None:
            self.meter.sent(data, self.loop.time())
        relay = self.relay
        if relay is None:
            self.client.wbuf.append(chunk(data) if self.to_chunk else data)
        else:
            relay.append(data)
            if self.upstream is not None and sum(map(len, relay)) > RELAY_HIGH:
                self.upstream.pause_reading()

    def on_body(self, data: bytes) -> None:
        self.rx += 1
        tee = self.tee
        if tee is not None:
            tee.append(data)
            if len(tee) > 1 and sum(map(len, tee)) > self.plane.inspect_body_bytes:
                self.tee = None
        sample = self.sample
        if sample is not None:
            sample.append(data)
            if len(sample) > 1 and sum(map(len, sample)) > self.plane.inspect_body_bytes:
                self.sample = None
        held = self.held
        if held is not None:
            held[1].append(data)
            if sum(map(len, held[1])) > self.plane.inspect_body_bytes:
                self._release_held()
            return
        if self.stream_hooks is not None:
            self._stream_chunk(data)
            return
        if self.meter is not None:
            self.meter.sent(data, self.loop.time())
        relay = self.relay
        if relay is None:
            self.client.wbuf.append(chunk(data) if self.to_chunk else data)
        else:
            relay.append(data)
            if self.upstream is not None and sum(map(len, relay)) > RELAY_HIGH:
                self.upstream.pause_reading()

    def on_complete(self, keep_alive: bool) -> None:
        self.waiting = False
        if self.held is not None:
            self._finish_held()
            if self.finished:
                return  # a stream hook cut the held answer short
        if self.tee is not None and self.st is not None and self.st.observer is not None:
            obs = self.st.observer
            obs.submit(self.cohort, self.req.path, self.tee)
            original = self._payload.original if self._payload is not None else None
            if original is not None and obs.spec.shadow.enabled:
                obs.submit_shadow(self.req.target, original, self.tee, self.end_to_end_headers(), self.applied)
            self.tee = None
        if self.sample is not None and self.st is not None and self.st.samples is not None:
            self.st.samples.submit(self.cohort, self.applied, self.req.path, self.sample_type, self.sample)
            self.sample = None
        if self.stream_hooks is not None and self._stream_end(keep_alive):
            return  # a held chunk is still to go out: the pacer finishes
        if self.relay is not None:
            self.upstream_done, self.upstream_keep = True, keep_alive  # the throttled drain finishes
            return
        if self.to_chunk:
            self.client.wbuf.append(LAST_CHUNK)
        self.finish(keep_alive)

    # -- stream hooks
    def _stream_head(self, view: ResponseView) -> None:
        hooks = self.stream_hooks
        assert hooks is not None
        for hook in hooks:
            try:
                hook.head(view)
            except Exception:
                self.plane.metrics.errors["internal"].value += 1
                log.exception("stream hook failed on the head; the head is sent as it is")
        self.status = view.status
        lines, _ = relay_headers(view.headers, drop_length=True)
        self.client.wbuf.append(self._head(view.status, lines, False))

    def _stream_chunk(self, data: bytes) -> None:
        """One upstream read through the stream hooks, in order: each may rewrite it, hold it, cut the
        stream after it, or split it into pieces (each then goes through the hooks after it)."""
        self._through(0, data, 0.0)

    def _through(self, start: int, data: bytes, hold: float) -> None:
        hooks = self.stream_hooks
        assert hooks is not None
        cut: Cut | None = None
        for i in range(start, len(hooks)):
            try:
                step = hooks[i].chunk(data)
            except Exception:  # a hook never fails the request: the chunk goes on as it came
                self.plane.metrics.errors["internal"].value += 1
                log.exception("stream hook failed; the chunk is sent as it is")
                continue
            if isinstance(step, bytes):
                data = step
            elif isinstance(step, Hold):
                data, hold = step.data, hold + step.seconds
            elif isinstance(step, Cut):
                data, cut = step.data, step
                break
            else:
                # Pieces: the hold so far comes before the first; each goes through the hooks after this one.
                for piece in step:
                    if isinstance(piece, bytes):
                        self._through(i + 1, piece, hold)
                    elif isinstance(piece, Hold):
                        self._through(i + 1, piece.data, hold + piece.seconds)
                    else:
                        self._stream_out(piece.data, hold, piece)
                        return
                    hold = 0.0
                return
        self._stream_out(data, hold, cut)

    def _stream_end(self, keep_alive: bool) -> bool:
        """The upstream's answer is complete: the hooks' last words, each through the hooks after it. True
        when the pacer finishes the exchange (a chunk is still held), False when the caller does."""
        hooks = self.stream_hooks
        assert hooks is not None
        for i, hook in enumerate(hooks):
            try:
                step = hook.end()
            except Exception:
                self.plane.metrics.errors["internal"].value += 1
                log.exception("stream hook failed at the end")
                continue
            for piece in step if isinstance(step, tuple) else (step,):
                if isinstance(piece, Hold):
                    self._through(i + 1, piece.data, piece.seconds)
                elif isinstance(piece, Cut):
                    self._stream_out(piece.data, 0.0, piece)
                    break
                elif piece:
                    self._through(i + 1, piece, 0.0)
            else:
                continue
            break  # a cut: no hook after it has a say
        paced = self.paced
        if paced is not None and (paced.queue or paced.cut_done):
            paced.upstream_keep, paced.upstream_done = keep_alive, True
            if not paced.cut_done and paced.timer is None:
                self._pump()
            return True
        return False

    def _stream_out(self, data: bytes, hold: float, cut: Cut | None) -> None:
        paced = self.paced
        if hold <= 0.0 and cut is None and (paced is None or not paced.queue):
            if data:
                self._emit(data)
            return
        if paced is None:
            paced = self.paced = Paced()
        if paced.cut_done:
            return  # the stream was cut: nothing after it goes out
        last = paced.queue[-1][0] if paced.queue else self.loop.time()
        paced.queue.append((max(last, self.loop.time()) + hold, data, cut))
        if self.upstream is not None:
            self.upstream.pause_reading()  # what comes after a held chunk waits upstream, not here
        if paced.timer is None:
            self._pump()

    def _pump(self) -> None:
        """Send the held chunks whose time has come; then wait for the next, or end the exchange."""
        paced = self.paced
        if paced is None or self.finished:
            return
        paced.timer = None
        now = self.loop.time()
        queue = paced.queue
        while queue and queue[0][0] <= now:
            _, data, cut = queue.popleft()
            if data:
                self._emit(data)
            if cut is not None:
                queue.clear()
                paced.cut_done = True
                self._cut(cut)
                return
        self.client.flush()
        if queue:
            paced.timer = self.loop.call_at(queue[0][0], self._pump)
            return
        if self.upstream is not None:
            self.upstream.resume_reading()
        if paced.upstream_done:
            if self.to_chunk:
                self.client.wbuf.append(LAST_CHUNK)
            self.finish(paced.upstream_keep)

    def _cut(self, cut: Cut) -> None:
        """End the answer here, without its proper end: the client sees the connection close (or reset)."""
        self.keep_alive = False
        self.status = DROPPED
        self.client.drop(Drop(reset=cut.reset))
        self.finish(False)

    # -- upstream failures
    def on_error(self, exc: ProxyError, got_bytes: bool) -> None:
        if self.finished:
            return
        if self.head_received and self.close_delimited and isinstance(exc, UpstreamResetError):
            self.on_complete(False)  # the end of a close-delimited body is the upstream's FIN
            return
        self.waiting = False
        up, self.upstream = self.upstream, None
        # The keep-alive race: the upstream closed a reused connection without a byte of answer. The request
        # is sent again once, on a fresh connection, when the whole of it is still in hand and sending it twice
        # is harmless: it provably never left (the write failed), its method is idempotent, or the policy says
        # the model's endpoints are. Otherwise the model may have read it (and run it): 502, as nginx does.
        if isinstance(exc, UpstreamResetError) and self.reused and not got_bytes and not self.head_received \
                and not self.req.streamed and not self.retried:
            if (up is not None and up.unsent) or self.req.method in _IDEMPOTENT or self.plane.upstream_idempotent:
                self.retried = True
                self.plane.metrics.errors[UPSTREAM_STALE_RETRY].value += 1
                self.task = _tasks.spawn(self._retry())
                return
            self.plane.metrics.errors[UPSTREAM_STALE_NOT_RETRIED].value += 1
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
        self.unlink()
        self._stop_pacing()
        up, self.upstream = self.upstream, None
        if up is not None:
            # Not after a 5xx: servers close a connection after an error without saying so (uvicorn after the 500
            # of an exception), and the next request would meet the close, a 502 for a POST (not sent twice).
            if upstream_keep and self.pool is not None and self.status < 500:
                self.pool.release(up, self.rx_at)
            else:
                up.close()
        self.record()
        self.client.exchange_done(self)

    def _stop_pacing(self) -> None:
        paced = self.paced
        if paced is not None and paced.timer is not None:
            paced.timer.cancel()
            paced.timer = None

    def abandon(self) -> None:
        """The client went away: stop everything, keep nothing of the upstream connection."""
        if self.finished:
            return
        self.finished = True
        self.waiting = False
        self.unlink()
        self._stop_pacing()
        self.plane.metrics.errors[CLIENT_DISCONNECT].value += 1
        up, self.upstream = self.upstream, None
        if up is not None:
            up.abort()
        self.cancel_waits()
        self.record_abandoned()

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
        st = self.st
        if st is not None and st.marker is not None and self.marked() and seen(b"".join(parts[4:]), st.marker):
            st.marker_seen += 1
        parts.append(b"connection: close\r\n" if close else b"")
        if self.st is not None:
            parts.extend(self._reveal())
        parts.append(b"\r\n")
        if req.method != "HEAD":
            parts.append(reply.body)
        self.client.write(b"".join(parts))

    def drop_client(self, drop: Drop) -> None:
        self.keep_alive = False
        self.client.drop(drop)
