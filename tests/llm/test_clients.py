"""Real clients (the official openai SDK, sync and async, and LangChain's ChatOpenAI) through mlchaos in front
of a real server (llama.cpp's OpenAI-compatible server on a tiny random-weight model, deterministic at
temperature 0): for each fault, what the client does: its retries and their count, what it raises, or the
answer it silently returns. The clients run in their own venv (scripts/servers/llm_client.py); answers are
compared with the same request sent to the server directly, never with text written down here.

llama-cpp-python 0.3.36 streams tool-call arguments cut short (``{ "query": "``) even without mlchaos, and
ignores ``max_completion_tokens`` (LangChain's name for max_tokens): tool calls are asked for whole, and
LangChain's budget goes in ``extra_body``. tests/llm/test_request_faults.py covers streamed tool calls.
"""

from __future__ import annotations

import json
from typing import Any

import aiohttp
import orjson
import pytest

from proxy.faults.prompt_noise import PromptNoise
from tests.llm.conftest import FORCE_CHAOS, FORCE_CONTROL, FORCE_NONE, llm_sidecar
from tests.llm.servers import run_clients

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("clients")]

SYSTEM: dict[str, str] = {"role": "system", "content": "You are a poet."}
STORY = [{"role": "user", "content": "Tell me a story"}]
CHAT: dict[str, Any] = {"model": "tiny", "messages": STORY, "max_tokens": 12, "temperature": 0}
TOOLS = [{"type": "function", "function": {"name": "search", "parameters": {
    "type": "object", "properties": {"query": {"type": "string", "enum": ["cats", "dogs"]}}, "required": ["query"]}}}]
FORCE_TOOL = {"type": "function", "function": {"name": "search"}}


def job(port: int, client: str = "openai", *, force: dict[str, str] | None = None, stream: bool = False,
        call: str = "chat", request: dict[str, Any] | None = None, **extra: Any) -> dict[str, Any]:
    req = dict(request or CHAT)
    if client.startswith("langchain") and "max_tokens" in req:
        req["extra_body"] = {"max_tokens": req.pop("max_tokens")}
    return {"client": client, "call": call, "stream": stream, "base_url": f"http://127.0.0.1:{port}/v1",
            "headers": force or {}, "request": req, **extra}


def port_of(url: str) -> int:
    return int(url.rsplit(":", 1)[1])


def words(r: dict[str, Any]) -> list[str]:
    return str(r["text"]).split()


async def test_control_and_unassigned_answers_are_the_servers(llama, start_sidecar):
    sc = await llm_sidecar(start_sidecar, llama.url, [{"type": "stream_truncate", "after": 2}])
    p, direct = sc.proxy_port, port_of(llama.url)
    cases = [("openai", False), ("openai", True), ("openai-async", True), ("langchain", True)]
    res = await run_clients([job(port, c, force=f, stream=s) for c, s in cases
                             for port, f in ((direct, None), (p, FORCE_CONTROL), (p, FORCE_NONE))])
    for i in range(0, len(res), 3):
        want, control, none = res[i:i + 3]
        assert want["ok"] and len(words(want)) == 12 and want["finish_reason"] == "length"
        for got in (control, none):
            assert (got["text"], got["finish_reason"], got["chunks"]) == (want["text"], "length", want["chunks"])


async def test_control_and_unassigned_streams_are_byte_identical_to_direct(llama, start_sidecar):
    sc = await llm_sidecar(start_sidecar, llama.url, [{"type": "token_delay", "duration": "10ms"}])
    body = {**CHAT, "stream": True}

    async def raw(port: int, force: dict[str, str] | None) -> bytes:
        async with aiohttp.ClientSession() as s, \
                s.post(f"http://127.0.0.1:{port}/v1/chat/completions", json=body, headers=force or {}) as r:
            return await r.read()

    def normal(stream: bytes) -> bytes:  # the id and created differ per answer: nothing else may
        out = []
        for event in stream.split(b"\n\n"):
            if event.startswith(b"data: {"):
                doc = orjson.loads(event[6:])
                doc["id"], doc["created"] = "X", 0
                event = b"data: " + json.dumps(doc).encode()
            out.append(event)
        return b"\n\n".join(out)

    direct = await raw(port_of(llama.url), None)
    assert direct.endswith(b"data: [DONE]\n\n") and direct.count(b"\n\n") == 12 + 3
    for force in (FORCE_CONTROL, FORCE_NONE):
        assert normal(await raw(sc.proxy_port, force)) == normal(direct)


