"""The HTTP/1.1 edge: ``connection`` (the client socket and llhttp), ``exchange`` (one request upstream and its
answer back, on the protocol-neutral ``proxy.exchange.Exchange``), ``upstream`` (the keep-alive pool),
``request`` and ``framing``."""

from .connection import ClientConnection, client_protocol

__all__ = ["ClientConnection", "client_protocol"]
