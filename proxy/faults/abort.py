"""``abort``: answer with a status of the policy's choosing instead of calling the model."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import Any, ClassVar, Self

import orjson

from ..declare.errors import Errors
from ..declare.fields import Field
from ..edges.grpc.status import CODE_NAMES, CODES
from .base import Fault, FaultContext, Outcome, Reply

_TOKEN = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")
_VALUE = re.compile(r"[\t\x20-\x7e\x80-\xff]*")


@dataclass(frozen=True, slots=True, kw_only=True)
class Abort(Fault):
    type: ClassVar[str] = "abort"
    HELP: ClassVar[str] = ("Answer with an HTTP status (503, 500, 429 ...) instead of calling the model; a gRPC call "
                           "gets grpc_status, or the code of status by gRPC's HTTP-to-gRPC table (429, 502, 503, "
                           "504: UNAVAILABLE; 400: INTERNAL; 401: UNAUTHENTICATED; 403: PERMISSION_DENIED; 404: "
                           "UNIMPLEMENTED; others UNKNOWN).")
    FIELDS: ClassVar[tuple[Field, ...]] = (
        Field("status", "integer", default=503, minimum=200, maximum=599, help="Status code of the reply."),
        Field("body", "any", default=None,
              help="Reply body: a JSON value, or a string sent as is. Default {\"error\": <reason phrase>}."),
        Field("headers", "mapping", default=None, help="Extra reply headers.",
              schema={"type": "object", "additionalProperties": {"type": "string"}}),
        Field("retry_after", "duration", default=None, help="Adds Retry-After (whole seconds), e.g. for 429."),
        Field("error_code", "string", default=None,
              help="Body in the MLflow REST API's error shape {\"error_code\", \"message\"}, e.g. "
                   "RESOURCE_DOES_NOT_EXIST or TEMPORARILY_UNAVAILABLE (instead of body)."),
        Field("message", "string", default=None,
              help="With error_code: its message (default: the reason phrase); with grpc_status: the status details."),
        Field("grpc_status", "choice", default=None, choices=CODE_NAMES[1:],
              help="A gRPC call's status code (UNAVAILABLE, RESOURCE_EXHAUSTED ...); HTTP clients get it as the "
                   "grpc-status header."),
    )

    reply: Reply = field(default_factory=lambda: Reply(503))

    @classmethod
    def from_values(cls, values: dict[str, Any], path: str, errors: Errors) -> Self | None:
        status: int = values["status"]
        body = values["body"]
        try:
            phrase = HTTPStatus(status).phrase
        except ValueError:
            phrase = "error"
        if values["error_code"] is not None:
            if body is not None:
                errors.add(f"{path}.error_code", "give body or error_code, not both")
                return None
            body = {"error_code": values["error_code"], "message": values["message"] or phrase}
        elif values["message"] is not None and values["grpc_status"] is None:
            errors.add(f"{path}.message", "message goes with error_code or grpc_status")
            return None
        if body is None:
            payload, ctype = orjson.dumps({"error": phrase}), "application/json"
        elif isinstance(body, str):
            payload, ctype = body.encode(), "text/plain; charset=utf-8"
        else:
            try:
                payload, ctype = orjson.dumps(body), "application/json"
            except (TypeError, orjson.JSONEncodeError) as exc:
                errors.add(f"{path}.body", f"cannot be sent as JSON: {exc}")
                return None
        headers: list[tuple[str, str]] = []
        for name, value in (values["headers"] or {}).items():
            if not isinstance(value, str | int | float) or isinstance(value, bool):
                errors.add(f"{path}.headers.{name}", "header values must be strings or numbers")
                return None
            # A name must be an RFC 9110 token and a value a single line: no response splitting.
            if not isinstance(name, str) or not _TOKEN.fullmatch(name) or not _VALUE.fullmatch(str(value)):
                errors.add(f"{path}.headers.{name}", "not a valid header: a token name and a one-line value")
                return None
            headers.append((name, str(value)))
        if values["retry_after"] is not None:
            headers.append(("retry-after", str(round(values["retry_after"]))))
        if values["grpc_status"] is not None:
            # The gRPC edge answers with this code; its details are the message (default: the code's name).
            code = values["grpc_status"]
            headers += [("grpc-status", str(CODES[code])), ("grpc-message", values["message"] or code)]
        reply = Reply(status, payload, tuple(headers), ctype)
        return cls(probability=values["probability"], reply=reply)

    def apply(self, ctx: FaultContext) -> Outcome:
        return self.reply
