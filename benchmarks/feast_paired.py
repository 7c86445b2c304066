#!/usr/bin/env python3
"""Throughput through mlchaos in front of a real Feast feature server: a 5% response-side ``stale`` experiment
(policies/feast-stale.yaml) against pass-through (policies/feast-passthrough.yaml), paired round by round as in
``paired.py`` (a fresh process per policy and round, start and load order alternating, the median of the
per-round ratios with a distribution-free 95% interval, ``--check MIN`` on its low end).

The feature server is the one the tests run (tests/feast/harness.py): Feast from scripts/feature-servers.sh,
a feature repo written here (SQLite online store, parquet of 40 drivers), ``feast apply``,
``feast materialize-incremental``, ``feast serve`` on 127.0.0.1 (about 40 s to set up, once per run). Each
request (benchmarks/feast.lua) asks for four features of three drivers. Loopback only; every process is
stopped on exit.

    python benchmarks/feast_paired.py --rounds 30 --check 0.9
"""

from __future__ import annotations

import argparse
import json
import secrets
import shlex
import shutil
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))

import paired  # noqa: E402 - the paired rounds' statistics and summary
import run as bench  # noqa: E402 - the benchmark harness: processes, ports, wrk

A, B = "feast-passthrough", "feast-stale"
PATH = "/get-online-features"
# Keep BODY in sync with feast.lua.
BODY = (b'{"features":["driver_hourly_stats:conv_rate","driver_hourly_stats:acc_rate",'
        b'"driver_hourly_stats:avg_daily_trips","driver_hourly_stats:city"],"entities":{"driver_id":[1001,1002,99999]}}')


def wait_ready(server: bench.Server, body: bytes, timeout: float = bench.READY_TIMEOUT) -> None:
    """Until mlchaos answers a Feast request with 200 (bounded)."""
    deadline = time.monotonic() + timeout
    while True:
        if server.proc.poll() is not None:
            raise bench.BenchError(f"{server.path} exited with {server.proc.returncode}:\n"
                                   f"{bench.log_tail(server.log_file)}")
        try:
            req = urllib.request.Request(f"http://{bench.HOST}:{server.port}{PATH}", data=body, method="POST",
                                         headers={"Content-Type": "application/json"})
            with bench._no_proxy_opener().open(req, timeout=5) as resp:
                if resp.status == 200 and json.loads(resp.read())["results"]:
                    return
        except OSError:
            pass
        if time.monotonic() >= deadline:
            raise bench.BenchError(f"{server.path}: no 200 from {PATH} within {timeout:g} s:\n"
                                   f"{bench.log_tail(server.log_file)}")
        time.sleep(0.1)


def run_wrk(ctx: bench.Context, server: bench.Server, seconds: int) -> bench.WrkResult:
    # --timeout: the feature server saturated by 32 connections answers its slowest requests in 1-2 s (p99 1.3 s,
    # measured direct), at wrk's default 2 s timeout: a late answer is not an error of the path measured.
    cmd = [ctx.bins["wrk"], "-t1", f"-c{bench.CONNECTIONS}", f"-d{seconds}s", "--timeout", "10s", "-s",
           str(HERE / "feast.lua"), f"http://{bench.HOST}:{server.port}", "--latency"]
    return bench.parse_wrk(ctx.procs.run(cmd, timeout=seconds + 30))


