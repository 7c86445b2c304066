"""``context_length``: refuse the request as too long for the model's context, as OpenAI and vLLM do.

HTTP 400 (some providers send 429 or 413: ``status`` says which) with ``code: context_length_exceeded`` and
the message OpenAI writes, with the prompt's size estimated at four characters a token. Clients do not retry
a 400; an application that trims its history on this error is what the fault tests.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar, Self

from ..declare.errors import Errors
from ..declare.fields import Field
from ..payload.codec import dumps, loads
from .base import Fault, FaultContext, Outcome, Reply
from .llm_base import estimate_tokens


@dataclass(frozen=True, slots=True, kw_only=True)
class ContextLength(Fault):
    type: ClassVar[str] = "context_length"
    HELP: ClassVar[str] = "Answer 400 context_length_exceeded, as a model whose context is too short would."
    FIELDS: ClassVar[tuple[Field, ...]] = (
        Field("limit", "integer", default=4096, minimum=1, help="The context length the message claims, in tokens."),
        Field("status", "integer", default=400, minimum=400, maximum=499, help="HTTP status (400, 413 or 429)."),
    )

    limit: int = 4096
    status: int = 400

    @classmethod
    def from_values(cls, values: dict[str, Any], path: str, errors: Errors) -> Self | None:
        return cls(**values)

    def apply(self, ctx: FaultContext) -> Outcome:
        body = ctx.request_body()
        prompt, completion = 0, 0
        try:
            doc = loads(body) if body else None
        except ValueError:
            doc = None
        if isinstance(doc, dict):
            prompt = estimate_tokens(doc)
            wanted = doc.get("max_completion_tokens", doc.get("max_tokens"))
            completion = wanted if isinstance(wanted, int) and wanted > 0 else 0
        # The claim has to be over the limit, whatever the real prompt's size.
        prompt = max(prompt, self.limit + 1 - completion)
        message = (f"This model's maximum context length is {self.limit} tokens. However, you requested "
                   f"{prompt + completion} tokens ({prompt} in the messages, {completion} in the completion). "
                   f"Please reduce the length of the messages or completion.")
        error = {"message": message, "type": "invalid_request_error", "param": "messages",
                 "code": "context_length_exceeded"}
        return Reply(self.status, dumps({"error": error}))
