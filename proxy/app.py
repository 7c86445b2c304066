"""The sidecar's lifecycle: start and stop (the data plane, the admin API, the background tasks and the drain),
policy reloads, and the wiring of the rooms that own the rest: the kill switch's persistence and webhook
(``killswitch.state``, ``killswitch.webhook``), the prediction bookkeeping and shadow requests
(``observe.bookkeeping``, ``observe.shadow``) and the report JSON (``observe.report.data``)."""

from __future__ import annotations

import asyncio
import hashlib
import logging
import os
from collections.abc import Mapping
from typing import Any

from aiohttp import web
from prometheus_client import CollectorRegistry

from . import _tasks
from .admin import make_admin_app
from .dataplane import build
from .dataplane.state import DataPlane
from .edges.http1 import client_protocol
from .experiments import Experiments, ExperimentState
from .killswitch.state import persist_trips, restore_trips
from .killswitch.webhook import send_trip
from .logs import event
from .metrics import Metrics
from .observe.bookkeeping import judge_all, observe_forever, observe_once
from .observe.report import report_data
from .policy import PolicyError, compile_policy, load_policy_text
from .policy.model import Policy

__all__ = ["Sidecar", "StartupError"]

# How often schedules, max_duration, idle connections and the policy file are looked at.
TICK_SECONDS = 1.0
# Upstream response and idle timeouts fire within this much of their setting.
DEADLINE_SWEEP_SECONDS = 0.1


class StartupError(RuntimeError):
    """The sidecar refuses to start (unsafe settings, a port in use)."""


def compile_with_overrides(text: str, overrides: dict[str, object] | None = None) -> Policy:
    """Compile policy text with command-line overrides (``listen``, ``upstream``, ``admin.listen``) on top.

    Overrides are applied to every reload too, so a reload never undoes a command-line flag.
    """
    if not overrides:
        return load_policy_text(text)
    import yaml

    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError:
        return load_policy_text(text)  # raises the loader's own message, with line and column
    if not isinstance(raw, dict):
        return load_policy_text(text)
    raw = dict(raw)
    for key, value in overrides.items():
        if key == "admin.listen":
            admin = raw.get("admin")
            raw["admin"] = {**(admin if isinstance(admin, dict) else {}), "listen": value}
        else:
            raw[key] = value
    return compile_policy(raw, source=text)


def _summary(policy: Policy) -> str:
    on = [e for e in policy.experiments if e.enabled]
    chaos = sum(e.chaos_buckets for e in on) / 100
    return (f"{len(policy.experiments)} experiment(s), {len(on)} enabled, {chaos:g}% chaos in all "
            f"(max_blast_radius {policy.max_blast_radius_buckets / 100:g}%), upstream {policy.upstream.url}")


def _grpc_listen(policy: Policy) -> object:
    return policy.grpc.listen if policy.grpc is not None else None


