"""``drop``: close the client's connection with no response, politely (FIN) or rudely (RST); on HTTP/2 (gRPC),
or reset only the call's stream (RST_STREAM), the other calls on the connection going on."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar, Self

from ..declare.errors import Errors
from ..declare.fields import Field
from .base import Drop, Fault, FaultContext, Outcome


@dataclass(frozen=True, slots=True, kw_only=True)
class DropConnection(Fault):
    type: ClassVar[str] = "drop"
    HELP: ClassVar[str] = ("Close the connection without answering: a FIN (close) or a TCP reset (reset); or, on "
                           "gRPC, reset only the call's HTTP/2 stream (stream).")
    FIELDS: ClassVar[tuple[Field, ...]] = (
        Field("mode", "choice", default="close", choices=("close", "reset", "stream"),
              help="close sends FIN, reset RST; stream sends RST_STREAM (CANCEL) on gRPC and closes (FIN) an HTTP/1.1 "
                   "connection, which has one request at a time."),
    )

    drop: Drop = field(default_factory=Drop)

    @classmethod
    def from_values(cls, values: dict[str, Any], path: str, errors: Errors) -> Self | None:
        mode = values["mode"]
        return cls(probability=values["probability"], drop=Drop(reset=mode == "reset", stream=mode == "stream"))

    def apply(self, ctx: FaultContext) -> Outcome:
        return self.drop
