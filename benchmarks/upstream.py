#!/usr/bin/env python3
"""A small loopback "model" for fuzz.py and soak.py: every complete HTTP/1.1 request gets one fixed JSON answer.

Needs no nginx: asyncio with httptools (a dependency of mlchaos), uvloop when installed. Keep-alive and
pipelined requests are answered in order; a request it cannot parse closes the connection (the sidecar in
front sees an upstream failure, which is what a real server would give it). Listens on 127.0.0.1 only.

    python benchmarks/upstream.py --port 8080
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys
from typing import Any, cast

import httptools

HOST = "127.0.0.1"
# KServe V1 predictions, as run.py's nginx model answers (kept in step with run.RESPONSE).
RESPONSE = b'{"predictions":[[0.12,0.88],[0.91,0.09]],"model_name":"bench","model_version":"1"}'
ANSWER = (b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: %d\r\n\r\n" % len(RESPONSE)
          + RESPONSE)
CLOSE_ANSWER = ANSWER.replace(b"\r\n\r\n", b"\r\nconnection: close\r\n\r\n", 1)


class Model(asyncio.Protocol):
    """One client connection: httptools parses, each finished message is answered at once."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.parser: Any = httptools.HttpRequestParser(self)

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's transports do not subclass asyncio's

    def data_received(self, data: bytes) -> None:
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            self._close()
        except httptools.HttpParserError:
            self._close()

    def on_message_complete(self) -> None:
        if self.transport is None or self.transport.is_closing():
            return
        if self.parser.should_keep_alive():
            self.transport.write(ANSWER)
        else:
            self.transport.write(CLOSE_ANSWER)
            self.transport.close()

    def _close(self) -> None:
        if self.transport is not None:
            self.transport.close()


async def serve(port: int) -> None:
    loop = asyncio.get_running_loop()
    server = await loop.create_server(Model, HOST, port, backlog=1024, reuse_address=True)
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    async with server:
        await stop.wait()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--port", type=int, required=True)
    args = ap.parse_args()
    try:
        import uvloop
    except ImportError:
        asyncio.run(serve(args.port))
    else:
        uvloop.run(serve(args.port))
    return 0


if __name__ == "__main__":
    sys.exit(main())
