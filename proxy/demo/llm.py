"""An embedded OpenAI-compatible LLM server that streams like vLLM, for ``mlchaos demo --llm``, the tests and
the streaming benchmark.

``/v1/chat/completions``, ``/v1/completions``, ``/v1/embeddings`` and ``/v1/models``, answered by a "model"
that writes deterministic words (a hash of the prompt picks them), one token per chunk, after a prefill time
that grows with the prompt and a fixed time per token. The stream is vLLM's, byte for byte in shape: compact
JSON, a role chunk first, one ``chat.completion.chunk`` per token, a last chunk with ``finish_reason``, a usage
chunk when ``stream_options.include_usage`` asks, then ``data: [DONE]``. ``max_tokens`` ends an answer with
``length``, a ``stop`` string with ``stop``; ``tools`` with a forced ``tool_choice`` make it call the tool with
JSON arguments streamed in pieces. A prompt over ``context`` tokens gets vLLM's 400.

Every chunk's send time is kept (``LlmServer.sent``, ``time.monotonic``) so that a test can compare when a
chunk left the server with when it reached a client.

    python -m proxy.demo.llm --port 8080 --token-ms 20
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import math
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

__all__ = ["LlmServer", "make_app", "start_llm", "words_for"]

HOST = "127.0.0.1"
MODEL = "mlchaos-tiny"
WORDS = ("the a of and to in is it you that he was for on are with as his they be at one have this from or had by "
         "word but what some we can out other were all there when up use your how said an each she which do their "
         "time if will way about many then them write would like so these her long make thing see him two has look "
         "more day could go come did number sound no most people my over know water than call first who may down "
         "side been now find").split()
EMBEDDING_DIM = 16


def words_for(prompt: str, n: int) -> list[str]:
    """The answer's first ``n`` tokens: the same prompt always gets the same words."""
    out: list[str] = []
    seed = hashlib.blake2b(prompt.encode(), digest_size=16).digest()
    block = 0
    while len(out) < n:
        digest = hashlib.blake2b(seed + block.to_bytes(4, "little"), digest_size=32).digest()
        out.extend(" " + WORDS[b % len(WORDS)] for b in digest)
        block += 1
    return out[:n]


def _prompt_text(doc: dict[str, Any]) -> str:
    messages = doc.get("messages")
    if isinstance(messages, list):
        parts = []
        for m in messages:
            content = m.get("content") if isinstance(m, dict) else None
            if isinstance(content, list):
                content = " ".join(p.get("text", "") for p in content if isinstance(p, dict))
            parts.append(f"<{m.get('role') if isinstance(m, dict) else '?'}>{content or ''}")
        return "\n".join(parts)
    prompt = doc.get("prompt")
    return prompt if isinstance(prompt, str) else json.dumps(prompt)


def _dumps(doc: Any) -> bytes:
    return json.dumps(doc, separators=(",", ":")).encode()


def _error(status: int, message: str, kind: str = "BadRequestError", code: Any = None) -> web.Response:
    body = {"object": "error", "message": message, "type": kind, "param": None, "code": code or status}
    return web.Response(status=status, body=_dumps({"error": body}), content_type="application/json")


