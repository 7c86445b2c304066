"""Upstream side: a keep-alive pool of HTTP/1.1 connections per upstream, parsed by llhttp.

A connection delivers what it parses to a ``ResponseSink`` (the exchange that owns it for one request);
it never writes to the client itself. Upstream failures are translated into proxy errors here, once.
"""

from __future__ import annotations

import asyncio
import socket
from typing import Protocol, cast

import httptools

from ...errors import BadGateway, ProxyError, UpstreamConnectError, UpstreamResetError, UpstreamTimeout
from ...policy.model import Upstream

__all__ = ["ResponseSink", "UpstreamConnection", "UpstreamPool"]


class ResponseSink(Protocol):
    def on_head(self, status: int, block: bytes) -> None:
        """The status and the raw header block (``Name: value\\r\\n`` lines, as llhttp accepted them)."""
    def on_body(self, data: bytes) -> None: ...
    def on_complete(self, keep_alive: bool) -> None: ...
    def on_error(self, exc: ProxyError, got_bytes: bool) -> None: ...
    def flush(self) -> None: ...


class UpstreamConnection:
    """One pooled connection to an upstream; an ``asyncio.Protocol`` by its methods, not by subclassing, so
    that mypyc compiles it to a native class (see ``ClientConnection``)."""

    __slots__ = (
        "closed", "got_bytes", "head_chunks", "head_done", "head_raw", "head_start", "idle_since", "interim", "parser",
        "pool", "sink", "transport", "unsent", "uses",
    )

    def __init__(self, pool: UpstreamPool) -> None:
        self.pool = pool
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpResponseParser(self)
        self.sink: ResponseSink | None = None
        # What was read while the response head is incomplete (the head is relayed from these bytes: no
        # per-header callback), where the current head starts in them (after a 1xx), and how many there are.
        self.head_chunks: list[bytes] = []
        self.head_start = 0
        self.head_raw = 0
        self.head_done = False
        self.closed = False
        self.got_bytes = False
        self.interim = False
        self.uses = 0
        # When it went back to the pool (the loop's clock).
        self.idle_since = 0.0
        # The last request's write failed at once: the transport closed inside write(), so not a byte of it
        # left and it may be sent again whatever its method.
        self.unsent = False

    # -- asyncio.Protocol
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports implement asyncio.Transport without subclassing it.
        self.transport = cast(asyncio.Transport, transport)

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        sink, self.sink = self.sink, None
        if sink is not None:
            sink.on_error(UpstreamResetError("upstream closed the connection"), self.got_bytes)
            sink.flush()
        else:
            self.pool.forget(self)

    def data_received(self, data: bytes) -> None:
        sink = self.sink
        if sink is None:
            # An idle pooled connection must stay silent; bytes here mean it can't be trusted again.
            self.close()
            return
        self.got_bytes = True
        if not self.head_done:
            self.head_raw += len(data)
            self.head_chunks.append(data)
        try:
            self.parser.feed_data(data)
            # llhttp buffers a partial header line itself: bound what arrives, not only finished lines.
            if not self.head_done and self.head_raw > self.pool.max_head_bytes + 8192:
                raise BadGateway("upstream response headers exceed limits.max_header_bytes")
        except (httptools.HttpParserError, BadGateway) as exc:
            self.sink = None
            self.close()
            cause = exc if isinstance(exc, BadGateway) else exc.__context__
            sink.on_error(cause if isinstance(cause, BadGateway) else
                          BadGateway(f"upstream sent an invalid response: {exc}"), True)
        if self.sink is sink:
            sink.flush()  # mid-response (streaming): what this read relayed goes out now

    def eof_received(self) -> bool | None:
        return None  # as asyncio.Protocol does: the transport closes, connection_lost tells the exchange

    def pause_writing(self) -> None:
        pass  # request bodies are small or streamed under the client's own flow control

    def resume_writing(self) -> None:
        pass

    # -- llhttp callbacks (no on_header: llhttp then skips the per-header calls)
    def on_headers_complete(self) -> None:
        chunks = self.head_chunks
        raw = chunks[0] if len(chunks) == 1 else b"".join(chunks)
        # llhttp insists on CRLF line ends and no folding, so the head is exactly this.
        start = self.head_start
        end = raw.find(b"\r\n\r\n", start) + 2
        block = raw[raw.find(b"\r\n", start) + 2:end]
        if len(block) > self.pool.max_head_bytes:
            raise BadGateway("upstream response headers exceed limits.max_header_bytes")
        status = self.parser.get_status_code()
        if status < 200:
            # 1xx interim responses (100 Continue, 103 Early Hints) are not relayed: we sent no Expect.
            self.interim = True
            self.head_chunks, self.head_start = [raw], end + 2
            return
        self.head_done, self.head_raw, self.head_chunks, self.head_start = True, 0, [], 0
        if self.sink is not None:
            self.sink.on_head(status, block)

    def on_body(self, body: bytes) -> None:
        if self.sink is not None:
            self.sink.on_body(body)

    def on_message_complete(self) -> None:
        if self.interim:
            self.interim = False
            return
        sink, self.sink = self.sink, None
        self.head_raw = 0
        self.head_done = False
        self.got_bytes = False
        if sink is not None:
            sink.on_complete(self.parser.should_keep_alive())

    # -- used by the exchange
    def send(self, sink: ResponseSink, data: bytes) -> None:
        self.sink = sink
        self.uses += 1
        transport = self.transport
        assert transport is not None
        transport.write(data)
        # take_idle and connect hand over open transports only: closing now means this write failed (EPIPE,
        # ECONNRESET), and asyncio and uvloop close the transport before write() returns.
        self.unsent = transport.is_closing()

    def write(self, data: bytes) -> None:
        assert self.transport is not None
        self.transport.write(data)

    def pause_reading(self) -> None:
        if self.transport is not None and not self.closed:
            self.transport.pause_reading()

    def resume_reading(self) -> None:
        if self.transport is not None and not self.closed:
            self.transport.resume_reading()

    def close(self) -> None:
        self.closed = True
        self.sink = None
        if self.transport is not None:
            self.transport.close()

    def abort(self) -> None:
        self.closed = True
        self.sink = None
        if self.transport is not None:
            self.transport.abort()


