"""An embedded OpenAI-compatible server (proxy/demo/llm.py) and a sidecar in front of it, read by a client
that records each server-sent event with its arrival time."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from typing import Any

import aiohttp
import orjson
import pytest

from proxy.app import Sidecar
from proxy.demo.llm import LlmServer, start_llm
from tests.conftest import policy_from
from tests.dataplane.conftest import FORCE_CHAOS, FORCE_CONTROL, FORCE_NONE, OVERRIDE_ENV, chaos_experiment
from tests.llm import servers
from tests.servers import harness
from tests.servers.harness import RunningServer

__all__ = ["FORCE_CHAOS", "FORCE_CONTROL", "FORCE_NONE", "Answer", "chat", "llm_sidecar"]


@dataclass
class Answer:
    status: int
    headers: dict[str, str]  # names in lower case
    raw: bytes
    events: list[tuple[float, bytes]]  # (arrival, the event's bytes)
    t0: float
    error: str | None = None

    def datas(self) -> list[bytes]:
        return [e.removeprefix(b"data: ").rstrip(b"\n") for _, e in self.events]

    def chunks(self) -> list[dict[str, Any]]:
        return [orjson.loads(d) for d in self.datas() if d != b"[DONE]"]

    def text(self) -> str:
        out = []
        for c in self.chunks():
            for choice in c.get("choices") or ():
                out.append((choice.get("delta") or {}).get("content") or choice.get("text") or "")
        return "".join(out)

    def finish_reasons(self) -> list[str]:
        return [ch["finish_reason"] for c in self.chunks() for ch in c.get("choices") or ()
                if ch.get("finish_reason")]

    @property
    def done(self) -> bool:
        return bool(self.events) and self.events[-1][1] == b"data: [DONE]\n\n"

    def json(self) -> Any:
        return orjson.loads(self.raw)


async def chat(port: int, body: dict[str, Any], headers: dict[str, str] | None = None,
               path: str = "/v1/chat/completions", timeout: float = 10.0) -> Answer:
    """POST ``body``; a streamed answer is read event by event, a whole one as it is."""
    got: list[tuple[float, bytes]] = []
    t0 = time.monotonic()
    error = None
    raw = b""
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=timeout)) as s, \
            s.post(f"http://127.0.0.1:{port}{path}", json=body, headers=headers or {}) as r:
        if "event-stream" in r.headers.get("content-type", ""):
            try:
                while True:
                    event = await r.content.readuntil(b"\n\n")
                    if not event:
                        break
                    got.append((time.monotonic(), event))
                    raw += event
            except ValueError:
                pass  # the end of the body inside an event: what came is in raw
            except aiohttp.ClientPayloadError as e:
                error = type(e).__name__
        else:
            raw = await r.read()
        return Answer(r.status, {k.lower(): v for k, v in r.headers.items()}, raw, got, t0, error)


@pytest.fixture
async def llm() -> AsyncIterator[tuple[LlmServer, str]]:
    server = LlmServer(token_seconds=0.005)
    runner, port = await start_llm(server)
    yield server, f"http://127.0.0.1:{port}"
    await runner.cleanup()


async def llm_sidecar(start_sidecar: Any, url: str, faults: list[dict[str, Any]], **experiment: Any) -> Sidecar:
    keys = chaos_experiment(faults)
    keys["experiments"][0].update(experiment)
    sidecar: Sidecar = await start_sidecar(policy_from(url, keys), env=OVERRIDE_ENV)
    return sidecar


def _require(name: str) -> None:
    """Skip (or, under MLCHAOS_REQUIRE_SERVERS=1 as `make test` sets, fail) when ``name`` is not installed."""
    why = servers.problem(name)
    if why is None:
        return
    how = f"run `scripts/llm-servers.sh {name}` (or `make llm-servers`)"
    if harness.require_servers():
        pytest.fail(f"{name} is required (MLCHAOS_REQUIRE_SERVERS=1) but {why}: {how}", pytrace=False)
    pytest.skip(f"{name} not installed ({why}): {how}; MLCHAOS_REQUIRE_SERVERS=1 makes this a failure")


@pytest.fixture(scope="session")
def llama(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    """llama.cpp's OpenAI-compatible server (llama-cpp-python 0.3.36) on the tiny random-weight model."""
    _require(servers.LLAMA)
    server = servers.start_llama(tmp_path_factory.mktemp("llamacpp"))
    try:
        yield server
    finally:
        harness.stop(server)


@pytest.fixture(scope="session")
def clients() -> None:
    """The clients' venv (openai SDK, LangChain) is there: tests call ``servers.run_clients``."""
    _require(servers.CLIENTS)
