#!/usr/bin/env python3
"""Data feeds through mlchaos, against nginx serving the files (issue 19's two bars):

(a) a 50 MB CSV read by pandas (``read_csv`` on the URL, in the data-clients venv) direct from nginx and
    through mlchaos pass-through, paired round by round (the order alternating); the median of the per-round
    ratios through/direct with a distribution-free 95% interval. Bar: the median <= 1.2. The same rounds also
    time the raw transfer (the body read in 1 MiB pieces with requests), reported without a bar: it is what
    the proxy adds when nothing else is done with the bytes.
(b) 1 MB CSV objects under wrk load (8 connections): a sidecar with a 5% ``nan`` experiment on the response
    table (5% control; the chaos answers are parsed, changed and written back) against a pass-through
    sidecar, paired rounds alternating which goes first. On this machine the second of two back-to-back
    measurements is slower, whatever it measures (two identical pass-through sidecars: 2,806 against 2,697
    req/s on average over 6 rounds, 2026-12-05), about as much as the margin to the bar: so the rounds are
    taken in pairs, one of each order, and each pair's ratio fault/pass-through is the geometric mean of its
    two rounds' ratios, in which that effect cancels. Bar: the median of the pairs' ratios >= 0.85 (with a
    distribution-free 95% interval). The per-round ratios and their median are reported too, and the median
    of each order apart. Each round checks the fault really ran (the chaos cohort's fault count grew).

Peers: nginx (Debian), the data-clients venv of scripts/data-servers.sh, wrk. Loopback only; bounded rounds and
seconds; every process is stopped on exit. The sidecars are this tree's ``python -m proxy`` unless --mlchaos
names an installed one (the summary says which data plane ran)::

    python benchmarks/data_feed.py --rounds 16 --out /tmp/data_feed.md
"""

from __future__ import annotations

import argparse
import math
import os
import random
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))

import paired  # noqa: E402 - median_interval
import run as bench  # noqa: E402 - wrk's output

from tests.datafeeds import harness  # noqa: E402 - nginx, the sidecar, the clients

CITIES = ("oslo", "lima", "pune", "kyiv", "baku")
BIG_BYTES = 50 * 1000 * 1000
OBJECT_BYTES = 1000 * 1000
CONNECTIONS = 8


def write_csv(path: Path, size: int, seed: int) -> int:
    """A CSV of about ``size`` bytes (id, amount, city, qty); returns its row count."""
    rng = random.Random(seed)
    lines = ["id,amount,city,qty"]
    total, n = len(lines[0]) + 1, 0
    while total < size:
        n += 1
        line = f"{n},{rng.uniform(0, 1000):.2f},{rng.choice(CITIES)},{rng.randrange(100)}"
        lines.append(line)
        total += len(line) + 1
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n")
    return n


def passthrough() -> list[dict[str, Any]]:
    return []


def nan_experiment() -> list[dict[str, Any]]:
    return [{"name": "feed-nan", "chaos": 5, "control": 5, "kill_switch": {"enabled": False},
             "faults": [{"type": "nan", "target": "response", "features": ["amount"], "fraction": 0.1}],
             "observe": {"predictions": False}}]


def median(values: list[float]) -> float:
    ordered = sorted(values)
    mid = len(ordered) // 2
    return ordered[mid] if len(ordered) % 2 else (ordered[mid - 1] + ordered[mid]) / 2


def interval_text(values: list[float]) -> str:
    lo, hi = paired.median_interval(values)
    return f"{median(values):.3f} [{lo:.3f}, {hi:.3f}]"