class UpstreamPool:
    """Idle keep-alive connections to one upstream, most recently used first."""

    __slots__ = (
        "authority", "closed", "connect_timeout", "expired", "idle", "idle_expiry", "max_head_bytes", "max_idle",
        "now", "upstream",
    )

    def __init__(self, upstream: Upstream, *, connect_timeout: float, max_idle: int,
                 max_head_bytes: int = 64 * 1024, idle_expiry: float = 4.0) -> None:
        self.upstream = upstream
        self.authority = upstream.authority.encode("latin-1")
        self.connect_timeout = connect_timeout
        self.max_idle = max_idle
        self.max_head_bytes = max_head_bytes
        self.idle: list[UpstreamConnection] = []
        self.closed = False
        # Closed idle for longer than idle_expiry (so before the upstream's keep-alive closes them).
        self.idle_expiry = idle_expiry
        self.expired = 0
        # The data plane's clock as of its last sweep (``expire``): take_idle compares against it.
        self.now = 0.0

    def take_idle(self) -> UpstreamConnection | None:
        idle = self.idle
        while idle:
            conn = idle.pop()
            # Idle past idle_expiry by the sweep's clock (``expire`` closes those every 100 ms; one the sweep has
            # not reached yet is closed here): the upstream may be closing it this moment, and would then take a
            # request it might never answer. No clock is read per request.
            if self.now - conn.idle_since > self.idle_expiry:
                self.expired += 1
                conn.close()
                continue
            # A connection the upstream closed while idle was already forgotten by connection_lost;
            # one it is closing right now is caught here, before a byte of the request is sent.
            if not conn.closed and conn.transport is not None and not conn.transport.is_closing():
                return conn
        return None

    def expire(self, now: float) -> None:
        """Close the connections idle for longer than idle_expiry (the data plane's sweep, every 100 ms)."""
        self.now = now
        idle = self.idle
        stale = 0
        while stale < len(idle) and now - idle[stale].idle_since > self.idle_expiry:
            stale += 1  # the list is in release order: the oldest first
        if stale:
            old, self.idle = idle[:stale], idle[stale:]
            self.expired += stale
            for conn in old:
                conn.close()

    async def connect(self) -> UpstreamConnection:
        loop = asyncio.get_running_loop()
        up = self.upstream
        try:
            async with asyncio.timeout(self.connect_timeout):
                _, proto = await loop.create_connection(lambda: cast(asyncio.Protocol, UpstreamConnection(self)),
                                                        up.host, up.port)
        except TimeoutError:
            raise UpstreamTimeout(f"connecting to upstream {up.name} timed out") from None
        except OSError as exc:
            raise UpstreamConnectError(f"upstream {up.name} unreachable: {exc.strerror or exc}") from None
        conn = cast(UpstreamConnection, proto)
        sock = conn.transport.get_extra_info("socket") if conn.transport else None
        if sock is not None:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return conn

    def release(self, conn: UpstreamConnection, now: float) -> None:
        """Back to the pool, idle since ``now`` (the caller's clock reading: the answer's last bytes)."""
        if conn.closed or self.closed or len(self.idle) >= self.max_idle:
            conn.close()
        else:
            conn.idle_since = now
            self.idle.append(conn)

    def forget(self, conn: UpstreamConnection) -> None:
        try:
            self.idle.remove(conn)
        except ValueError:
            pass

    def close(self) -> None:
        self.closed = True
        idle, self.idle = self.idle, []
        for conn in idle:
            conn.close()
