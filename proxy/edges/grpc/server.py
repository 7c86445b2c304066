"""The gRPC listener: HTTP/2 on asyncio Protocols (``h2``), each call a ``relay.Relay`` between the client's
stream and a stream on a pooled connection to the upstream (``upstream``), through a ``GrpcExchange``.

Why not grpcio: a ``grpc.aio`` server and channel forwarding raw bytes cost about 0.65 ms of CPU a call here and
added 0.6 ms at the median, most of it grpc.aio's hand-offs between grpc core's threads and the event loop
(benchmarks/RESULTS.md, issue 21). The edge needs no protobuf and no gRPC library: a call is HTTP/2 HEADERS,
length-prefixed messages in DATA, and trailers, and the proxy relays them.

``drop`` closes (FIN) or resets (RST) the client's TCP connection: every call multiplexed on it ends with it,
as when a real connection dies.
"""

from __future__ import annotations

import asyncio
import socket
import ssl
import struct
from typing import TYPE_CHECKING, Any, cast

from ...logs import event
from .h2.connection import PREFACE, PROTOCOL_ERROR, REFUSED_STREAM, H2Connection, ProtocolError, Stream
from .relay import Relay
from .upstream import UpstreamPool

if TYPE_CHECKING:
    from ...dataplane.state import DataPlane
    from ...policy.model import GrpcSettings, Policy, Upstream
    from .h2.headers import Headers

__all__ = ["ClientSide", "DownStream", "GrpcEdge"]

_LINGER_RESET = struct.pack("ii", 1, 0)


class DownStream(Stream):
    """A call's stream on the client's connection."""

    __slots__ = ("relay",)

    def __init__(self, sid: int, window: int) -> None:
        super().__init__(sid, window)
        self.relay: Relay | None = None


class ClientSide(H2Connection):
    """A connection a gRPC client opened to the listener."""

    def __init__(self, edge: GrpcEdge) -> None:
        super().__init__()
        self.edge = edge
        self.preface_left = len(PREFACE)
        self.last_sid = 0
        self._peer = ""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        self.edge.connections.add(self)
        self.emit(self.settings_frame())

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.edge.connections.discard(self)
        streams, self.streams = self.streams, {}
        for stream in streams.values():
            if isinstance(stream, DownStream) and stream.relay is not None:
                stream.relay.client_gone()
        self.edge.idle_check()

    def peer(self) -> str:
        """grpc's peer string of the client (``ipv4:127.0.0.1:5000``), made on first use."""
        if not self._peer and self.transport is not None:
            name = self.transport.get_extra_info("peername")
            if isinstance(name, tuple) and len(name) >= 2:
                host, port = name[0], name[1]
                self._peer = f"ipv6:[{host}]:{port}" if ":" in host else f"ipv4:{host}:{port}"
            else:
                self._peer = "unix:"
        return self._peer

    def _last_stream(self) -> int:
        return self.last_sid

    def _protocol_error(self, exc: ProtocolError) -> None:
        self.edge.plane.metrics.errors["malformed_request"].value += 1
        event("grpc_protocol_error", peer=self.peer(), reason=str(exc))
        super()._protocol_error(exc)

    def drop(self, reset: bool) -> None:
        transport = self.transport
        if transport is None or self.closed:
            return
        if reset:
            sock = transport.get_extra_info("socket")
            if sock is not None:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _LINGER_RESET)
            transport.abort()
        else:
            transport.close()

    def done(self, stream: DownStream) -> None:
        """The relay has answered: the stream is the client's to end; nothing more is relayed on it."""
        self.release(stream)
        stream.relay = None
        if self.goaway_sent:
            self.edge.idle_check()

    # -- frames from the client
    def _headers(self, sid: int, headers: Headers, end: bool) -> None:
        stream = self.streams.get(sid)
        if stream is not None:  # trailers from a client (gRPC sends none): the end of its messages
            if isinstance(stream, DownStream) and stream.relay is not None and end:
                stream.relay.req_data(b"", True, 0)
            return
        if sid <= self.last_sid:
            return  # a stream the relay answered already: the client's late frames end it
        if not sid & 1:
            raise ProtocolError(PROTOCOL_ERROR, f"a client opened an even stream id {sid}")
        self.last_sid = sid
        down = DownStream(sid, self.initial_window)
        if self.goaway_sent or len(self.streams) >= self.edge.max_streams:
            self.reset(down, REFUSED_STREAM)
            return
        self.streams[sid] = down
        down.relay = Relay(self.edge, self, down, headers, end)

    def _data(self, sid: int, payload: bytes, end: bool, flow: int) -> None:
        stream = self.streams.get(sid)
        if not isinstance(stream, DownStream) or stream.relay is None:
            self.credit_connection(flow)  # an answered call's late bytes still count for the connection
            return
        self.data_bytes_check(stream, flow)
        stream.relay.req_data(payload, end, flow)

    def _reset(self, sid: int, code: int) -> None:
        stream = self.streams.pop(sid, None)
        if isinstance(stream, DownStream) and stream.relay is not None:
            stream.ended = True
            stream.relay.client_gone()

    def _goaway(self, last_sid: int, code: int) -> None:
        pass  # the client will open no more streams; those open go on


