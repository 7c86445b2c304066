"""Raw-socket helpers for data-plane tests: a client that writes exact bytes and parses what comes back,
and a scripted TCP "upstream" that answers exactly the bytes a test chooses (or closes, or resets).

Everything is plain asyncio streams on 127.0.0.1, so the tests see the proxy only from the outside.
The helpers are importable (``from tests.dataplane.conftest import RawClient``) by the fault tests too.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import struct
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import orjson
import pytest

from proxy.app import Sidecar

# Generous, but short enough that a hung proxy fails a test instead of the suite.
READ_TIMEOUT = 3.0
STREAM_LIMIT = 1 << 22

OVERRIDE_TOKEN = "t0k"
OVERRIDE_ENV = {"MLCHAOS_OVERRIDE_TOKEN": OVERRIDE_TOKEN}
FORCE_CHAOS = {"x-mlchaos-cohort": "chaos", "x-mlchaos-token": OVERRIDE_TOKEN}
FORCE_CONTROL = {"x-mlchaos-cohort": "control", "x-mlchaos-token": OVERRIDE_TOKEN}
FORCE_NONE = {"x-mlchaos-cohort": "none", "x-mlchaos-token": OVERRIDE_TOKEN}


# --- parsing ------------------------------------------------------------------------------------------


def _parse_headers(lines: list[bytes]) -> list[tuple[str, str]]:
    out = []
    for line in lines:
        name, _, value = line.partition(b":")
        out.append((name.decode("latin-1").strip(), value.decode("latin-1").strip()))
    return out


class _Headers:
    headers: list[tuple[str, str]]

    def header(self, name: str) -> str | None:
        """The first value of a header (case-insensitive name), or None."""
        name = name.lower()
        for n, v in self.headers:
            if n.lower() == name:
                return v
        return None

    def header_names(self) -> set[str]:
        return {n.lower() for n, _ in self.headers}


@dataclass
class RawResponse(_Headers):
    status: int
    reason: str
    version: str
    headers: list[tuple[str, str]]
    body: bytes = b""
    chunked: bool = False

    def json(self) -> Any:
        return orjson.loads(self.body)

    @property
    def closes(self) -> bool:
        value = (self.header("connection") or "").lower()
        return "close" in value


@dataclass
class RawRequest(_Headers):
    method: str
    target: str
    version: str
    headers: list[tuple[str, str]]
    body: bytes = b""
    chunked: bool = False


async def _read_chunked(reader: asyncio.StreamReader) -> bytes:
    parts: list[bytes] = []
    while True:
        line = await reader.readuntil(b"\r\n")
        size = int(line.split(b";", 1)[0].strip(), 16)
        if size == 0:
            while (await reader.readuntil(b"\r\n")) != b"\r\n":
                pass  # trailers
            return b"".join(parts)
        parts.append(await reader.readexactly(size))
        assert await reader.readexactly(2) == b"\r\n", "chunk not followed by CRLF"


async def read_response(reader: asyncio.StreamReader, *, head: bool = False) -> RawResponse:
    """One response, framed the way a client must frame it (HEAD, 1xx/204/304, chunked, length, EOF)."""
    block = await reader.readuntil(b"\r\n\r\n")
    lines = block[:-4].split(b"\r\n")
    version, status, *reason = lines[0].decode("latin-1").split(" ", 2)
    resp = RawResponse(int(status), reason[0] if reason else "", version, _parse_headers(lines[1:]))
    te = (resp.header("transfer-encoding") or "").lower()
    length = resp.header("content-length")
    if head or 100 <= resp.status < 200 or resp.status in (204, 304):
        return resp
    if "chunked" in te:
        resp.chunked = True
        resp.body = await _read_chunked(reader)
    elif length is not None:
        resp.body = await reader.readexactly(int(length))
    else:
        resp.body = await reader.read()  # close-delimited
    return resp


async def read_request(reader: asyncio.StreamReader) -> RawRequest:
    block = await reader.readuntil(b"\r\n\r\n")
    lines = block[:-4].split(b"\r\n")
    method, target, version = lines[0].decode("latin-1").split(" ", 2)
    req = RawRequest(method, target, version, _parse_headers(lines[1:]))
    if "chunked" in (req.header("transfer-encoding") or "").lower():
        req.chunked = True
        req.body = await _read_chunked(reader)
    elif (length := req.header("content-length")) is not None:
        req.body = await reader.readexactly(int(length))
    return req


def http_response(status: int = 200, body: bytes = b"", headers: dict[str, str] | None = None,
                  reason: str = "OK") -> bytes:
    """A complete HTTP/1.1 response with a Content-Length."""
    head = [f"HTTP/1.1 {status} {reason}", f"content-length: {len(body)}"]
    head += [f"{k}: {v}" for k, v in (headers or {}).items()]
    return ("\r\n".join(head) + "\r\n\r\n").encode("latin-1") + body


def set_linger_reset(writer: asyncio.StreamWriter) -> None:
    """Make the next close of this socket send a TCP RST instead of a FIN."""
    sock = writer.get_extra_info("socket")
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))


# --- client -------------------------------------------------------------------------------------------


class RawClient:
    """A client socket that writes exact bytes and reads parsed responses."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer

    @classmethod
    async def connect(cls, port: int) -> RawClient:
        reader, writer = await asyncio.open_connection("127.0.0.1", port, limit=STREAM_LIMIT)
        return cls(reader, writer)

    @property
    def local_port(self) -> int:
        port: int = self.writer.get_extra_info("sockname")[1]
        return port

    async def send(self, data: bytes) -> None:
        self.writer.write(data)
        await self.writer.drain()

    async def response(self, *, head: bool = False, timeout: float = READ_TIMEOUT) -> RawResponse:
        async with asyncio.timeout(timeout):
            return await read_response(self.reader, head=head)

    async def responses(self, n: int, *, timeout: float = READ_TIMEOUT) -> list[RawResponse]:
        async with asyncio.timeout(timeout):
            return [await read_response(self.reader) for _ in range(n)]

    async def request(self, data: bytes, *, head: bool = False, timeout: float = READ_TIMEOUT) -> RawResponse:
        await self.send(data)
        return await self.response(head=head, timeout=timeout)

    async def read_to_eof(self, timeout: float = READ_TIMEOUT) -> bytes:
        """Everything until the peer closes; raises TimeoutError if it does not."""
        async with asyncio.timeout(timeout):
            return await self.reader.read()

    async def closed_by_peer(self, timeout: float = READ_TIMEOUT) -> bool:
        """True when the peer closed (FIN or RST) with no further bytes."""
        try:
            rest = await self.read_to_eof(timeout)
        except ConnectionResetError:
            return True
        return rest == b""

    async def close(self) -> None:
        self.writer.close()
        with contextlib.suppress(ConnectionError, OSError):
            await self.writer.wait_closed()

    async def __aenter__(self) -> RawClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()