async def test_rate_limit_is_retried_as_told_then_raised(llama, start_sidecar):
    sc = await llm_sidecar(start_sidecar, llama.url, [{"type": "rate_limit", "retry_after": "100ms"}])
    p = sc.proxy_port
    sdk, none, chain, control = await run_clients([
        job(p, force=FORCE_CHAOS, max_retries=2), job(p, force=FORCE_CHAOS, max_retries=0),
        job(p, "langchain", force=FORCE_CHAOS, max_retries=1), job(p, force=FORCE_CONTROL),
    ])
    assert sdk["error"] == "RateLimitError" and sdk["status"] == 429 and sdk["attempts"] == 3
    assert sdk["elapsed"] >= 2 * 0.1  # it waited retry-after-ms between tries, not its own backoff
    assert none["error"] == "RateLimitError" and none["attempts"] == 1
    # LangChain raises its own subclass of the SDK's error, after the SDK's retries.
    assert "RateLimitError" in chain["bases"] and chain["attempts"] == 2
    assert control["ok"] and control["attempts"] == 1


async def test_context_length_is_a_400_no_client_retries(llama, start_sidecar):
    sc = await llm_sidecar(start_sidecar, llama.url, [{"type": "context_length", "limit": 2048}])
    p = sc.proxy_port
    sdk, chain, stream = await run_clients([job(p, force=FORCE_CHAOS), job(p, "langchain", force=FORCE_CHAOS),
                                            job(p, force=FORCE_CHAOS, stream=True)])
    for r in (sdk, chain, stream):
        assert "BadRequestError" in r["bases"] and r["status"] == 400 and r["attempts"] == 1
        assert r["code"] == "context_length_exceeded" and "maximum context length is 2048" in r["message"]


async def test_prompt_faults_change_the_answer_to_the_changed_prompt(llama, start_sidecar):
    """Each request fault: the chaos answer is the server's answer to the changed request, sent directly."""
    history: list[dict[str, str]] = [
        SYSTEM, {"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello"},
        {"role": "user", "content": "Tell me a story about the sea"}]
    noisy = PromptNoise(mode="typos", rate=0.5, seed=3)
    cases: list[tuple[dict[str, Any], list[dict[str, str]], list[dict[str, str]]]] = [
        ({"type": "drop_system_prompt"}, history, history[1:]),
        ({"type": "truncate_context", "keep": 1}, history, [SYSTEM, history[3]]),
        ({"type": "prompt_noise", "mode": "typos", "rate": 0.5, "seed": 3}, history,
         [*history[:3], {"role": "user", "content": noisy.noisy(history[3]["content"])}]),
    ]
    direct = port_of(llama.url)
    for fault, sent, seen in cases:
        sc = await llm_sidecar(start_sidecar, llama.url, [fault])
        p = sc.proxy_port
        chaos, chain, control, want, original = await run_clients([
            job(p, force=FORCE_CHAOS, request={**CHAT, "messages": sent}),
            job(p, "langchain", force=FORCE_CHAOS, request={**CHAT, "messages": sent}),
            job(p, force=FORCE_CONTROL, request={**CHAT, "messages": sent}),
            job(direct, request={**CHAT, "messages": seen}),
            job(direct, request={**CHAT, "messages": sent}),
        ])
        assert want["text"] != original["text"], fault  # the model notices the change
        assert chaos["ok"] and chaos["text"] == want["text"] == chain["text"], fault
        assert control["text"] == original["text"], fault


async def test_max_tokens_clamp_gives_a_silently_short_answer(llama, start_sidecar):
    sc = await llm_sidecar(start_sidecar, llama.url, [{"type": "max_tokens_clamp", "max_tokens": 3}])
    p = sc.proxy_port
    res = await run_clients([job(p, force=FORCE_CHAOS), job(p, force=FORCE_CHAOS, stream=True),
                             job(p, "langchain", force=FORCE_CHAOS), job(port_of(llama.url))])
    *chaos, full = res
    for r in chaos:
        assert r["ok"] and r["finish_reason"] == "length" and words(r) == words(full)[:3]


