"""The gRPC listener: grpcio's ``grpc.aio`` server with one generic handler that forwards every method as raw
bytes (no (de)serializer) to a ``grpc.aio`` channel per upstream, through a ``GrpcExchange`` per call.

The unary methods of the Open Inference Protocol (KServe's and Triton's ``inference.GRPCInferenceService``)
are served as unary calls, the cheapest path in grpcio; every other method as a bidirectional stream, which
carries unary, server-streaming and client-streaming calls alike (on the wire a call is the same HTTP/2
stream whatever its kind), so a method the proxy has never heard of still passes. Request metadata go
upstream without the transport's own, with the call's remaining deadline; the upstream's initial metadata,
messages, trailers, status code and details come back as they were. A failure of the upstream itself
(unreachable, reset, out of time) is answered UNAVAILABLE or DEADLINE_EXCEEDED with the trailer
``x-mlchaos-error: upstream``: grpc core says whether a status came from the peer or was made locally.

``drop`` closes (FIN) or resets (RST) the client's TCP connection: grpcio gives a server no way to reset one
stream, so the socket under the call is found by its address (``/proc/self/fd``) and shut down; every call
multiplexed on that connection ends with it, as when a real connection dies.
"""

from __future__ import annotations

import asyncio
import os
import socket
import struct
from collections.abc import AsyncIterator, Coroutine
from functools import partial
from typing import TYPE_CHECKING, Any

import grpc
from grpc import aio

from ... import _tasks
from ...cohort import COHORTS
from ...faults.base import Cut, Drop, Reply
from ...logs import event
from .call import HOP_METADATA, GrpcCall
from .exchange import GrpcExchange, Metadata, reply_code
from .status import OK, UNAVAILABLE

if TYPE_CHECKING:
    from ...dataplane.state import DataPlane
    from ...policy.model import GrpcSettings, Policy, Upstream

__all__ = ["GrpcEdge"]

_STATUS: dict[int, grpc.StatusCode] = {sc.value[0]: sc for sc in grpc.StatusCode}
# Served as unary calls; any other method is relayed as a bidirectional stream (see the module's docstring).
UNARY_METHODS = frozenset(f"/inference.GRPCInferenceService/{m}" for m in (
    "ServerLive", "ServerReady", "ModelReady", "ServerMetadata", "ModelMetadata", "ModelInfer",
    "RepositoryIndex", "RepositoryModelLoad", "RepositoryModelUnload", "ModelConfig", "ModelStatistics",
    "SystemSharedMemoryStatus", "SystemSharedMemoryRegister", "SystemSharedMemoryUnregister",
    "CudaSharedMemoryStatus", "CudaSharedMemoryRegister", "CudaSharedMemoryUnregister", "TraceSetting",
    "LogSettings"))
UPSTREAM_ERROR: Metadata = [("x-mlchaos-error", "upstream")]
# Method handlers are cached by method path; the cache stops growing here (a client may invent paths).
_MAX_CACHED_METHODS = 1024


def _peer_address(peer: str) -> tuple[str, int] | None:
    kind, _, rest = peer.partition(":")
    host, _, port = rest.rpartition(":")
    if kind not in ("ipv4", "ipv6") or not port.isdigit():
        return None
    return host.strip("[]"), int(port)


def drop_connection(peer: str, local_port: int, reset: bool) -> bool:
    """Shut down the TCP connection from ``peer`` to ``local_port`` (FIN, or RST with ``reset``)."""
    want = _peer_address(peer)
    if want is None:
        return False
    for name in os.listdir("/proc/self/fd"):
        try:
            if not os.readlink(f"/proc/self/fd/{name}").startswith("socket:"):
                continue
            sock = socket.socket(fileno=os.dup(int(name)))
        except OSError:
            continue
        with sock:
            try:
                if sock.family not in (socket.AF_INET, socket.AF_INET6) or sock.type != socket.SOCK_STREAM \
                        or sock.getsockname()[1] != local_port:
                    continue
                host, port = sock.getpeername()[:2]
                # grpc listens dual-stack: an IPv4 peer shows as ::ffff:a.b.c.d on the socket
                if (host.removeprefix("::ffff:"), port) != want:
                    continue
                if reset:  # linger 0: grpc's own close of the socket sends RST, not FIN
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                sock.shutdown(socket.SHUT_RDWR)
                return True
            except OSError:
                continue
    return False


