"""The HTTP/1.1 client side: one ``ClientConnection`` per accepted socket, parsed by llhttp (httptools).

Requests on a connection are answered strictly in order (pipelining): the parser runs ahead and queues them,
and the next one starts when the previous response is complete. Each request's facts go to the router, and
the ``Http1Exchange`` it gets runs the faults, the upstream and the record.
"""

from __future__ import annotations

import asyncio
import socket
import struct
from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING, cast

import httptools

from ...errors import (
    CLIENT_TIMEOUT,
    HEADER_DROPPED,
    BadRequest,
    BodyTooLarge,
    HeadersTooLarge,
    ProxyError,
    RequestHeadTimeout,
)
from ...faults.base import Drop
from ...routing import UNASSIGNED
from .exchange import Http1Exchange
from .framing import COMMON_NAMES, CONTINUE, LOWER, SPECIAL_REQUEST_HEADERS, is_chunked, lookalike
from .request import STREAM_HIGH_WATER, Request

if TYPE_CHECKING:
    from ...dataplane.state import DataPlane

__all__ = ["ClientConnection", "client_protocol"]

_LINGER_RESET = struct.pack("ii", 1, 0)


def client_protocol(plane: DataPlane) -> Callable[[], asyncio.Protocol]:
    """The protocol factory for ``loop.create_server``."""
    return lambda: cast(asyncio.Protocol, ClientConnection(plane))


def _http10_line(data: bytes, line: bytes) -> bool:
    """Whether ``line`` starts a line of ``data``: the request line as sent, not another protocol's (llhttp
    reads ``GET / RTSP/1.0`` as version 1.0). A header line cannot imitate it: its name would hold a space."""
    at = data.find(line)
    while at > 0 and data[at - 1] != 10:  # not after a LF
        at = data.find(line, at + 1)
    return at >= 0


