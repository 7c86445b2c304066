"""One HTTP/2 connection (RFC 9113) on an asyncio Protocol, either side: frames in and out, SETTINGS, PING,
GOAWAY, both flow-control windows, and the send queue of each stream. The roles (``server.ClientSide``, the
connection a gRPC client opened; ``upstream.UpstreamConnection``, the one the edge opened) subclass it and
handle HEADERS, DATA and RST_STREAM.

Flow control: this side advertises ``STREAM_WINDOW`` per stream and ``CONNECTION_WINDOW`` for the connection,
and gives a peer's bytes back (WINDOW_UPDATE) when the edge has used them: a message it holds at once, a
relayed one when it has been written on the other connection (``Stream.credit_back``), so a slow reader on
one side slows the writer on the other instead of filling the proxy's memory. What this side sends waits in
the stream's queue for the peer's windows.

Writes made while frames are being read (``data_received``) are gathered per connection and written once at
the end of the read: a unary answer's HEADERS, DATA and trailers, often one read from the upstream, leave as
one write to the client.
"""

from __future__ import annotations

import asyncio
import struct
from typing import Final, cast

from .headers import Decoder, HeaderError, Headers, encode

__all__ = [
    "CANCEL", "CONNECTION_WINDOW", "DATA", "END_STREAM", "HEADERS", "INTERNAL_ERROR", "PREFACE", "PROTOCOL_ERROR",
    "REFUSED_STREAM", "STREAM_WINDOW", "H2Connection", "ProtocolError", "Stream",
]

PREFACE: Final = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
# Frame types (RFC 9113 6)
DATA: Final = 0
HEADERS: Final = 1
PRIORITY: Final = 2
RST_STREAM: Final = 3
SETTINGS: Final = 4
PUSH_PROMISE: Final = 5
PING: Final = 6
GOAWAY: Final = 7
WINDOW_UPDATE: Final = 8
CONTINUATION: Final = 9
# Flags
END_STREAM: Final = 0x1
ACK: Final = 0x1
END_HEADERS: Final = 0x4
PADDED: Final = 0x8
PRIORITY_FLAG: Final = 0x20
# Error codes (RFC 9113 7)
NO_ERROR: Final = 0
PROTOCOL_ERROR: Final = 1
INTERNAL_ERROR: Final = 2
FLOW_CONTROL_ERROR: Final = 3
FRAME_SIZE_ERROR: Final = 6
REFUSED_STREAM: Final = 7
CANCEL: Final = 8
COMPRESSION_ERROR: Final = 9
# Settings
_HEADER_TABLE_SIZE: Final = 1
_ENABLE_PUSH: Final = 2
_MAX_CONCURRENT_STREAMS: Final = 3
_INITIAL_WINDOW_SIZE: Final = 4
_MAX_FRAME_SIZE: Final = 5
_MAX_HEADER_LIST_SIZE: Final = 6

# What this side lets a peer send before it hands bytes back: 1 MiB a stream (a large tensor in a few round
# trips), 16 MiB the connection (16 such streams at once). Given back in quarters, not per frame.
STREAM_WINDOW: Final = 1 << 20
CONNECTION_WINDOW: Final = 1 << 24
# Frames this side accepts up to: fewer frames for a large message (the peer may still send 16 KiB ones).
MAX_FRAME: Final = 1 << 20
MAX_HEADER_LIST: Final = 1 << 16
_DEFAULT_WINDOW: Final = 65535
_MAX_WINDOW: Final = (1 << 31) - 1
_HEAD = struct.Struct(">HBBBL")  # 24-bit length as 16 + 8 bits, type, flags, stream id


def frame(kind: int, flags: int, sid: int, payload: bytes = b"") -> bytes:
    n = len(payload)
    return _HEAD.pack(n >> 8, n & 0xFF, kind, flags, sid) + payload


