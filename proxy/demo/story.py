"""``mlchaos demo``: three chaos experiments on a small ML system, each answering a question with a verdict.

The system under test (system.py) runs in this process on loopback ports: an inference service that reads
features from a feature store (Feast's wire format) and calls a primary model, with default features and a
fallback model on its error paths. Three real mlchaos sidecars (the project's data plane) stand in front of the
service (ingress), the feature store and the model; their policies are sidecar-*.yaml beside this module. Load
goes through the ingress for ``duration`` seconds, with a live progress line; then one table gives each
hypothesis check its estimate, interval and verdict, and ``report.html`` is written.

Where is a hypothesis judged, when the fault acts elsewhere? The fallback's mark (``x-model-version:
fallback``) is on the inference service's answer, not at the model's sidecar, which answered the 503 itself.
Cohort assignment is a keyed hash of (experiment name, sticky key) (proxy/cohort.py), so sidecars holding
experiments of the same name with the same sticky key put a user in the same cohort with no coordination: the
service passes ``x-user-id`` on to its dependencies like trace baggage, the fault acts at the dependency's
sidecar, and the hypothesis is judged at the ingress, where the marker and the final predictions are seen. The
ingress experiments have no faults of their own, which tells that sidecar to look for the marker on every
chaos answer and (with ``observe.shadow``) to send every chaos request's shadow twin: the same request again,
off the user's path, marked ``x-mlchaos-shadow``. The service passes that mark on too, and a sidecar assigns a
marked request to no experiment: the twin gets fresh features and the primary model, and its answer is the
"unfaulted prediction" that agreement compares with. Every number in the table is measured through the real
sidecars; nothing is computed from the system's own knowledge of what it did.

``make demo`` runs ``mlchaos demo``; ``python -m proxy.demo.story --seconds 15`` (or ``--requests 5000``) runs a
shorter one.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import logging
import math
import re
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TextIO

import numpy as np
import orjson

from ..app import Sidecar
from ..cohort import CHAOS
from ..declare.units import Address
from ..observe.report import render_report
from ..observe.report.values import esc
from ..policy import load_policy_file
from ..policy.model import Policy, Upstream
from .driver import Progress, Results, drive
from .system import MODEL, FeatureStore, InferenceService, make_model_app, profile, serve

__all__ = ["POLICIES", "Verdicts", "check_aligned", "format_verdicts", "main", "run_story"]

HOST = "127.0.0.1"
HERE = Path(__file__).resolve().parent
# The three sidecars, in the order they start (dependencies first, the ingress last).
POLICIES = {"features": HERE / "sidecar-features.yaml", "model": HERE / "sidecar-model.yaml",
            "ingress": HERE / "sidecar-ingress.yaml"}
# How often the feature pipeline recomputes the fast feature: the stale fault serves values one refresh old.
REFRESH_SECONDS = 2.0
# Few enough users that a chaos user comes back within a refresh or two (a stale value needs a past one).
USERS = 600
CONCURRENCY = 8
# After the load: how long the last shadow twins may take before the verdicts are read.
SETTLE_SECONDS = 5.0
TTY_PROGRESS_INTERVAL = 0.25
PLAIN_PROGRESS_INTERVAL = 3.0
# What each experiment asks, for the intro and the report.
QUESTIONS = {
    "model-endpoint-fails": "the model endpoint fails: does the fallback activate?",
    "feature-store-down": "the feature store is unavailable: do defaults keep serving, and how close are "
                          "their predictions to fresh ones?",
    "pipeline-late": "the pipeline is late: do stale features agree with fresh predictions?",
}

Verdicts = dict[str, dict[str, Any]]


def check_aligned(policies: dict[str, Policy]) -> list[str]:
    """Problems that would make the sidecars disagree on cohorts: the experiments' names, order, shares,
    sticky keys and enabled flags must be the same in every policy."""
    def shape(p: Policy) -> list[tuple[object, ...]]:
        return [(e.name, e.chaos_buckets, e.control_buckets, str(e.sticky_key), e.enabled) for e in p.experiments]

    first, *rest = policies.items()
    return [f"{name}'s experiments {shape(p)} differ from {first[0]}'s {shape(first[1])}"
            for name, p in rest if shape(p) != shape(first[1])]


def _retarget(policy: Policy, port: int) -> Policy:
    upstream = Upstream(name="primary", url=f"http://{HOST}:{port}", host=HOST, port=port,
                        authority=f"{HOST}:{port}")
    return dataclasses.replace(policy, listen=Address(HOST, 0), upstream=upstream,
                               admin=dataclasses.replace(policy.admin, listen=Address(HOST, 0)))


def make_request(rng: np.random.Generator, seq: int, user: str, seed: int = 0) -> tuple[str, bytes]:
    """One payment to score: the user's own typical amount, give or take."""
    amount = round(profile(seed, user).avg_amount_30d * float(rng.lognormal(0.0, 0.5)), 2)
    return f"/v1/models/{MODEL}:predict", orjson.dumps({"instances": [{"user_id": user, "amount": amount}]})


