"""OpenAI-compatible LLM APIs (vLLM, TGI, llama.cpp, Ollama, KServe's Hugging Face runtime, LiteLLM):
``POST /v1/chat/completions``, ``/v1/completions`` and ``/v1/embeddings``, under any prefix (``/openai/v1/...``)
and Azure's ``/openai/deployments/<name>/...``.

Requests: ``messages`` (chat) or ``prompt`` (completions) or ``input`` (embeddings), and sampling parameters.
The feature table of a request is its numeric parameters, one row (``openai.parameters``: ``temperature``,
``top_p``, ``max_tokens``, ...), so ``shift`` or ``out_of_range`` can push a temperature; the LLM faults
(``drop_system_prompt``, ``prompt_noise``, ...) change the messages with the helpers below.

Answers: ``choices`` (a ``message`` or ``text`` each, with its ``finish_reason``), ``usage``, and for
embeddings ``data[].embedding`` (a list of floats, or base64 float32 when the client asked for
``encoding_format: base64``, as the official SDK does by default). The feature table of an embeddings answer
is its vectors, one row per input (``openai.embeddings``, columns ``embedding[j]``), so ``nan``, ``shift`` and
``out_of_range`` with ``target: response`` damage the vectors and write them back in the encoding they came
in. Predictions are each choice's text and finish reason, or each vector.

Streamed answers (``stream: true``) are server-sent events, one ``chat.completion.chunk`` (or
``text_completion``) per ``data:`` line, then ``data: [DONE]``. They are never held whole: ``classify`` tells
an event's kind from its bytes alone, cheaply enough for every chunk of every cohort, and faults parse only
the events they change.
"""

from __future__ import annotations

import base64
import re
from typing import Any, ClassVar, Final

import numpy as np

from ..table import FeatureTable, all_numbers
from .base import (
    DEFAULT_OPTIONS,
    PREDICTIONS,
    REQUEST,
    RESPONSE,
    STREAM,
    AdapterOptions,
    BaseAdapter,
    Parsed,
    Predictions,
    RowsDetail,
    clone,
    read_rows,
)

__all__ = [
    "CHAT", "COMMENT", "COMPLETIONS", "CONTENT", "DONE", "EMBEDDINGS", "ERROR", "FINISH", "OTHER", "PARAMETERS",
    "OpenAIAdapter", "classify", "completion_tokens", "endpoint", "finish_reason", "is_done",
]

_PATH = re.compile(r"/(?:v1|openai/deployments/[^/]+)/(chat/completions|completions|embeddings)/?$")
CHAT: Final = "chat"
COMPLETIONS: Final = "completions"
EMBEDDINGS: Final = "embeddings"
_ENDPOINTS: Final = {"chat/completions": CHAT, "completions": COMPLETIONS, "embeddings": EMBEDDINGS}

# The numeric request parameters read as the request's features (OpenAI's, and those vLLM and llama.cpp add).
PARAMETERS: Final = (
    "temperature", "top_p", "max_tokens", "max_completion_tokens", "n", "presence_penalty", "frequency_penalty",
    "seed", "top_k", "min_p", "repetition_penalty", "dimensions",
)

# Kinds of stream events, from ``classify``.
DONE: Final = 0      # data: [DONE]
ERROR: Final = 1     # an error object (vLLM, TGI and OpenAI send one mid-stream), or event: error
CONTENT: Final = 2   # a chunk carrying generated text, tool-call arguments or reasoning
FINISH: Final = 3    # a chunk with a finish_reason and no new text
OTHER: Final = 4     # the role chunk, a usage chunk, anything else with data
COMMENT: Final = 5   # no data: a comment (": ping") or a bare event line

# Byte patterns over one event: it is only a few hundred bytes, so a search costs about a microsecond.
_TEXT = re.compile(rb'"(?:content|text|reasoning_content|arguments)"\s*:\s*"(?!")')
_FINISH = re.compile(rb'"finish_reason"\s*:\s*"([^"]{1,40})"')
_COMPLETION_TOKENS = re.compile(rb'"completion_tokens"\s*:\s*(\d{1,9})')
_ERROR = re.compile(rb'^\s*\{\s*"error"\s*:\s*[{"]')


def endpoint(path: str) -> str | None:
    """``chat``, ``completions`` or ``embeddings`` for an OpenAI-compatible request path, else None."""
    m = _PATH.search(path.split("?", 1)[0])
    return _ENDPOINTS[m.group(1)] if m is not None else None


def classify(data: bytes | None) -> int:
    """The kind of one stream event, from its data (``sse.data_of``): DONE, ERROR, CONTENT, FINISH, OTHER or
    COMMENT (None: no data)."""
    if data is None:
        return COMMENT
    if data.startswith(b"[DONE]"):
        return DONE
    if _ERROR.match(data) is not None:
        return ERROR
    if _TEXT.search(data) is not None:
        return CONTENT
    if _FINISH.search(data) is not None:
        return FINISH
    return OTHER


def is_done(data: bytes | None) -> bool:
    return data is not None and data.startswith(b"[DONE]")


def finish_reason(data: bytes) -> str | None:
    """The first non-null ``finish_reason`` in an event's data (or a whole answer's body)."""
    m = _FINISH.search(data)
    return m.group(1).decode("utf-8", "replace") if m is not None else None


