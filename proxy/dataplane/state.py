"""What the data plane reads per request, swapped as a whole when a policy loads."""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING

from ..edges.http1.upstream import UpstreamPool
from ..errors import RequestHeadTimeout, error_response
from ..experiments import Experiments
from ..metrics import Metrics
from ..policy.model import Limits, Policy, Timeouts, Upstream

if TYPE_CHECKING:
    from ..edges.http1.connection import ClientConnection

__all__ = ["DataPlane"]

_PoolKey = tuple[Upstream, float, int, int, float]
# Overdue request heads closed per turn of the event loop (each costs a write and a close, ~20 us).
_CUT_BATCH = 32


class DataPlane:
    def __init__(self, loop: asyncio.AbstractEventLoop, metrics: Metrics, experiments: Experiments) -> None:
        self.loop = loop
        self.metrics = metrics
        self.experiments = experiments
        self.connections: set[ClientConnection] = set()
        self.draining = False
        self.pools: dict[str, UpstreamPool] = {}
        self.primary: UpstreamPool | None = None  # set by apply_policy before serving
        self.timeouts = Timeouts()
        self.limits = Limits()
        # The limits the edge reads per request, as native integers (this module is compiled: setup.py's HOT),
        # where Limits is a frozen policy object whose fields are generic attribute lookups.
        self.max_body_bytes = self.limits.max_body_bytes
        self.inspect_body_bytes = self.limits.inspect_body_bytes
        self.pipeline_depth = self.limits.pipeline_depth
        self.preserve_host = True
        self.upstream_idempotent = False

    def pool(self, name: str | None) -> UpstreamPool:
        """The pool of a named upstream (``upstreams:``), or of the primary one."""
        if name:
            return self.pools[name]
        assert self.primary is not None, "apply_policy runs before the plane serves"
        return self.primary

    def _all_pools(self) -> dict[_PoolKey, UpstreamPool]:
        pools = [*self.pools.values(), *([self.primary] if self.primary is not None else [])]
        return {(p.upstream, p.connect_timeout, p.max_idle, p.max_head_bytes, p.idle_expiry): p for p in pools}

    def apply_policy(self, policy: Policy) -> None:
        """Swap in a policy's upstreams and limits; an unchanged upstream keeps its pooled connections."""
        old = self._all_pools()
        kept: dict[_PoolKey, UpstreamPool] = {}

        def pool(up: Upstream) -> UpstreamPool:
            limits, timeouts = policy.limits, policy.timeouts
            key = (up, timeouts.connect, limits.upstream_pool, limits.max_header_bytes, timeouts.upstream_idle)
            if key not in kept:
                kept[key] = old.get(key) or UpstreamPool(
                    up, connect_timeout=timeouts.connect, max_idle=limits.upstream_pool,
                    max_head_bytes=limits.max_header_bytes, idle_expiry=timeouts.upstream_idle)
            return kept[key]

        self.primary = pool(policy.upstream)
        self.pools = {name: pool(up) for name, up in policy.upstreams.items()}
        self.timeouts, self.limits, self.preserve_host = policy.timeouts, policy.limits, policy.preserve_host
        limits = policy.limits
        self.max_body_bytes = limits.max_body_bytes
        self.inspect_body_bytes = limits.inspect_body_bytes
        self.pipeline_depth = limits.pipeline_depth
        self.upstream_idempotent = policy.upstream_idempotent
        for key, p in old.items():
            if kept.get(key) is not p:
                p.close()

    # -- connection upkeep: called by the control plane's timers, never per request
    def check_deadlines(self, now: float) -> None:
        """Upstream response and idle deadlines of every exchange in flight, timeouts.header of every
        incomplete request head, and timeouts.upstream_idle of pooled upstream connections (every 100 ms)."""
        for pool in self._all_pools().values():
            pool.expire(now)
        header = self.timeouts.header
        overdue = []
        for conn in list(self.connections):
            try:
                if conn.check_deadline(now, header):
                    overdue.append(conn)
            except Exception:  # one connection's bug must not stop the sweep of the others
                logging.getLogger("mlchaos").exception("deadline check failed")
        if overdue:
            exc = RequestHeadTimeout(f"request head incomplete after {header:g}s")
            self._cut_heads(overdue, error_response(exc, keep_alive=False))

    def _cut_heads(self, overdue: list[ClientConnection], answer: bytes) -> None:
        """Close connections whose request head is overdue, _CUT_BATCH per turn of the loop: hundreds of
        slowloris connections found at once must not hold up the requests on the others."""
        for conn in overdue[:_CUT_BATCH]:
            conn.head_timeout(answer)
        if len(overdue) > _CUT_BATCH:
            self.loop.call_soon(self._cut_heads, overdue[_CUT_BATCH:], answer)

    def sweep_idle(self, now: float) -> None:
        """Close client connections idle (or owing bytes) for longer than ``timeouts.idle``."""
        idle = self.timeouts.idle
        for conn in list(self.connections):
            conn.idle_check(now, idle)

    async def drain(self, limit: float | None = None) -> int:
        """Stop taking new requests on kept-alive connections, let in-flight ones finish for at most ``limit``
        seconds (``timeouts.drain`` by default), then cut what is left; returns how many were cut."""
        self.draining = True
        for conn in list(self.connections):
            if not conn.busy:
                conn.transport.close()
        deadline = self.loop.time() + (self.timeouts.drain if limit is None else limit)
        while self.connections and self.loop.time() < deadline:
            await asyncio.sleep(0.02)
        left = len(self.connections)
        for conn in list(self.connections):
            conn.transport.abort()
        self.close()
        return left

    def close(self) -> None:
        for pool in self._all_pools().values():
            pool.close()
