#!/usr/bin/env python3
"""What each response fault costs the sidecar on a 1 MB CSV data feed: CPU per answer (utime + stime of the
sidecar over a bounded wrk run) with every request in the chaos cohort (``chaos: 100``, staging), against a
pass-through sidecar relaying the same object. Not a bar: it says which faults a busy feed can take at 5%
(issue 19's bar (b), in data_feed.py, is ``nan``), and shows the ways that do not read the whole table: ``nan``
cuts cells found in C, the structural faults gather rows and columns from the body's bytes, the in-place value
faults read only their features' columns; ``stale`` still reads it all.

Peers: nginx (Debian), wrk. Loopback only; each measurement is one bounded wrk run (--duration s, 8
connections); every process is stopped on exit::

    python benchmarks/feed_faults.py --mlchaos .venv/bin/mlchaos
"""

from __future__ import annotations

import argparse
import os
import shlex
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))

import data_feed  # noqa: E402 - the same object and wrk settings as bar (b)
import run as bench  # noqa: E402

from tests.datafeeds import harness  # noqa: E402

FAULTS: dict[str, dict[str, Any]] = {
    "nan": {"type": "nan", "features": ["amount"], "fraction": 0.1},
    "drop_feature": {"type": "drop_feature", "features": ["amount"]},
    "rename_feature": {"type": "rename_feature", "features": ["amount"]},
    "reorder_features": {"type": "reorder_features", "features": ["amount", "qty"]},
    "truncate_batch": {"type": "truncate_batch", "fraction": 0.5},
    "reorder_rows": {"type": "reorder_rows", "fraction": 0.1},
    "duplicate_rows": {"type": "duplicate_rows", "fraction": 0.1},
    "shift": {"type": "shift", "features": ["amount"], "fraction": 0.1, "scale": 1.5},
    "out_of_range": {"type": "out_of_range", "features": ["amount"], "fraction": 0.1},
    "type_swap": {"type": "type_swap", "features": ["qty"], "fraction": 0.1},
    "default": {"type": "default", "features": ["amount"], "fraction": 0.1},
    "stale": {"type": "stale", "features": ["amount"], "fraction": 0.1},
}


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def experiment(fault: dict[str, Any]) -> list[dict[str, Any]]:
    return [{"name": "feed-fault", "chaos": 100, "control": 0, "kill_switch": {"enabled": False},
             "faults": [{**fault, "target": "response"}], "observe": {"predictions": False}}]


def measure(sidecar: harness.Sidecar, seconds: int) -> tuple[float, float, int]:
    """req/s, sidecar CPU ms per request, requests."""
    url = sidecar.url + "/feeds/object.csv"
    before = cpu_seconds(sidecar.process.pid)
    res = data_feed.wrk(url, seconds)
    used = cpu_seconds(sidecar.process.pid) - before
    if res.errors or not res.requests:
        raise bench.BenchError(f"{res.errors} errors in {res.requests} requests")
    return res.rps, 1000 * used / res.requests, res.requests


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--duration", type=int, default=3, help="seconds per wrk run")
    ap.add_argument("--mlchaos", help="an installed mlchaos command (default: this tree's python -m proxy)")
    ap.add_argument("--only", nargs="*", choices=sorted(FAULTS), help="these faults only")
    args = ap.parse_args()
    if not 1 <= args.duration <= 30:
        ap.error("keep it bounded: 1 <= --duration <= 30")
    if shutil.which("wrk") is None:
        bench.log("error: no wrk (apt-get install wrk)")
        return 2
    command = shlex.split(args.mlchaos) if args.mlchaos else None
    started = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    tmp = Path(tempfile.mkdtemp(prefix="mlchaos-feed-faults-"))
    live: list[Any] = []
    faulted: list[tuple[str, float, float, int]] = []  # fault, req/s, CPU ms an answer, answers
    try:
        data_feed.write_csv(tmp / "www" / "feeds" / "object.csv", data_feed.OBJECT_BYTES, 2)
        nginx = harness.Nginx(tmp / "www", tmp / "nginx")
        live.append(nginx)
        plain = harness.Sidecar(nginx.url, [], tmp / "plain", command=command)
        live.append(plain)
        data_feed.wrk(plain.url + "/feeds/object.csv", 1)  # warm-up
        # Pass-through twice, first and last: a neighbour on the machine that slowed one shows as a gap between
        # them; the ratios use the cheaper.
        first = measure(plain, args.duration)
        bench.log(f"pass-through: {first[0]:.1f} req/s, {first[1]:.3f} ms CPU a request")
        for name in args.only or list(FAULTS):
            sidecar = harness.Sidecar(nginx.url, experiment(FAULTS[name]), tmp / name, command=command)
            live.append(sidecar)
            data_feed.wrk(sidecar.url + "/feeds/object.csv", 1)
            faulted.append((name, *measure(sidecar, args.duration)))
            sidecar.stop()
            live.remove(sidecar)
            bench.log(f"{name}: {faulted[-1][1]:.1f} req/s, {faulted[-1][2]:.3f} ms CPU a request")
        last = measure(plain, args.duration)
        bench.log(f"pass-through again: {last[0]:.1f} req/s, {last[1]:.3f} ms CPU a request")
    except (bench.BenchError, RuntimeError) as exc:
        bench.log(f"error: {exc}")
        return 2
    finally:
        for thing in reversed(live):
            thing.stop()
        shutil.rmtree(tmp, ignore_errors=True)
    base = min(first[1], last[1])
    rows = [f"| pass-through, first and last | {first[0]:,.1f}, {last[0]:,.1f} | {first[1]:.3f}, {last[1]:.3f} | — "
            f"| {first[2]:,}, {last[2]:,} |"]
    rows += [f"| `{name}` | {rps:,.1f} | {ms:.3f} | {ms / base:.1f}x | {n:,} |" for name, rps, ms, n in faulted]
    print(f"### Response faults on a 1 MB CSV, every request faulted ({started}, nproc {os.cpu_count()})\n")
    print(f"`python benchmarks/feed_faults.py --duration {args.duration}`: wrk, {data_feed.CONNECTIONS} connections, "
          f"{args.duration} s per sidecar; sidecar CPU (utime + stime) per answer.\n")
    print("| fault | req/s | sidecar CPU ms / answer | / pass-through | answers |")
    print("|---|---:|---:|---:|---:|")
    print("\n".join(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
