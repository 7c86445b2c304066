"""One gRPC call's request facts: what routing, the sticky key and the faults read of it.

A gRPC call is an HTTP/2 POST to ``/package.Service/Method`` whose headers are its metadata; the facts say
exactly that, so the router's ``match: {method, path, headers}`` and ``sticky_key: metadata:NAME`` (an alias of
``header:NAME``) work on calls as they do on HTTP/1.1 requests. Metadata keys are lower-case on the wire; values
are kept as they came (a binary ``-bin`` one in its base64), and one a fault sets may be bytes.
"""

from __future__ import annotations

import base64
from collections.abc import Callable, Iterable

__all__ = ["HOP_METADATA", "GrpcCall", "metadata_bytes", "peer_ip"]

# Headers that are the transport's, not the call's metadata: the edge sets them again on each hop. (The
# user-agent and grpc-encoding go on as they came: the messages are relayed as they are, compressed or not.)
HOP_METADATA = frozenset({"content-type", "te", "host", "connection", "keep-alive", "upgrade",
                          "transfer-encoding", "proxy-connection", "grpc-timeout"})


def metadata_bytes(value: str | bytes) -> bytes:
    return value if isinstance(value, bytes) else value.encode("latin-1")


def peer_ip(peer: str) -> bytes:
    """The client's IP of grpc's peer string: ``ipv4:127.0.0.1:5000``, ``ipv6:[::1]:5000``."""
    kind, _, rest = peer.partition(":")
    if kind == "ipv6" and rest.startswith("["):
        return rest[1:rest.find("]")].encode("latin-1")
    if kind == "ipv4":
        return rest.rpartition(":")[0].encode("latin-1")
    return b""


class GrpcCall:
    """The request facts of one call (``routing.RequestFacts``), and the message of a unary request."""

    __slots__ = ("_client_ip", "body", "cohort_header", "experiment_header", "metadata", "method", "path", "peer",
                 "shadow", "token_header")

    def __init__(self, path: str, invocation: Iterable[tuple[str, str | bytes]], peer: Callable[[], str],
                 body: bytes | None) -> None:
        # Every gRPC call is an HTTP/2 POST: `match: {method: POST}` matches them all.
        self.method = "POST"
        self.path = path
        # grpc's peer string (``ipv4:127.0.0.1:5000``), asked for only when a rule or a sticky key reads the IP:
        # grpc core formats it per call (about 4 us, a tenth of what the edge's own code costs per call).
        self.peer = peer
        self._client_ip: bytes | None = None
        # None for a streaming call: its messages are not held.
        self.body = body
        self.cohort_header: bytes | None = None
        self.token_header: bytes | None = None
        self.experiment_header: bytes | None = None
        # The shadow twin is HTTP-only (observe/shadow.py): no gRPC call is one.
        self.shadow = False
        # The client's metadata without the transport's own; its x-mlchaos- entries read on the way.
        metadata: list[tuple[str, str | bytes]] = []
        for key, value in invocation:
            if key in HOP_METADATA or key.startswith(":"):
                continue
            metadata.append((key, value))
            if key.startswith("x-mlchaos-"):
                if key == "x-mlchaos-cohort":
                    self.cohort_header = metadata_bytes(value)
                elif key == "x-mlchaos-token":
                    self.token_header = metadata_bytes(value)
                elif key == "x-mlchaos-experiment":
                    self.experiment_header = metadata_bytes(value)
        self.metadata = metadata

    @property
    def client_ip(self) -> bytes:
        ip = self._client_ip
        if ip is None:
            ip = self._client_ip = peer_ip(self.peer())
        return ip

    @property
    def query(self) -> bytes:
        return b""  # a gRPC path has no query

    def header(self, name: bytes) -> bytes | None:
        """A metadata value; a binary (-bin) one decoded from its base64 on the wire."""
        key = name.decode("latin-1").lower()
        for k, v in self.metadata:
            if k == key:
                if isinstance(v, str) and k.endswith("-bin"):
                    return base64.b64decode(v + "=" * (-len(v) % 4))
                return metadata_bytes(v)
        return None

    def held_body(self) -> bytes | None:
        return self.body
