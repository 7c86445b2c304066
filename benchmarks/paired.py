#!/usr/bin/env python3
"""Throughput of one mlchaos policy against another, paired round by round, with a confidence interval.

``run.py`` reports each path's median over a few rounds. On this shared 2-core machine that is too coarse to
decide a bar a few points from the expected figure: two *identical* pass-through processes, measured the way
``run.py`` measures, gave 5-round ratios of 0.95-1.05, single rounds 0.81-1.29, and 20 one-second
alternations of the same two processes a median of 0.87 (benchmarks/RESULTS.md, "Measuring a ratio"). This
script measures one ratio with a sample large enough to state how sure it is:

- each round starts a fresh process for each policy (a process keeps the luck of where it landed for its
  whole life), then loads both with ``wrk -t1 -c32`` after a warm-up; A starts and is loaded first in even
  rounds, B in odd ones, so that neither order and no drift within a round favours a side;
- each round gives one ratio, B's req/s over A's; the estimate is the median of the rounds' ratios, with a
  distribution-free 95% confidence interval from order statistics (no assumption about the noise, which
  here is far from normal: req/s jumps between two levels);
- ``--check MIN`` exits 1 unless the interval's lower end is at least MIN: the ratio must be *measurably*
  at or above the bar, not merely estimated there;
- ``--aa`` measures A against a second process of A: the interval then shows the instrument's own spread
  and must hold 1.0;
- ``--mlchaos-a``/``--mlchaos-b`` run each side with its own mlchaos command (default: ``--mlchaos``, the
  current build), to compare two builds on one policy: the new build against the previous release's;
- each side's CPU seconds per request (utime + stime over the measurement) are reported too, B's over A's
  per round with the same kind of interval: at saturation throughput is their inverse, and they tell a
  dearer request apart from a process that got less of the CPU.

Loopback only; every process is stopped on exit (the harness of run.py).

    python benchmarks/paired.py --a passthrough --b shift --rounds 30 --check 0.85
    python benchmarks/paired.py --a passthrough --aa --rounds 30
    python benchmarks/paired.py --a shift --b shift --mlchaos-a /opt/mlchaos-0.1.0/bin/mlchaos --rounds 30
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import os
import secrets
import shlex
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import run as bench  # noqa: E402 - the benchmark harness: servers, ports, wrk

CONFIDENCE = 0.95


def median_interval(values: list[float], confidence: float = CONFIDENCE) -> tuple[float, float]:
    """A distribution-free interval for the median: the k-th smallest and k-th largest values, with k the
    largest rank such that P(Binomial(n, 1/2) < k) <= (1 - confidence) / 2 (at least 1: the extremes)."""
    n = len(values)
    tail = (1 - confidence) / 2
    k, below = 0, 0.0
    while k < n:
        below_next = below + math.comb(n, k) / 2**n  # P(Binomial(n, 1/2) <= k)
        if below_next > tail:
            break
        below, k = below_next, k + 1
    k = max(k, 1)
    ordered = sorted(values)
    return ordered[k - 1], ordered[n - k]


def measure(ctx: bench.Context, server: bench.Server, warmup: int, seconds: int) -> tuple[bench.WrkResult, float]:
    """wrk's result and the process's CPU seconds over the measurement."""
    if warmup > 0:
        bench.run_wrk(ctx, server.url, warmup)
    before = bench.cpu_seconds(server.proc.pid)
    res = bench.run_wrk(ctx, server.url, seconds)
    used = bench.cpu_seconds(server.proc.pid) - before
    if res.errors:
        raise bench.BenchError(f"{server.path}: {res.errors} non-2xx or socket errors")
    if server.proc.poll() is not None:
        raise bench.BenchError(f"{server.path} exited during the run:\n{bench.log_tail(server.log_file)}")
    return res, used


@dataclass(frozen=True)
class Side:
    """One side of the comparison: a policy run by one mlchaos command (a build)."""

    label: str  # "A" or "B"
    policy: str  # a name of bench.POLICIES
    mlchaos: tuple[str, ...]  # the command, split like a shell would
    build: str = "unknown"  # what `mlchaos --version` says, filled in when the run starts

    def describe(self) -> str:
        return f"{self.policy} on mlchaos {self.build} (`{shlex.join(self.mlchaos)}`)"


def sides(args: argparse.Namespace) -> dict[str, Side]:
    """A and B from the options: B runs A's policy under --aa; each side's command defaults to --mlchaos."""
    command_a = shlex.split(args.mlchaos_a or args.mlchaos)
    command_b = shlex.split(args.mlchaos_b or args.mlchaos)
    return {"A": Side("A", args.a, tuple(command_a)),
            "B": Side("B", args.a if args.aa else args.b, tuple(command_b))}


def launch(ctx: bench.Context, side: Side, upstream_port: int) -> bench.Server:
    """Spawn ``side``'s mlchaos (its own command) in front of the upstream; not yet waited for."""
    own = dataclasses.replace(ctx, mlchaos=list(side.mlchaos))
    return bench.start_mlchaos(own, side.policy, upstream_port, log_name=f"{side.label}-{side.policy}")