# grpc core's own words for a transport that failed (connect, reset, GOAWAY); a status an upstream sent is
# relayed as it is, whatever its code.
_TRANSPORT_WORDS = ("failed to connect", "socket closed", "connection reset", "goaway", "broken pipe",
                    "transport closed", "stream removed", "connection refused", "end of tcp stream")


def _local_failure(code: grpc.StatusCode, details: str, answered: bool, elapsed: float,
                   timeout: float | None) -> str | None:
    """The error kind when grpc core made the status up itself (no metadata came from the upstream): the
    deadline the proxy passed on ran out, or the transport failed; None for a status the upstream sent."""
    if answered:
        return None
    if code == grpc.StatusCode.DEADLINE_EXCEEDED and timeout is not None and elapsed >= timeout - 0.005:
        return "upstream_timeout"
    if code == grpc.StatusCode.UNAVAILABLE or code == grpc.StatusCode.INTERNAL:
        lowered = details.lower()
        if any(word in lowered for word in _TRANSPORT_WORDS):
            return "upstream_connect" if "connect" in lowered else "upstream_reset"
    return None


# grpc.aio's client call replaces the status it has with this one when a request write fails because the call
# has ended (grpc/aio/_call.py _write: set_internal_error), whatever the peer's status was.
_CORE_INTERNAL = "Internal error from Core"


def _settled(coro: Coroutine[Any, Any, Any]) -> Any:
    """The value of a grpc.aio call's status coroutine (code(), details(), ...) on a finished call: it returns
    at once (the status is held), so it is run here without a loop."""
    try:
        coro.send(None)
    except StopIteration as stop:
        return stop.value
    coro.close()
    raise RuntimeError("the call's status is not settled")


class _FirstStatus:
    """A bidirectional upstream call's first status, kept for when grpc.aio overwrites it.

    The sidecar relays a method it does not know as a bidirectional call and writes the client's request to
    it. When the upstream ends the call before reading it (UNIMPLEMENTED for a method it has not got), that
    write fails and grpc.aio sets the call's status to INTERNAL "Internal error from Core" over the status the
    upstream sent (8 of 40 calls against MLServer, grpcio 1.85). The done callback runs synchronously at the
    first status the call gets, the upstream's when it came first; the relay answers with that one."""

    __slots__ = ("error",)

    def __init__(self) -> None:
        self.error: aio.AioRpcError | None = None

    def __call__(self, call: Any) -> None:
        try:
            code = _settled(call.code())
            if code != grpc.StatusCode.OK:
                self.error = aio.AioRpcError(code, _settled(call.initial_metadata()),
                                             _settled(call.trailing_metadata()), _settled(call.details()),
                                             _settled(call.debug_error_string()))
        except RuntimeError:  # not settled: keep nothing, the relay reads the status itself
            self.error = None

    def instead_of(self, err: aio.AioRpcError) -> aio.AioRpcError:
        """The upstream's own status when grpc.aio replaced it by its write-failure INTERNAL; else ``err``."""
        first = self.error
        if err.code() == grpc.StatusCode.INTERNAL and err.details() == _CORE_INTERNAL and first is not None:
            return first
        return err


class _Handler(grpc.GenericRpcHandler):
    def __init__(self, edge: GrpcEdge) -> None:
        self.edge = edge
        self.cache: dict[str, grpc.RpcMethodHandler] = {}

    def service(self, handler_call_details: grpc.HandlerCallDetails) -> grpc.RpcMethodHandler:
        method: str = handler_call_details.method
        handler = self.cache.get(method)
        if handler is None:
            # partial, not a lambda: grpc.aio runs a behaviour as a coroutine only when inspect says it is one.
            if method in UNARY_METHODS:
                handler = grpc.unary_unary_rpc_method_handler(partial(self.edge.unary, method))
            else:
                handler = grpc.stream_stream_rpc_method_handler(partial(self.edge.stream, method))
            if len(self.cache) < _MAX_CACHED_METHODS:
                self.cache[method] = handler
        return handler