def completion_tokens(data: bytes) -> int | None:
    """``usage.completion_tokens`` in an event's data, if it carries usage."""
    m = _COMPLETION_TOKENS.search(data)
    return int(m.group(1)) if m is not None else None


def _embedding_rows(items: list[Any]) -> tuple[list[list[float]], bool] | None:
    """Each item's vector, and whether they came as base64 float32; None when they are neither."""
    if all(isinstance(it, dict) and isinstance(it.get("embedding"), str) for it in items):
        rows = [np.frombuffer(base64.b64decode(it["embedding"]), dtype="<f4").astype(float).tolist() for it in items]
        return rows, True
    if all(isinstance(it, dict) and isinstance(it.get("embedding"), list) for it in items):
        return [it["embedding"] for it in items], False
    return None


class OpenAIAdapter(BaseAdapter):
    name: ClassVar[str] = "openai"
    HELP: ClassVar[str] = ("OpenAI-compatible LLM APIs (/v1/chat/completions, /v1/completions, /v1/embeddings): "
                           "request parameters in; choices, finish_reason, usage and embeddings out; streams "
                           "event by event.")
    PATH: ClassVar[re.Pattern[str] | None] = _PATH
    READS: ClassVar[frozenset[str]] = frozenset({REQUEST, RESPONSE, PREDICTIONS, STREAM})

    def sniff(self, doc: Any) -> bool:
        if not isinstance(doc, dict) or "model" not in doc:
            return False
        messages = doc.get("messages")
        if isinstance(messages, list):
            return all(isinstance(m, dict) and "role" in m for m in messages)
        return "prompt" in doc or ("input" in doc and "inputs" not in doc)

    # -- requests: the numeric parameters, one row
    def read_strict(self, doc: Any, options: AdapterOptions) -> Parsed | None:
        if not isinstance(doc, dict):
            return None
        names = [p for p in PARAMETERS if p in doc and all_numbers([doc[p]])]
        if not names:
            return None
        columns = [[doc[p]] for p in names]
        table = FeatureTable(names, columns, ["number"] * len(names), True, list(range(len(names))), [0])
        return Parsed(doc=doc, table=table, layout="openai.parameters", detail=list(names))

    # -- answers: embeddings as a table
    def read_response_strict(self, doc: Any, options: AdapterOptions) -> Parsed | None:
        if not isinstance(doc, dict) or not isinstance(doc.get("data"), list) or not doc["data"]:
            return None
        got = _embedding_rows(doc["data"])
        if got is None:
            return None
        rows, b64 = got
        found = read_rows(rows, options.feature_names, "embedding", allow_scalars=False)
        if found is None:
            return None
        table, detail = found
        return Parsed(doc=doc, table=table, layout="openai.embeddings", detail=(detail, b64), direction=RESPONSE)

    def write(self, parsed: Parsed, table: FeatureTable, options: AdapterOptions = DEFAULT_OPTIONS) -> Any:
        table.validate()
        doc: dict[str, Any] = parsed.doc
        if parsed.direction == RESPONSE:
            detail, b64 = parsed.detail
            assert isinstance(detail, RowsDetail)
            n = table.n_rows
            rows = [[c[i] for c in table.columns] for i in range(n)]
            items = doc["data"]
            data = []
            for i, item in enumerate(items):
                new = {k: clone(v) for k, v in item.items() if k != "embedding"}
                if i < n:
                    vec = [float("nan") if v is None else v for v in rows[i]]
                    new["embedding"] = base64.b64encode(np.asarray(vec, dtype="<f4").tobytes()).decode() \
                        if b64 else rows[i]
                    data.append(new)
            return {k: (data if k == "data" else clone(v)) for k, v in doc.items()}
        out = {k: clone(v) for k, v in doc.items() if k not in parsed.detail}
        for name, column in zip(table.names, table.columns, strict=True):
            if column and name in PARAMETERS:
                out[name] = column[0]
        return out

    # -- answers: each choice's text and finish reason, or each vector
    def predictions_strict(self, doc: Any, options: AdapterOptions) -> Predictions | None:
        if not isinstance(doc, dict):
            return None
        choices = doc.get("choices")
        if isinstance(choices, list) and choices and all(isinstance(c, dict) for c in choices):
            chat = any("message" in c for c in choices)
            key = "content" if chat else "text"
            texts = [(c.get("message") or {}).get("content") if chat else c.get("text") for c in choices]
            return {key: texts, "finish_reason": [c.get("finish_reason") for c in choices]}
        items = doc.get("data")
        if isinstance(items, list) and items:
            got = _embedding_rows(items)
            if got is not None:
                return {"embedding": got[0]}
        return None

    def write_predictions_strict(self, doc: Any, preds: Predictions, options: AdapterOptions) -> Any | None:
        if not isinstance(doc, dict):
            return None
        choices = doc.get("choices")
        if not isinstance(choices, list) or any(len(v) != len(choices) for v in preds.values()):
            return None
        out = clone(doc)
        for i, choice in enumerate(out["choices"]):
            if "content" in preds and isinstance(choice.get("message"), dict):
                choice["message"]["content"] = preds["content"][i]
            if "text" in preds:
                choice["text"] = preds["text"][i]
            if "finish_reason" in preds:
                choice["finish_reason"] = preds["finish_reason"][i]
        return out