def start(ctx: bench.Context, side: Side, upstream_port: int) -> bench.Server:
    server = launch(ctx, side, upstream_port)
    bench.wait_ready(server)
    bench.require_experiments(server, ctx.admin_token)
    bench.log(f"{side.label} ({side.policy}, mlchaos {side.build}): ready on 127.0.0.1:{server.port}")
    return server


@dataclass
class Figures:
    """Per round: B's req/s over A's; each side's req/s and CPU µs per request; B's CPU over A's."""

    ratios: list[float] = field(default_factory=list)
    rps: dict[str, list[float]] = field(default_factory=lambda: {"A": [], "B": []})
    # CPU per request tells a dearer request apart from a process that got less of the CPU.
    cpu: dict[str, list[float]] = field(default_factory=lambda: {"A": [], "B": []})
    cpu_ratios: list[float] = field(default_factory=list)


def run_rounds(args: argparse.Namespace, side: dict[str, Side], ctx: bench.Context, figs: Figures) -> None:
    upstream = bench.start_nginx(ctx, "direct", HERE / "nginx-upstream.conf.tmpl", {})
    bench.wait_ready(upstream)
    for rnd in range(args.rounds):
        # Which process starts first and which is loaded first alternate: neither order favours a side.
        order = ("A", "B") if rnd % 2 == 0 else ("B", "A")
        servers = {label: start(ctx, side[label], upstream.port) for label in order}
        res: dict[str, bench.WrkResult] = {}
        for label in order:
            res[label], used = measure(ctx, servers[label], args.warmup, args.duration)
            figs.rps[label].append(res[label].rps)
            figs.cpu[label].append(used / max(res[label].requests, 1) * 1e6)
        for server in servers.values():
            if server.path in bench.BOOKKEEPING_PATHS:
                bench.require_bookkeeping(server, ctx.admin_token)
            ctx.procs.stop(server.proc)
        figs.ratios.append(res["B"].rps / res["A"].rps)
        figs.cpu_ratios.append(figs.cpu["B"][-1] / figs.cpu["A"][-1])
        bench.log(f"round {rnd + 1}/{args.rounds}: A {res['A'].rps:,.0f} req/s, B {res['B'].rps:,.0f} req/s, "
                  f"B/A {figs.ratios[-1]:.3f}; CPU µs/request A {figs.cpu['A'][-1]:.1f}, B {figs.cpu['B'][-1]:.1f}")


