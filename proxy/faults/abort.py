"""``abort``: answer with a status of the policy's choosing instead of calling the model (or the data source).

``s3_error`` answers as S3 does: ``<Error><Code>..</Code><Message>..</Message><RequestId>..</RequestId></Error>``
as application/xml, with the code's status (``S3_ERRORS``) and a fresh request id
per answer in the body and in ``x-amz-request-id``; botocore raises it as a ClientError with that code, and
retries the throttling and 5xx ones (SlowDown, InternalError, ServiceUnavailable) under its retry policy.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import Any, ClassVar, Final, Self
from xml.sax.saxutils import escape

import orjson

from ..declare.errors import Errors
from ..declare.fields import Field
from .base import Fault, FaultContext, Outcome, Reply

# S3 error code -> (status, S3's message).
S3_ERRORS: Final = {
    "SlowDown": (503, "Please reduce your request rate."),
    "ServiceUnavailable": (503, "Service is unable to handle request."),
    "InternalError": (500, "We encountered an internal error. Please try again."),
    "NoSuchKey": (404, "The specified key does not exist."),
    "NoSuchBucket": (404, "The specified bucket does not exist."),
    "AccessDenied": (403, "Access Denied"),
    "ExpiredToken": (400, "The provided token has expired."),
    "RequestTimeout": (400, "Your socket connection to the server was not read from or written to within the "
                            "timeout period."),
}
_TOKEN = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")
_VALUE = re.compile(r"[\t\x20-\x7e\x80-\xff]*")


@dataclass(frozen=True, slots=True, kw_only=True)
class Abort(Fault):
    type: ClassVar[str] = "abort"
    HELP: ClassVar[str] = "Answer with an HTTP status (503, 500, 429 ...) instead of calling the model."
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
              help="With error_code or s3_error: its message (default: the reason phrase, or S3's message)."),
        Field("s3_error", "choice", default=None, choices=tuple(S3_ERRORS),
              help="An S3-shaped XML error with this code and its status (SlowDown 503, NoSuchKey 404, "
                   "AccessDenied 403, InternalError 500 ...), instead of body; a new RequestId per answer."),
    )

    reply: Reply = field(default_factory=lambda: Reply(503))
    # s3_error: the body around the request id, made per answer.
    s3_body: tuple[bytes, bytes] | None = None

    @classmethod
    def from_values(cls, values: dict[str, Any], path: str, errors: Errors) -> Self | None:
        status: int = values["status"]
        body = values["body"]
        try:
            phrase = HTTPStatus(status).phrase
        except ValueError:
            phrase = "error"
        s3_body: tuple[bytes, bytes] | None = None
        if values["s3_error"] is not None:
            code = values["s3_error"]
            s3_status, s3_message = S3_ERRORS[code]
            if body is not None or values["error_code"] is not None:
                errors.add(f"{path}.s3_error", "give one of body, error_code and s3_error")
                return None
            if status not in (503, s3_status):  # 503 is the default: the code's own status is taken
                errors.add(f"{path}.status", f"{code} is answered with {s3_status}; leave status out")
                return None
            status = s3_status
            s3_body = (
                b'<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>' + code.encode() + b"</Code><Message>"
                + escape(values["message"] or s3_message).encode() + b"</Message><RequestId>",
                b"</RequestId></Error>")
            body = ""
        elif values["error_code"] is not None:
            if body is not None:
                errors.add(f"{path}.error_code", "give body or error_code, not both")
                return None
            body = {"error_code": values["error_code"], "message": values["message"] or phrase}
        elif values["message"] is not None and s3_body is None:
            errors.add(f"{path}.message", "message goes with error_code or s3_error")
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
        if s3_body is not None:
            ctype = "application/xml"
        reply = Reply(status, payload, tuple(headers), ctype)
        return cls(probability=values["probability"], reply=reply, s3_body=s3_body)

    def apply(self, ctx: FaultContext) -> Outcome:
        if self.s3_body is None:
            return self.reply
        rid = os.urandom(8).hex().upper()  # S3's request ids: 16 hex digits
        r = self.reply
        return Reply(r.status, self.s3_body[0] + rid.encode() + self.s3_body[1],
                     (*r.headers, ("x-amz-request-id", rid)), r.content_type)
