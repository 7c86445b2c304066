"""Run real LLM clients against an OpenAI-compatible URL and report what each one did, as JSON.

Runs in the llm-clients venv (scripts/servers/llm-clients.txt: the official openai SDK, LangChain's
ChatOpenAI), not the project's: tests/llm/test_clients.py starts it with a list of jobs on stdin

    {"client": "openai" | "openai-async" | "langchain" | "langchain-async",
     "call": "chat" | "completions" | "embeddings", "stream": false,
     "base_url": "http://127.0.0.1:PORT/v1", "headers": {...}, "max_retries": 2, "timeout": 10,
     "request": {"model": ..., "messages": [...], ...}}

and reads one result per job on stdout: whether it raised (the exception's class, its bases, message, status
and code), how many HTTP requests the client sent (retries included, counted by an httpx event hook), the
answer's text, finish_reason, chunk count and arrival times, tool-call arguments, and an embedding. Nothing
here retries or catches on the client's behalf: what the client library does is what the test sees.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from typing import Any

import openai


def _exception(exc: BaseException) -> dict[str, Any]:
    return {
        "error": type(exc).__name__,
        "bases": [c.__name__ for c in type(exc).__mro__],
        "message": str(exc)[:500],
        "status": getattr(exc, "status_code", None),
        "code": getattr(exc, "code", None),
    }


def _openai_job(job: dict[str, Any], out: dict[str, Any]) -> None:
    def count(request: Any) -> None:
        out["attempts"] += 1

    client = openai.OpenAI(
        base_url=job["base_url"], api_key="unused", max_retries=job.get("max_retries", 2),
        timeout=job.get("timeout", 10.0), default_headers=job.get("headers") or {},
        http_client=openai.DefaultHttpxClient(event_hooks={"request": [count]}),
    )
    t0 = time.monotonic()
    req = job["request"]
    if job["call"] == "embeddings":
        e = client.embeddings.create(**req)
        out["embedding"] = [None if v != v else v for v in e.data[0].embedding]
        out["vectors"] = len(e.data)
        return
    api = client.chat.completions if job["call"] == "chat" else client.completions
    if not job.get("stream"):
        r = api.create(**req)
        choice = r.choices[0]
        if job["call"] == "chat":
            out["text"] = choice.message.content
            calls = choice.message.tool_calls or []
            out["tool_arguments"] = calls[0].function.arguments if calls else None
        else:
            out["text"] = choice.text
        out["finish_reason"] = choice.finish_reason
        out["completion_tokens"] = r.usage.completion_tokens if r.usage else None
        return
    text, args = [], []
    for chunk in api.create(stream=True, **req):
        now = time.monotonic() - t0
        out["chunks"] += 1
        for choice in chunk.choices:
            piece = choice.delta.content if job["call"] == "chat" else choice.text
            if piece:
                text.append(piece)
                out["content_times"].append(now)
            for call in (choice.delta.tool_calls or []) if job["call"] == "chat" else []:
                if call.function and call.function.arguments:
                    args.append(call.function.arguments)
                    out["content_times"].append(now)
            if choice.finish_reason:
                out["finish_reason"] = choice.finish_reason
    out["text"] = "".join(text)
    out["tool_arguments"] = "".join(args) if args else None


async def _openai_async_job(job: dict[str, Any], out: dict[str, Any]) -> None:
    async def count(request: Any) -> None:
        out["attempts"] += 1

    client = openai.AsyncOpenAI(
        base_url=job["base_url"], api_key="unused", max_retries=job.get("max_retries", 2),
        timeout=job.get("timeout", 10.0), default_headers=job.get("headers") or {},
        http_client=openai.DefaultAsyncHttpxClient(event_hooks={"request": [count]}),
    )
    t0 = time.monotonic()
    req = job["request"]
    if not job.get("stream"):
        r = await client.chat.completions.create(**req)
        out["text"] = r.choices[0].message.content
        out["finish_reason"] = r.choices[0].finish_reason
        return
    text = []
    stream = await client.chat.completions.create(stream=True, **req)
    async for chunk in stream:
        out["chunks"] += 1
        for choice in chunk.choices:
            if choice.delta.content:
                text.append(choice.delta.content)
                out["content_times"].append(time.monotonic() - t0)
            if choice.finish_reason:
                out["finish_reason"] = choice.finish_reason
    out["text"] = "".join(text)


def _langchain(job: dict[str, Any], out: dict[str, Any], asynchronous: bool) -> Any:
    from langchain_openai import ChatOpenAI

    def count(request: Any) -> None:
        out["attempts"] += 1

    async def acount(request: Any) -> None:
        out["attempts"] += 1

    req = dict(job["request"])
    messages = [(m["role"], m["content"]) for m in req.pop("messages")]
    tools = req.pop("tools", None)
    tool_choice = req.pop("tool_choice", None)
    llm = ChatOpenAI(
        base_url=job["base_url"], api_key="unused", max_retries=job.get("max_retries", 2),
        timeout=job.get("timeout", 10.0), default_headers=job.get("headers") or {},
        http_client=openai.DefaultHttpxClient(event_hooks={"request": [count]}),
        http_async_client=openai.DefaultAsyncHttpxClient(event_hooks={"request": [acount]}),
        streaming=bool(job.get("stream")), **req,
    )
    if tools:
        llm = llm.bind_tools(tools, tool_choice=tool_choice["function"]["name"] if tool_choice else None)
    return llm, messages


def _langchain_result(msg: Any, out: dict[str, Any]) -> None:
    out["text"] = msg.content if isinstance(msg.content, str) else json.dumps(msg.content)
    meta = getattr(msg, "response_metadata", {}) or {}
    out["finish_reason"] = meta.get("finish_reason")
    out["tool_calls"] = [{"name": c["name"], "args": c["args"]} for c in getattr(msg, "tool_calls", [])]
    out["invalid_tool_calls"] = [{"name": c.get("name"), "args": c.get("args"), "error": c.get("error")}
                                 for c in getattr(msg, "invalid_tool_calls", [])]


def _langchain_job(job: dict[str, Any], out: dict[str, Any]) -> None:
    llm, messages = _langchain(job, out, False)
    t0 = time.monotonic()
    if not job.get("stream"):
        _langchain_result(llm.invoke(messages), out)
        return
    total = None
    for chunk in llm.stream(messages):
        out["chunks"] += 1
        if chunk.content:
            out["content_times"].append(time.monotonic() - t0)
        total = chunk if total is None else total + chunk
    if total is not None:
        _langchain_result(total, out)


async def _langchain_async_job(job: dict[str, Any], out: dict[str, Any]) -> None:
    llm, messages = _langchain(job, out, True)
    t0 = time.monotonic()
    if not job.get("stream"):
        _langchain_result(await llm.ainvoke(messages), out)
        return
    total = None
    async for chunk in llm.astream(messages):
        out["chunks"] += 1
        if chunk.content:
            out["content_times"].append(time.monotonic() - t0)
        total = chunk if total is None else total + chunk
    if total is not None:
        _langchain_result(total, out)


def run(job: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {"ok": True, "attempts": 0, "chunks": 0, "content_times": [], "text": None,
                           "finish_reason": None, "tool_arguments": None}
    t0 = time.monotonic()
    try:
        client = job["client"]
        if client == "openai":
            _openai_job(job, out)
        elif client == "openai-async":
            asyncio.run(_openai_async_job(job, out))
        elif client == "langchain":
            _langchain_job(job, out)
        elif client == "langchain-async":
            asyncio.run(_langchain_async_job(job, out))
        else:
            raise ValueError(f"unknown client {client!r}")
    except Exception as exc:  # the point: report what the client raised
        out.update(ok=False, **_exception(exc))
    out["elapsed"] = time.monotonic() - t0
    return out


def main() -> None:
    jobs = json.load(sys.stdin)
    json.dump([run(job) for job in jobs], sys.stdout)


if __name__ == "__main__":
    main()