# ------------------------------------------------------------------------------------------------ output

def _num(x: Any) -> str:
    return "-" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.3f}"


def verdict_rows(verdicts: Verdicts) -> list[tuple[str, ...]]:
    """(experiment, check, estimate, interval, tolerance, n, verdict) per check, then the experiment's own."""
    rows: list[tuple[str, ...]] = []
    for name, v in verdicts.items():
        for check in v.get("checks", {}).values():
            interval = "-" if check["low"] is None else f"[{_num(check['low'])}, {_num(check['high'])}]"
            rows.append((name, check["check"], _num(check["estimate"]), interval, check["tolerance"] or "-",
                         str(check["n"]), check["status"].upper()))
        rows.append((name, "=> experiment", "", "", "", "", str(v.get("verdict", "inconclusive")).upper()))
    return rows


def format_verdicts(verdicts: Verdicts, confidence: float = 0.95) -> str:
    """The one table: each hypothesis check, its estimate and interval, its tolerance, and the verdict."""
    header = ("experiment", "check", "estimate", f"{confidence:.0%} interval", "tolerance", "n", "verdict")
    rows = verdict_rows(verdicts)
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    out = ["  ".join(c.ljust(w) for c, w in zip(header, widths, strict=True)).rstrip(),
           "  ".join("-" * w for w in widths)]
    last = None
    for r in rows:
        cells = ("" if r[0] == last else r[0], *r[1:])
        last = r[0]
        out.append("  ".join(c.ljust(w) for c, w in zip(cells, widths, strict=True)).rstrip())
    return "\n".join(out)


def format_live(p: Progress, verdicts: dict[str, tuple[int, str]]) -> str:
    """One progress line: time, rate, requests, errors, and per experiment its chaos requests and verdict."""
    parts = "  ".join(f"{name} {n} {status}" for name, (n, status) in verdicts.items())
    return f"{p.elapsed:5.1f}/{p.duration:g}s {p.rate:6.1f} req/s {p.requests} req, {p.errors} errors | {parts}"


def _report_page(verdicts: Verdicts, reports: dict[str, dict[str, Any]], summary: str) -> str:
    """report.html: the verdict table, then each experiment's own report (proxy/observe/report) below it."""
    style, sections = "", []
    for name, data in reports.items():
        page = render_report(data)
        if not style and (m := re.search(r"<style>(.*?)</style>", page, re.S)):
            style = m.group(1)
        body = m.group(1) if (m := re.search(r"<main>(.*)</main>", page, re.S)) else ""
        sections.append(f'<section id="{esc(name)}"><p class="meta">{esc(QUESTIONS.get(name, ""))}</p>{body}'
                        "</section>")
    head = ("<tr><th>experiment</th><th>check</th><th>estimate</th><th>95% interval</th><th>tolerance</th>"
            "<th>n</th><th>verdict</th></tr>")
    cells = []
    last = None
    for r in verdict_rows(verdicts):
        kind = {"HELD": "ok", "DEVIATED": "alarm"}.get(r[6], "muted")
        name = "" if r[0] == last else f'<a href="#{esc(r[0])}">{esc(r[0])}</a><br><span class="muted">' \
                                        f"{esc(QUESTIONS.get(r[0], ''))}</span>"
        last = r[0]
        check = "<b>the experiment</b>" if r[1].startswith("=>") else esc(r[1])
        cells.append(f"<tr><td>{name}</td><td>{check}</td>" + "".join(f"<td>{esc(c)}</td>" for c in r[2:6])
                     + f'<td><span class="badge {kind}">{esc(r[6].lower())}</span></td></tr>')
    return "\n".join([
        "<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">',
        "<title>mlchaos demo: three experiments, three verdicts</title>",
        f"<style>{style}\n.verdicts td, .verdicts th {{ text-align: left; white-space: nowrap; }}</style></head>",
        "<body><main>", "<h1>mlchaos demo: three experiments, three verdicts</h1>",
        f'<p class="meta">{esc(summary)}</p>', f'<table class="grid verdicts">{head}{"".join(cells)}</table>',
        '<p class="meta">A check is held when its whole interval lies within the tolerance, deviated when wholly '
        "beyond it, inconclusive otherwise; an experiment deviates when any check does. The faults act at the "
        "sidecars of the feature store and the model; each experiment is judged at the ingress sidecar, on what "
        "users got (its report follows).</p>", "</main>",
        *(f"<main>{s}</main>" for s in sections), "</body></html>"])


