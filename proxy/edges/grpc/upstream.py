"""The gRPC edge's connections to its upstreams: h2c with prior knowledge, many calls multiplexed on each.

A pool per upstream address keeps the connections; a call takes the first one that has a stream to spare (the
upstream's SETTINGS_MAX_CONCURRENT_STREAMS) and has not been told to go away, else a new one. A call opened
while its connection is still connecting waits in that connection's queue, and stream ids are given when the
HEADERS go out, so they rise on the wire as RFC 9113 5.1.1 wants.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Final, Protocol

from ... import _tasks
from ...logs import event
from .h2.connection import CANCEL, PREFACE, H2Connection, ProtocolError, Stream
from .h2.headers import Headers

if TYPE_CHECKING:
    from ...policy.model import Upstream

__all__ = ["UpstreamConnection", "UpstreamPool", "UpstreamStream"]

# A connection's stream ids run out at 2^31; a new connection is opened well before.
_LAST_SID: Final = (1 << 31) - 1000


class Caller(Protocol):
    """What a call hears of its upstream stream (``relay.Relay``)."""

    def up_headers(self, headers: Headers, end: bool) -> None: ...
    def up_data(self, payload: bytes, end: bool, flow: int) -> None: ...
    def up_failed(self, kind: str, message: str) -> None: ...


class UpstreamStream(Stream):
    __slots__ = ("caller",)

    def __init__(self, sid: int, window: int, caller: Caller) -> None:
        super().__init__(sid, window)
        self.caller = caller


class UpstreamConnection(H2Connection):
    """One h2c connection to an upstream."""

    def __init__(self, pool: UpstreamPool) -> None:
        super().__init__()
        self.pool = pool
        self.next_sid = 1
        self.accepting = True  # no GOAWAY yet, ids left
        # Why the connection ended, when the upstream broke the protocol: what its calls are answered.
        self.failure: tuple[str, str] | None = None
        # Calls opened before the connection was up: (stream, header block, first data, end of request).
        self.queued: list[tuple[UpstreamStream, Headers, bytes, bool]] = []

    def has_room(self) -> bool:
        return self.accepting and not self.closed and len(self.streams) + len(self.queued) < self.max_streams

    def open(self, caller: Caller, headers: Headers, data: bytes, end: bool) -> UpstreamStream:
        """A call's stream: its HEADERS (and its first DATA, ``end`` closing the request) now, or when the
        connection is up."""
        stream = UpstreamStream(0, self.initial_window, caller)
        if self.transport is None:
            self.queued.append((stream, headers, data, end))
        else:
            self._start(stream, headers, data, end)
        return stream

    def _start(self, stream: UpstreamStream, headers: Headers, data: bytes, end: bool) -> None:
        sid = self.next_sid
        self.next_sid += 2
        if self.next_sid > _LAST_SID:
            self.accepting = False
        stream.sid = sid
        stream.window = self.initial_window
        self.streams[sid] = stream
        self.send_headers(stream, headers, end and not data and not stream.pending)
        if data:
            self.send_data(stream, data, end)
        if stream.pending or stream.pending_end:  # messages relayed while it waited for the connection
            self._drain(stream)

    def send_data(self, stream: Stream, data: bytes, end: bool) -> None:
        if stream.sid == 0:  # not started: the connection is still being made
            if data:
                stream.pending.append(data)
            stream.pending_end = stream.pending_end or end
            return
        super().send_data(stream, data, end)

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        self.emit(PREFACE + self.settings_frame())
        queued, self.queued = self.queued, []
        for stream, headers, data, end in queued:
            if not stream.ended:  # the call may have gone while the connection was made
                self._start(stream, headers, data, end)

    def connect_failed(self, message: str) -> None:
        self.closed = True
        self.pool.forget(self)
        queued, self.queued = self.queued, []
        for stream, _headers, _data, _end in queued:
            if not stream.ended:
                stream.ended = True
                stream.caller.up_failed("upstream_connect", message)

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.pool.forget(self)
        streams, self.streams = self.streams, {}
        kind, message = self.failure or ("upstream_reset", "connection closed" if exc is None else str(exc))
        for stream in streams.values():
            if isinstance(stream, UpstreamStream):
                stream.caller.up_failed(kind, message)

    def _protocol_error(self, exc: ProtocolError) -> None:
        """The upstream is not speaking HTTP/2 as it should (an HTTP/1.1 server on that port, say)."""
        self.failure = ("upstream_bad_response", f"broke HTTP/2: {exc}")
        event("grpc_upstream_protocol_error", upstream=self.pool.upstream.authority, reason=str(exc))
        super()._protocol_error(exc)

    def cancel(self, stream: UpstreamStream) -> None:
        """The call ended on the client's side: end it upstream too."""
        if stream.sid == 0:
            stream.ended = True  # still queued: never sent
            return
        if self.streams.pop(stream.sid, None) is not None:  # else the upstream has ended it already
            self.reset(stream, CANCEL)

    def release(self, stream: Stream) -> None:
        """The upstream has ended the call: what of the request is still queued is not sent."""
        stream.pending.clear()
        stream.pending_end = False
        super().release(stream)

    # -- frames from the upstream
    def _headers(self, sid: int, headers: Headers, end: bool) -> None:
        stream = self.streams.get(sid)
        if isinstance(stream, UpstreamStream):
            if end:
                del self.streams[sid]
            stream.caller.up_headers(headers, end)
        elif sid >= self.next_sid:
            raise ProtocolError(1, f"HEADERS on stream {sid}, which this side never opened")

    def _data(self, sid: int, payload: bytes, end: bool, flow: int) -> None:
        stream = self.streams.get(sid)
        if not isinstance(stream, UpstreamStream):
            self.credit_connection(flow)  # a call that went: its bytes still count for the connection
            return
        self.data_bytes_check(stream, flow)
        if flow > len(payload):
            self.credit(stream, flow - len(payload))  # padding: nothing to relay
        if end:
            del self.streams[sid]
        stream.caller.up_data(payload, end, flow)

    def _reset(self, sid: int, code: int) -> None:
        stream = self.streams.pop(sid, None)
        if isinstance(stream, UpstreamStream):
            stream.ended = True
            stream.caller.up_failed("upstream_reset", f"stream reset by the upstream (code {code})")

    def _goaway(self, last_sid: int, code: int) -> None:
        self.accepting = False
        self.pool.forget(self)
        for sid in [s for s in self.streams if s > last_sid]:
            stream = self.streams.pop(sid)
            if isinstance(stream, UpstreamStream):
                stream.caller.up_failed("upstream_reset", f"the upstream went away (GOAWAY code {code})")