class ClientConnection:
    """One client socket. Not an ``asyncio.Protocol`` subclass, though it is one by its methods: a plain class
    compiles to a native mypyc class (attributes in a C struct), 22% more requests per second, measured."""

    __slots__ = (
        "client_ip",
        "closed",
        "cur",
        "exchange",
        "head_at",
        "head_bytes",
        "header_limit",
        "in_body",
        "last_active",
        "loop",
        "parser",
        "paused",
        "plane",
        "rdata",
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
        self.exchange: Http1Exchange | None = None
        self.closed = False
        self.client_ip = b""
        self.last_active = self.loop.time()
        self.paused = False
        self.header_limit = plane.limits.max_header_bytes
        # Bytes read while a request head is incomplete: llhttp buffers a partial header line itself,
        # so the limit is enforced on what arrives, not only on the lines it hands over.
        self.head_bytes = 0
        self.in_body = False
        # When the pending request head began (its first byte; the connection's start for the first request),
        # or -1 when none is pending: timeouts.header runs from it.
        self.head_at = self.last_active
        # The read being parsed, and the earlier reads of a request head still pending after them (at most a
        # read before it, max_header_bytes + 8 KiB in it): an HTTP/1.0 request line is checked in them, as llhttp
        # also takes RTSP/1.0 and ICE/1.0 lines and reports them as version 1.0. Most heads come in one read:
        # the list stays empty and nothing is appended or cleared per request.
        self.rdata: list[bytes] = []
        self.cur = b""

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
        self.cur = data
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
        self.cur = b""  # an idle connection holds no read buffer
        if self.req is not None and not self.in_body:
            self.rdata.append(data)  # a head still pending: its start is in this read
        elif self.rdata:
            self.rdata.clear()

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
        self.head_at = self.last_active

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
        lname = name.translate(LOWER)
        if lname not in SPECIAL_REQUEST_HEADERS:
            if lname not in COMMON_NAMES and lookalike(lname):
                self.plane.metrics.errors[HEADER_DROPPED].value += 1
                return
            req.headers.append((lname, value))
            req.lines.append(name + b": " + value + b"\r\n")
            return
        req.headers.append((lname, value))
        if lname == b"host":
            if req.host is not None:
                raise BadRequest("more than one Host header")  # RFC 9112 3.2
            req.host = value
        elif lname == b"content-length":
            if req.content_length is not None or not value.strip().isdigit():
                raise BadRequest("invalid or repeated Content-Length")
            req.content_length = int(value)
        elif lname == b"transfer-encoding":
            # Exactly one, exactly chunked: anything else cannot be framed the same way by every server behind.
            if req.chunked or not is_chunked(value):
                raise BadRequest("Transfer-Encoding other than a single chunked")
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
        elif lname == b"x-mlchaos-shadow":
            # Special only so that ordinary headers pay no comparison for it; forwarded as it came: a chain of
            # sidecars passes it on.
            req.shadow = True
            req.lines.append(name + b": " + value + b"\r\n")
        # other hop-by-hop headers (keep-alive, te, trailer, upgrade, proxy-*) are dropped

    def on_headers_complete(self) -> None:
        req = self.req
        assert req is not None
        self.in_body, self.head_bytes, self.head_at = True, 0, -1.0
        parser = self.parser
        version = parser.get_http_version()
        if version != "1.1" and version != "1.0":
            raise BadRequest("HTTP version other than 1.0 and 1.1")  # an HTTP/0.9 line (no version) reads 0.9
        raw = parser.get_method()
        if version == "1.0":
            line = raw + b" " + req.url + b" HTTP/1.0\r\n"
            if not _http10_line(b"".join(self.rdata) + self.cur, line):
                raise BadRequest("not an HTTP/1.0 request line")
        # The usual methods as the module's own str constants: their hash is computed once, where a freshly
        # decoded str is hashed again by every set or dict it is looked up in (the router's method match).
        req.method = "POST" if raw == b"POST" else "GET" if raw == b"GET" else raw.decode("latin-1")
        req.version = version
        req.keep_alive = parser.should_keep_alive()
        url = req.url
        if url[:1] != b"/":
            if req.method == "CONNECT":
                # The upstream comes from the policy only: this is not a forward proxy.
                raise BadRequest("CONNECT is not supported: mlchaos is a reverse proxy")
            if url.startswith((b"http://", b"https://")):
                # absolute-form: keep the path only; the authority in it is never dialled, and it stands for
                # the Host header (RFC 9112 3.2.2), so that the upstream and routing agree on one host.
                start = url.find(b"//") + 2
                slash = url.find(b"/", start)
                authority = url[start:slash] if slash > 0 else url[start:]
                if not authority or 64 in authority:  # "@": userinfo
                    raise BadRequest("invalid authority in an absolute-form target")
                req.host = authority
                req.url = url[slash:] if slash > 0 else b"/"
            elif url != b"*":
                raise BadRequest("invalid request target")
        if req.chunked and (req.content_length is not None or version == "1.0"):
            # RFC 9112 6.1: Transfer-Encoding in HTTP/1.0 means faulty framing; so does it beside a length.
            raise BadRequest("Transfer-Encoding with Content-Length, or in an HTTP/1.0 request")
        if parser.should_upgrade() and (req.chunked or req.content_length):
            # llhttp hands the bytes after an upgrade request to the new protocol, not to its body.
            raise BadRequest("protocol upgrades with a request body are not supported")
        if req.version == "1.1" and req.host is None:
            raise BadRequest("missing Host header")
        plane = self.plane
        if req.content_length is not None and req.content_length > plane.max_body_bytes:
            req.error = BodyTooLarge(f"request body over {plane.max_body_bytes} bytes")
            req.body.discard = True
            req.keep_alive = False
            req.ready = True
        elif req.content_length is None and not req.chunked:
            req.body.done = req.ready = True
        elif not req.chunked and req.content_length > plane.inspect_body_bytes:  # type: ignore[operator]
            req.streamed = req.ready = True
        else:
            # Held until complete (at most inspect_body_bytes): reading must not pause for it. A chunked body is
            # held too, so that its framing is checked whole before a byte of the request goes upstream; past
            # inspect_body_bytes it streams (on_body).
            req.body.high_water = plane.inspect_body_bytes + 1
        self.queue.append(req)
        if len(self.queue) > plane.pipeline_depth:
            self._pause()
        if req.ready or req.expect_continue:  # else its body completes it (on_message_complete)
            self._next()

    def on_body(self, body: bytes) -> None:
        req = self.req
        assert req is not None
        behind = req.body.feed(body)
        if req.body.size > self.plane.max_body_bytes and req.body.error is None:
            req.body.discard = True
            req.body.chunks.clear()
            req.body.fail(BodyTooLarge(f"request body over {self.plane.max_body_bytes} bytes"))
            self._pause()
        elif behind:
            if not req.ready:
                # A held chunked body outgrew inspect_body_bytes: it streams from here on.
                req.streamed = req.ready = True
                req.body.high_water = STREAM_HIGH_WATER
                if self.exchange is None and self.queue and self.queue[0] is req:
                    self._next()
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
        if req.error is not None:
            self.exchange = ex = Http1Exchange(self, req, UNASSIGNED)
            ex.fail(req.error)
            return
        router = self.plane.experiments.router
        self.exchange = ex = Http1Exchange(self, req, router.assign(req) if router.active else UNASSIGNED)
        ex.start()

    def exchange_done(self, ex: Http1Exchange) -> None:
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
        if self.paused and len(queue) <= self.plane.pipeline_depth \
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
                and len(self.queue) <= self.plane.pipeline_depth:
            self.paused = False
            self.transport.resume_reading()

    def flush(self) -> None:
        wbuf = self.wbuf
        if wbuf:
            data = wbuf[0] if len(wbuf) == 1 else b"".join(wbuf)
            wbuf.clear()
            if not self.closed and not self.transport.is_closing():
                self.transport.write(data)

    def write_parts(self, head: bytes, body: bytes) -> None:
        """Write ``head`` and ``body`` after whatever is buffered, in one writev: the body is not copied."""
        wbuf = self.wbuf
        wbuf.append(head)
        wbuf.append(body)
        if not self.closed and not self.transport.is_closing():
            self.transport.writelines(wbuf)
        wbuf.clear()

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

    def check_deadline(self, now: float, header: float) -> bool:
        """The exchange's upstream deadlines; True when this connection's request head is overdue (past
        ``header``): the data plane then cuts it (``head_timeout``), a batch at a time."""
        ex = self.exchange
        if ex is not None:
            ex.check_deadline(now)
        head_at = self.head_at
        return head_at >= 0.0 and now - head_at > header and not self.paused and not self.closed

    def head_timeout(self, answer: bytes) -> None:
        """The request head took longer than timeouts.header: ``answer`` (a 408) when nothing else is owed,
        then close."""
        if self.head_at < 0.0 or self.closed:
            return  # completed, or gone, since it was found overdue
        self.plane.metrics.errors[RequestHeadTimeout.kind].value += 1
        self.head_at = -1.0
        self._pause()
        if self.busy:
            self.transport.abort()  # a response is in progress: a 408 now would be taken as its answer
        elif self.req is None:
            self.transport.close()  # not a byte sent (a preconnect, a probe): closed quietly, as nginx does
        else:
            self.write(answer)
            self.transport.close()

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
