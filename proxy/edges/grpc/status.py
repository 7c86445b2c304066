"""gRPC status codes without grpcio: names, and the mappings to and from HTTP statuses.

The exchange records an HTTP-equivalent status (the kill switch's guards, the outcome matrix and the
hypothesis checks judge 5xx and drops alike for every protocol), and the metrics label a call with its gRPC
code's name. gRPC to HTTP follows grpc-gateway's table; HTTP to gRPC (an ``abort`` with an HTTP ``status``
and no ``grpc_status``) follows gRPC's own "HTTP to gRPC status code mapping" (doc/http-grpc-status-mapping.md).
"""

from __future__ import annotations

from typing import Final

__all__ = ["CODES", "CODE_NAMES", "ERROR_CODE_NAMES", "OK", "code_of_http", "http_of_code"]

# In code order: CODE_NAMES[c] is the name of code c (grpc.StatusCode.X.value[0] == c).
CODE_NAMES: Final = (
    "OK", "CANCELLED", "UNKNOWN", "INVALID_ARGUMENT", "DEADLINE_EXCEEDED", "NOT_FOUND", "ALREADY_EXISTS",
    "PERMISSION_DENIED", "RESOURCE_EXHAUSTED", "FAILED_PRECONDITION", "ABORTED", "OUT_OF_RANGE",
    "UNIMPLEMENTED", "INTERNAL", "UNAVAILABLE", "DATA_LOSS", "UNAUTHENTICATED",
)
CODES: Final = {name: code for code, name in enumerate(CODE_NAMES)}
OK: Final = 0
UNAVAILABLE: Final = 14
DEADLINE_EXCEEDED: Final = 4
_HTTP_OF_CODE: Final = (200, 499, 500, 400, 504, 404, 409, 403, 429, 400, 409, 400, 501, 500, 503, 500, 401)
# The codes whose HTTP equivalent is a 5xx: what the Prometheus gate counts as errors.
ERROR_CODE_NAMES: Final = tuple(name for name, status in zip(CODE_NAMES, _HTTP_OF_CODE, strict=True)
                                if status >= 500)
_CODE_OF_HTTP: Final = {400: 13, 401: 16, 403: 7, 404: 12, 429: 14, 502: 14, 503: 14, 504: 14}


def http_of_code(code: int) -> int:
    return _HTTP_OF_CODE[code] if 0 <= code < len(_HTTP_OF_CODE) else 500


def code_of_http(status: int) -> int:
    """A 2xx is OK; the gRPC table's statuses map as it says; any other is UNKNOWN."""
    if 200 <= status < 300:
        return OK
    return _CODE_OF_HTTP.get(status, 2)
