#!/usr/bin/env python3
"""Soak: the sidecar under a fixed request rate for ``--minutes``, with an experiment, shadow comparison and
drift on, sampled every ``--sample-seconds``. Exits 1 if its RSS grew by 5% or more.

    python benchmarks/soak.py                          # 30 minutes at 500 req/s, a sample a minute
    python benchmarks/soak.py --minutes 2 --rate 300

- **Model:** benchmarks/upstream.py (a fixed KServe V1 answer) on 127.0.0.1.
- **Sidecar:** ``mlchaos run`` with the policy below: one experiment on 10% chaos + 10% control, sticky on
  ``x-user-id``; every chaos request has its features shifted (so its shadow twin is sent and compared) and
  half have their predictions perturbed; prediction bookkeeping with drift every 5 s; the kill switch as by
  default.
- **Load:** this script's own fixed-rate generator (Debian's wrk has no ``-R``; wrk2 is not packaged):
  request ``i`` is due at ``start + i / rate`` and goes out on an idle keep-alive connection, a new one being
  opened when none is idle (at most ``--max-connections``; beyond that due requests wait). Latency runs from
  the due time, not from the send, so a stall of the sidecar counts in full (no coordinated omission).
  A POST of a 2-row V1 body; ``x-user-id`` from 5,000 users.
- **Samples** (each over the interval since the previous one): requests done, errors (non-2xx, connection
  failures, no answer within 10 s), p50/p99/max latency; the sidecar's RSS (``VmRSS``) and open file
  descriptors from /proc, its CPU share; **event-loop lag:** the sidecar exports no loop-lag metric, so the
  round trip of ``GET /healthz`` on its admin API (the same event loop as the data plane) stands in for it:
  the median and max of 5 probes per sample, on a kept-alive connection.
- **Growth:** the last sample against the first taken after ``--warmup`` seconds (caches, pools and windows
  fill during the warm-up). RSS growth of 5% or more fails the run.

Prints a Markdown report (for benchmarks/RESULTS.md). Loopback only; every process is stopped on exit.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import secrets
import shlex
import shutil
import signal
import statistics
import sys
import tempfile
import time
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import run as bench  # noqa: E402 - the benchmark harness: processes, ports, cleanup
from fuzz import default_mlchaos, nproc, read_answer, start_upstream  # noqa: E402

HOST = bench.HOST
MAX_RSS_GROWTH = 0.05
REQUEST_TIMEOUT = 10.0  # s before a request counts as an error
HEALTH_PROBES = 5
BODY = bench.BODY.encode()

POLICY = """\
# Written by benchmarks/soak.py: an experiment with shadow comparison and drift on.
listen: {listen}
upstream: {upstream}
admin: {{listen: "{admin}"}}
max_blast_radius: 10
experiments:
  - name: soak
    chaos: 10
    control: 10
    sticky_key: header:x-user-id
    match: {{method: POST}}
    payload: {{format: v1}}
    observe: {{predictions: true, window: 2000, window_seconds: 10m, drift_interval: 5s,
               shadow: {{enabled: true, max_concurrency: 4}}}}
    faults:
      - {{type: shift, probability: 1.0, scale: 1.1, offset: 0.5}}
      - {{type: perturb_predictions, probability: 0.5, noise_std: 0.05, flip_rate: 0.05}}
