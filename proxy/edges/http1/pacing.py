"""Pacing an answer to the client: a throttled relay (the ``throttle`` fault) and the chunks a stream hook held
(``Hold``), each delivered at its time while the upstream waits."""

from __future__ import annotations

import asyncio
from collections import deque
from typing import TYPE_CHECKING

from ...faults.base import Cut
from .framing import LAST_CHUNK, chunk

if TYPE_CHECKING:
    from .exchange import Http1Exchange

__all__ = ["RELAY_HIGH", "RELAY_LOW", "Paced", "drain_throttled"]

# A relayed body waiting for a slow client or a throttle pauses the upstream above this, resumes below.
RELAY_HIGH = 262144
RELAY_LOW = 65536


class Paced:
    """Chunks a stream hook held: (when to send, bytes, a cut after them), in order."""

    __slots__ = ("cut_done", "queue", "timer", "upstream_done", "upstream_keep")

    def __init__(self) -> None:
        self.queue: deque[tuple[float, bytes, Cut | None]] = deque()
        self.timer: asyncio.TimerHandle | None = None
        self.upstream_done = False
        self.upstream_keep = False
        self.cut_done = False


async def drain_throttled(ex: Http1Exchange) -> None:
    """Deliver the exchange's relayed body at ``throttle_bps``, 20 slices a second."""
    assert ex.relay is not None and ex.throttle_bps is not None
    tick = 0.05
    budget_per_tick = max(1, int(ex.throttle_bps * tick))
    relay, client = ex.relay, ex.client
    while not ex.finished:
        if relay:
            budget = budget_per_tick
            while relay and budget > 0:
                piece = relay.popleft()
                if len(piece) > budget:
                    relay.appendleft(piece[budget:])
                    piece = piece[:budget]
                budget -= len(piece)
                client.write(chunk(piece) if ex.to_chunk else piece)
            if ex.upstream is not None and sum(map(len, relay)) < RELAY_LOW:
                ex.upstream.resume_reading()
        elif ex.upstream_done:
            if ex.to_chunk:
                client.write(LAST_CHUNK)
            ex.finish(ex.upstream_keep)
            return
        await asyncio.sleep(tick)