def part_a(args: argparse.Namespace, clients: harness.Clients, nginx: harness.Nginx, sidecar: harness.Sidecar,
           rows: int) -> dict[str, list[float]]:
    figs: dict[str, list[float]] = {"pandas_direct": [], "pandas_through": [], "raw_direct": [], "raw_through": []}
    path = "/feeds/big.csv"
    for how in ("pandas", "raw"):  # one warm-up read each way: page cache, connection setup, imports
        for url in (nginx.url, sidecar.url):
            clients.ok({"op": "timed", "url": url + path, "how": how}, timeout=120)
    for rnd in range(args.rounds):
        order = [("direct", nginx.url), ("through", sidecar.url)]
        if rnd % 2:
            order.reverse()
        for how in ("pandas", "raw"):
            for side, url in order:
                got = clients.ok({"op": "timed", "url": url + path, "how": how}, timeout=120)
                assert got.get("rows", rows) == rows and got.get("size", BIG_BYTES) >= BIG_BYTES, got
                figs[f"{how}_{side}"].append(got["seconds"])
        bench.log(f"(a) round {rnd + 1}/{args.rounds}: read_csv direct {figs['pandas_direct'][-1]:.3f} s, through "
                  f"{figs['pandas_through'][-1]:.3f} s; raw direct {figs['raw_direct'][-1]:.3f} s, through "
                  f"{figs['raw_through'][-1]:.3f} s")
    return figs


def wrk(url: str, seconds: int) -> bench.WrkResult:
    wrk_bin = shutil.which("wrk")
    assert wrk_bin is not None
    out = subprocess.run([wrk_bin, "-t1", f"-c{CONNECTIONS}", f"-d{seconds}s", "--timeout", "10s", url, "--latency"],
                         capture_output=True, text=True, timeout=seconds + 30, check=True).stdout
    return bench.parse_wrk(out)


def injected(sidecar: harness.Sidecar) -> int:
    doc = harness.request("GET", f"{sidecar.admin_url}/experiments/feed-nan/report").json()
    return int(doc["cohorts"]["chaos"].get("faults", {}).get("nan", 0))


def part_b(args: argparse.Namespace, plain: harness.Sidecar, chaos: harness.Sidecar) -> dict[str, list[float]]:
    figs: dict[str, list[float]] = {"plain": [], "chaos": [], "ratio": []}
    path = "/feeds/object.csv"
    for s in (plain, chaos):
        wrk(s.url + path, 1)  # warm-up
    for rnd in range(args.rounds):
        before = injected(chaos)
        order = [("plain", plain), ("chaos", chaos)] if rnd % 2 == 0 else [("chaos", chaos), ("plain", plain)]
        for side, s in order:
            res = wrk(s.url + path, args.duration)
            if res.errors or not res.requests:
                raise bench.BenchError(f"{side}: {res.errors} errors in {res.requests} requests")
            figs[side].append(res.rps)
        if injected(chaos) <= before:
            raise bench.BenchError(f"round {rnd + 1}: no nan fault applied by the 5% experiment")
        figs["ratio"].append(figs["chaos"][-1] / figs["plain"][-1])
        bench.log(f"(b) round {rnd + 1}/{args.rounds}: pass-through {figs['plain'][-1]:.1f} req/s, 5% nan "
                  f"{figs['chaos'][-1]:.1f} req/s, ratio {figs['ratio'][-1]:.3f}")
    return figs


def data_plane(sidecar: harness.Sidecar) -> str:
    for line in sidecar.log_path.read_text(errors="replace").splitlines():
        if '"dataplane"' in line:
            return line.split('"dataplane":"', 1)[1].split('"', 1)[0]
    return "?"


def balanced(ratios: list[float]) -> list[float]:
    """Per pair of rounds (the first of one goes first in the other), the geometric mean of their ratios: the
    effect of going second cancels in it."""
    return [math.sqrt(ratios[i] * ratios[i + 1]) for i in range(0, len(ratios) - 1, 2)]