"""


def request_bytes(user: int) -> bytes:
    return (b"POST /v1/models/bench:predict HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
            b"x-user-id: user-%d\r\nContent-Length: %d\r\n\r\n%s" % (user, len(BODY), BODY))


@dataclass
class Interval:
    """What the load generator saw since the last sample."""

    latencies_ms: list[float] = field(default_factory=list)
    errors: int = 0


@dataclass
class Sample:
    at_s: float  # seconds since the load started
    requests: int
    errors: int
    p50_ms: float
    p99_ms: float
    max_ms: float
    rss_kib: int
    fds: int
    health_median_ms: float
    health_max_ms: float
    cpu_share: float  # of one core, over the interval
    connections: int


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise bench.BenchError(f"no VmRSS for process {pid}")


def open_fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def quantile(values: Sequence[float], q: float) -> float:
    """The nearest-rank quantile (0 for no values)."""
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, int(q * len(ordered) + 0.999999) - 1))]


class Load:
    """Fixed-rate requests on a pool of keep-alive connections; latency from each request's due time."""

    def __init__(self, port: int, rate: float, max_connections: int, seed: int) -> None:
        self.port, self.rate, self.max_connections = port, rate, max_connections
        self.rng = random.Random(seed)
        self.idle: deque[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = deque()
        self.open = 0
        self.due: deque[float] = deque()  # due times of requests waiting for a connection
        self.interval = Interval()
        self.wake = asyncio.Event()

    async def one(self, due: float, conn: tuple[asyncio.StreamReader, asyncio.StreamWriter] | None) -> None:
        try:
            if conn is None:
                conn = await asyncio.wait_for(asyncio.open_connection(HOST, self.port), REQUEST_TIMEOUT)
            reader, writer = conn
            writer.write(request_bytes(self.rng.randrange(5000)))
            ans = await read_answer(reader, b"POST", max(0.1, due + REQUEST_TIMEOUT - time.monotonic()))
        except (OSError, TimeoutError):
            self.interval.errors += 1
            self.open -= 1
            if conn is not None:
                conn[1].close()
            self.wake.set()
            return
        self.interval.latencies_ms.append((time.monotonic() - due) * 1000)
        if ans.outcome != "2xx":
            self.interval.errors += 1
        if ans.close:
            self.open -= 1
            writer.close()
        else:
            self.idle.append(conn)
        self.wake.set()

    async def run(self, seconds: float, tg: asyncio.TaskGroup) -> None:
        start = time.monotonic()
        i = 0
        while True:
            now = time.monotonic()
            while start + i / self.rate <= now and i / self.rate < seconds:
                self.due.append(start + i / self.rate)
                i += 1
            while self.due and (self.idle or self.open < self.max_connections):
                conn = self.idle.popleft() if self.idle else None
                if conn is None:
                    self.open += 1
                tg.create_task(self.one(self.due.popleft(), conn))
            if i / self.rate >= seconds and not self.due:
                return
            self.wake.clear()
            next_due = start + i / self.rate
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.wake.wait(), max(0.0, next_due - time.monotonic()))

    def take(self) -> Interval:
        out, self.interval = self.interval, Interval()
        return out

    def close(self) -> None:
        while self.idle:
            self.idle.popleft()[1].close()


async def health_probe(admin_port: int) -> tuple[float, float]:
    """Median and max round trip (ms) of GET /healthz on the admin API, over one kept-alive connection."""
    times: list[float] = []
    reader, writer = await asyncio.wait_for(asyncio.open_connection(HOST, admin_port), 5)
    try:
        for _ in range(HEALTH_PROBES):
            started = time.monotonic()
            writer.write(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
            ans = await read_answer(reader, b"GET", 5.0)
            if ans.outcome != "2xx":
                raise bench.BenchError(f"admin /healthz answered {ans.outcome}")
            times.append((time.monotonic() - started) * 1000)
            await asyncio.sleep(0.05)
    finally:
        writer.close()
    return statistics.median(times), max(times)


async def soak(server: bench.Server, args: argparse.Namespace) -> list[Sample]:
    pid = server.proc.pid
    assert server.admin_port is not None
    load = Load(server.port, args.rate, args.max_connections, args.seed)
    samples: list[Sample] = []
    seconds = args.minutes * 60

    async def sampler() -> None:
        started = last = time.monotonic()
        cpu_before = bench.cpu_seconds(pid)
        while True:
            await asyncio.sleep(max(0.0, last + args.sample_seconds - time.monotonic()))
            now = time.monotonic()
            if server.proc.poll() is not None:
                raise bench.BenchError(f"the sidecar exited ({server.proc.returncode}):\n"
                                       f"{bench.log_tail(server.log_file)}")
            got = load.take()
            cpu = bench.cpu_seconds(pid)
            health = await health_probe(server.admin_port or 0)
            lat = got.latencies_ms
            samples.append(Sample(
                at_s=now - started, requests=len(lat), errors=got.errors, p50_ms=quantile(lat, 0.5),
                p99_ms=quantile(lat, 0.99), max_ms=max(lat, default=0.0), rss_kib=rss_kib(pid),
                fds=open_fds(pid), health_median_ms=health[0], health_max_ms=health[1],
                cpu_share=(cpu - cpu_before) / (now - last), connections=load.open))
            s = samples[-1]
            bench.log(f"{s.at_s:6.0f} s: {s.requests} requests, {s.errors} errors, p99 {s.p99_ms:.1f} ms, RSS "
                      f"{s.rss_kib / 1024:.1f} MiB, {s.fds} fds, /healthz {s.health_median_ms:.1f} ms")
            last, cpu_before = now, cpu
            if now - started >= seconds - 1e-6:
                return

    # The loop's own handlers: a signal handler raising inside a task is swallowed by the task group.
    loop = asyncio.get_running_loop()
    this = asyncio.current_task()
    assert this is not None
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, this.cancel)
    try:
        async with asyncio.TaskGroup() as tg:
            tg.create_task(load.run(seconds, tg))
            tg.create_task(sampler())
    except asyncio.CancelledError:
        raise KeyboardInterrupt from None
    finally:
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(sig)
        load.close()
    return samples


