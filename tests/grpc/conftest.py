"""An in-process gRPC upstream (grpc.aio generic handlers, raw bytes) and a sidecar with a gRPC listener."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest

from proxy.app import Sidecar
from tests.conftest import policy_from
from tests.dataplane.conftest import OVERRIDE_ENV

# grpcio is a test dependency; test_wire.py needs none of it, the modules that do skip without it.
try:
    import grpc
    from grpc import aio
except ImportError:  # pragma: no cover - the test extra installs it
    grpc = aio = None

INIT = (("x-init", "i"), ("x-init-bin", b"\x00\xff"))
TRAIL = (("x-trail", "t"), ("x-trail-bin", b"\x01\x02"))


class Seen:
    """What the upstream saw of the last call."""

    def __init__(self) -> None:
        self.metadata: list[tuple[str, str | bytes]] = []
        self.time_remaining: float | None = None
        self.requests: list[bytes] = []
        self.calls = 0
        self.ended = False
        self.cancelled = False


class UpstreamServer:
    def __init__(self, server: aio.Server, port: int, seen: Seen) -> None:
        self.server, self.port, self.seen = server, port, seen
        self.address = f"127.0.0.1:{port}"


def _md(context: Any) -> list[tuple[str, str | bytes]]:
    return [(m.key, m.value) for m in context.invocation_metadata() if m.key != "user-agent"]


def make_handler(seen: Seen, infer: Callable[[bytes], bytes] | None) -> Any:
    async def sleep_if_asked(md: dict[str, Any]) -> None:
        """x-sleep: SECONDS holds the answer; a cancellation meanwhile is seen."""
        if "x-sleep" in md:
            try:
                await asyncio.sleep(float(md["x-sleep"]))
            except asyncio.CancelledError:
                seen.cancelled = True
                raise

    async def unary(request: bytes, context: Any) -> bytes:
        seen.calls += 1
        seen.metadata, seen.time_remaining, seen.requests = _md(context), context.time_remaining(), [request]
        md = dict(seen.metadata)
        await sleep_if_asked(md)
        await context.send_initial_metadata(INIT)
        if "x-fail" in md:
            await context.abort(grpc.StatusCode[str(md["x-fail"])], "upstream says no", TRAIL)
        context.set_trailing_metadata(TRAIL)
        return request[::-1]

    async def model_infer(request: bytes, context: Any) -> bytes:
        seen.calls += 1
        seen.metadata, seen.time_remaining, seen.requests = _md(context), context.time_remaining(), [request]
        await sleep_if_asked(dict(seen.metadata))
        return infer(request) if infer is not None else request[::-1]

    async def server_stream(request: bytes, context: Any) -> AsyncIterator[bytes]:
        seen.calls += 1
        seen.metadata, seen.requests = _md(context), [request]
        await context.send_initial_metadata(INIT)
        for i in range(3):
            yield request + b"%d" % i
        context.set_trailing_metadata(TRAIL)

    async def bidi(requests: AsyncIterator[bytes], context: Any) -> AsyncIterator[bytes]:
        seen.calls += 1
        seen.metadata, seen.time_remaining, seen.requests = _md(context), context.time_remaining(), []
        await context.send_initial_metadata(INIT)
        try:
            async for request in requests:
                seen.requests.append(request)
                yield request.upper()
        finally:
            seen.ended = True
        context.set_trailing_metadata(TRAIL)
        context.set_code(grpc.StatusCode.OK)

    async def bidi_bare(requests: AsyncIterator[bytes], context: Any) -> AsyncIterator[bytes]:
        async for request in requests:  # no initial metadata of its own: the headers go with the first answer
            yield request[::-1]

    handlers = {
        "/test.Echo/BidiBare": grpc.stream_stream_rpc_method_handler(bidi_bare),
        "/test.Echo/Unary": grpc.unary_unary_rpc_method_handler(unary),
        "/test.Echo/ServerStream": grpc.unary_stream_rpc_method_handler(server_stream),
        "/test.Echo/Bidi": grpc.stream_stream_rpc_method_handler(bidi),
        "/inference.GRPCInferenceService/ModelInfer": grpc.unary_unary_rpc_method_handler(model_infer),
    }

    class Generic(grpc.GenericRpcHandler):
        def service(self, details: Any) -> Any:
            return handlers.get(details.method)

    return Generic()


@pytest.fixture
async def start_grpc_upstream() -> AsyncIterator[Callable[..., Awaitable[UpstreamServer]]]:
    servers: list[aio.Server] = []

    async def start(infer: Callable[[bytes], bytes] | None = None) -> UpstreamServer:
        seen = Seen()
        server = aio.server()
        server.add_generic_rpc_handlers((make_handler(seen, infer),))
        port = server.add_insecure_port("127.0.0.1:0")
        await server.start()
        servers.append(server)
        return UpstreamServer(server, port, seen)

    yield start
    for server in servers:
        await server.stop(0)


@pytest.fixture
async def grpc_upstream(start_grpc_upstream: Callable[..., Awaitable[UpstreamServer]]) -> UpstreamServer:
    return await start_grpc_upstream()


@pytest.fixture
async def grpc_sidecar(start_sidecar: Callable[..., Awaitable[Sidecar]]) -> Callable[..., Awaitable[Sidecar]]:
    """``await grpc_sidecar(upstream, extra)``: a sidecar whose gRPC listener forwards to ``upstream``."""

    async def start(up: UpstreamServer, extra: dict[str, Any] | str | None = None, **top: Any) -> Sidecar:
        policy = policy_from("http://127.0.0.1:1", extra,
                             grpc={"listen": "127.0.0.1:0", "upstream": up.address}, **top)
        return await start_sidecar(policy, env=OVERRIDE_ENV)

    return start


@pytest.fixture
async def channel_to() -> AsyncIterator[Callable[[int], aio.Channel]]:
    channels: list[aio.Channel] = []

    def open_channel(port: int) -> aio.Channel:
        ch = aio.insecure_channel(f"127.0.0.1:{port}")
        channels.append(ch)
        return ch

    yield open_channel
    for ch in channels:
        await ch.close()
