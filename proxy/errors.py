"""Proxy errors and the one table that maps them to statuses, metric kinds and response bytes.

Faults are not errors: an injected 503 is a ``Reply``. These are the proxy's own failures and the
upstream failures it translates; their responses carry ``x-mlchaos-error: 1`` so a client or a
dashboard can tell them apart from the model's errors and from injected faults.
"""

from __future__ import annotations

from http import HTTPStatus

import orjson

__all__ = [
    "BadGateway", "BadRequest", "BodyTooLarge", "HeadersTooLarge", "ProxyError", "RequestHeadTimeout",
    "UpstreamConnectError", "UpstreamResetError", "UpstreamTimeout", "error_response",
]


class ProxyError(Exception):
    status: int = 500
    # Label of mlchaos_proxy_errors_total; a fixed vocabulary, never from the request.
    kind: str = "internal"

    def __init__(self, message: str = "") -> None:
        super().__init__(message or HTTPStatus(self.status).phrase)
        self.message = message or HTTPStatus(self.status).phrase


class BadRequest(ProxyError):
    status, kind = 400, "malformed_request"


class BodyTooLarge(ProxyError):
    status, kind = 413, "body_too_large"


class HeadersTooLarge(ProxyError):
    status, kind = 431, "headers_too_large"


class RequestHeadTimeout(ProxyError):
    """A request head still incomplete after ``timeouts.header`` (slow or half-sent heads)."""

    status, kind = 408, "client_header_timeout"


class BadGateway(ProxyError):
    """The upstream answered something that is not HTTP/1.1."""

    status, kind = 502, "upstream_bad_response"


class UpstreamConnectError(ProxyError):
    status, kind = 502, "upstream_connect"


class UpstreamResetError(ProxyError):
    status, kind = 502, "upstream_reset"


class UpstreamTimeout(ProxyError):
    status, kind = 504, "upstream_timeout"


# Kinds that are counted but never answered (the client is gone or the request is not ours to answer).
CLIENT_DISCONNECT = "client_disconnect"
CLIENT_TIMEOUT = "client_timeout"
UPSTREAM_STALE_RETRY = "upstream_stale_retry"
# A reused upstream connection closed without answering a request the model may have read (non-idempotent, and
# not provably unsent): answered 502 instead of being sent again.
UPSTREAM_STALE_NOT_RETRIED = "upstream_stale_not_retried"
# A request header whose name spells one the proxy handles itself (Content-Length, Transfer-Encoding, Host,
# X-Forwarded-For...) with "_" or repeated "-": dropped, never forwarded (a CGI-style upstream would read it
# as the real one).
HEADER_DROPPED = "request_header_dropped"
# A response a fault or an observer wanted to inspect was over limits.inspect_body_bytes: sent untouched.
RESPONSE_TOO_LARGE = "response_over_inspect_limit"
ERROR_KINDS = (
    "malformed_request", "body_too_large", "headers_too_large", "upstream_bad_response",
    "upstream_connect", "upstream_reset", "upstream_timeout", "internal", "client_header_timeout",
    CLIENT_DISCONNECT, CLIENT_TIMEOUT, UPSTREAM_STALE_RETRY, UPSTREAM_STALE_NOT_RETRIED, HEADER_DROPPED,
    RESPONSE_TOO_LARGE,
)


def error_response(exc: ProxyError, *, keep_alive: bool) -> bytes:
    """The complete HTTP/1.1 response for a proxy error."""
    body = orjson.dumps({"error": exc.message, "source": "mlchaos"})
    phrase = HTTPStatus(exc.status).phrase
    return (
        f"HTTP/1.1 {exc.status} {phrase}\r\ncontent-type: application/json\r\nx-mlchaos-error: 1\r\n"
        f"content-length: {len(body)}\r\nconnection: {'keep-alive' if keep_alive else 'close'}\r\n\r\n"
    ).encode("latin-1") + body