async def test_empty_completion_is_a_successful_empty_answer(llama, start_sidecar):
    sc = await llm_sidecar(start_sidecar, llama.url, [{"type": "empty_completion"}])
    p = sc.proxy_port
    res = await run_clients([job(p, force=FORCE_CHAOS), job(p, force=FORCE_CHAOS, stream=True),
                             job(p, "openai-async", force=FORCE_CHAOS, stream=True),
                             job(p, "langchain", force=FORCE_CHAOS, stream=True)])
    for r in res:
        assert r["ok"] and r["text"] == "" and r["finish_reason"] == "stop" and r["attempts"] == 1


async def test_tool_call_corrupt_leaves_arguments_that_do_not_parse(llama, start_sidecar):
    sc = await llm_sidecar(start_sidecar, llama.url, [{"type": "tool_call_corrupt"}])
    p = sc.proxy_port
    tools = {**CHAT, "max_tokens": 40, "tools": TOOLS, "tool_choice": FORCE_TOOL}
    sdk, chain, good, good_chain = await run_clients([
        job(p, force=FORCE_CHAOS, request=tools), job(p, "langchain", force=FORCE_CHAOS, request=tools),
        job(p, force=FORCE_CONTROL, request=tools), job(p, "langchain", force=FORCE_CONTROL, request=tools)])
    assert json.loads(good["tool_arguments"])["query"] in ("cats", "dogs")
    assert sdk["ok"] and sdk["finish_reason"] == "tool_calls"
    with pytest.raises(json.JSONDecodeError):
        json.loads(sdk["tool_arguments"])
    # LangChain does not raise: the call moves to invalid_tool_calls, and an agent that only reads
    # tool_calls sees the model call no tool at all.
    assert chain["ok"] and chain["tool_calls"] == [] and len(chain["invalid_tool_calls"]) == 1
    assert good_chain["tool_calls"] and not good_chain["invalid_tool_calls"]


async def test_first_token_delay_and_token_delay_slow_the_stream_not_the_answer(llama, start_sidecar):
    sc = await llm_sidecar(start_sidecar, llama.url, [{"type": "first_token_delay", "duration": "400ms"},
                                                      {"type": "token_delay", "duration": "30ms"}])
    p = sc.proxy_port
    res = await run_clients([job(p, c, force=f, stream=True)
                             for c in ("openai", "openai-async", "langchain") for f in (FORCE_CHAOS, FORCE_CONTROL)])
    for chaos, control in zip(res[::2], res[1::2], strict=True):
        assert chaos["ok"] and chaos["text"] == control["text"] and chaos["finish_reason"] == "length"
        times = chaos["content_times"]
        assert times[0] >= 0.4 and control["content_times"][0] < 0.4
        assert times[-1] - times[0] >= 11 * 0.030 * 0.9  # 11 gaps of at least 30 ms (timers may shave a bit)


async def test_stream_stall_times_out_a_client_or_breaks_its_connection(llama, start_sidecar):
    stalled = await llm_sidecar(start_sidecar, llama.url, [{"type": "stream_stall", "after": 2, "duration": "1500ms"}])
    reset = await llm_sidecar(start_sidecar, llama.url, [{"type": "stream_stall", "after": 2, "duration": "100ms",
                                                          "then": "reset"}])
    slow, patient, chain, broken = await run_clients([
        job(stalled.proxy_port, force=FORCE_CHAOS, stream=True, timeout=0.5),
        job(stalled.proxy_port, force=FORCE_CHAOS, stream=True, timeout=5.0),
        job(stalled.proxy_port, "langchain", force=FORCE_CHAOS, stream=True, timeout=0.5),
        job(reset.proxy_port, force=FORCE_CHAOS, stream=True),
    ])
    # A read timeout mid-stream raises; nothing is retried once a stream has begun.
    assert slow["error"] == "APITimeoutError" and slow["attempts"] == 1 and len(slow["content_times"]) == 2
    assert "APITimeoutError" in chain["bases"] and chain["attempts"] == 1
    assert patient["ok"] and len(words(patient)) == 12
    assert patient["content_times"][2] - patient["content_times"][1] >= 1.4
    assert broken["error"] == "APIConnectionError" and broken["attempts"] == 1