# --------------------------------------------------------------------------------------------------- run

async def _start_all(policies: dict[str, Policy], seed: int, stack: list[Callable[[], Awaitable[Any]]],
                     ) -> tuple[dict[str, Sidecar], InferenceService, dict[str, int]]:
    """Start the system and its sidecars; each thing started pushes its stop onto ``stack``."""
    store = FeatureStore(seed, REFRESH_SECONDS)
    ports: dict[str, int] = {}
    for name, app in (("feature store", store.app()), ("model", make_model_app())):
        runner, ports[name] = await serve(app, HOST)
        stack.append(runner.cleanup)
    sidecars: dict[str, Sidecar] = {}

    async def sidecar(role: str, upstream_port: int) -> Sidecar:
        sc = Sidecar(_retarget(policies[role], upstream_port), env={})
        stack.append(lambda: sc.stop(drain=0.5))
        await sc.start()
        sidecars[role] = sc
        return sc

    features = await sidecar("features", ports["feature store"])
    model = await sidecar("model", ports["model"])
    service = InferenceService(f"http://{HOST}:{features.proxy_port}", f"http://{HOST}:{model.proxy_port}")
    await service.start()
    stack.append(service.close)
    runner, ports["inference service"] = await serve(service.app(), HOST)
    stack.append(runner.cleanup)
    await sidecar("ingress", ports["inference service"])
    return sidecars, service, ports


async def _settle(ingress: Sidecar, limit: float) -> None:
    """Wait (at most ``limit`` seconds) until the ingress has sent and compared the last shadow twins."""
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        busy = [st for st in ingress.experiments.states.values()
                if st.observer is not None and (st.observer.shadow_queue or st.observer.shadow_in_flight)]
        if not busy:
            return
        await asyncio.sleep(0.1)


def _intro(sidecars: dict[str, Sidecar], ports: dict[str, int], seconds: float, requests: int | None,
           out: TextIO) -> None:
    ingress = sidecars["ingress"]
    print("mlchaos demo: a small ML system, three real sidecars, three experiments with hypotheses", file=out)
    print(f"  client -> ingress sidecar :{ingress.proxy_port} -> inference service :{ports['inference service']}",
          file=out)
    print(f"           inference service -> features sidecar :{sidecars['features'].proxy_port} -> feature store "
          f":{ports['feature store']} (Feast wire format; default features when it fails)", file=out)
    print(f"           inference service -> model sidecar :{sidecars['model'].proxy_port} -> primary model "
          f":{ports['model']} (Open Inference V2; a fallback model when it fails)", file=out)
    for exp in ingress.policy.experiments:
        print(f"  {exp.name} ({exp.chaos_percent:g}% chaos, {exp.control_percent:g}% control, by x-user-id): "
              f"{QUESTIONS.get(exp.name, '')}", file=out)
    bound = f"{seconds:g} s" + (f" or {requests} requests" if requests is not None else "")
    print(f"Sending payments to score for {bound} (per experiment: chaos requests, verdict so far) ...", file=out)
    out.flush()


def _injected(sidecar: Sidecar) -> str:
    """``feast_error=120 abort=118 stale=560``: the faults a sidecar injected, by type."""
    counts: dict[str, int] = {}
    for st in sidecar.experiments.states.values():
        for fault, counter in zip(st.spec.faults, st.fault_counters, strict=True):
            counts[fault.type] = counts.get(fault.type, 0) + int(counter.value)
    return " ".join(f"{k}={v}" for k, v in counts.items()) or "none"


def _isatty(out: TextIO) -> bool:
    try:
        return out.isatty()
    except (AttributeError, ValueError):
        return False


