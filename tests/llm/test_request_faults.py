"""The request and answer faults of LLM APIs through a real sidecar: what the model receives, what the client
gets back. (tests/llm/test_clients.py asserts what the official SDK and LangChain make of them.)"""

from __future__ import annotations

from typing import Any

import aiohttp
import orjson
import pytest

from proxy.faults.prompt_noise import PromptNoise
from tests.llm.conftest import FORCE_CHAOS, FORCE_CONTROL, chat, llm_sidecar

MESSAGES = [
    {"role": "system", "content": "You are terse."},
    {"role": "user", "content": "What is the capital of France?"},
    {"role": "assistant", "content": "Paris."},
    {"role": "user", "content": "And of Italy, please tell me quickly"},
]
BODY: dict[str, Any] = {"model": "m", "messages": MESSAGES, "max_tokens": 10}


async def _sent(server: Any, port: int, body: dict[str, Any]) -> dict[str, Any]:
    """What the model received for ``body`` sent in the chaos cohort."""
    server.requests.clear()
    a = await chat(port, body, FORCE_CHAOS)
    assert a.status == 200, a.raw
    got: dict[str, Any] = server.requests[-1]
    return got


async def test_rate_limit_answers_429_the_openai_way(llm, start_sidecar):
    server, url = llm
    sc = await llm_sidecar(start_sidecar, url, [{"type": "rate_limit", "retry_after": "1500ms"}])
    a = await chat(sc.proxy_port, BODY, FORCE_CHAOS)
    assert a.status == 429 and not server.requests
    assert a.headers["retry-after"] == "2" and a.headers["retry-after-ms"] == "1500"
    error = a.json()["error"]
    assert error["code"] == "rate_limit_exceeded" and error["type"] == "requests"


async def test_context_length_answers_400_context_length_exceeded(llm, start_sidecar):
    server, url = llm
    sc = await llm_sidecar(start_sidecar, url, [{"type": "context_length", "limit": 2048}])
    a = await chat(sc.proxy_port, BODY, FORCE_CHAOS)
    assert a.status == 400 and not server.requests
    error = a.json()["error"]
    assert error["code"] == "context_length_exceeded" and error["type"] == "invalid_request_error"
    assert "maximum context length is 2048 tokens" in error["message"]
    requested = int(error["message"].split("you requested ")[1].split()[0])
    assert requested > 2048  # the claim is consistent with itself


async def test_drop_system_prompt_sends_the_chat_without_its_instructions(llm, start_sidecar):
    server, url = llm
    sc = await llm_sidecar(start_sidecar, url, [{"type": "drop_system_prompt"}])
    got = await _sent(server, sc.proxy_port, BODY)
    assert got["messages"] == MESSAGES[1:] and got["max_tokens"] == 10
    await chat(sc.proxy_port, BODY, FORCE_CONTROL)
    assert server.requests[-1]["messages"] == MESSAGES


async def test_truncate_context_drops_the_oldest_turns(llm, start_sidecar):
    server, url = llm
    sc = await llm_sidecar(start_sidecar, url, [{"type": "truncate_context", "keep": 1}])
    got = await _sent(server, sc.proxy_port, BODY)
    assert got["messages"] == [MESSAGES[0], MESSAGES[3]]
    sc2 = await llm_sidecar(start_sidecar, url, [{"type": "truncate_context", "keep": 2, "keep_system": False}])
    got = await _sent(server, sc2.proxy_port, BODY)
    assert got["messages"] == MESSAGES[2:]


async def test_prompt_noise_changes_only_the_users_words_the_same_way_every_time(llm, start_sidecar):
    server, url = llm
    sc = await llm_sidecar(start_sidecar, url, [{"type": "prompt_noise", "mode": "typos", "rate": 0.5, "seed": 7}])
    first = await _sent(server, sc.proxy_port, BODY)
    again = await _sent(server, sc.proxy_port, BODY)
    assert first == again  # seeded by the text: a retry sees the same noise
    assert first["messages"][0] == MESSAGES[0] and first["messages"][2] == MESSAGES[2]
    assert first["messages"][1]["content"] != MESSAGES[1]["content"]
    assert first["messages"][3]["content"] != MESSAGES[3]["content"]


def test_prompt_noise_typos_and_shuffles_as_told():
    text = "the quick brown fox jumps over the lazy dog near the river bank"
    shuffled = PromptNoise(mode="shuffle", rate=1.0, seed=1).noisy(text)
    assert sorted(shuffled.split()) == sorted(text.split()) and shuffled != text
    typo = PromptNoise(mode="typos", rate=1.0, seed=1).noisy(text)
    changed = [a != b for a, b in zip(typo.split(), text.split(), strict=True)]
    assert len(typo.split()) == len(text.split()) and sum(changed) >= len(changed) // 2
    assert PromptNoise(mode="typos", rate=0.0).noisy(text) == text
    assert PromptNoise(seed=2, rate=1.0).noisy(text) != PromptNoise(seed=3, rate=1.0).noisy(text)


