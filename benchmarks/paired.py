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
- each side's CPU seconds per request (utime + stime over the measurement) are reported too, B's over A's
  per round with the same kind of interval: at saturation throughput is their inverse, and they tell a
  dearer request apart from a process that got less of the CPU.

Loopback only; every process is stopped on exit (the harness of run.py).

    python benchmarks/paired.py --a passthrough --b shift --rounds 30 --check 0.85
    python benchmarks/paired.py --a passthrough --aa --rounds 30
"""

from __future__ import annotations

import argparse
import math
import os
import secrets
import statistics
import sys
import tempfile
import time
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


def start(ctx: bench.Context, path: str, upstream_port: int, label: str) -> bench.Server:
    server = bench.start_mlchaos(ctx, path, upstream_port, log_name=f"{label}-{path}")
    bench.wait_ready(server)
    bench.require_experiments(server, ctx.admin_token)
    bench.log(f"{label} ({path}): ready on 127.0.0.1:{server.port}")
    return server


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--a", default="passthrough", choices=sorted(bench.POLICIES), help="the reference policy")
    ap.add_argument("--b", default="shift", choices=sorted(bench.POLICIES), help="the policy compared with it")
    ap.add_argument("--aa", action="store_true", help="B is a second process of A's policy (calibration)")
    ap.add_argument("--rounds", type=int, default=30)
    ap.add_argument("--duration", type=int, default=3, help="seconds per wrk measurement")
    ap.add_argument("--warmup", type=int, default=1, help="seconds of wrk before each measurement")
    ap.add_argument("--check", type=float, metavar="MIN", help="exit 1 unless the interval's low end >= MIN")
    ap.add_argument("--mlchaos", default=str(HERE.parent / ".venv" / "bin" / "mlchaos"))
    ap.add_argument("--out", help="also write the Markdown summary here")
    args = ap.parse_args()
    if not 6 <= args.rounds <= 200 or not 1 <= args.duration <= 60 or not 0 <= args.warmup <= 60:
        ap.error("keep it bounded: 6 <= --rounds <= 200 (fewer cannot give a 95% interval), "
                 "1 <= --duration <= 60, 0 <= --warmup <= 60")
    b = args.a if args.aa else args.b
    procs = bench.Processes()
    tmp = Path(tempfile.mkdtemp(prefix="mlchaos-paired-"))
    tmp.chmod(0o755)  # nginx workers run as nobody when started by root
    started = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    ratios: list[float] = []
    rps: dict[str, list[float]] = {"A": [], "B": []}
    # CPU µs per request of each side, and B's over A's per round: tells a dearer request from a process
    # that got less of the CPU.
    cpu: dict[str, list[float]] = {"A": [], "B": []}
    cpu_ratios: list[float] = []
    try:
        bins = bench.ensure_tools(["nginx", "wrk"], install=True)
        ctx = bench.Context(tmp, procs, bench.Ports(), bins, [args.mlchaos], secrets.token_hex(16))
        upstream = bench.start_nginx(ctx, "direct", HERE / "nginx-upstream.conf.tmpl", {})
        bench.wait_ready(upstream)
        for rnd in range(args.rounds):
            # Which process starts first and which is loaded first alternate: neither order favours a side.
            order = ("A", "B") if rnd % 2 == 0 else ("B", "A")
            policy = {"A": args.a, "B": b}
            servers = {side: start(ctx, policy[side], upstream.port, side) for side in order}
            res: dict[str, bench.WrkResult] = {}
            for side in order:
                res[side], used = measure(ctx, servers[side], args.warmup, args.duration)
                cpu[side].append(used / max(res[side].requests, 1) * 1e6)
            for server in servers.values():
                if server.path in bench.BOOKKEEPING_PATHS:
                    bench.require_bookkeeping(server, ctx.admin_token)
                procs.stop(server.proc)
            ratios.append(res["B"].rps / res["A"].rps)
            cpu_ratios.append(cpu["B"][-1] / cpu["A"][-1])
            for side in res:
                rps[side].append(res[side].rps)
            bench.log(f"round {rnd + 1}/{args.rounds}: A {res['A'].rps:,.0f} req/s, B {res['B'].rps:,.0f} "
                      f"req/s, B/A {ratios[-1]:.3f}; CPU µs/request A {cpu['A'][-1]:.1f}, B {cpu['B'][-1]:.1f}")
    except bench.BenchError as exc:
        bench.log(f"error: {exc}")
        return 2
    finally:
        procs.stop_all()

    est = statistics.median(ratios)
    lo, hi = median_interval(ratios)
    name_b = f"a second process of {args.a}" if args.aa else b
    lines = [
        f"Paired throughput, {started}, {os.cpu_count()} cores, {args.rounds} rounds of `wrk -t1 -c32 "
        f"-d{args.duration}s` after {args.warmup} s of warm-up, a fresh process per policy and round, start and "
        f"load order alternating: A = {args.a}, B = {name_b}.",
        "",
        f"- B / A, median of the per-round ratios: **{est:.3f}**, {CONFIDENCE:.0%} interval "
        f"[{lo:.3f}, {hi:.3f}] (order statistics)",
        f"- median req/s: A {statistics.median(rps['A']):,.0f}, B {statistics.median(rps['B']):,.0f}; ratio of the "
        f"medians {statistics.median(rps['B']) / statistics.median(rps['A']):.3f}",
        f"- per-round ratios: {', '.join(f'{r:.2f}' for r in ratios)}",
        f"- CPU µs per request (utime + stime over the measurement), medians: A {statistics.median(cpu['A']):.1f}, "
        f"B {statistics.median(cpu['B']):.1f}; B / A per round, median {statistics.median(cpu_ratios):.3f}, "
        f"{CONFIDENCE:.0%} interval [{median_interval(cpu_ratios)[0]:.3f}, {median_interval(cpu_ratios)[1]:.3f}]",
    ]
    ok = True
    if args.aa:
        ok = lo <= 1.0 <= hi
        lines.append(f"- {'PASS' if ok else 'FAIL'}: the interval of two identical processes holds 1.0")
    if args.check is not None:
        passed = lo >= args.check
        ok = ok and passed
        lines.append(f"- {'PASS' if passed else 'FAIL'}: the interval's low end {lo:.3f} >= {args.check:g}")
    text = "\n".join(lines) + "\n"
    print(text, end="")
    if args.out:
        Path(args.out).write_text(text)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