def get(path: str = "/", *, host: str = "test.local", headers: dict[str, str] | None = None,
        method: str = "GET", body: bytes | None = None, version: str = "1.1") -> bytes:
    """Request bytes; adds Content-Length when a body is given."""
    lines = [f"{method} {path} HTTP/{version}"]
    if host:
        lines.append(f"Host: {host}")
    lines += [f"{k}: {v}" for k, v in (headers or {}).items()]
    if body is not None:
        lines.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + (body or b"")


# --- scripted upstream ------------------------------------------------------------------------------


class RawConn:
    """The upstream end of one connection from the proxy, handed to a test's script."""

    def __init__(self, upstream: RawUpstream, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.upstream, self.reader, self.writer = upstream, reader, writer
        self.peer_port: int = writer.get_extra_info("peername")[1]

    async def read_request(self, timeout: float = READ_TIMEOUT) -> RawRequest:
        async with asyncio.timeout(timeout):
            req = await read_request(self.reader)
        self.upstream.requests.append(req)
        self.upstream.request_seen.set()
        return req

    async def send(self, data: bytes) -> None:
        self.writer.write(data)
        await self.writer.drain()

    async def wait_closed_by_peer(self, timeout: float = READ_TIMEOUT) -> None:
        """Until the proxy closes this connection (FIN or RST)."""
        with contextlib.suppress(ConnectionError):
            async with asyncio.timeout(timeout):
                while await self.reader.read(65536):
                    pass

    def reset(self) -> None:
        set_linger_reset(self.writer)
        self.writer.transport.abort()


Script = Callable[[RawConn], Awaitable[None]]


class RawUpstream:
    """A TCP server that runs ``script`` for every connection the proxy opens, then closes it."""

    def __init__(self, script: Script) -> None:
        self.script = script
        self.peers: list[int] = []
        self.requests: list[RawRequest] = []
        self.request_seen = asyncio.Event()
        self.finished = 0
        self.errors: list[BaseException] = []
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self.port = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def start(self) -> RawUpstream:
        self._server = await asyncio.start_server(self._on_connect, "127.0.0.1", 0, limit=STREAM_LIMIT)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def _on_connect(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._writers.add(writer)
        conn = RawConn(self, reader, writer)
        self.peers.append(conn.peer_port)
        try:
            await self.script(conn)
        except (ConnectionError, asyncio.IncompleteReadError, TimeoutError):
            pass  # the proxy hung up; a test that cares checks what the script recorded
        except Exception as exc:
            self.errors.append(exc)
        finally:
            self.finished += 1
            writer.close()
            with contextlib.suppress(ConnectionError, OSError):
                await writer.wait_closed()
            self._writers.discard(writer)

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            for writer in list(self._writers):
                writer.transport.abort()
            await self._server.wait_closed()
            self._server = None


@pytest.fixture
async def raw_upstream() -> AsyncIterator[Callable[[Script], Awaitable[RawUpstream]]]:
    """Start scripted upstreams: ``up = await raw_upstream(script)``; closed after the test."""
    started: list[RawUpstream] = []

    async def start(script: Script) -> RawUpstream:
        up = await RawUpstream(script).start()
        started.append(up)
        return up

    yield start
    for up in started:
        await up.close()
    errors = [e for up in started for e in up.errors]
    if errors:
        raise errors[0]


# --- small utilities -------------------------------------------------------------------------------


def errors_total(sidecar: Sidecar, kind: str) -> float:
    """``mlchaos_proxy_errors_total{kind}``, 0 when the series does not exist yet."""
    return sidecar.metrics.registry.get_sample_value("mlchaos_proxy_errors_total", {"kind": kind}) or 0.0


def faults_total(sidecar: Sidecar, experiment: str, fault: str) -> float:
    value = sidecar.metrics.registry.get_sample_value(
        "mlchaos_faults_injected_total", {"experiment": experiment, "fault": fault})
    return value or 0.0


async def eventually(check: Callable[[], bool], timeout: float = 2.0, interval: float = 0.02) -> bool:
    """Poll ``check`` until it holds or ``timeout`` passes; returns its last value."""
    deadline = asyncio.get_running_loop().time() + timeout
    while not check():
        if asyncio.get_running_loop().time() > deadline:
            return check()
        await asyncio.sleep(interval)
    return True


def closed_port() -> int:
    """A loopback port nothing listens on (bound, then released)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
    return port


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def chaos_experiment(faults: list[dict[str, Any]], *, reveal_fault: bool = True, reveal_cohort: bool = True,
                     name: str = "e1", chaos: float = 5, control: float = 5) -> dict[str, Any]:
    """Policy keys for one experiment with ``faults`` whose cohort tests force with the override headers."""
    return {
        "experiments": [{
            "name": name, "chaos": chaos, "control": control,
            "reveal": {"fault": reveal_fault, "cohort": reveal_cohort}, "faults": faults,
            # These tests force hundreds of chaos requests through a fault on purpose: no kill switch, or
            # its seatbelt could stop a test partway (tests/killswitch covers it).
            "kill_switch": {"enabled": False},
        }],
        "cohort_override": {"enabled": True, "token_env": "MLCHAOS_OVERRIDE_TOKEN"},
    }