@dataclass
class LlmServer:
    """The server's knobs and what it recorded."""

    token_seconds: float = 0.0
    prefill_seconds: float = 0.0
    context: int = 8192
    # time.monotonic() at each chunk's write, newest last (bounded: a long demo run keeps the last ones).
    sent: deque[float] = field(default_factory=lambda: deque(maxlen=100_000))
    requests: list[dict[str, Any]] = field(default_factory=list)
    served: int = 0

    async def models(self, request: web.Request) -> web.Response:
        return web.json_response({"object": "list", "data": [{"id": MODEL, "object": "model", "owned_by": "mlchaos"}]})

    async def chat(self, request: web.Request) -> web.StreamResponse:
        return await self._generate(request, chat=True)

    async def completions(self, request: web.Request) -> web.StreamResponse:
        return await self._generate(request, chat=False)

    async def embeddings(self, request: web.Request) -> web.Response:
        try:
            doc = await request.json()
        except ValueError:
            return _error(400, "the body is not JSON")
        inputs = doc.get("input")
        inputs = [inputs] if isinstance(inputs, str) else inputs
        if not isinstance(inputs, list) or not inputs:
            return _error(400, "input must be a string or a list")
        data = []
        for i, text in enumerate(inputs):
            digest = hashlib.blake2b(str(text).encode(), digest_size=EMBEDDING_DIM).digest()
            vec = [round((b - 127.5) / 127.5, 6) for b in digest]
            data.append({"object": "embedding", "index": i, "embedding": vec})
        tokens = sum(len(str(t).split()) for t in inputs)
        return web.json_response({"object": "list", "data": data, "model": doc.get("model", MODEL),
                                  "usage": {"prompt_tokens": tokens, "total_tokens": tokens}})

    async def _generate(self, request: web.Request, chat: bool) -> web.StreamResponse:
        try:
            doc = await request.json()
        except ValueError:
            return _error(400, "the body is not JSON")
        if not isinstance(doc, dict):
            return _error(400, "the body is not a JSON object")
        self.requests.append(doc)
        self.served += 1
        prompt = _prompt_text(doc)
        prompt_tokens = max(1, math.ceil(len(prompt) / 4))
        n = doc.get("max_completion_tokens", doc.get("max_tokens")) or 16
        if prompt_tokens + n > self.context:
            return _error(400, f"This model's maximum context length is {self.context} tokens. However, you "
                               f"requested {prompt_tokens + n} tokens ({prompt_tokens} in the messages, {n} in the "
                               f"completion). Please reduce the length of the messages or completion.",
                          code="context_length_exceeded")
        tool = _forced_tool(doc) if chat else None
        pieces, finish = _answer(prompt, int(n), doc.get("stop"), tool)
        rid = ("chatcmpl-" if chat else "cmpl-") + hashlib.blake2b(f"{self.served}".encode(), digest_size=8).hexdigest()
        created = int(time.time())
        model = doc.get("model", MODEL)
        usage = {"prompt_tokens": prompt_tokens, "completion_tokens": len(pieces),
                 "total_tokens": prompt_tokens + len(pieces)}
        await asyncio.sleep(self.prefill_seconds * (1 + prompt_tokens / 512))
        if not doc.get("stream"):
            await asyncio.sleep(self.token_seconds * len(pieces))
            return web.Response(body=_dumps(_whole(rid, created, model, chat, pieces, finish, tool, usage)),
                                content_type="application/json")
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream; charset=utf-8"})
        await resp.prepare(request)
        try:
            await self._stream(resp, doc, chat, pieces, finish, tool, usage, rid, created, model)
        except ConnectionResetError:
            pass  # the client (or a proxy's fault) went away mid-stream: a server just stops generating
        return resp

    async def _stream(self, resp: web.StreamResponse, doc: dict[str, Any], chat: bool, pieces: list[str],
                      finish: str, tool: str | None, usage: dict[str, int], rid: str, created: int,
                      model: str) -> None:
        obj = "chat.completion.chunk" if chat else "text_completion"
        head = {"id": rid, "object": obj, "created": created, "model": model}

        async def send(choice: dict[str, Any] | None, extra: dict[str, Any] | None = None) -> None:
            body = {**head, "choices": [] if choice is None else [choice], **(extra or {})}
            self.sent.append(time.monotonic())
            await resp.write(b"data: " + _dumps(body) + b"\n\n")

        if chat:
            await send({"index": 0, "delta": {"role": "assistant", "content": ""}, "logprobs": None,
                        "finish_reason": None})
        for i, piece in enumerate(pieces):
            if i:
                await asyncio.sleep(self.token_seconds)
            if tool is not None:
                call: dict[str, Any] = {"index": 0, "function": {"arguments": piece}}
                if i == 0:
                    call.update(id="call_" + rid[-8:], type="function")
                    call["function"] = {"name": tool, "arguments": piece}
                delta: dict[str, Any] = {"tool_calls": [call]}
            else:
                delta = {"content": piece}
            choice = {"index": 0, "delta": delta} if chat else {"index": 0, "text": piece}
            await send({**choice, "logprobs": None, "finish_reason": None})
        last = {"index": 0, "delta": {}} if chat else {"index": 0, "text": ""}
        await send({**last, "logprobs": None, "finish_reason": finish})
        if isinstance(doc.get("stream_options"), dict) and doc["stream_options"].get("include_usage"):
            await send(None, {"usage": usage})
        self.sent.append(time.monotonic())
        await resp.write(b"data: [DONE]\n\n")
        await resp.write_eof()


