"""The sidecar process: data plane, admin API, policy reloads, the once-a-second ticker and the drain."""

from __future__ import annotations

import asyncio
import hashlib
import logging
import os
import time
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

import orjson
from aiohttp import web
from prometheus_client import CollectorRegistry

from . import _tasks
from .admin import make_admin_app
from .dataplane import build
from .dataplane.state import DataPlane
from .edges.http1 import client_protocol
from .experiments import Experiments, ExperimentState
from .killswitch.state import load_state, save_state
from .killswitch.webhook import trip_payload
from .logs import event
from .metrics import Metrics
from .observe.observer import PredictionObserver
from .policy import PolicyError, compile_policy, load_policy_text
from .policy.model import Policy

__all__ = ["Sidecar", "StartupError"]

# How often schedules, max_duration, idle connections and the policy file are looked at.
TICK_SECONDS = 1.0
# How often copied responses are parsed into prediction metrics (drift runs at its own, slower interval),
# and how many are parsed before the loop serves requests again (each takes some tens of microseconds).
OBSERVE_SECONDS = 0.5
OBSERVE_SLICE = 32
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
        self._restore_tripped()
        plane = self.plane
        try:
            self._server = await loop.create_server(
                client_protocol(plane), policy.listen.host, policy.listen.port,
                reuse_address=True, backlog=2048)
        except OSError as exc:
            raise StartupError(f"cannot listen on {policy.listen}: {exc.strerror or exc}") from None
        self.proxy_port = self._server.sockets[0].getsockname()[1]
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
        self._observer = _tasks.spawn(self._observe_forever(), name="mlchaos-predictions")
        event("start", listen=f"{policy.listen.host}:{self.proxy_port}",
              admin=f"{admin_addr.host}:{self.admin_port}", upstream=policy.upstream.url,
              summary=_summary(policy), admin_token=bool(self.admin_token), dataplane=build())

    async def stop(self, drain: float | None = None) -> None:
        """Stop accepting, let in-flight requests finish for at most ``drain`` seconds, close everything."""
        self.draining = True
        plane = self.plane
        if self._server is not None:
            self._server.close()
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
                                        ("admin.token_env", self.policy.admin.token_env, policy.admin.token_env))
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

    # -- kill switch
    def _restore_tripped(self) -> None:
        try:
            tripped = load_state(self.policy.state_file)
        except (OSError, ValueError) as exc:
            # A kill switch that cannot know whether it tripped must not route chaos: fail closed.
            self.experiments.halt(f"kill switch state unreadable: {exc}")
            event("state_unreadable", logging.ERROR, path=self.policy.state_file, error=str(exc),
                  action="every experiment halted until one is started by hand")
            return
        if tripped:
            self.experiments.restore_tripped(tripped)
            event("killswitch_restored", experiments=sorted(tripped), path=self.policy.state_file)

    def _persist(self) -> None:
        try:
            save_state(self.policy.state_file, self.experiments.tripped_state())
        except OSError as exc:
            event("state_write_failed", logging.ERROR, path=self.policy.state_file, error=str(exc))

    def _on_trip(self, st: ExperimentState) -> None:
        # Runs inside the request that tripped it: the router already changed; the rest waits a turn.
        trip = dict(st.tripped or {})
        asyncio.get_running_loop().call_soon(self._after_trip, st.spec.name, trip)

    def _after_trip(self, name: str, trip: dict[str, Any]) -> None:
        event("killswitch_tripped", logging.WARNING, experiment=name, **trip)
        self._log_changes([(name, False, f"kill switch tripped ({trip.get('guard')})")])
        self._persist()
        webhook = self.policy.webhook
        if webhook is not None:
            payload = trip_payload(name, trip, f"{self.policy.listen.host}:{self.proxy_port}")
            _ = _tasks.spawn(self._post_webhook(webhook.url, webhook.timeout, payload), name="mlchaos-webhook")

    def _on_rearm(self, st: ExperimentState) -> None:
        event("killswitch_rearmed", experiment=st.spec.name)
        self._persist()

    async def _post_webhook(self, url: str, timeout: float, payload: dict[str, Any]) -> None:
        import aiohttp

        try:
            async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=timeout)) as session, \
                    session.post(url, data=orjson.dumps(payload),
                                 headers={"Content-Type": "application/json"}) as resp:
                event("webhook_sent", url=url, status=resp.status)
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            event("webhook_failed", logging.WARNING, url=url, error=repr(exc))

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

    async def _observe_forever(self) -> None:
        """Prediction bookkeeping: parse the responses the data plane copied, compute drift and SRM, and
        send the shadow twins of changed chaos requests."""
        import aiohttp

        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as session:
            while True:
                await asyncio.sleep(OBSERVE_SECONDS)
                # Parse in slices and let requests through in between: a pass over half a second of
                # copies at 10k req/s would otherwise hold the loop for tens of milliseconds.
                for st in list(self.experiments.states.values()):
                    if st.observer is not None:
                        st.observer.refill(OBSERVE_SECONDS)
                    while st.observer is not None and st.observer.queue:
                        st.observer.process(limit=OBSERVE_SLICE)
                        await asyncio.sleep(0)
                    while st.llm is not None and st.llm.pending:
                        st.llm.process(limit=OBSERVE_SLICE)
                        await asyncio.sleep(0)
                self.observe_once()
                for st in list(self.experiments.states.values()):
                    obs = st.observer
                    while obs is not None and obs.shadow_queue:
                        job = obs.shadow_queue.popleft()
                        obs.shadow_in_flight += 1
                        _ = _tasks.spawn(self._shadow(session, obs, *job), name="mlchaos-shadow")

    async def _shadow(self, session: Any, obs: PredictionObserver, target: str, original: bytes,
                      chaos_answer: list[bytes], headers: list[tuple[str, str]]) -> None:
        """Send the unchanged request to the same model, with the client's end-to-end headers and
        ``x-mlchaos-shadow: 1``; whatever happens, the client never sees it."""
        import aiohttp
        from multidict import CIMultiDict

        assert self.plane is not None
        url = self.plane.primary.upstream.url.rstrip("/") + target
        sent = CIMultiDict(headers)
        sent.setdefault("Content-Type", "application/json")
        sent["x-mlchaos-shadow"] = "1"
        try:
            async with session.post(url, data=original, headers=sent) as resp:
                body = await resp.read()
                if resp.status == 200:
                    obs.compare_shadow(target, b"".join(chaos_answer), body)
                else:
                    obs.shadow_results["failed"] += 1
        except (aiohttp.ClientError, TimeoutError, OSError):
            obs.shadow_results["failed"] += 1
        finally:
            obs.shadow_in_flight -= 1

    def observe_once(self, now: float | None = None) -> None:
        t = time.monotonic() if now is None else now
        for st in list(self.experiments.states.values()):
            llm = st.llm
            if llm is not None and t - llm.last_compute >= st.spec.observe.drift_interval:
                try:
                    llm.process()
                    llm.compute(t)
                except Exception:  # as below: one experiment's numbers must not stop the others'
                    logging.getLogger("mlchaos").exception("LLM bookkeeping failed for %s", st.spec.name)
            obs = st.observer
            if obs is None:
                continue
            try:
                obs.process(t)
                if t - obs.last_compute >= st.spec.observe.drift_interval:
                    spec = st.spec
                    if obs.compute(st.requests[0], st.requests[1], spec.chaos_buckets, spec.control_buckets, t):
                        assert obs.srm is not None
                        event("sample_ratio_mismatch", logging.WARNING, experiment=spec.name,
                              p_value=obs.srm.p_value, observed=obs.srm.observed_share,
                              expected=obs.srm.expected_share)
            except Exception:  # one experiment's bad numbers must not stop the others' bookkeeping
                logging.getLogger("mlchaos").exception("prediction bookkeeping failed for %s", st.spec.name)

    def report(self, name: str) -> dict[str, Any] | None:
        """GET /experiments/{name}/report: per cohort counts, latency, predictions, drift, SRM, kill switch."""
        st = self.experiments.states.get(name)
        if st is None:
            return None
        self.observe_once()
        active = any(a is st for a in self.experiments.router.active)
        cohorts: dict[str, Any] = {}
        faults: dict[str, int] = {}
        for fault, counter in zip(st.spec.faults, st.fault_counters, strict=True):
            faults[fault.type] = faults.get(fault.type, 0) + int(counter.value)
        for i, cohort in enumerate(("chaos", "control")):
            dist = st.cohort_metrics[i].duration
            running, buckets = 0, []
            for bound, n in zip((*dist.bounds, "+Inf"), dist.counts, strict=True):
                running += n
                buckets.append([bound, running])
            cohorts[cohort] = {"requests": st.requests[i], "errors": st.errors[i],
                               "latency_seconds": {"buckets": buckets, "sum": dist.sum},
                               **({"faults": faults} if cohort == "chaos" else {})}
        data: dict[str, Any] = {
            "experiment": name, "generated_at": datetime.now(UTC).isoformat(timespec="seconds"),
            "state": "active" if active else "stopped", "reason": st.reason,
            "chaos_percent": st.spec.chaos_percent, "control_percent": st.spec.control_percent,
            "cohorts": cohorts, "outputs": {}, "drift_history": [], "srm": None,
            "kill_switch": {"enabled": st.spec.kill_switch.enabled, "tripped": st.tripped,
                            "guards": st.guards.snapshot() if st.guards is not None else {}},
        }
        if st.observer is not None:
            data.update(st.observer.report())
        if st.llm is not None:
            st.llm.process()
            st.llm.compute(time.monotonic())
            data["llm"] = st.llm.report()
        return data