def start_sidecar(ctx: bench.Context, mlchaos: list[str]) -> bench.Server:
    upstream = start_upstream(ctx)
    port, admin = ctx.ports.take(), ctx.ports.take()
    policy = ctx.tmp / "soak.yaml"
    policy.write_text(POLICY.format(listen=f"{HOST}:{port}", upstream=f"http://{HOST}:{upstream.port}",
                                    admin=f"{HOST}:{admin}"))
    env = {**os.environ, "MLCHAOS_ADMIN_TOKEN": ctx.admin_token}
    log_file = ctx.tmp / "mlchaos.log"
    proc = ctx.procs.spawn([*mlchaos, "run", "--config", str(policy)], log_file=log_file, env=env)
    server = bench.Server("mlchaos", port, proc, log_file, admin_port=admin)
    bench.wait_ready(server)
    return server


@dataclass
class Result:
    samples: list[Sample]
    baseline: int  # index of the first sample after the warm-up
    rss_growth: float
    fd_growth: int
    experiment: dict[str, Any]  # GET /experiments/soak/report, trimmed

    @property
    def ok(self) -> bool:
        return self.rss_growth < MAX_RSS_GROWTH


def evaluate(samples: list[Sample], warmup: float, experiment: dict[str, Any]) -> Result:
    if not samples:
        raise bench.BenchError("no sample taken")
    baseline = next((i for i, s in enumerate(samples) if s.at_s >= warmup - 1e-6), len(samples) - 1)
    first, last = samples[baseline], samples[-1]
    return Result(samples, baseline, last.rss_kib / first.rss_kib - 1, last.fds - first.fds, experiment)


def _n(value: Any) -> str:
    return f"{value:,}" if isinstance(value, int) else "–"


