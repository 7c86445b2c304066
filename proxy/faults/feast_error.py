"""``feast_error``: the Feast feature server fails, with the error body Feast itself sends.

Feast answers a ``FeastError`` with its HTTP status and a JSON *string* holding ``{"module", "class",
"message"}`` (Feast's SDK turns it back into that exception class), and any other exception with 500 and the
exception's text as a JSON string. ``FeatureViewNotFoundException`` is its 404.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, ClassVar, Self

from ..declare.errors import Errors
from ..declare.fields import Field
from .base import Fault, FaultContext, Outcome, Reply

# The status Feast gives each of its exceptions that a feature store outage plausibly raises.
_STATUS = {"FeatureViewNotFoundException": 404, "FeatureServiceNotFoundException": 404,
           "EntityNotFoundException": 404, "FeastObjectNotFoundException": 404}


@dataclass(frozen=True, slots=True, kw_only=True)
class FeastError(Fault):
    type: ClassVar[str] = "feast_error"
    HELP: ClassVar[str] = (
        "Feast feature server error, shaped as Feast sends it: with `exception` (e.g. "
        "FeatureViewNotFoundException, 404) a JSON string of {module, class, message} that Feast's SDK raises "
        "as that exception; without, 500 and the message as a JSON string (an internal error).")
    FIELDS: ClassVar[tuple[Field, ...]] = (
        Field("exception", "string", default=None,
              help="A feast.errors class name; absent: an internal error (500) with `message`."),
        Field("message", "string", default=None, help="The error message; default one in Feast's words."),
        Field("status", "integer", default=None, minimum=400, maximum=599,
              help="Default: 404 for the not-found exceptions, else 500."),
        Field("module", "string", default="feast.errors", help="The exception's module."),
    )

    reply: Reply = field(default_factory=lambda: Reply(500))

    @classmethod
    def from_values(cls, values: dict[str, Any], path: str, errors: Errors) -> Self | None:
        exc: str | None = values["exception"]
        if exc is not None and not exc.isidentifier():
            errors.add(f"{path}.exception", f"not a class name: {exc!r}")
            return None
        status: int = values["status"] or _STATUS.get(exc or "", 500)
        if exc is None:
            message = values["message"] or "database is locked"
            text = message
        else:
            message = values["message"] or "Feature view driver_hourly_stats does not exist"
            text = json.dumps({"module": values["module"], "class": exc, "message": message})
        return cls(probability=values["probability"], reply=Reply(status, json.dumps(text).encode()))

    def apply(self, ctx: FaultContext) -> Outcome:
        return self.reply
