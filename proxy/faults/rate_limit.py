"""``rate_limit``: answer 429 as an OpenAI-compatible API does when a rate limit is reached.

The body is OpenAI's error object (``type: requests``/``tokens``, ``code: rate_limit_exceeded``); the headers
say when to come back, ``retry-after`` (whole seconds, rounded up) and ``retry-after-ms`` (which the official
SDKs prefer), with OpenAI's ``x-ratelimit-*`` headers. The official Python SDK retries a 429 twice by default,
waiting as told (up to 60 s a wait), then raises ``RateLimitError``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, ClassVar, Self

from ..declare.errors import Errors
from ..declare.fields import Field
from ..payload.codec import dumps
from .base import Fault, FaultContext, Outcome, Reply


@dataclass(frozen=True, slots=True, kw_only=True)
class RateLimit(Fault):
    type: ClassVar[str] = "rate_limit"
    HELP: ClassVar[str] = "Answer 429 with an OpenAI-shaped rate-limit error and retry-after / retry-after-ms."
    FIELDS: ClassVar[tuple[Field, ...]] = (
        Field("retry_after", "duration", default=1.0, help="When the client may retry (0: no retry headers)."),
        Field("limit", "choice", default="requests", choices=("requests", "tokens"),
              help="Which limit was reached: requests or tokens per minute."),
    )

    retry_after: float = 1.0
    limit: str = "requests"
    reply: Reply | None = field(default=None, compare=False, repr=False)

    @classmethod
    def from_values(cls, values: dict[str, Any], path: str, errors: Errors) -> Self | None:
        return cls(**values)

    def __post_init__(self) -> None:
        what = "requests" if self.limit == "requests" else "tokens"
        body = {"error": {
            "message": f"Rate limit reached for {what} per minute (RPM). Please try again in "
                       f"{self.retry_after * 1000:.0f}ms. (Injected by mlchaos.)",
            "type": what, "param": None, "code": "rate_limit_exceeded",
        }}
        headers: list[tuple[str, str]] = [(f"x-ratelimit-remaining-{what}", "0")]
        if self.retry_after > 0:
            headers += [("retry-after", str(max(1, math.ceil(self.retry_after)))),
                        ("retry-after-ms", str(round(self.retry_after * 1000))),
                        (f"x-ratelimit-reset-{what}", f"{self.retry_after:g}s")]
        # Built once: the same bytes answer every request it hits.
        object.__setattr__(self, "reply", Reply(429, dumps(body), tuple(headers)))

    def apply(self, ctx: FaultContext) -> Outcome:
        return self.reply