class GrpcEdge:
    """The gRPC listener of one sidecar and its upstream pools."""

    def __init__(self, plane: DataPlane, settings: GrpcSettings, max_message_bytes: int) -> None:
        self.plane = plane
        self.loop = plane.loop
        self.settings = settings
        self.max_message_bytes = max_message_bytes
        # Calls one client connection may have open at once (REFUSED_STREAM past it).
        self.max_streams = 1000
        self.primary: Upstream = settings.upstream
        self.upstreams: dict[str, Upstream] = {}
        self.pools: dict[tuple[str, int], UpstreamPool] = {}
        self.connections: set[ClientSide] = set()
        self.server: asyncio.Server | None = None
        self.port = 0
        self._idle: asyncio.Future[None] | None = None

    def _ssl(self) -> ssl.SSLContext | None:
        tls = self.settings.tls
        if tls is None:
            return None
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(tls.cert, tls.key)
        context.set_alpn_protocols(["h2"])  # gRPC clients refuse a TLS server that does not say h2
        return context

    async def start(self) -> int:
        settings = self.settings
        server = await self.loop.create_server(lambda: ClientSide(self), settings.listen.host, settings.listen.port,
                                               ssl=self._ssl(), reuse_address=True)
        self.server = server
        # Any: uvloop's sockets is a list where typeshed says tuple, which compiled code would check
        self.port = cast(Any, server).sockets[0].getsockname()[1]
        event("grpc_start", listen=f"{settings.listen.host}:{self.port}", upstream=settings.upstream.authority,
              tls=settings.tls is not None)
        return self.port

    def apply_policy(self, policy: Policy) -> None:
        """The policy's upstreams (a pool each, made on first use; an unchanged one keeps its connections)."""
        if policy.grpc is not None:
            self.primary = policy.grpc.upstream
        self.upstreams = dict(policy.upstreams)
        wanted = {(u.host, u.port) for u in (self.primary, *self.upstreams.values())}
        for key in [k for k in self.pools if k not in wanted]:
            pool = self.pools.pop(key)
            for conn in pool.connections:
                conn.accepting = False  # calls in flight finish; the connection closes with its last
            _ = self.loop.call_later(5.0, pool.close)

    def pool(self, name: str | None) -> UpstreamPool:
        up = self.upstreams.get(name, self.primary) if name else self.primary
        key = (up.host, up.port)
        pool = self.pools.get(key)
        if pool is None:
            pool = self.pools[key] = UpstreamPool(up, self.plane.timeouts.connect, self.loop)
        return pool

    def idle_check(self) -> None:
        if self._idle is not None and not self._idle.done() and not any(c.streams for c in self.connections):
            self._idle.set_result(None)

    async def stop(self, grace: float) -> None:
        """Refuse new calls (GOAWAY), let those in flight finish for ``grace`` seconds, then close."""
        if self.server is not None:
            self.server.close()
        self._idle = self.loop.create_future()
        for conn in list(self.connections):
            conn.goaway(0, conn.last_sid)
            conn.flush()
        self.idle_check()
        if grace > 0:
            try:
                await asyncio.wait_for(asyncio.shield(self._idle), grace)
            except TimeoutError:
                pass
        for conn in list(self.connections):
            conn.abort_connection()
        for pool in self.pools.values():
            pool.close()
        self.pools.clear()
        if self.server is not None:
            await self.server.wait_closed()
            self.server = None