class Sidecar:
    def __init__(self, policy: Policy, *, registry: CollectorRegistry | None = None,
                 policy_path: str | None = None, env: dict[str, str] | None = None,
                 overrides: dict[str, object] | None = None) -> None:
        self.policy = policy
        self.overrides = overrides or {}
        self.policy_path = policy_path
        self.env: Mapping[str, str] = os.environ if env is None else env
        self.metrics = Metrics(registry)
        self.experiments = Experiments(self.metrics)
        self.admin_token = self.env.get(policy.admin.token_env) or None
        self.draining = False
        self.plane: DataPlane | None = None
        self._server: asyncio.Server | None = None
        # The gRPC listener (proxy.edges.grpc.server.GrpcEdge) when the policy has a grpc section.
        self._grpc: Any = None
        self.grpc_port = 0
        self._admin: web.AppRunner | None = None
        self._ticker: asyncio.Task[None] | None = None
        self._sweeper: asyncio.Task[None] | None = None
        self._observer: asyncio.Task[None] | None = None
        self._file_sig: tuple[int, int, int] | None = None
        self._text_hash = hashlib.sha256(policy.source.encode()).hexdigest()
        self.proxy_port = 0
        self.admin_port = 0

    # -- lifecycle
    async def start(self) -> None:
        policy = self.policy
        admin_addr = policy.admin.listen
        if not admin_addr.is_loopback and not self.admin_token:
            raise StartupError(
                f"refusing to serve the admin API on {admin_addr} without a token: set "
                f"{policy.admin.token_env}, or bind it to 127.0.0.1")
        loop = asyncio.get_running_loop()
        self.plane = DataPlane(loop, self.metrics, self.experiments)
        self.experiments.on_trip = self._on_trip
        self.experiments.on_rearm = self._on_rearm
        self._apply(policy)
        restore_trips(self.experiments, policy.state_file)
        plane = self.plane
        try:
            self._server = await loop.create_server(
                client_protocol(plane), policy.listen.host, policy.listen.port,
                reuse_address=True, backlog=2048)
        except OSError as exc:
            raise StartupError(f"cannot listen on {policy.listen}: {exc.strerror or exc}") from None
        self.proxy_port = self._server.sockets[0].getsockname()[1]
        if policy.grpc is not None:
            await self._start_grpc(plane, policy)
        self._admin = web.AppRunner(make_admin_app(self), access_log=None, handle_signals=False)
        await self._admin.setup()
        site = web.TCPSite(self._admin, admin_addr.host, admin_addr.port, reuse_address=True)
        try:
            await site.start()
        except OSError as exc:
            await self.stop()
            raise StartupError(f"cannot listen on {admin_addr} for the admin API: {exc.strerror or exc}") from None
        self.admin_port = self._admin.addresses[0][1]
        self._file_sig = self._stat_policy_file()
        self._ticker = _tasks.spawn(self._tick_forever(), name="mlchaos-ticker")
        self._sweeper = _tasks.spawn(self._sweep_forever(), name="mlchaos-deadlines")
        self._observer = _tasks.spawn(observe_forever(self.experiments, lambda: self.policy.upstream.url),
                                      name="mlchaos-predictions")
        event("start", listen=f"{policy.listen.host}:{self.proxy_port}",
              admin=f"{admin_addr.host}:{self.admin_port}", upstream=policy.upstream.url,
              summary=_summary(policy), admin_token=bool(self.admin_token), dataplane=build())

    async def _start_grpc(self, plane: DataPlane, policy: Policy) -> None:
        assert policy.grpc is not None
        from .edges.grpc.server import GrpcEdge  # here: only a policy with a grpc section needs the edge

        self._grpc = GrpcEdge(plane, policy.grpc, policy.limits.max_body_bytes)
        self._grpc.apply_policy(policy)
        try:
            self.grpc_port = await self._grpc.start()
        except (OSError, RuntimeError) as exc:
            self._grpc = None
            await self.stop()
            raise StartupError(f"cannot listen on {policy.grpc.listen} for gRPC: {exc}") from None

    async def stop(self, drain: float | None = None) -> None:
        """Stop accepting, let in-flight requests finish for at most ``drain`` seconds, close everything."""
        self.draining = True
        plane = self.plane
        if self._server is not None:
            self._server.close()
        if self._grpc is not None:
            # In-flight calls finish within the drain; new ones are refused meanwhile.
            await self._grpc.stop(self.policy.timeouts.drain if drain is None else drain)
            self._grpc = None
        if plane is not None:
            left = await plane.drain(drain)
            event("drained", unfinished=left)
        for task in (self._ticker, self._sweeper, self._observer):
            if task is not None:
                task.cancel()
        if self._admin is not None:
            await self._admin.cleanup()
            self._admin = None
        if self._server is not None:
            await self._server.wait_closed()
            self._server = None

    # -- policy
    def _apply(self, policy: Policy) -> None:
        assert self.plane is not None
        override = self.env.get(policy.cohort_override.token_env)
        if policy.cohort_override.enabled and not override:
            event("cohort_override_disabled", logging.WARNING,
                  reason=f"cohort_override is enabled but {policy.cohort_override.token_env} is empty")
        self.plane.apply_policy(policy)
        if self._grpc is not None:
            self._grpc.apply_policy(policy)
        self.experiments.apply_policy(policy, override.encode() if override else None)
        self.policy = policy

    def reload_text(self, text: str, *, origin: str) -> list[str]:
        """Load a new policy; on any problem keep the running one and return the problems."""
        try:
            policy = compile_with_overrides(text, self.overrides)
        except PolicyError as exc:
            self.metrics.reloads.labels("invalid").inc()
            event("reload_refused", logging.WARNING, origin=origin, problems=exc.lines())
            return exc.lines()
        fixed = [f"{name} changed from {old} to {new}; restart to apply it"
                 for name, old, new in (("listen", self.policy.listen, policy.listen),
                                        ("admin.listen", self.policy.admin.listen, policy.admin.listen),
                                        ("admin.token_env", self.policy.admin.token_env, policy.admin.token_env),
                                        ("grpc.listen", _grpc_listen(self.policy), _grpc_listen(policy)))
                 if old != new]
        self._apply(policy)
        self._text_hash = hashlib.sha256(text.encode()).hexdigest()
        self.metrics.reloads.labels("ok").inc()
        if fixed:
            event("reload", origin=origin, summary=_summary(policy), warnings=fixed)
        else:
            event("reload", origin=origin, summary=_summary(policy))
        return []

    def reload_file(self, origin: str) -> list[str]:
        if self.policy_path is None:
            return ["no policy file to reload"]
        try:
            with open(self.policy_path, encoding="utf-8") as fh:
                text = fh.read()
        except OSError as exc:
            self.metrics.reloads.labels("invalid").inc()
            event("reload_refused", logging.WARNING, origin=origin, problems=[str(exc)])
            return [str(exc)]
        return self.reload_text(text, origin=origin)

    def _stat_policy_file(self) -> tuple[int, int, int] | None:
        if self.policy_path is None:
            return None
        try:
            # stat follows symlinks: a kubelet ConfigMap update swaps the ..data link, changing the inode.
            st = os.stat(self.policy_path)
        except OSError:
            return None
        return (st.st_ino, st.st_mtime_ns, st.st_size)

    def _check_policy_file(self) -> None:
        sig = self._stat_policy_file()
        if sig is None or sig == self._file_sig:
            return
        self._file_sig = sig
        try:
            with open(self.policy_path or "", encoding="utf-8") as fh:
                text = fh.read()
        except OSError:
            return
        if hashlib.sha256(text.encode()).hexdigest() != self._text_hash:
            self.reload_text(text, origin="file change")

    # -- kill switch: the trip has already stopped the chaos; what follows is bookkeeping
    def _on_trip(self, st: ExperimentState) -> None:
        # Runs inside the request that tripped it: the router already changed; the rest waits a turn.
        trip = dict(st.tripped or {})
        asyncio.get_running_loop().call_soon(self._after_trip, st.spec.name, trip)

    def _after_trip(self, name: str, trip: dict[str, Any]) -> None:
        event("killswitch_tripped", logging.WARNING, experiment=name, **trip)
        self._log_changes([(name, False, f"kill switch tripped ({trip.get('guard')})")])
        persist_trips(self.experiments, self.policy.state_file)
        if self.policy.webhook is not None:
            send_trip(self.policy.webhook, name, trip, f"{self.policy.listen.host}:{self.proxy_port}")

    def _on_rearm(self, st: ExperimentState) -> None:
        event("killswitch_rearmed", experiment=st.spec.name)
        persist_trips(self.experiments, self.policy.state_file)

    # -- experiments
    def _log_changes(self, changes: list[tuple[str, bool, str]]) -> None:
        for name, active, reason in changes:
            event("experiment_started" if active else "experiment_stopped", experiment=name, reason=reason)

    def start_experiment(self, name: str) -> str | None:
        before = self.experiments.refresh()
        self._log_changes(before)
        problem = self.experiments.start(name)
        if problem is None:
            self._log_changes([(name, True, "started through the admin API")])
        return problem

    def stop_experiment(self, name: str, reason: str) -> str | None:
        problem = self.experiments.stop(name, reason)
        if problem is None:
            self._log_changes([(name, False, reason)])
        return problem

    def halt(self, reason: str) -> None:
        was = [st.spec.name for st in self.experiments.router.active]
        self.experiments.halt(reason)
        self._log_changes([(name, False, reason) for name in was])

    def summary(self) -> str:
        return _summary(self.policy)

    async def _tick_forever(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            await asyncio.sleep(TICK_SECONDS)
            try:
                self._log_changes(self.experiments.refresh())
                if self.plane is not None:
                    self.plane.sweep_idle(loop.time())
                self._check_policy_file()
            except Exception:
                logging.getLogger("mlchaos").exception("tick failed")

    async def _sweep_forever(self) -> None:
        """Upstream deadlines, checked in one pass instead of a timer per request."""
        loop = asyncio.get_running_loop()
        while True:
            await asyncio.sleep(DEADLINE_SWEEP_SECONDS)
            if self.plane is not None:
                self.plane.check_deadlines(loop.time())

    def observe_once(self, now: float | None = None) -> None:
        """One bookkeeping pass now: parse, drift, and the hypotheses' verdicts."""
        observe_once(self.experiments, now)
        judge_all(self.experiments)

    def report(self, name: str) -> dict[str, Any] | None:
        """GET /experiments/{name}/report: per cohort counts, latency, predictions, drift, SRM, kill switch."""
        st = self.experiments.states.get(name)
        if st is None:
            return None
        self.observe_once()
        return report_data(st, active=any(a is st for a in self.experiments.router.active))