async def test_max_tokens_clamp_shortens_the_answer_to_length(llm, start_sidecar):
    server, url = llm
    sc = await llm_sidecar(start_sidecar, url, [{"type": "max_tokens_clamp", "max_tokens": 3}])
    a = await chat(sc.proxy_port, {**BODY, "stream": True}, FORCE_CHAOS)
    assert server.requests[-1]["max_tokens"] == 3
    assert len(a.text().split()) == 3 and a.finish_reasons() == ["length"]
    await _sent(server, sc.proxy_port, {"model": "m", "messages": MESSAGES})  # no max_tokens: one is set
    assert server.requests[-1]["max_tokens"] == 3
    await _sent(server, sc.proxy_port, {**BODY, "max_tokens": 2})  # already lower: kept
    assert server.requests[-1]["max_tokens"] == 2


@pytest.mark.parametrize("stream", [False, True])
async def test_empty_completion_answers_200_with_nothing(llm, start_sidecar, stream):
    _, url = llm
    sc = await llm_sidecar(start_sidecar, url, [{"type": "empty_completion"}])
    a = await chat(sc.proxy_port, {**BODY, "stream": stream}, FORCE_CHAOS)
    assert a.status == 200
    if stream:
        assert a.text() == "" and a.finish_reasons() == ["stop"] and a.done
        assert len(a.events) == 3  # the role chunk, the last chunk, [DONE]
    else:
        choice = a.json()["choices"][0]
        assert choice["message"]["content"] == "" and choice["finish_reason"] == "stop"


TOOLS = [{"type": "function", "function": {"name": "search", "parameters": {
    "type": "object", "properties": {"query": {"type": "string"}, "limit": {"type": "integer"}}}}}]


@pytest.mark.parametrize("stream", [False, True])
async def test_tool_call_corrupt_breaks_the_arguments_json(llm, start_sidecar, stream):
    _, url = llm
    sc = await llm_sidecar(start_sidecar, url, [{"type": "tool_call_corrupt"}])
    body = {**BODY, "tools": TOOLS, "tool_choice": {"type": "function", "function": {"name": "search"}},
            "stream": stream}

    def arguments(a: Any) -> str:
        if not stream:
            return str(a.json()["choices"][0]["message"]["tool_calls"][0]["function"]["arguments"])
        return "".join(tc["function"].get("arguments", "") for c in a.chunks() for ch in c["choices"]
                       for tc in (ch.get("delta") or {}).get("tool_calls") or ())

    good = arguments(await chat(sc.proxy_port, body, FORCE_CONTROL))
    assert orjson.loads(good)["limit"] == 3
    bad = arguments(await chat(sc.proxy_port, body, FORCE_CHAOS))
    with pytest.raises(orjson.JSONDecodeError):
        orjson.loads(bad)
    assert bad and bad != good


async def test_a_request_that_is_not_json_passes_untouched_and_is_counted(llm, start_sidecar):
    _, url = llm
    sc = await llm_sidecar(start_sidecar, url, [{"type": "drop_system_prompt"}])
    async with aiohttp.ClientSession() as s, s.post(f"http://127.0.0.1:{sc.proxy_port}/v1/chat/completions",
                                                    data=b"not json", headers=FORCE_CHAOS) as r:
        assert r.status == 400 and "not JSON" in (await r.json())["error"]["message"]  # the model's own answer
    assert sc.metrics.registry.get_sample_value(
        "mlchaos_payload_unparsed_total", {"experiment": "e1", "cohort": "chaos", "direction": "request"}) == 1.0


async def test_embeddings_take_feature_faults_on_the_vectors(llm, start_sidecar):
    _, url = llm
    sc = await llm_sidecar(start_sidecar, url, [{"type": "nan", "target": "response", "fraction": 1.0}],
                           payload={"format": "openai"})
    body = {"model": "m", "input": ["a", "b"]}
    good = await chat(sc.proxy_port, body, FORCE_CONTROL, path="/v1/embeddings")
    bad = await chat(sc.proxy_port, body, FORCE_CHAOS, path="/v1/embeddings")
    assert all(isinstance(v, float) for v in good.json()["data"][0]["embedding"])
    assert [v is None for v in bad.json()["data"][1]["embedding"]] == [True] * 16  # NaN is null in JSON
    sc2 = await llm_sidecar(start_sidecar, url, [{"type": "shift", "target": "response", "offset": 1.0}])
    shifted = await chat(sc2.proxy_port, body, FORCE_CHAOS, path="/openai/v1/embeddings")
    assert [round(b - a, 6) for a, b in zip(good.json()["data"][0]["embedding"],
                                             shifted.json()["data"][0]["embedding"], strict=True)] == [1.0] * 16
