"""No added buffering: each chunk of a control or unassigned stream reaches the client as soon as it would
directly, measured against the time the server sent it."""

from __future__ import annotations

import statistics
from typing import Any

from proxy.demo.llm import LlmServer, start_llm
from tests.llm.conftest import FORCE_CHAOS, FORCE_CONTROL, FORCE_NONE, chat, llm_sidecar

GAP = 0.03  # seconds between the server's chunks
BODY: dict[str, Any] = {"model": "m", "messages": [{"role": "user", "content": "Tell me a story"}],
                        "max_tokens": 10, "stream": True}


async def test_each_chunk_arrives_when_it_would_directly(start_sidecar):
    server = LlmServer(token_seconds=GAP)
    runner, port = await start_llm(server)
    try:
        # A pass-through fault on chaos too: a stream hook that frames events must not hold whole ones either.
        sc = await llm_sidecar(start_sidecar, f"http://127.0.0.1:{port}", [{"type": "malformed_chunk",
                                                                          "after": 1000}])
        lags: dict[str, list[float]] = {}
        for name, target, force in (("direct", port, None), ("control", sc.proxy_port, FORCE_CONTROL),
                                    ("none", sc.proxy_port, FORCE_NONE), ("chaos", sc.proxy_port, FORCE_CHAOS)):
            server.sent.clear()
            a = await chat(target, BODY, force)
            assert len(a.events) == len(server.sent) == 10 + 3
            lags[name] = [at - sent for (at, _), sent in zip(a.events, server.sent, strict=True)]
    finally:
        await runner.cleanup()
    for name in ("control", "none", "chaos"):
        # Every chunk is out long before the next one is sent (GAP later), and typically within a few
        # milliseconds of direct (a loaded shared machine sets the bound, not the proxy).
        assert max(lags[name]) < GAP / 2, (name, lags[name])
        assert statistics.median(lags[name]) - statistics.median(lags["direct"]) < 0.005, (name, lags)