@pytest.mark.parametrize(("ending", "finish"), [("done", None), ("length", "length"), ("abort", "abort")])
async def test_stream_truncate_that_looks_complete_is_a_silently_short_answer(llama, start_sidecar, ending, finish):
    sc = await llm_sidecar(start_sidecar, llama.url, [{"type": "stream_truncate", "after": 4, "ending": ending}])
    p = sc.proxy_port
    res = await run_clients([job(p, force=FORCE_CHAOS, stream=True),
                             job(p, "openai-async", force=FORCE_CHAOS, stream=True),
                             job(p, "langchain", force=FORCE_CHAOS, stream=True),
                             job(p, force=FORCE_CHAOS, stream=True, call="completions",
                                 request={"model": "tiny", "prompt": "Once", "max_tokens": 8, "temperature": 0}),
                             job(port_of(llama.url))])
    *chaos, full = res
    for r in chaos[:3]:
        assert r["ok"] and words(r) == words(full)[:4] and r["finish_reason"] == finish
    assert chaos[3]["ok"] and len(words(chaos[3])) == 4 and chaos[3]["finish_reason"] == finish


async def test_stream_truncate_that_closes_raises(llama, start_sidecar):
    sc = await llm_sidecar(start_sidecar, llama.url, [{"type": "stream_truncate", "after": 4, "ending": "close"}])
    res = await run_clients([job(sc.proxy_port, c, force=FORCE_CHAOS, stream=True)
                             for c in ("openai", "openai-async", "langchain")])
    for r in res:
        assert "APIConnectionError" in r["bases"] and r["attempts"] == 1


@pytest.mark.parametrize("shape", ["vllm", "openai"])
async def test_stream_error_raises_api_error_mid_stream(llama, start_sidecar, shape):
    sc = await llm_sidecar(start_sidecar, llama.url, [{"type": "stream_error", "after": 3, "shape": shape,
                                                       "message": "engine died"}])
    res = await run_clients([job(sc.proxy_port, c, force=FORCE_CHAOS, stream=True)
                             for c in ("openai", "openai-async", "langchain", "langchain-async")])
    for r in res:
        assert "APIError" in r["bases"] and r["message"] == "engine died" and len(r["content_times"]) == 3
        assert r["attempts"] == 1


async def test_malformed_chunk_raises_a_json_error_in_both_clients(llama, start_sidecar):
    sc = await llm_sidecar(start_sidecar, llama.url, [{"type": "malformed_chunk", "after": 2}])
    res = await run_clients([job(sc.proxy_port, c, force=FORCE_CHAOS, stream=True)
                             for c in ("openai", "openai-async", "langchain")])
    for r in res:
        assert r["error"] == "JSONDecodeError" and len(r["content_times"]) == 2


async def test_feature_faults_on_embeddings_reach_the_client_silently(llama, start_sidecar):
    nan = await llm_sidecar(start_sidecar, llama.url, [{"type": "nan", "target": "response"}])
    shift = await llm_sidecar(start_sidecar, llama.url, [{"type": "shift", "target": "response", "offset": 10.0}])
    body = {"model": "tiny", "input": ["a", "b"]}
    broken, moved, good = await run_clients([
        job(nan.proxy_port, force=FORCE_CHAOS, call="embeddings", request=body),
        job(shift.proxy_port, force=FORCE_CHAOS, call="embeddings", request=body),
        job(port_of(llama.url), call="embeddings", request=body)])
    assert good["ok"] and len(good["embedding"]) == 64 and None not in good["embedding"]
    # The SDK hands NaN vectors (null in JSON) to the application without a word.
    assert broken["ok"] and broken["embedding"] == [None] * 64 and broken["vectors"] == 2
    assert moved["ok"] and [round(b - a, 4) for a, b in zip(good["embedding"], moved["embedding"], strict=True)] == \
        [10.0] * 64
