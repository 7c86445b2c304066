"""The shadow sender: the unchanged twin of a chaos request whose features a fault changed, sent to the same
model so the observer can compare the model's two answers row by row (``PredictionObserver.compare_shadow``).

Whatever happens to a shadow request, the client never sees it; the results are counted
(``mlchaos_shadow_requests``), and ``observe.shadow.max_concurrency`` bounds the extra load on the model.
"""

from __future__ import annotations

import aiohttp
from multidict import CIMultiDict

from .. import _tasks
from .observer import PredictionObserver

__all__ = ["send_queued", "send_shadow"]


def send_queued(session: aiohttp.ClientSession, observers: list[PredictionObserver], upstream_url: str) -> None:
    """Start a task for every shadow request the data plane queued since the last pass."""
    for obs in observers:
        while obs.shadow_queue:
            target, original, chaos_answer, headers, faults = obs.shadow_queue.popleft()
            obs.shadow_in_flight += 1
            _ = _tasks.spawn(send_shadow(session, obs, upstream_url, target, original, chaos_answer, headers,
                                         faults), name="mlchaos-shadow")


async def send_shadow(session: aiohttp.ClientSession, obs: PredictionObserver, upstream_url: str, target: str,
                      original: bytes, chaos_answer: list[bytes], headers: list[tuple[str, str]],
                      faults: list[str] | None = None) -> None:
    """POST the unchanged request to ``upstream_url`` + ``target``, with the client's end-to-end headers and
    ``x-mlchaos-shadow: 1``, and compare the answer with the chaos one."""
    url = upstream_url.rstrip("/") + target
    sent = CIMultiDict(headers)
    sent.setdefault("Content-Type", "application/json")
    sent["x-mlchaos-shadow"] = "1"
    try:
        async with session.post(url, data=original, headers=sent) as resp:
            body = await resp.read()
            if resp.status == 200:
                obs.compare_shadow(target, b"".join(chaos_answer), body, faults)
            else:
                obs.shadow_results["failed"] += 1
    except (aiohttp.ClientError, TimeoutError, OSError):
        obs.shadow_results["failed"] += 1
    finally:
        obs.shadow_in_flight -= 1