class UpstreamPool:
    """The connections to one upstream address."""

    def __init__(self, upstream: Upstream, connect_timeout: float, loop: asyncio.AbstractEventLoop) -> None:
        self.upstream = upstream
        self.authority = upstream.authority.encode("latin-1")
        self.connect_timeout = connect_timeout
        self.loop = loop
        self.connections: list[UpstreamConnection] = []

    def connection(self) -> UpstreamConnection:
        for conn in self.connections:
            if conn.has_room():
                return conn
        conn = UpstreamConnection(self)
        self.connections.append(conn)
        _ = _tasks.spawn(self._connect(conn), name="mlchaos-grpc-connect")
        return conn

    async def _connect(self, conn: UpstreamConnection) -> None:
        up = self.upstream
        try:
            await asyncio.wait_for(self.loop.create_connection(lambda: conn, up.host, up.port),
                                   self.connect_timeout)
        except (OSError, TimeoutError) as exc:
            reason = "timed out" if isinstance(exc, TimeoutError) else exc.strerror or str(exc)
            event("grpc_upstream_connect_failed", upstream=up.authority, reason=reason)
            conn.connect_failed(f"failed to connect to {up.authority}: {reason}")

    def forget(self, conn: UpstreamConnection) -> None:
        if conn in self.connections:
            self.connections.remove(conn)

    def close(self) -> None:
        for conn in self.connections:
            conn.accepting = False
            if conn.transport is not None:
                conn.transport.close()
        self.connections.clear()