def markdown(result: Result, args: argparse.Namespace, build: str, mlchaos: list[str], started: str) -> str:
    s = result.samples
    total = sum(x.requests for x in s)
    errors = sum(x.errors for x in s)
    exp = result.experiment
    shadow = exp.get("shadow") or {}
    lines = [
        f"## Soak, {started}, {nproc()} cores (`nproc`)",
        "",
        f"mlchaos {build} (`{shlex.join(mlchaos)}`), {args.minutes:g} min at {args.rate:g} req/s (fixed rate, "
        f"latency from each request's due time), an experiment on 10% chaos + 10% control with shifted features, "
        f"perturbed predictions, shadow comparison and drift every 5 s; a sample every {args.sample_seconds:g} s. "
        f"Event-loop lag: the sidecar has no metric for it; the round trip of `GET /healthz` on its admin API "
        f"(same event loop) stands in (median and max of {HEALTH_PROBES} probes).",
        "",
        "| at | requests | errors | req/s | p50 | p99 | max | RSS | open fds | /healthz median / max | CPU |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    prev = 0.0
    for i, x in enumerate(s):
        mark = " (baseline)" if i == result.baseline else ""
        lines.append(
            f"| {x.at_s:.0f} s{mark} | {x.requests:,} | {x.errors} | {x.requests / max(x.at_s - prev, 1e-9):,.0f} "
            f"| {x.p50_ms:.1f} ms | {x.p99_ms:.1f} ms | {x.max_ms:.1f} ms | {x.rss_kib / 1024:.1f} MiB | {x.fds} "
            f"| {x.health_median_ms:.1f} / {x.health_max_ms:.1f} ms | {x.cpu_share:.0%} |")
        prev = x.at_s
    base, last = s[result.baseline], s[-1]
    lines += [
        "",
        f"- requests: {total:,}, errors {errors}; the experiment read {_n(exp.get('read'))} responses; shadow "
        f"compared {_n(shadow.get('compared'))}, failed {_n(shadow.get('failed'))}, skipped "
        f"{_n(shadow.get('skipped'))} (over its max_concurrency); drift evaluations kept "
        f"{len(exp.get('drift_history') or [])}; "
        f"state {exp.get('state', '–')}",
        f"- growth, last sample against the baseline (first after {args.warmup:g} s of warm-up): RSS "
        f"{base.rss_kib / 1024:.1f} → {last.rss_kib / 1024:.1f} MiB (**{result.rss_growth:+.1%}**), open fds "
        f"{base.fds} → {last.fds} ({result.fd_growth:+d}), p99 {base.p99_ms:.1f} → {last.p99_ms:.1f} ms, /healthz "
        f"median {base.health_median_ms:.1f} → {last.health_median_ms:.1f} ms",
        f"- {'PASS' if result.ok else 'FAIL'}: RSS growth {result.rss_growth:+.1%} < {MAX_RSS_GROWTH:.0%}",
    ]
    return "\n".join(lines) + "\n"


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--minutes", type=float, default=30.0)
    ap.add_argument("--rate", type=float, default=500.0, help="requests per second")
    ap.add_argument("--sample-seconds", type=float, default=60.0)
    ap.add_argument("--warmup", type=float, default=60.0, help="seconds before the baseline sample")
    ap.add_argument("--max-connections", type=int, default=64)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--mlchaos", default=default_mlchaos(), help="the mlchaos command, split like a shell would")
    ap.add_argument("--out", type=Path, help="also write the Markdown report here")
    ap.add_argument("--json", type=Path, help="write the samples as JSON here")
    args = ap.parse_args(argv)
    if not 0 < args.minutes <= 24 * 60 or not 0 < args.rate <= 20_000 or not 1 <= args.max_connections <= 1000:
        ap.error("keep it bounded: 0 < --minutes <= 1440, 0 < --rate <= 20000, 1 <= --max-connections <= 1000")
    if not 0 < args.sample_seconds <= args.minutes * 60 or not 0 <= args.warmup < args.minutes * 60:
        ap.error("--sample-seconds must be within the run, --warmup shorter than it")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    mlchaos = shlex.split(args.mlchaos)
    started = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    build = bench.mlchaos_version(mlchaos)
    procs = bench.Processes()
    tmp = Path(tempfile.mkdtemp(prefix="mlchaos-soak-"))
    with bench.interrupts_raise():
        try:
            ctx = bench.Context(tmp, procs, bench.Ports(), {}, mlchaos, secrets.token_hex(16))
            server = start_sidecar(ctx, mlchaos)
            samples = asyncio.run(soak(server, args))
            report = bench.admin_get(server, ctx.admin_token, "/experiments/soak/report", timeout=10)
            exps = bench.admin_experiments(server, ctx.admin_token)
            report = {**report, "state": next((e.get("state") for e in exps if e.get("name") == "soak"), "–")}
            result = evaluate(samples, args.warmup, report)
        except bench.BenchError as exc:
            bench.log(f"error: {exc}")
            return 2
        except KeyboardInterrupt:
            bench.log("interrupted; every process started is stopped")
            return 130
        finally:
            procs.stop_all()
            shutil.rmtree(tmp, ignore_errors=True)
    text = markdown(result, args, build, mlchaos, started)
    print(text, end="")
    if args.out:
        args.out.write_text(text)
    if args.json:
        args.json.write_text(json.dumps([s.__dict__ for s in samples], indent=1) + "\n")
    return 0 if result.ok else 1


if __name__ == "__main__":
    sys.exit(main())