async def run_story(*, seconds: float = 45.0, requests: int | None = None, out: TextIO = sys.stdout, seed: int = 0,
                    report_dir: str | Path = "mlchaos-demo", concurrency: int = CONCURRENCY) -> int:
    """Run the demo end to end, for ``seconds`` or ``requests`` (whichever ends first); 0 when it ran (whatever
    the verdicts), 1 when something failed to start."""
    try:
        policies = {role: load_policy_file(path) for role, path in POLICIES.items()}
    except Exception as exc:  # PolicyError lists every problem in its message
        print(f"mlchaos demo: cannot load the demo's policies: {exc}", file=out)
        return 1
    if problems := check_aligned(policies):
        print("mlchaos demo: the sidecars' policies disagree: " + "; ".join(problems), file=out)
        return 1
    stack: list[Callable[[], Awaitable[Any]]] = []
    # Sticky users send unequal traffic, so the sample ratio check of request counts warns now and then; the
    # warning would land between progress lines. Errors still show.
    quiet = logging.getLogger("mlchaos")
    level = quiet.level
    quiet.setLevel(max(level, logging.ERROR))
    try:
        try:
            sidecars, service, ports = await _start_all(policies, seed, stack)
        except Exception as exc:
            print(f"mlchaos demo: failed to start: {type(exc).__name__}: {exc}", file=out)
            return 1
        ingress = sidecars["ingress"]
        _intro(sidecars, ports, seconds, requests, out)
        results = await _load(ingress, seconds, requests or 1_000_000, seed, concurrency, out)
        await _settle(ingress, SETTLE_SECONDS)
        reports = {name: ingress.report(name) or {} for name in ingress.experiments.states}
        verdicts: Verdicts = {name: r.get("hypothesis") or {} for name, r in reports.items()}
        paths = dict(service.paths)
        injected = {role: _injected(sidecars[role]) for role in ("features", "model")}
    finally:
        for stop in reversed(stack):
            await stop()
        quiet.setLevel(level)
    summary = (f"{results.requests} requests in {results.elapsed:.1f} s ({results.rate:.0f} req/s), "
               f"{results.errors} errors. Faults injected by the features sidecar: {injected['features']}; by "
               f"the model sidecar: {injected['model']}. The inference service fell back to default features "
               f"{paths['default_features']} times and to the fallback model {paths['fallback']} times.")
    print(file=out)
    print(format_verdicts(verdicts), file=out)
    print(file=out)
    print(summary, file=out)
    deviated = [name for name, v in verdicts.items() if v.get("verdict") == "deviated"]
    if deviated:
        print(f"Deviated: {', '.join(deviated)}: the system did not hold up by its own tolerance there "
              "(a weakness caught, before users meet it).", file=out)
    path = Path(report_dir) / "report.html"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(_report_page(verdicts, reports, summary), encoding="utf-8")
    print(f"Report: {path.resolve()}", file=out)
    return 0


async def _load(ingress: Sidecar, seconds: float, requests: int, seed: int, concurrency: int, out: TextIO,
                ) -> Results:
    tty = _isatty(out)
    width = 0

    def show(p: Progress) -> None:
        nonlocal width
        live = {name: (st.requests[CHAOS], st.verdict.status if st.verdict is not None else "-")
                for name, st in ingress.experiments.states.items()}
        line = format_live(p, live)
        out.write("\r" + line.ljust(width) if tty else line + "\n")
        width = max(width, len(line))
        out.flush()

    results = await drive(f"http://{HOST}:{ingress.proxy_port}", duration=seconds, concurrency=concurrency,
                          seed=seed, users=USERS, on_progress=show, max_requests=requests,
                          progress_interval=TTY_PROGRESS_INTERVAL if tty else PLAIN_PROGRESS_INTERVAL,
                          make=lambda rng, seq, user: make_request(rng, seq, user, seed))
    if tty:
        out.write("\n")
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m proxy.demo.story", description="Run the mlchaos demo.")
    parser.add_argument("--seconds", type=float, default=45.0, help="seconds of traffic (default 45)")
    parser.add_argument("--requests", type=int, default=None, help="stop after this many requests instead")
    parser.add_argument("--report-dir", default="mlchaos-demo", help="where report.html goes")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    return asyncio.run(run_story(seconds=args.seconds, requests=args.requests, report_dir=args.report_dir,
                                 seed=args.seed))


if __name__ == "__main__":
    sys.exit(main())