def summary(args: argparse.Namespace, started: str, a: dict[str, list[float]], b: dict[str, list[float]],
            plane: str, rows: int) -> tuple[str, bool]:
    ratio_a = [t / d for t, d in zip(a["pandas_through"], a["pandas_direct"], strict=True)]
    raw_a = [t / d for t, d in zip(a["raw_through"], a["raw_direct"], strict=True)]
    pairs_b = balanced(b["ratio"])
    ok_a, ok_b = median(ratio_a) <= 1.2, median(pairs_b) >= 0.85
    lines = [
        f"### Data feeds ({started}, nproc {os.cpu_count()}, data plane {plane}, shared machine)",
        "",
        f"`python benchmarks/data_feed.py --rounds {args.rounds} --duration {args.duration}`: nginx serving the "
        f"files on loopback, pandas in the data-clients venv, {args.rounds} paired rounds "
        "(order alternating), median with a distribution-free 95% interval.",
        "",
        "| measure | direct / pass-through | through mlchaos / 5% fault | ratio | bar |",
        "|---|---|---|---|---|",
        f"| (a) `read_csv` of a 50 MB CSV ({rows:,} rows), s | {median(a['pandas_direct']):.3f} | "
        f"{median(a['pandas_through']):.3f} | {interval_text(ratio_a)} | ≤ 1.2: {'met' if ok_a else 'NOT met'} |",
        f"| (a) raw transfer of the same 50 MB, s | {median(a['raw_direct']):.3f} | {median(a['raw_through']):.3f} | "
        f"{interval_text(raw_a)} | — |",
        f"| (b) 1 MB CSV objects, req/s (wrk, {CONNECTIONS} connections, {args.duration} s), pairs of rounds | "
        f"{median(b['plain']):.1f} | {median(b['chaos']):.1f} | {interval_text(pairs_b)} | ≥ 0.85: "
        f"{'met' if ok_b else 'NOT met'} |",
        "",
        "(b) compares a sidecar with a 5% `nan` experiment on the response table (5% control; chaos answers "
        "parsed as CSV, 10% of `amount` nulled, written back) against a pass-through sidecar, both in front of "
        "the same nginx. Its figure is the median over pairs of rounds (one with pass-through first, one with "
        "the fault first) of the geometric mean of the pair's two ratios.",
        "",
        f"- (b) per round: median {interval_text(b['ratio'])}; pass-through first "
        f"{median(b['ratio'][0::2]):.3f}, the fault first {median(b['ratio'][1::2]):.3f}",
        f"- (b) ratios per round: {', '.join(f'{r:.3f}' for r in b['ratio'])}",
        f"- (b) pairs: {', '.join(f'{r:.3f}' for r in pairs_b)}",
        "",
    ]
    return "\n".join(lines), ok_a and ok_b


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=8)
    ap.add_argument("--duration", type=int, default=3, help="seconds per wrk measurement in (b)")
    ap.add_argument("--mlchaos", help="an installed mlchaos command (default: this tree's python -m proxy)")
    ap.add_argument("--out", help="also write the Markdown summary here")
    args = ap.parse_args()
    if not 4 <= args.rounds <= 30 or not 1 <= args.duration <= 30:
        ap.error("keep it bounded: 4 <= --rounds <= 30, 1 <= --duration <= 30")
    if args.rounds % 2:
        ap.error("--rounds must be even: (b) takes rounds in pairs, one of each order")
    problem = harness.peers_problem(("data-clients",))
    if problem or shutil.which("wrk") is None:
        bench.log(f"error: {problem or 'no wrk (apt-get install wrk)'}")
        return 2
    command = shlex.split(args.mlchaos) if args.mlchaos else None
    started = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    tmp = Path(tempfile.mkdtemp(prefix="mlchaos-data-feed-"))
    live: list[Any] = []
    try:
        rows = write_csv(tmp / "www" / "feeds" / "big.csv", BIG_BYTES, 1)
        write_csv(tmp / "www" / "feeds" / "object.csv", OBJECT_BYTES, 2)
        clients = harness.Clients()
        live.append(clients)
        nginx = harness.Nginx(tmp / "www", tmp / "nginx")
        live.append(nginx)
        plain = harness.Sidecar(nginx.url, passthrough(), tmp / "plain", command=command)
        live.append(plain)
        chaos = harness.Sidecar(nginx.url, nan_experiment(), tmp / "chaos", command=command)
        live.append(chaos)
        a = part_a(args, clients, nginx, plain, rows)
        b = part_b(args, plain, chaos)
        text, ok = summary(args, started, a, b, data_plane(plain), rows)
    except (bench.BenchError, RuntimeError, AssertionError) as exc:
        bench.log(f"error: {exc}")
        return 2
    finally:
        for thing in reversed(live):
            (thing.close if isinstance(thing, harness.Clients) else thing.stop)()
        shutil.rmtree(tmp, ignore_errors=True)
    print(text, end="")
    if args.out:
        Path(args.out).write_text(text)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