def summary(args: argparse.Namespace, side: dict[str, Side], started: str, figs: Figures) -> tuple[str, bool]:
    """The Markdown summary and whether the checks asked for hold."""
    est = statistics.median(figs.ratios)
    lo, hi = median_interval(figs.ratios)
    cpu_lo, cpu_hi = median_interval(figs.cpu_ratios)
    med_a, med_b = statistics.median(figs.rps["A"]), statistics.median(figs.rps["B"])
    name_b = f"a second process of {side['A'].describe()}" if args.aa else side["B"].describe()
    lines = [
        f"Paired throughput, {started}, {os.cpu_count()} cores, {args.rounds} rounds of `wrk -t1 -c32 "
        f"-d{args.duration}s` after {args.warmup} s of warm-up, a fresh process per policy and round, start and "
        f"load order alternating: A = {side['A'].describe()}, B = {name_b}.",
        "",
        f"- B / A, median of the per-round ratios: **{est:.3f}**, {CONFIDENCE:.0%} interval "
        f"[{lo:.3f}, {hi:.3f}] (order statistics)",
        f"- median req/s: A {med_a:,.0f}, B {med_b:,.0f}; ratio of the medians {med_b / med_a:.3f}",
        f"- per-round ratios: {', '.join(f'{r:.2f}' for r in figs.ratios)}",
        f"- CPU µs per request (utime + stime over the measurement), medians: A "
        f"{statistics.median(figs.cpu['A']):.1f}, B {statistics.median(figs.cpu['B']):.1f}; B / A per round, "
        f"median {statistics.median(figs.cpu_ratios):.3f}, {CONFIDENCE:.0%} interval [{cpu_lo:.3f}, {cpu_hi:.3f}]",
    ]
    ok = True
    if args.aa:
        ok = lo <= 1.0 <= hi
        lines.append(f"- {'PASS' if ok else 'FAIL'}: the interval of two identical processes holds 1.0")
    if args.check is not None:
        passed = lo >= args.check
        ok = ok and passed
        lines.append(f"- {'PASS' if passed else 'FAIL'}: the interval's low end {lo:.3f} >= {args.check:g}")
    return "\n".join(lines) + "\n", ok


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--a", default="passthrough", choices=sorted(bench.POLICIES), help="the reference policy")
    ap.add_argument("--b", default="shift", choices=sorted(bench.POLICIES), help="the policy compared with it")
    ap.add_argument("--aa", action="store_true", help="B is a second process of A's policy (calibration)")
    ap.add_argument("--rounds", type=int, default=30)
    ap.add_argument("--duration", type=int, default=3, help="seconds per wrk measurement")
    ap.add_argument("--warmup", type=int, default=1, help="seconds of wrk before each measurement")
    ap.add_argument("--check", type=float, metavar="MIN", help="exit 1 unless the interval's low end >= MIN")
    ap.add_argument("--mlchaos", default=str(HERE.parent / ".venv" / "bin" / "mlchaos"),
                    help="the mlchaos command of both sides (the current build), split like a shell would")
    ap.add_argument("--mlchaos-a", metavar="COMMAND", help="A's mlchaos command (default: --mlchaos)")
    ap.add_argument("--mlchaos-b", metavar="COMMAND", help="B's mlchaos command (default: --mlchaos)")
    ap.add_argument("--out", help="also write the Markdown summary here")
    args = ap.parse_args(argv)
    if not 6 <= args.rounds <= 200 or not 1 <= args.duration <= 60 or not 0 <= args.warmup <= 60:
        ap.error("keep it bounded: 6 <= --rounds <= 200 (fewer cannot give a 95% interval), "
                 "1 <= --duration <= 60, 0 <= --warmup <= 60")
    for option in ("mlchaos", "mlchaos_a", "mlchaos_b"):
        if getattr(args, option) is not None and not shlex.split(getattr(args, option)):
            ap.error(f"--{option.replace('_', '-')} is empty")
    if args.aa and shlex.split(args.mlchaos_a or args.mlchaos) != shlex.split(args.mlchaos_b or args.mlchaos):
        ap.error("--aa compares one build with itself: give --a and --b (one policy twice) to compare two builds")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    side = sides(args)
    for label, one in side.items():
        if shutil.which(one.mlchaos[0]) is None:
            bench.log(f"error: {label}'s mlchaos command not found: {shlex.join(one.mlchaos)}")
            return 2
        side[label] = dataclasses.replace(one, build=bench.mlchaos_version(list(one.mlchaos)))
    started = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    figs = Figures()
    with bench.interrupts_raise():  # SIGTERM and SIGHUP unwind like Ctrl-C: the finally below runs
        procs = bench.Processes()
        tmp = Path(tempfile.mkdtemp(prefix="mlchaos-paired-"))
        tmp.chmod(0o755)  # nginx workers run as nobody when started by root
        try:
            bins = bench.ensure_tools(["nginx", "wrk"], install=True)
            ctx = bench.Context(tmp, procs, bench.Ports(), bins, list(side["A"].mlchaos), secrets.token_hex(16))
            run_rounds(args, side, ctx, figs)
        except bench.BenchError as exc:
            bench.log(f"error: {exc}")
            return 2
        except KeyboardInterrupt:
            bench.log("interrupted; stopping every process started")
            return 130
        finally:
            procs.stop_all()
            shutil.rmtree(tmp, ignore_errors=True)
    text, ok = summary(args, side, started, figs)
    print(text, end="")
    if args.out:
        Path(args.out).write_text(text)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