def run_rounds(args: argparse.Namespace, ctx: bench.Context, upstream_port: int, body: bytes,
               figs: paired.Figures) -> None:
    for rnd in range(args.rounds):
        order = ("A", "B") if rnd % 2 == 0 else ("B", "A")
        servers = {}
        for side in order:
            servers[side] = bench.start_mlchaos(ctx, A if side == "A" else B, upstream_port,
                                                log_name=f"{side}-{rnd}")
            wait_ready(servers[side], body)
        for side in order:
            server = servers[side]
            if args.warmup:
                run_wrk(ctx, server, args.warmup)
            before = bench.cpu_seconds(server.proc.pid)
            res = run_wrk(ctx, server, args.duration)
            used = bench.cpu_seconds(server.proc.pid) - before
            if res.errors or res.requests == 0:
                raise bench.BenchError(f"{server.path}: {res.errors} non-2xx or socket errors, {res.requests} "
                                       f"requests in {args.duration} s")
            figs.rps[side].append(res.rps)
            figs.cpu[side].append(used / max(res.requests, 1) * 1e6)
        # The stale side really ran its fault: the chaos cohort's answers were rewritten.
        doc = bench.admin_get(servers["B"], ctx.admin_token, "/experiments/bench/report", timeout=10)
        faults = doc["cohorts"]["chaos"].get("faults", {})
        if not faults.get("stale"):
            raise bench.BenchError(f"{B}: no stale fault applied in round {rnd + 1}: {doc['cohorts']!r:.300}")
        for server in servers.values():
            ctx.procs.stop(server.proc)
        figs.ratios.append(figs.rps["B"][-1] / figs.rps["A"][-1])
        figs.cpu_ratios.append(figs.cpu["B"][-1] / figs.cpu["A"][-1])
        bench.log(f"round {rnd + 1}/{args.rounds}: A {figs.rps['A'][-1]:,.0f} req/s, B {figs.rps['B'][-1]:,.0f} "
                  f"req/s, B/A {figs.ratios[-1]:.3f}; stale faults so far {faults['stale']}")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=30)
    ap.add_argument("--duration", type=int, default=3, help="seconds per wrk measurement")
    ap.add_argument("--warmup", type=int, default=1, help="seconds of wrk before each measurement")
    ap.add_argument("--check", type=float, metavar="MIN", help="exit 1 unless the interval's low end >= MIN")
    ap.add_argument("--mlchaos", default=str(HERE.parent / ".venv" / "bin" / "mlchaos"))
    ap.add_argument("--out", help="also write the Markdown summary here")
    args = ap.parse_args()
    if not 6 <= args.rounds <= 200 or not 1 <= args.duration <= 60 or not 0 <= args.warmup <= 60:
        ap.error("keep it bounded: 6 <= --rounds <= 200, 1 <= --duration <= 60, 0 <= --warmup <= 60")
    from tests.feast import harness  # the feature server the tests run

    problem = harness.problem()
    if problem:
        bench.log(f"error: {problem}: run scripts/feature-servers.sh feast")
        return 2
    for name in (A, B):
        bench.POLICIES[name] = HERE / "policies" / f"{name}.yaml"
    started = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    figs = paired.Figures()
    feast = None
    with bench.interrupts_raise():
        procs = bench.Processes()
        tmp = Path(tempfile.mkdtemp(prefix="mlchaos-feast-paired-"))
        try:
            bench.log("starting the Feast feature server (feast apply, materialize-incremental, serve)")
            feast = harness.start_feast(tmp / "feast")
            bench.log(f"feast serve ready at {feast.url}")
            bins = bench.ensure_tools(["wrk"], install=True)
            ctx = bench.Context(tmp, procs, bench.Ports(), bins, [args.mlchaos], secrets.token_hex(16))
            run_rounds(args, ctx, feast.port, BODY, figs)
        except (bench.BenchError, RuntimeError) as exc:
            bench.log(f"error: {exc}")
            return 2
        except KeyboardInterrupt:
            bench.log("interrupted; stopping every process started")
            return 130
        finally:
            procs.stop_all()
            if feast is not None:
                harness.stop_process(feast.process)
            shutil.rmtree(tmp, ignore_errors=True)
    summary_args = argparse.Namespace(a=A, b=B, aa=False, check=args.check, rounds=args.rounds,
                                      duration=args.duration, warmup=args.warmup)
    command = tuple(shlex.split(args.mlchaos))
    side = {"A": paired.Side("A", A, command, "feast pass-through"), "B": paired.Side("B", B, command, "feast stale")}
    text, ok = paired.summary(summary_args, side, started, figs)
    print(text, end="")
    if args.out:
        Path(args.out).write_text(text)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
