"""One gRPC call's request facts: what routing, the sticky key and the faults read of it.

A gRPC call is an HTTP/2 POST to ``/package.Service/Method`` whose headers are its metadata; the facts say
exactly that, so the router's ``match: {method, path, headers}`` and ``sticky_key: metadata:NAME`` (an alias of
``header:NAME``) work on calls as they do on HTTP/1.1 requests. Metadata keys are lower-case on the wire; a
binary (``-bin``) value is bytes, a text one is ASCII.
"""

from __future__ import annotations

__all__ = ["GrpcCall", "metadata_bytes"]


def metadata_bytes(value: str | bytes) -> bytes:
    return value if isinstance(value, bytes) else value.encode("latin-1")


class GrpcCall:
    """The request facts of one call (``routing.RequestFacts``), and the message of a unary request."""

    __slots__ = ("body", "client_ip", "cohort_header", "experiment_header", "metadata", "method", "path",
                 "token_header")

    def __init__(self, path: str, metadata: list[tuple[str, str | bytes]], client_ip: bytes,
                 body: bytes | None) -> None:
        # Every gRPC call is an HTTP/2 POST: `match: {method: POST}` matches them all.
        self.method = "POST"
        self.path = path
        self.metadata = metadata
        self.client_ip = client_ip
        # None for a streaming call: its messages are not held.
        self.body = body
        self.cohort_header: bytes | None = None
        self.token_header: bytes | None = None
        self.experiment_header: bytes | None = None
        for key, value in metadata:
            if key.startswith("x-mlchaos-"):
                if key == "x-mlchaos-cohort":
                    self.cohort_header = metadata_bytes(value)
                elif key == "x-mlchaos-token":
                    self.token_header = metadata_bytes(value)
                elif key == "x-mlchaos-experiment":
                    self.experiment_header = metadata_bytes(value)

    @property
    def query(self) -> bytes:
        return b""  # a gRPC path has no query

    def header(self, name: bytes) -> bytes | None:
        key = name.decode("latin-1").lower()
        for k, v in self.metadata:
            if k == key:
                return metadata_bytes(v)
        return None

    def held_body(self) -> bytes | None:
        return self.body
