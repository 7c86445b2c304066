"""One parsed HTTP/1.1 client request and its body: the request facts routing reads, and what the edge
forwards."""

from __future__ import annotations

import asyncio
from collections import deque

from ...errors import ProxyError

__all__ = ["STREAM_HIGH_WATER", "Request", "RequestBody"]

# A streamed body: reading from the client pauses while more than this waits unsent.
STREAM_HIGH_WATER = 256 * 1024


class RequestBody:
    """Body bytes as they arrive from the client, held in memory or streamed by the exchange.

    The parser feeds it synchronously; the exchange reads it. Reading is paused at the client when
    more than ``high_water`` bytes wait unread, so a slow upstream bounds what a client can pin.
    """

    __slots__ = ("chunks", "discard", "done", "error", "high_water", "size", "waiter")

    def __init__(self) -> None:
        self.chunks: deque[bytes] = deque()
        self.done = False
        self.error: ProxyError | None = None
        self.discard = False
        self.size = 0
        self.waiter: asyncio.Future[None] | None = None
        self.high_water = STREAM_HIGH_WATER

    def feed(self, data: bytes) -> bool:
        """Returns True when the reader is behind and the client should be paused."""
        self.size += len(data)
        if self.discard:
            return False
        self.chunks.append(data)
        if self.waiter is not None:
            self._wake()
        chunks = self.chunks
        if len(chunks) == 1:  # the common case: no sum over one chunk
            return len(data) > self.high_water
        return sum(map(len, chunks)) > self.high_water

    def finish(self) -> None:
        self.done = True
        if self.waiter is not None:
            self._wake()

    def fail(self, exc: ProxyError) -> None:
        self.error = exc
        self._wake()

    def _wake(self) -> None:
        w = self.waiter
        if w is not None and not w.done():
            w.set_result(None)

    def take(self) -> bytes:
        """Everything received so far, as one piece."""
        chunks = self.chunks
        if len(chunks) == 1:
            return chunks.popleft()
        data = b"".join(chunks)
        chunks.clear()
        return data

    async def wait(self) -> None:
        """Until more data, the end, or an error."""
        if self.chunks or self.done or self.error is not None:
            return
        self.waiter = asyncio.get_running_loop().create_future()
        try:
            await self.waiter
        finally:
            self.waiter = None


class Request:
    __slots__ = (
        "_path",
        "_query",
        "body",
        "chunked",
        "client_ip",
        "cohort_header",
        "conn_tokens",
        "content_length",
        "continued",
        "error",
        "expect_continue",
        "experiment_header",
        "header_bytes",
        "headers",
        "host",
        "keep_alive",
        "lines",
        "method",
        "ready",
        "shadow",
        "streamed",
        "token_header",
        "url",
        "version",
        "xff",
        "xfp",
    )

    def __init__(self, client_ip: bytes) -> None:
        self.method = ""
        self.url = b""
        self.version = "1.1"
        self.keep_alive = True
        # (lower-cased name, value) for lookups, and the raw lines that go upstream as they came.
        self.headers: list[tuple[bytes, bytes]] = []
        self.lines: list[bytes] = []
        self.host: bytes | None = None
        self.xff: bytes | None = None
        self.xfp: bytes | None = None
        self.content_length: int | None = None
        self.chunked = False
        self.expect_continue = False
        self.conn_tokens: bytes | None = None
        self.cohort_header: bytes | None = None
        self.token_header: bytes | None = None
        self.experiment_header: bytes | None = None
        # x-mlchaos-shadow: the unchanged twin an upstream sidecar sends of a chaos request. No experiment takes
        # it (routing.py): a dependency's sidecar holding an experiment of the same name would fault it again.
        self.shadow = False
        self.body = RequestBody()
        self.error: ProxyError | None = None
        self.client_ip = client_ip
        self._path: str | None = None
        self._query: bytes | None = None
        self.header_bytes = 0
        # Streamed: the body goes upstream as it arrives (chunked, or over the inspection limit);
        # otherwise it is held until complete. Ready: the exchange may start.
        self.streamed = False
        self.ready = False
        self.continued = False

    def header(self, name: bytes) -> bytes | None:
        for n, v in self.headers:
            if n == name:
                return v
        return None

    def held_body(self) -> bytes | None:
        """The complete body when it is held (not streamed), without consuming it: an entity sticky key reads
        it before the exchange starts. Its chunks become one, so the join is paid once."""
        body = self.body
        if self.streamed or not body.done or body.discard:
            return None
        chunks = body.chunks
        if len(chunks) == 1:
            return chunks[0]
        data = b"".join(chunks)
        chunks.clear()
        if data:
            chunks.append(data)
        return data

    @property
    def target(self) -> str:
        return self.url.decode("latin-1")

    @property
    def path(self) -> str:
        if self._path is None:
            path, _, query = self.url.partition(b"?")
            self._path, self._query = path.decode("latin-1"), query
        return self._path

    @property
    def query(self) -> bytes:
        if self._query is None:
            _ = self.path
        assert self._query is not None
        return self._query