def _forced_tool(doc: dict[str, Any]) -> str | None:
    """The name of the function ``tool_choice`` forces (or the only tool, with ``required``)."""
    choice, tools = doc.get("tool_choice"), doc.get("tools")
    if isinstance(choice, dict) and isinstance(choice.get("function"), dict):
        name = choice["function"].get("name")
        return name if isinstance(name, str) else None
    if choice == "required" and isinstance(tools, list) and tools:
        fn = tools[0].get("function") if isinstance(tools[0], dict) else None
        return fn.get("name") if isinstance(fn, dict) else None
    return None


def _answer(prompt: str, n: int, stop: Any, tool: str | None) -> tuple[list[str], str]:
    """The answer's pieces (one a token) and its finish reason."""
    if tool is not None:
        args = json.dumps({"query": "".join(words_for(prompt, 3)).strip(), "limit": 3})
        return [args[i:i + 8] for i in range(0, len(args), 8)], "tool_calls"
    words = words_for(prompt, n)
    stops = [stop] if isinstance(stop, str) else [s for s in stop or () if isinstance(s, str)]
    text = ""
    for i, w in enumerate(words):
        for s in stops:
            if s and s in text + w:
                return words[:i], "stop"
        text += w
    return words, "length"


def _whole(rid: str, created: int, model: str, chat: bool, pieces: list[str], finish: str, tool: str | None,
           usage: dict[str, int]) -> dict[str, Any]:
    text = "".join(pieces)
    if chat:
        message: dict[str, Any] = {"role": "assistant", "content": None if tool else text}
        if tool is not None:
            message["tool_calls"] = [{"id": "call_" + rid[-8:], "type": "function",
                                      "function": {"name": tool, "arguments": text}}]
        choice: dict[str, Any] = {"index": 0, "message": message}
    else:
        choice = {"index": 0, "text": text}
    return {"id": rid, "object": "chat.completion" if chat else "text_completion", "created": created,
            "model": model, "choices": [{**choice, "logprobs": None, "finish_reason": finish}], "usage": usage}


def make_app(server: LlmServer) -> web.Application:
    app = web.Application()
    for prefix in ("/v1", "/openai/v1"):
        app.router.add_get(prefix + "/models", server.models)
        app.router.add_post(prefix + "/chat/completions", server.chat)
        app.router.add_post(prefix + "/completions", server.completions)
        app.router.add_post(prefix + "/embeddings", server.embeddings)
    return app


async def start_llm(server: LlmServer, port: int = 0) -> tuple[web.AppRunner, int]:
    """Serve on 127.0.0.1 (``port`` 0: a free one); returns the runner (``await runner.cleanup()``) and port."""
    runner = web.AppRunner(make_app(server), access_log=None, handle_signals=False)
    await runner.setup()
    site = web.TCPSite(runner, HOST, port)
    await site.start()
    return runner, runner.addresses[0][1]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--port", type=int, default=8080)
    parser.add_argument("--token-ms", type=float, default=20.0, help="time between tokens")
    parser.add_argument("--prefill-ms", type=float, default=50.0, help="time to first token for a short prompt")
    args = parser.parse_args(argv)
    server = LlmServer(token_seconds=args.token_ms / 1000, prefill_seconds=args.prefill_ms / 1000)
    web.run_app(make_app(server), host=HOST, port=args.port, access_log=None)


if __name__ == "__main__":
    main()
