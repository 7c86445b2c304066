"""The ``openai`` payload format and the server-sent-event framer."""

from __future__ import annotations

import base64
import math
from typing import Any

import numpy as np
from hypothesis import given
from hypothesis import strategies as st

from proxy.payload.adapters import detect, formats, get_adapter
from proxy.payload.adapters.openai import (
    CHAT,
    COMMENT,
    COMPLETIONS,
    CONTENT,
    DONE,
    EMBEDDINGS,
    ERROR,
    FINISH,
    OTHER,
    classify,
    completion_tokens,
    endpoint,
    finish_reason,
)
from proxy.payload.mutate import shift
from proxy.payload.sse import SseFramer, data_of, event_name

A = get_adapter("openai")
RNG = np.random.default_rng(0)


def test_paths_under_any_prefix_and_azure_deployments_are_openai():
    assert endpoint("/v1/chat/completions") == CHAT
    assert endpoint("/openai/v1/completions?x=1") == COMPLETIONS
    assert endpoint("/api/llm/v1/embeddings") == EMBEDDINGS
    assert endpoint("/openai/deployments/gpt4o/chat/completions") == CHAT
    assert endpoint("/v1/models") is None and endpoint("/v1/models/iris:predict") is None
    assert detect("/v1/chat/completions", None) is A
    assert "openai" in formats()


def test_a_body_on_another_path_is_sniffed_without_taking_v1_or_mlflow_bodies():
    assert detect("/generate", {"model": "m", "messages": [{"role": "user", "content": "hi"}]}) is A
    assert detect("/generate", {"model": "m", "prompt": "hi"}) is A
    assert detect("/invocations", {"inputs": [[1, 2]]}) is not A
    assert detect("/predict", {"instances": [[1, 2]]}) is not A


def test_the_request_table_is_its_numeric_parameters_and_writes_back_in_place():
    doc = {"model": "m", "messages": [], "temperature": 0.2, "max_tokens": 30, "stream": True, "top_p": 1}
    parsed = A.read(doc)
    assert parsed is not None and parsed.table.names == ["temperature", "top_p", "max_tokens"]
    out = A.write(parsed, shift(parsed.table, rng=RNG, features=("temperature",), offset=1.5).table)
    assert out == {**doc, "temperature": 1.7}
    assert A.read({"model": "m", "messages": []}) is None  # no parameters: nothing to read


def test_an_embeddings_answer_is_a_table_of_vectors_in_either_encoding():
    rows = [[0.5, -1.0, 2.0], [1.0, 0.0, 0.25]]
    doc = {"object": "list", "model": "m", "usage": {"prompt_tokens": 2},
           "data": [{"object": "embedding", "index": i, "embedding": r} for i, r in enumerate(rows)]}
    parsed = A.read(doc, direction="response")
    assert parsed is not None and parsed.table.names == ["embedding[0]", "embedding[1]", "embedding[2]"]
    assert parsed.table.columns[2] == [2.0, 0.25]
    out = A.write(parsed, shift(parsed.table, rng=RNG, offset=1.0).table)
    assert out["data"][1]["embedding"] == [2.0, 1.0, 1.25] and out["usage"] == doc["usage"]
    b64 = {**doc, "data": [{"object": "embedding", "index": i,
                            "embedding": base64.b64encode(np.asarray(r, "<f4").tobytes()).decode()}
                           for i, r in enumerate(rows)]}
    parsed = A.read(b64, direction="response")
    assert parsed is not None and parsed.table.columns[0] == [0.5, 1.0]
    table = parsed.table
    table.columns[0][0] = float("nan")
    out = A.write(parsed, table)
    back = np.frombuffer(base64.b64decode(out["data"][0]["embedding"]), "<f4")
    assert math.isnan(back[0]) and list(back[1:]) == [-1.0, 2.0]  # written back in the client's encoding


def test_predictions_are_each_choices_text_and_finish_reason():
    doc: dict[str, Any] = {"choices": [
        {"index": 0, "message": {"role": "assistant", "content": "hi"}, "finish_reason": "stop"},
        {"index": 1, "message": {"role": "assistant", "content": "yo"}, "finish_reason": "length"}]}
    preds = A.predictions(doc)
    assert preds == {"content": ["hi", "yo"], "finish_reason": ["stop", "length"]}
    out = A.write_predictions(doc, {"content": ["", "yo"], "finish_reason": ["stop", "stop"]})
    assert out is not None and out["choices"][0]["message"]["content"] == ""
    assert doc["choices"][0]["message"]["content"] == "hi"  # the original is left alone
    assert A.predictions({"choices": [{"text": "x", "finish_reason": "stop"}]}) == {"text": ["x"],
                                                                                   "finish_reason": ["stop"]}


def test_stream_events_are_classified_from_their_bytes():
    assert classify(b"[DONE]") == DONE
    assert classify(None) == COMMENT
    assert classify(b'{"error": {"message": "boom", "code": 500}}') == ERROR
    assert classify(b'{"choices":[{"delta":{"content":" the"},"finish_reason":null}]}') == CONTENT
    assert classify(b'{"choices":[{"delta":{"role":"assistant","content":""},"finish_reason":null}]}') == OTHER
    assert classify(b'{"choices":[{"delta":{},"finish_reason":"length"}]}') == FINISH
    assert classify(b'{"choices":[{"text":" x","finish_reason":null}]}') == CONTENT
    assert classify(b'{"choices":[{"delta":{"tool_calls":[{"function":{"arguments":"{\\"a"}}]}}]}') == CONTENT
    assert classify(b'{"choices":[],"usage":{"completion_tokens":12}}') == OTHER
    assert finish_reason(b'{"finish_reason": "stop"}') == "stop" and finish_reason(b'"finish_reason":null') is None
    assert completion_tokens(b'"usage":{"prompt_tokens":3,"completion_tokens":12}') == 12


def test_data_of_reads_sse_fields():
    assert data_of(b"data: {\"a\":1}\n\n") == b'{"a":1}'
    assert data_of(b"data:x\r\n\r\n") == b"x"
    assert data_of(b"event: error\ndata: {\"e\":1}\n\n") == b'{"e":1}'
    assert data_of(b"data: a\ndata: b\n\n") == b"a\nb"
    assert data_of(b": ping\n\n") is None
    assert event_name(b"event: error\ndata: x\n\n") == b"error" and event_name(b"data: x\n\n") is None


st_events = st.lists(
    st.tuples(st.binary(max_size=30).map(lambda b: b.replace(b"\n", b"").replace(b"\r", b"")),
              st.sampled_from([b"\n\n", b"\r\n\r\n"])).map(lambda t: b"data: " + t[0] + t[1]),
    max_size=8)


@given(st_events, st.lists(st.integers(min_value=0, max_value=400), max_size=6))
def test_the_framer_gives_back_exactly_the_events_wherever_the_reads_split(events, cuts):
    body = b"".join(events)
    points = sorted({min(c, len(body)) for c in cuts})
    reads = [body[a:b] for a, b in zip([0, *points], [*points, len(body)], strict=True)]
    framer = SseFramer()
    got = [ev for r in reads for ev in framer.feed(r)]
    assert got == events and framer.rest() == b""