class GrpcEdge:
    """The gRPC listener of one sidecar and its upstream channels."""

    def __init__(self, plane: DataPlane, settings: GrpcSettings, max_message_bytes: int) -> None:
        self.plane = plane
        self.settings = settings
        self.max_message_bytes = max_message_bytes
        self.channels: dict[tuple[str, int], aio.Channel] = {}
        self.stubs: dict[tuple[str | None, str], Any] = {}
        self.primary: Upstream = settings.upstream
        self.upstreams: dict[str, Upstream] = {}
        self.server: aio.Server | None = None
        self.port = 0

    def _options(self) -> list[tuple[str, Any]]:
        size = self.max_message_bytes
        return [("grpc.max_receive_message_length", size), ("grpc.max_send_message_length", size)]

    async def start(self) -> int:
        settings = self.settings
        # Without so_reuseport=0 a second server binds a port already in use, and the kernel splits calls.
        server = aio.server(options=[*self._options(), ("grpc.so_reuseport", 0)])
        server.add_generic_rpc_handlers((_Handler(self),))
        address = f"[{settings.listen.host}]:{settings.listen.port}" if ":" in settings.listen.host \
            else f"{settings.listen.host}:{settings.listen.port}"
        tls = settings.tls
        if tls is None:
            port = server.add_insecure_port(address)
        else:
            with open(tls.key, "rb") as key, open(tls.cert, "rb") as cert:
                creds = grpc.ssl_server_credentials([(key.read(), cert.read())])
            port = server.add_secure_port(address, creds)
        await server.start()
        self.server, self.port = server, port
        event("grpc_start", listen=f"{settings.listen.host}:{port}", upstream=settings.upstream.authority,
              tls=tls is not None)
        return port

    def apply_policy(self, policy: Policy) -> None:
        """The policy's upstreams (a channel each, made on first use; an unchanged one keeps its channel)."""
        if policy.grpc is not None:
            self.primary = policy.grpc.upstream
        self.upstreams = dict(policy.upstreams)
        wanted = {(u.host, u.port) for u in (self.primary, *self.upstreams.values())}
        self.stubs.clear()  # an upstream name may now point elsewhere
        for key in [k for k in self.channels if k not in wanted]:
            # Calls in flight on a channel the policy no longer names get a few seconds to finish.
            _ = _tasks.spawn(self.channels.pop(key).close(grace=5.0))

    def channel(self, name: str | None) -> aio.Channel:
        up = self.upstreams.get(name, self.primary) if name else self.primary
        key = (up.host, up.port)
        channel = self.channels.get(key)
        if channel is None:
            target = f"[{up.host}]:{up.port}" if ":" in up.host else f"{up.host}:{up.port}"
            channel = self.channels[key] = aio.insecure_channel(target, options=self._options())
        return channel

    def _unary_stub(self, name: str | None, path: str) -> Any:
        """The unary multi-callable of ``path`` on the upstream's channel, made once per method."""
        key = (name, path)
        stub = self.stubs.get(key)
        if stub is None:
            # A method of the inference service is registered with grpc core (as generated stubs do): its calls
            # skip core's per-call method lookup. Only those: a registration lasts as long as the channel.
            stub = self.channel(name).unary_unary(path, _registered_method=path in UNARY_METHODS)
            if len(self.stubs) < _MAX_CACHED_METHODS:
                self.stubs[key] = stub
        return stub

    async def stop(self, grace: float) -> None:
        if self.server is not None:
            await self.server.stop(grace)
            self.server = None
        for channel in self.channels.values():
            await channel.close()
        self.channels.clear()

    # -- one call
    def _exchange(self, method: str, context: aio.ServicerContext, body: bytes | None) -> GrpcExchange:
        plane = self.plane
        call = GrpcCall(method, context.invocation_metadata() or (), context.peer, body)
        assignment = plane.experiments.router.assign(call)
        return GrpcExchange(plane, call, assignment, plane.loop)

    async def unary(self, method: str, request: bytes, context: aio.ServicerContext) -> bytes:
        ex = self._exchange(method, context, request)
        upcall: Any = None
        try:
            ex.start()
            if not ex.decided:
                await ex.decision()
            if ex.outcome is not None:
                return await self._short_circuit(ex, context)
            call = ex.call
            assert call.body is not None
            # The client's remaining time; without one, timeouts.response bounds the wait as it does for HTTP.
            timeout = context.time_remaining()
            if timeout is None:
                timeout = self.plane.timeouts.response
            # No metadata: None, which grpc.aio takes as is (an empty list is converted first).
            upcall = self._unary_stub(ex.upstream_name, call.path)(call.body, metadata=call.metadata or None,
                                                                   timeout=timeout)
            t_up = ex.loop.time()
            try:
                response: bytes = await upcall
            except aio.AioRpcError as err:
                await self._upstream_status(ex, context, err, t_up, timeout, False)
                return b""
            initial = list(await upcall.initial_metadata() or ())
            if ex.st is not None:
                self._observe_upstream(ex, t_up)
            if ex.wants_response():
                answer = ex.respond(initial, response)
                if isinstance(answer, Cut):
                    ex.done(-1)
                    await self._drop(context, Drop(reset=answer.reset))
                    return b""
                if isinstance(answer, Reply):  # the status fault: the model answered, the client gets an error
                    code = reply_code(answer)
                    ex.done(code)
                    message = dict(answer.headers).get("grpc-message") or f"mlchaos: status {answer.status}"
                    await context.abort(_STATUS[code], message, tuple(self._reveal(ex)))
                    return b""  # not reached: abort raises
                response = answer
                if ex.delay > 0.0:
                    await asyncio.sleep(ex.delay)
            reveal = self._reveal(ex) if ex.st is not None else None
            if initial or reveal:  # else grpc sends the (empty) headers with the answer: one call fewer
                await context.send_initial_metadata(initial + reveal if reveal else initial)
            trailing = await upcall.trailing_metadata()
            if trailing:
                context.set_trailing_metadata(tuple(trailing))
            details = await upcall.details()
            if details:
                context.set_details(details)
            if ex.tee is not None:
                self._tee(ex, response)
            ex.done(OK)
            return response
        except asyncio.CancelledError:
            # The client went (cancelled, or its deadline passed): so does the call upstream.
            if upcall is not None:
                upcall.cancel()
            ex.abandon()
            raise

    async def stream(self, method: str, requests: AsyncIterator[bytes],
                     context: aio.ServicerContext) -> None:
        ex = self._exchange(method, context, None)
        upcall: Any = None
        try:
            ex.start()
            if not ex.decided:
                await ex.decision()
            if ex.outcome is not None:
                message = await self._short_circuit(ex, context)
                if message:
                    await context.write(message)
                return
            call = ex.call
            timeout = context.time_remaining()
            upcall = self.channel(ex.upstream_name).stream_stream(call.path)(
                requests, metadata=call.metadata, timeout=timeout)
            first = _FirstStatus()
            upcall.add_done_callback(first)
            t_up = ex.loop.time()
            headers_sent = False
            try:
                initial = list(await upcall.initial_metadata() or ())
                self._observe_upstream(ex, t_up)
                # initial_metadata() returns at the headers, or at the end of a trailers-only answer (no headers)
                if initial or not upcall.done():
                    await context.send_initial_metadata(initial + self._reveal(ex))
                    headers_sent = True
                async for message in upcall:
                    await context.write(message)
            except aio.AioRpcError as err:
                await self._upstream_status(ex, context, first.instead_of(err), t_up, timeout, headers_sent)
                return
            trailing = await upcall.trailing_metadata()
            if trailing:
                context.set_trailing_metadata(tuple(trailing))
            code = await upcall.code()
            details = await upcall.details()
            if code != grpc.StatusCode.OK:
                # Statuses are raised by the iteration above; this is only a guard against a quiet one.
                ex.done(code.value[0])
                await context.abort(code, details or "", tuple(trailing or ()))
            if details:
                context.set_details(details)
            ex.done(OK)
        except asyncio.CancelledError:
            # The client went: so does the call upstream. (grpc ends the client's request stream before it
            # cancels the handler, so the upstream may first see its requests end, then the reset.)
            if upcall is not None:
                upcall.cancel()
            ex.abandon()
            raise

    # -- pieces of a call
    def _observe_upstream(self, ex: GrpcExchange, t_up: float) -> None:
        st = ex.st
        if st is not None:
            st.cohort_metrics[ex.cohort].upstream.observe(ex.loop.time() - t_up)

    def _reveal(self, ex: GrpcExchange) -> Metadata:
        st = ex.st
        if st is None:
            return []
        reveal = st.spec.reveal
        out: Metadata = []
        if reveal.cohort:
            out.append(("x-mlchaos-cohort", COHORTS[ex.cohort]))
        if reveal.fault and ex.applied:
            out.append(("x-mlchaos-fault", ",".join(ex.applied)))
        return out

    def _tee(self, ex: GrpcExchange, response: bytes) -> None:
        """Hand the answer to the experiment's prediction observer (chaos and control only)."""
        st = ex.st
        if ex.tee is not None and st is not None and st.observer is not None \
                and len(response) <= self.plane.limits.inspect_body_bytes:
            st.observer.submit(ex.cohort, ex.call.path, [response])
        ex.tee = None

    async def _upstream_status(self, ex: GrpcExchange, context: aio.ServicerContext, err: aio.AioRpcError,
                               t_up: float, timeout: float | None, headers_sent: bool) -> None:
        """Relay the upstream's error status, or answer the upstream's own failure as ours."""
        code = err.code()
        details = err.details() or ""
        trailing: Metadata = list(err.trailing_metadata() or ())
        initial = list(err.initial_metadata() or ())
        kind = _local_failure(code, details, bool(initial or trailing), ex.loop.time() - t_up, timeout)
        if kind is not None:
            self.plane.metrics.errors[kind].value += 1
            if kind != "upstream_timeout":
                code = _STATUS[UNAVAILABLE]
            trailing = UPSTREAM_ERROR
            details = f"mlchaos: upstream {details}"
        elif initial and not headers_sent:
            await context.send_initial_metadata(initial)
        ex.done(code.value[0])
        await context.abort(code, details, tuple(trailing))

    async def _short_circuit(self, ex: GrpcExchange, context: aio.ServicerContext) -> bytes:
        """A fault answered or dropped the call; the message of an OK answer is returned (a unary call's)."""
        outcome = ex.outcome
        if isinstance(outcome, Drop):
            await self._drop(context, outcome)
            return b""
        assert isinstance(outcome, Reply)
        return await self._reply(ex, context, outcome)

    async def _reply(self, ex: GrpcExchange, context: aio.ServicerContext, reply: Reply) -> bytes:
        """A fault's answer with the code the exchange chose (``GrpcExchange.local_reply``); its body is the
        status details (the message of an OK answer), its other headers become trailers."""
        details = reply.body.decode("utf-8", "replace")
        trailing: Metadata = []
        for name, value in reply.headers:
            lname = name.lower()
            if lname == "grpc-message":
                details = value
            elif lname != "grpc-status" and lname not in HOP_METADATA:
                trailing.append((lname, value))
        trailing.extend(self._reveal(ex))
        if ex.grpc_code == OK:
            context.set_trailing_metadata(tuple(trailing))
            return reply.body
        await context.abort(_STATUS[ex.grpc_code], details, tuple(trailing))
        return b""  # not reached: abort raises

    async def _drop(self, context: aio.ServicerContext, drop: Drop) -> None:
        if not drop_connection(context.peer(), self.port, drop.reset):
            # Not a TCP peer (a unix socket): the nearest a grpc server can do is UNAVAILABLE.
            await context.abort(grpc.StatusCode.UNAVAILABLE, "mlchaos: dropped", (("x-mlchaos-error", "dropped"),))
        # The connection is gone and nothing more reaches the client: end the handler without an answer.
        await context.abort(grpc.StatusCode.UNAVAILABLE, "mlchaos: dropped")
