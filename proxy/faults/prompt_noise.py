"""``prompt_noise``: what users type, with typos or with its words shuffled, before the model reads it.

Only the user's text changes (``user`` messages, string or text parts, and a completion's ``prompt``); the
system prompt and the assistant's turns stay. ``rate`` is the share of words touched. The noise is seeded by
``seed`` and the text itself, so the same prompt gets the same noise every time (a retry too), and a run
can be repeated.

- ``typos``: in each chosen word of two letters or more, two neighbouring letters swapped, one dropped, or
  one doubled;
- ``shuffle``: the chosen words change places with each other.
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass
from typing import Any, ClassVar, Self

from ..declare.errors import Errors
from ..declare.fields import Field
from .base import Fault, FaultContext, Outcome
from .llm_base import edit_request

_WORD = re.compile(r"\S+")


def typos(text: str, rate: float, rng: random.Random) -> str:
    def one(m: re.Match[str]) -> str:
        w = m.group(0)
        if len(w) < 2 or rng.random() >= rate:
            return w
        i = rng.randrange(len(w) - 1)
        how = rng.randrange(3)
        if how == 0:
            return w[:i] + w[i + 1] + w[i] + w[i + 2:]
        if how == 1:
            return w[:i] + w[i + 1:]
        return w[: i + 1] + w[i] + w[i + 1:]

    return _WORD.sub(one, text)


def shuffle(text: str, rate: float, rng: random.Random) -> str:
    spans = [m.span() for m in _WORD.finditer(text)]
    chosen = [i for i in range(len(spans)) if rng.random() < rate]
    if len(chosen) < 2:
        return text
    words = [text[a:b] for a, b in spans]
    moved = [words[i] for i in chosen]
    rng.shuffle(moved)
    for i, w in zip(chosen, moved, strict=True):
        words[i] = w
    out, last = [], 0
    for (a, b), w in zip(spans, words, strict=True):
        out.append(text[last:a])
        out.append(w)
        last = b
    out.append(text[last:])
    return "".join(out)


@dataclass(frozen=True, slots=True, kw_only=True)
class PromptNoise(Fault):
    type: ClassVar[str] = "prompt_noise"
    HELP: ClassVar[str] = "Add typos to, or shuffle the words of, the user's text in LLM requests (seeded)."
    FIELDS: ClassVar[tuple[Field, ...]] = (
        Field("mode", "choice", default="typos", choices=("typos", "shuffle"), help="What kind of noise."),
        Field("rate", "probability", default=0.2, help="Share of the words touched."),
        Field("seed", "integer", default=0, help="With the text, decides the noise: same prompt, same noise."),
    )

    mode: str = "typos"
    rate: float = 0.2
    seed: int = 0

    @classmethod
    def from_values(cls, values: dict[str, Any], path: str, errors: Errors) -> Self | None:
        return cls(**values)

    def noisy(self, text: str) -> str:
        rng = random.Random(f"{self.seed}\x00{text}")
        return (typos if self.mode == "typos" else shuffle)(text, self.rate, rng)

    def _edit(self, doc: dict[str, Any]) -> bool:
        changed = False
        messages = doc.get("messages")
        if isinstance(messages, list):
            for m in messages:
                if not isinstance(m, dict) or m.get("role") != "user":
                    continue
                content = m.get("content")
                if isinstance(content, str):
                    new = self.noisy(content)
                    changed |= new != content
                    m["content"] = new
                elif isinstance(content, list):
                    for part in content:
                        if isinstance(part, dict) and isinstance(part.get("text"), str):
                            new = self.noisy(part["text"])
                            changed |= new != part["text"]
                            part["text"] = new
        prompt = doc.get("prompt")
        if isinstance(prompt, str):
            doc["prompt"] = self.noisy(prompt)
            changed |= doc["prompt"] != prompt
        elif isinstance(prompt, list) and all(isinstance(p, str) for p in prompt):
            doc["prompt"] = [self.noisy(p) for p in prompt]
            changed |= doc["prompt"] != prompt
        return changed

    def apply(self, ctx: FaultContext) -> Outcome:
        edit_request(ctx, self._edit)
        return None