class ProtocolError(Exception):
    """The peer broke HTTP/2: the connection ends with GOAWAY and this code."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code


class Stream:
    """The sending side of one stream, and what the peer may still send on it."""

    __slots__ = ("credit_back", "ended", "finished", "pending", "pending_end", "pending_trailers", "recv_credit",
                 "recv_window", "sid", "window")

    def __init__(self, sid: int, window: int) -> None:
        self.sid = sid
        self.window = window  # the peer's window for this stream: bytes this side may still send
        self.recv_window = STREAM_WINDOW
        self.recv_credit = 0  # bytes used and not yet given back
        # Queued DATA (the windows were short), then END_STREAM or a trailers block once it has gone.
        self.pending: list[bytes] = []
        self.pending_end = False
        self.pending_trailers: bytes | None = None
        # Where a relayed DATA byte came from: given back there once written here (module docstring).
        self.credit_back: tuple[H2Connection, Stream] | None = None
        self.ended = False  # this side sent END_STREAM or RST_STREAM
        # The role is done with the stream: it leaves the connection once its queue has gone (``release``).
        self.finished = False


class _Batch:
    """Connections written to while frames are read: written once, when the outermost read is done."""

    __slots__ = ("depth", "dirty")

    def __init__(self) -> None:
        self.depth = 0
        self.dirty: list[H2Connection] = []


_BATCH: Final = _Batch()


class H2Connection(asyncio.Protocol):
    """Frames, settings and windows of one connection; ``_headers``, ``_data``, ``_reset`` and ``_ended`` are
    the role's."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.buffer = b""
        self.decoder = Decoder(max_list=MAX_HEADER_LIST)
        self.out: list[bytes] = []
        self.streams: dict[int, Stream] = {}
        # The peer's settings as this side uses them.
        self.max_frame = 16384
        self.initial_window = _DEFAULT_WINDOW
        self.max_streams = 1 << 31
        self.window = _DEFAULT_WINDOW  # connection-level: bytes this side may still send
        self.recv_window = CONNECTION_WINDOW
        self.recv_credit = 0
        # A header block being continued (CONTINUATION frames): its stream, flags and bytes so far.
        self.continued: tuple[int, int, bytearray] | None = None
        self.preface_left = 0  # bytes of the client preface still expected (the server side)
        self.closed = False
        self.goaway_sent = False

    # -- writing
    def emit(self, data: bytes) -> None:
        if _BATCH.depth:
            if not self.out:
                _BATCH.dirty.append(self)
            self.out.append(data)
        elif self.transport is not None and not self.closed:
            self.transport.write(data)

    def flush(self) -> None:
        out = self.out
        if out:
            self.out = []
            if self.transport is not None and not self.closed:
                self.transport.write(b"".join(out) if len(out) > 1 else out[0])

    def settings_frame(self) -> bytes:
        entries = ((_ENABLE_PUSH, 0), (_INITIAL_WINDOW_SIZE, STREAM_WINDOW), (_MAX_FRAME_SIZE, MAX_FRAME),
                   (_MAX_HEADER_LIST_SIZE, MAX_HEADER_LIST))
        return frame(SETTINGS, 0, 0, b"".join(struct.pack(">HL", k, v) for k, v in entries)) + \
            frame(WINDOW_UPDATE, 0, 0, struct.pack(">L", CONNECTION_WINDOW - _DEFAULT_WINDOW))

    def send_headers(self, stream: Stream, headers: Headers | bytes, end: bool) -> None:
        """A header block (or one already encoded) on ``stream``; trailers wait behind queued DATA."""
        block = headers if isinstance(headers, bytes) else encode(headers)
        if end and stream.pending:
            stream.pending_trailers = block
            return
        if end:
            stream.ended = True
        max_frame = self.max_frame
        flags = END_STREAM if end else 0
        if len(block) <= max_frame:
            self.emit(frame(HEADERS, flags | END_HEADERS, stream.sid, block))
            return
        pieces = [frame(HEADERS, flags, stream.sid, block[:max_frame])]
        for at in range(max_frame, len(block), max_frame):
            last = at + max_frame >= len(block)
            pieces.append(frame(CONTINUATION, END_HEADERS if last else 0, stream.sid, block[at:at + max_frame]))
        self.emit(b"".join(pieces))

    def send_data(self, stream: Stream, data: bytes, end: bool) -> None:
        n = len(data)
        if not stream.pending and n <= stream.window and n <= self.window and n <= self.max_frame:
            stream.window -= n
            self.window -= n
            if end:
                stream.ended = True
            self.emit(frame(DATA, END_STREAM if end else 0, stream.sid, data))
            back = stream.credit_back
            if back is not None and n:
                back[0].credit(back[1], n)
            return
        if data:
            stream.pending.append(data)
        stream.pending_end = stream.pending_end or end
        self._drain(stream)

    def _drain(self, stream: Stream) -> None:
        """Send what the windows allow of the stream's queue; then its END_STREAM or trailers."""
        pending = stream.pending
        back = stream.credit_back
        while pending:
            chunk = pending[0]
            n = min(len(chunk), stream.window, self.window, self.max_frame)
            if n <= 0:
                return
            stream.window -= n
            self.window -= n
            if n == len(chunk):
                pending.pop(0)
            else:
                pending[0] = chunk[n:]
                chunk = chunk[:n]
            end = not pending and stream.pending_end and stream.pending_trailers is None
            if end:
                stream.ended = True
            self.emit(frame(DATA, END_STREAM if end else 0, stream.sid, chunk))
            if back is not None:
                back[0].credit(back[1], n)
        if stream.pending_trailers is not None:
            block, stream.pending_trailers = stream.pending_trailers, None
            self.send_headers(stream, block, True)
        elif stream.pending_end and not stream.ended:
            stream.ended = True
            self.emit(frame(DATA, END_STREAM, stream.sid))
        if stream.finished:
            self.streams.pop(stream.sid, None)

    def release(self, stream: Stream) -> None:
        """The role is done with ``stream``: it leaves now, or when what it queued has been sent (the peer's
        WINDOW_UPDATEs find it until then)."""
        stream.finished = True
        if not stream.pending and stream.pending_trailers is None:
            self.streams.pop(stream.sid, None)

    def reset(self, stream: Stream, code: int) -> None:
        """RST_STREAM: the caller knows the stream is still open on the peer's side (half-closed counts)."""
        stream.ended = True
        stream.pending.clear()
        stream.pending_trailers = None
        self.emit(frame(RST_STREAM, 0, stream.sid, struct.pack(">L", code)))

    def credit(self, stream: Stream, n: int) -> None:
        """Give ``n`` bytes of the peer's DATA back (WINDOW_UPDATE), in quarters of each window."""
        self.credit_connection(n)
        stream.recv_credit += n
        if stream.recv_credit >= STREAM_WINDOW // 4 and stream.sid in self.streams:
            stream.recv_window += stream.recv_credit
            self.emit(frame(WINDOW_UPDATE, 0, stream.sid, struct.pack(">L", stream.recv_credit)))
            stream.recv_credit = 0

    def credit_connection(self, n: int) -> None:
        """Give ``n`` bytes back to the connection's window only (DATA of a stream this side has done with)."""
        self.recv_credit += n
        if self.recv_credit >= CONNECTION_WINDOW // 4:
            self.recv_window += self.recv_credit
            self.emit(frame(WINDOW_UPDATE, 0, 0, struct.pack(">L", self.recv_credit)))
            self.recv_credit = 0

    def goaway(self, code: int, last_sid: int, message: str = "") -> None:
        if not self.goaway_sent:
            self.goaway_sent = True
            self.emit(frame(GOAWAY, 0, 0, struct.pack(">LL", last_sid, code) + message.encode()[:256]))

    # -- reading
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports are not asyncio.Transport subclasses (no isinstance): the same methods, though.
        self.transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        _BATCH.depth += 1
        try:
            self._read(data)
        except ProtocolError as exc:
            self._protocol_error(exc)
        finally:
            _BATCH.depth -= 1
            if not _BATCH.depth:
                dirty = _BATCH.dirty
                if dirty:
                    _BATCH.dirty = []
                    for conn in dirty:
                        conn.flush()

    def _protocol_error(self, exc: ProtocolError) -> None:
        self.goaway(exc.code, self._last_stream(), str(exc))
        self.flush()
        self.abort_connection()

    def _last_stream(self) -> int:
        return 0

    def abort_connection(self) -> None:
        if self.transport is not None:
            self.transport.close()

    def _read(self, data: bytes) -> None:
        buf = self.buffer + data if self.buffer else data
        if self.preface_left:
            n = min(self.preface_left, len(buf))
            start = len(PREFACE) - self.preface_left
            if buf[:n] != PREFACE[start:start + n]:
                raise ProtocolError(PROTOCOL_ERROR, "not an HTTP/2 client preface (gRPC needs h2c or TLS)")
            self.preface_left -= n
            buf = buf[n:]
        pos, size = 0, len(buf)
        head = _HEAD
        while size - pos >= 9 and not self.closed:
            hi, lo, kind, flags, sid = head.unpack_from(buf, pos)
            length = (hi << 8) | lo
            if length > MAX_FRAME:
                raise ProtocolError(FRAME_SIZE_ERROR, f"a {length}-byte frame is over the {MAX_FRAME} allowed")
            stop = pos + 9 + length
            if stop > size:
                break
            payload = buf[pos + 9:stop]
            pos = stop
            self._frame(kind, flags, sid & 0x7FFFFFFF, payload)
        self.buffer = buf[pos:] if pos < size else b""

    def _frame(self, kind: int, flags: int, sid: int, payload: bytes) -> None:
        if self.continued is not None and kind != CONTINUATION:
            raise ProtocolError(PROTOCOL_ERROR, "a header block was interrupted")
        if kind == DATA:
            if sid == 0:
                raise ProtocolError(PROTOCOL_ERROR, "DATA on stream 0")
            flow = len(payload)
            self.recv_window -= flow
            if self.recv_window < 0:
                raise ProtocolError(FLOW_CONTROL_ERROR, "the peer overran the connection window")
            if flags & PADDED:
                payload = _unpad(payload)
            self._data(sid, payload, bool(flags & END_STREAM), flow)
        elif kind == HEADERS:
            if sid == 0:
                raise ProtocolError(PROTOCOL_ERROR, "HEADERS on stream 0")
            if flags & PADDED:
                payload = _unpad(payload)
            if flags & PRIORITY_FLAG:
                payload = payload[5:]
            if flags & END_HEADERS:
                self._header_block(sid, flags, payload)
            else:
                self.continued = (sid, flags, bytearray(payload))
        elif kind == CONTINUATION:
            continued = self.continued
            if continued is None or continued[0] != sid:
                raise ProtocolError(PROTOCOL_ERROR, "CONTINUATION without its HEADERS")
            continued[2].extend(payload)
            if len(continued[2]) > MAX_HEADER_LIST:
                raise ProtocolError(PROTOCOL_ERROR, "a header block over the header list size")
            if flags & END_HEADERS:
                self.continued = None
                self._header_block(sid, continued[1], bytes(continued[2]))
        elif kind == SETTINGS:
            if not flags & ACK:
                self._settings(payload)
        elif kind == WINDOW_UPDATE:
            self._window_update(sid, payload)
        elif kind == PING:
            if len(payload) != 8:
                raise ProtocolError(FRAME_SIZE_ERROR, "a PING is 8 bytes")
            if not flags & ACK:
                self.emit(frame(PING, ACK, 0, payload))
        elif kind == RST_STREAM:
            if len(payload) != 4:
                raise ProtocolError(FRAME_SIZE_ERROR, "RST_STREAM is 4 bytes")
            self._reset(sid, int.from_bytes(payload))
        elif kind == GOAWAY:
            if len(payload) < 8:
                raise ProtocolError(FRAME_SIZE_ERROR, "GOAWAY is at least 8 bytes")
            self._goaway(int.from_bytes(payload[:4]) & 0x7FFFFFFF, int.from_bytes(payload[4:8]))
        elif kind == PUSH_PROMISE:
            raise ProtocolError(PROTOCOL_ERROR, "push is disabled")
        # PRIORITY and unknown types are ignored (RFC 9113 5.5)

    def _header_block(self, sid: int, flags: int, block: bytes) -> None:
        try:
            headers = self.decoder.decode(block)
        except HeaderError as exc:
            raise ProtocolError(COMPRESSION_ERROR, str(exc)) from None
        self._headers(sid, headers, bool(flags & END_STREAM))

    def _settings(self, payload: bytes) -> None:
        if len(payload) % 6:
            raise ProtocolError(FRAME_SIZE_ERROR, "SETTINGS is a multiple of 6 bytes")
        for at in range(0, len(payload), 6):
            key, value = struct.unpack_from(">HL", payload, at)
            if key == _INITIAL_WINDOW_SIZE:
                if value > _MAX_WINDOW:
                    raise ProtocolError(FLOW_CONTROL_ERROR, "initial window over 2^31-1")
                delta = value - self.initial_window
                self.initial_window = value
                for stream in self.streams.values():
                    stream.window += delta
            elif key == _MAX_FRAME_SIZE:
                if not 16384 <= value < 1 << 24:
                    raise ProtocolError(PROTOCOL_ERROR, "max frame size out of range")
                self.max_frame = value
            elif key == _MAX_CONCURRENT_STREAMS:
                self.max_streams = value
            # HEADER_TABLE_SIZE: this side's encoder never indexes, so any size does.
        self.emit(frame(SETTINGS, ACK, 0))
        self._drain_all()

    def _window_update(self, sid: int, payload: bytes) -> None:
        if len(payload) != 4:
            raise ProtocolError(FRAME_SIZE_ERROR, "WINDOW_UPDATE is 4 bytes")
        increment = int.from_bytes(payload) & 0x7FFFFFFF
        if sid == 0:
            self.window += increment
            if self.window > _MAX_WINDOW:
                raise ProtocolError(FLOW_CONTROL_ERROR, "the connection window went over 2^31-1")
            self._drain_all()
            return
        stream = self.streams.get(sid)
        if stream is not None:
            stream.window += increment
            if stream.pending or stream.pending_trailers is not None:
                self._drain(stream)

    def _drain_all(self) -> None:
        for stream in list(self.streams.values()):
            if stream.pending or stream.pending_trailers is not None:
                self._drain(stream)
                if self.window <= 0:
                    return

    def data_bytes_check(self, stream: Stream, flow: int) -> None:
        """Count ``flow`` bytes of DATA against the stream's window (FLOW_CONTROL_ERROR past it)."""
        stream.recv_window -= flow
        if stream.recv_window < 0:
            raise ProtocolError(FLOW_CONTROL_ERROR, f"the peer overran stream {stream.sid}'s window")

    # -- the role's
    def _headers(self, sid: int, headers: Headers, end: bool) -> None:
        raise NotImplementedError

    def _data(self, sid: int, payload: bytes, end: bool, flow: int) -> None:
        raise NotImplementedError

    def _reset(self, sid: int, code: int) -> None:
        raise NotImplementedError

    def _goaway(self, last_sid: int, code: int) -> None:
        raise NotImplementedError


def _unpad(payload: bytes) -> bytes:
    if not payload:
        raise ProtocolError(PROTOCOL_ERROR, "a padded frame without its pad length")
    pad = payload[0]
    if pad >= len(payload):
        raise ProtocolError(PROTOCOL_ERROR, "padding longer than the frame")
    return payload[1:len(payload) - pad]
