#!/usr/bin/env python3
"""CPU time per request of the mlchaos process at a fixed request rate, per policy: pass-through, the
5% + 5% experiment with prediction bookkeeping on (experiment.yaml) and off (experiment-noobserve.yaml),
and the 5% shift experiment (shift.yaml).

CPU seconds per request (utime + stime from /proc) are far steadier than throughput on a shared machine,
and at saturation throughput is their inverse; the rounds rotate the order so that drift in the machine's
load hits every path alike. Loopback only. Exit 1 when bookkeeping adds more than 10%.

    python benchmarks/observe_cost.py [--rate 4000] [--seconds 6] [--rounds 3] [--out FILE]
"""

from __future__ import annotations

import argparse
import os
import secrets
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import run as bench  # noqa: E402 - the benchmark harness: servers, ports, wrk

bench.POLICIES["experiment-noobserve"] = HERE / "policies" / "experiment-noobserve.yaml"
MAX_OVERHEAD = 0.10


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rate", type=int, default=4000, help="requests per second, fixed (default 4000)")
    ap.add_argument("--seconds", type=int, default=6)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--mlchaos", default=str(HERE.parent / ".venv" / "bin" / "mlchaos"))
    ap.add_argument("--out", help="also write the Markdown table here")
    args = ap.parse_args()
    procs = bench.Processes()
    tmp = Path(tempfile.mkdtemp(prefix="mlchaos-observe-cost-"))
    try:
        bins = bench.ensure_tools(["nginx", "wrk"], install=True)
        ctx = bench.Context(tmp, procs, bench.Ports(), bins, [args.mlchaos], secrets.token_hex(16))
        upstream = bench.start_nginx(ctx, "direct", HERE / "nginx-upstream.conf.tmpl", {})
        bench.wait_ready(upstream)
        paths = ("passthrough", "experiment-noobserve", "experiment", "shift")
        per_req: dict[str, list[float]] = {p: [] for p in paths}
        for rnd in range(args.rounds):
            for path in paths[rnd % len(paths):] + paths[:rnd % len(paths)]:
                # A fresh process per measurement: one process keeps the luck of where it landed on this
                # shared machine for its whole life (benchmarks/README.md).
                server = bench.start_mlchaos(ctx, path, upstream.port)
                bench.wait_ready(server)
                bench.run_rate(ctx, server.url, args.rate, 1)  # warm-up
                before = bench.cpu_seconds(server.proc.pid)
                res = bench.run_rate(ctx, server.url, args.rate, args.seconds)
                time.sleep(1.0)  # the observer's background pass of what the load queued
                used = bench.cpu_seconds(server.proc.pid) - before
                per_req[path].append(used / max(res.requests, 1) * 1e6)
                bench.log(f"round {rnd + 1} {path}: {res.requests} requests, {used:.2f} CPU s, "
                          f"{per_req[path][-1]:.1f} µs/request, errors {res.errors}")
                procs.stop(server.proc)
        med = {p: statistics.median(per_req[p]) for p in paths}
        base, off, on = med["passthrough"], med["experiment-noobserve"], med["experiment"]
        overhead = on / off - 1
        rows = [("pass-through", base), ("experiment 5% + 5%, observe.predictions: false", off),
                ("experiment 5% + 5%, observe.predictions: true (default)", on),
                ("5% shift + 5% control (payload rewritten), bookkeeping on", med["shift"])]
        lines = [
            f"CPU per request, {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, {os.cpu_count()} cores, "
            f"{args.rate} req/s for {args.seconds} s x {args.rounds} rounds (medians):",
            "",
            "| mlchaos path | CPU µs per request | vs pass-through | throughput bound vs pass-through |",
            "|---|---:|---:|---:|",
            *(f"| {name} | {v:.1f} | {v / base - 1:+.1%} | {base / v:.0%} |" for name, v in rows),
            "",
            f"Prediction bookkeeping adds {overhead:+.1%} CPU per request (bar: at most {MAX_OVERHEAD:.0%}).",
        ]
        text = "\n".join(lines)
        print(text)
        if args.out:
            Path(args.out).write_text(text + "\n")
        return 0 if overhead <= MAX_OVERHEAD else 1
    finally:
        procs.stop_all()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
