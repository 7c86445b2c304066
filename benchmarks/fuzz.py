#!/usr/bin/env python3
"""Fuzz mlchaos at scale: generated HTTP/1.1 inputs against a running sidecar, and payload mutations against
every payload adapter. Seeded and reproducible; prints a Markdown summary for benchmarks/RESULTS.md.

    python benchmarks/fuzz.py all --count 1000000 --seconds 1800          # both parts, 1M inputs each
    python benchmarks/fuzz.py http --count 100000 --seed 7
    python benchmarks/fuzz.py payload --count 1000000 --jobs 2
    python benchmarks/fuzz.py http --seed 7 --show 1234                     # print connection 1234's inputs
    python benchmarks/fuzz.py http --seed 7 --replay 1200:1300              # resend them one at a time

**HTTP part.** A small loopback model (benchmarks/upstream.py, a fixed KServe V1 answer) and, in front of it,
``mlchaos run`` with the policy below (one experiment, 40% of the traffic in chaos with every feature fault,
prediction bookkeeping and shadow comparison on, kill switch off so the faults keep firing). Inputs come from
fuzzgen.Requests: clean requests, requests with edges in the request line, headers, framing (smuggling
shapes) or body, and byte-level mutations of clean requests. Connection ``c`` sends the inputs its own
generator (seeded by the seed and ``c``) draws, one after the other, each waiting for its answer; one in ten
connections sends them all at once (pipelined). An input whose framing may leave the sidecar waiting ends
its connection: it is sent last, and after a short grace without an answer the client half-closes.
Every input gets exactly one outcome: an answer (by status class), closed without answer (FIN or reset
before an answer), hung (no answer nor close within seconds of the half-close) or a bad answer (not an
HTTP/1.x status line, or a head cut short).

**A crash of the sidecar** is any of: the process exits; a line on its stderr that is not one of its JSON log
lines (a Python traceback; asyncio's "Exception in callback ..." and "Task exception was never retrieved"
reach stderr that way); a JSON log line carrying an ``exception`` (the data plane logs a fault or hook that
raised, caught, that way); a rise of ``mlchaos_proxy_errors_total{kind="internal"}``. Hung inputs, failed
health checks (a normal POST on a fresh connection every ``--check-every`` seconds and at the end must answer
200) and JSON lines at level error without an exception are reported too and fail the run the same way.

**Payload part.** Documents from fuzzgen.Docs: valid payloads of each format, the same with nodes corrupted,
arbitrary JSON. Each goes through every adapter of ``proxy.payload.ADAPTERS`` (with one of a few options):
``read``; on a table, a write-back unchanged, one mutation of proxy/payload/mutate.py (random parameters) and
its write-back; ``predictions`` and, on predictions, ``perturb`` and ``write_predictions``; ``detect``.
**A crash** is an exception escaping the no-exception shell (``read``, ``predictions``,
``write_predictions``), or raised by ``write``, a mutation, ``perturb`` or ``detect``, or a written document
that ``dumps`` cannot serialize or ``loads`` cannot read back. Exceptions of the strict readers that the shell
turns into ``None`` are counted apart (the request passes through untouched; the test suite treats them as
bugs). A document that takes over a second through every adapter is reported as slow and fails the run too
(work out of proportion to the input; worker processes are capped at 2 GiB so a blow-up is a MemoryError).
Document ``i`` of chunk ``c`` is reproducible with ``--chunk c``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import re
import resource
import secrets
import shlex
import shutil
import signal
import socket
import struct
import sys
import tempfile
import time
import traceback
import urllib.request
from collections import Counter
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from multiprocessing import get_context
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(HERE))
if str(REPO) not in sys.path:
    sys.path.insert(1, str(REPO))

import fuzzgen  # noqa: E402 - the input generators, beside this script
import run as bench  # noqa: E402 - the benchmark harness: processes, ports, cleanup

HOST = bench.HOST
ANSWER_TIMEOUT = 3.0  # s for the answer to an input whose framing is unambiguous (the machine is shared)
GRACE = 0.2  # s an input that ends its connection waits for an answer before the client half-closes
EOF_WAIT = 5.0  # s after the half-close before the input counts as hung
CONNECT_TIMEOUT = 5.0
PIPELINED_SHARE = 0.1
PER_CONNECTION = (1, 1, 2, 4, 8, 16, 32)  # inputs a connection draws, before its first final one
PAYLOAD_CHUNK = 500  # documents per reproducible chunk (one random.Random and numpy Generator each)
MAX_EXAMPLES = 20  # crashes and strict-reader exceptions kept with their details
SLOW_DOC = 1.0  # s: a document that takes longer through every adapter is reported (work out of proportion)
WORKER_MEMORY = 2 << 30  # bytes of address space a payload worker may take: a blow-up becomes a MemoryError

POLICY = """\
# Written by benchmarks/fuzz.py: every feature fault on 40% of the traffic, bookkeeping and shadow on.
listen: {listen}
upstream: {upstream}
admin: {{listen: "{admin}"}}
max_blast_radius: 50
timeouts: {{idle: 5s}}
experiments:
  - name: fuzz
    chaos: 40
    control: 10
    kill_switch: {{enabled: false}}
    payload: {{format: auto}}
    observe: {{predictions: true, shadow: {{enabled: true, max_concurrency: 4}}}}
    faults:
      - {{type: nan, probability: 0.3, fraction: 0.5}}
      - {{type: out_of_range, probability: 0.2, at: scaled, factor: 1000000, sign: both}}
      - {{type: shift, probability: 0.3, scale: 1.5, offset: 0.5, noise_std: 0.1}}
      - {{type: type_swap, probability: 0.1}}
      - {{type: default, probability: 0.1}}
      - {{type: stale, probability: 0.2, age_requests: 3}}
      - {{type: drop_feature, probability: 0.1, fraction: 0.5}}
      - {{type: rename_feature, probability: 0.1, suffix: _v2}}
      - {{type: reorder_features, probability: 0.1, mode: reverse}}
      - {{type: truncate_batch, probability: 0.1, fraction: 0.5, keep_min: 1}}
      - {{type: perturb_predictions, probability: 0.3, noise_std: 0.05, flip_rate: 0.1}}
"""


def default_mlchaos() -> str:
    installed = REPO / ".venv" / "bin" / "mlchaos"
    return str(installed) if installed.exists() else shlex.join([sys.executable, "-m", "proxy"])


def nproc() -> int:
    return len(os.sched_getaffinity(0))


# =========================================================================================== HTTP part


def plan(seed: int, cid: int) -> tuple[bool, list[fuzzgen.Input]]:
    """Connection ``cid``'s inputs (up to and including its first final one) and whether they are pipelined."""
    rng = random.Random(f"http:{seed}:{cid}")
    gen = fuzzgen.Requests(rng)
    inputs: list[fuzzgen.Input] = []
    for _ in range(rng.choice(PER_CONNECTION)):
        inp = gen.one()
        inputs.append(inp)
        if inp.final:
            break
    return rng.random() < PIPELINED_SHARE, inputs


@dataclass
class Answer:
    outcome: str  # "2xx" etc., "closed", "timeout", "bad answer"
    close: bool = True  # the connection cannot carry another request


TIMEOUT = Answer("timeout")
CLOSED = Answer("closed")
BAD = Answer("bad answer")
_STATUS_LINE = re.compile(rb"HTTP/1\.[01] (\d{3})(?: |$)")


async def read_answer(reader: asyncio.StreamReader, method: bytes, timeout: float) -> Answer:
    """The next final answer on the connection (1xx interim answers skipped), its body read."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), max(0.0, deadline - time.monotonic()))
        except TimeoutError:
            return TIMEOUT
        except asyncio.IncompleteReadError as exc:
            return BAD if exc.partial else CLOSED
        except asyncio.LimitOverrunError:
            return BAD
        except OSError:
            return CLOSED
        lines = head.split(b"\r\n")
        match = _STATUS_LINE.match(lines[0])
        if match is None:
            return BAD
        status = int(match.group(1))
        if 100 <= status < 200 and status != 101:
            continue
        headers: dict[bytes, bytes] = {}
        for line in lines[1:]:
            name, _, value = line.partition(b":")
            headers[name.strip().lower()] = value.strip().lower()
        answer = Answer(f"{status // 100}xx", close=headers.get(b"connection") == b"close" or status == 101)
        try:
            if method == b"HEAD" or status in (101, 204, 304):
                return answer
            if headers.get(b"transfer-encoding") == b"chunked":
                while True:
                    size_line = await asyncio.wait_for(reader.readuntil(b"\r\n"), EOF_WAIT)
                    size = int(size_line.split(b";")[0], 16)
                    if size == 0:
                        while await asyncio.wait_for(reader.readuntil(b"\r\n"), EOF_WAIT) != b"\r\n":
                            pass
                        return answer
                    await asyncio.wait_for(reader.readexactly(size + 2), EOF_WAIT)
            if b"content-length" in headers:
                await asyncio.wait_for(reader.readexactly(int(headers[b"content-length"])), EOF_WAIT)
                return answer
            await asyncio.wait_for(reader.read(), EOF_WAIT)  # close-delimited
        except (TimeoutError, ValueError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, OSError):
            pass  # the answer's status counts; its body was cut short, so the connection ends here
        answer.close = True
        return answer


@dataclass
class HttpStats:
    sent: Counter[str] = field(default_factory=Counter)  # by kind: clean, edge, mutated
    outcomes: Counter[str] = field(default_factory=Counter)  # one per input sent
    connections: int = 0
    pipelined: int = 0
    connect_failed: int = 0
    half_closed: int = 0  # inputs after which the client half-closed to end a wait
    health_ok: int = 0
    health_failed: list[str] = field(default_factory=list)
    health_ms: list[float] = field(default_factory=list)
    crash_lines: list[str] = field(default_factory=list)
    error_lines: list[str] = field(default_factory=list)
    internal_errors: int = 0
    exited: int | None = None  # the sidecar's exit status when it exited during the run
    windows: list[tuple[int, int]] = field(default_factory=list)  # connection ids around each crash
    # The first connections whose inputs had a notable outcome (a 5xx, hung, a bad answer): see --show.
    notable: dict[str, list[int]] = field(default_factory=dict)
    seconds: float = 0.0
    exit_status: int | None = None  # after the SIGTERM at the end
    final_check: str = "not run"

    @property
    def total(self) -> int:
        return sum(self.sent.values())

    @property
    def crashes(self) -> int:
        return len(self.crash_lines) + self.internal_errors + (self.exited is not None)


def _abort(writer: asyncio.StreamWriter) -> None:
    """Close with a reset (SO_LINGER 0): hundreds of thousands of short connections leave no TIME_WAIT."""
    sock = writer.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.close()


NOTABLE = ("5xx", "hung", "bad answer")


async def run_connection(port: int, pipelined: bool, inputs: list[fuzzgen.Input], stats: HttpStats,
                         cid: int = -1) -> None:
    try:
        reader, writer = await asyncio.wait_for(asyncio.open_connection(HOST, port, limit=1 << 20), CONNECT_TIMEOUT)
    except (OSError, TimeoutError):
        stats.connect_failed += 1
        return
    stats.connections += 1
    stats.pipelined += pipelined
    sent = answered = 0
    try:
        if pipelined:
            writer.write(b"".join(inp.data for inp in inputs))
            for inp in inputs:
                stats.sent[inp.kind] += 1
            sent = len(inputs)
        for inp in inputs:
            if not pipelined:
                writer.write(inp.data)
                stats.sent[inp.kind] += 1
                sent += 1
            ans = await read_answer(reader, inp.method, GRACE if inp.final else ANSWER_TIMEOUT)
            if ans is TIMEOUT:
                stats.half_closed += 1
                with contextlib.suppress(OSError):
                    writer.write_eof()
                ans = await read_answer(reader, inp.method, EOF_WAIT)
                if ans is TIMEOUT:
                    ans = Answer("hung")
            stats.outcomes[ans.outcome] += 1
            if ans.outcome in NOTABLE:
                seen = stats.notable.setdefault(ans.outcome, [])
                if len(seen) < 5 and cid not in seen:
                    seen.append(cid)
            answered += 1
            if ans.close:
                break
    except OSError:
        pass
    finally:
        stats.outcomes["closed"] += sent - answered  # sent, never answered: the connection ended first
        _abort(writer)


class Sidecar:
    """The sidecar under test, its log read as it grows, its admin API, its health."""

    def __init__(self, ctx: bench.Context, server: bench.Server, token: str) -> None:
        self.ctx, self.server, self.token = ctx, server, token
        self.offset = 0
        self.internal_seen = 0

    def scan_log(self, stats: HttpStats) -> bool:
        """New crash lines since the last scan; True when there were any."""
        with self.server.log_file.open("rb") as f:
            f.seek(self.offset)
            data = f.read()
        end = data.rfind(b"\n") + 1
        self.offset += end
        found = False
        for raw in data[:end].splitlines():
            line = raw.decode("utf-8", "replace").strip()
            if not line:
                continue
            try:
                rec = json.loads(line)
            except ValueError:
                rec = None
            if not isinstance(rec, dict):
                stats.crash_lines.append(line[:2000])
                found = True
            elif "exception" in rec:
                stats.crash_lines.append(line[:2000])
                found = True
            elif rec.get("level") in ("error", "critical"):
                stats.error_lines.append(line[:2000])
        return found

    def internal_errors(self) -> int:
        request = urllib.request.Request(f"http://{HOST}:{self.server.admin_port}/metrics")
        with urllib.request.build_opener(urllib.request.ProxyHandler({})).open(request, timeout=10) as resp:
            text = resp.read().decode()
        match = re.search(r'^mlchaos_proxy_errors_total\{kind="internal"\} ([0-9.e+]+)$', text, re.MULTILINE)
        return int(float(match.group(1))) if match else 0

    async def healthy(self, stats: HttpStats) -> str:
        """'' when a normal POST on a fresh connection answers 200 within 5 s; else what went wrong."""
        body = json.dumps({"instances": [[1.0, 2.0, 3.0, 4.0]]}).encode()
        data = (b"POST /v1/models/m:predict HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                b"Content-Length: %d\r\n\r\n%s" % (len(body), body))
        started = time.monotonic()
        try:
            reader, writer = await asyncio.wait_for(asyncio.open_connection(HOST, self.server.port), 5)
        except (OSError, TimeoutError) as exc:
            return f"connect: {exc!r}"
        try:
            writer.write(data)
            ans = await read_answer(reader, b"POST", 5.0)
        finally:
            _abort(writer)
        stats.health_ms.append((time.monotonic() - started) * 1000)
        return "" if ans.outcome == "2xx" else f"answer: {ans.outcome}"

    async def check(self, stats: HttpStats) -> bool:
        """Process alive, log clean, internal errors unchanged, a normal request served; False on a crash."""
        crashed = False
        code = self.server.proc.poll()
        if code is not None:
            stats.exited = code
            return False
        crashed |= self.scan_log(stats)
        internal = await asyncio.to_thread(self.internal_errors)
        if internal > self.internal_seen:
            stats.internal_errors += internal - self.internal_seen
            self.internal_seen = internal
            crashed = True
        problem = await self.healthy(stats)
        if problem:
            stats.health_failed.append(problem)
        else:
            stats.health_ok += 1
        return not crashed


@dataclass
class Run:
    seed: int
    count: int
    seconds: float
    concurrency: int
    check_every: float
    next_cid: int = 0
    in_flight: set[int] = field(default_factory=set)
    stop: bool = False


async def fuzz_http(sidecar: Sidecar, run: Run, stats: HttpStats) -> None:
    started = time.monotonic()
    port = sidecar.server.port

    def over() -> bool:
        return run.stop or stats.total >= run.count or time.monotonic() - started >= run.seconds

    async def worker() -> None:
        while not over():
            cid = run.next_cid
            run.next_cid += 1
            run.in_flight.add(cid)
            pipelined, inputs = plan(run.seed, cid)
            try:
                await run_connection(port, pipelined, inputs, stats, cid)
            finally:
                run.in_flight.discard(cid)

    async def monitor() -> None:
        lo = 0
        while not over():
            waited = 0.0
            while waited < run.check_every and not over():
                await asyncio.sleep(min(0.5, run.check_every))
                waited += min(0.5, run.check_every)
            if over():
                return
            hi = run.next_cid
            if not await sidecar.check(stats):
                stats.windows.append((lo, hi))
                bench.log(f"crash evidence between connections {lo} and {hi}")
                if stats.exited is not None:
                    run.stop = True
            lo = min(run.in_flight, default=run.next_cid)
            rate = stats.total / max(time.monotonic() - started, 1e-9)
            bench.log(f"http: {stats.total:,} inputs, {rate:,.0f}/s, outcomes {dict(stats.outcomes)}")

    def interrupted() -> None:
        if run.stop:
            raise KeyboardInterrupt  # a second signal: no summary, just the cleanup
        bench.log("interrupted: finishing the connections under way, then the summary")
        run.stop = True

    # The loop's own handlers: a signal handler raising inside a task is swallowed by the task group.
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, interrupted)
    try:
        async with asyncio.TaskGroup() as tg:
            for _ in range(run.concurrency):
                tg.create_task(worker())
            tg.create_task(monitor())
    finally:
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(sig)
    stats.seconds = time.monotonic() - started
    if stats.exited is None:
        if not await sidecar.check(stats):
            stats.windows.append((min(run.in_flight, default=0), run.next_cid))
        problem = await sidecar.healthy(stats)
        stats.final_check = problem or "served"
        if problem:
            stats.health_failed.append(f"final: {problem}")


def start_upstream(ctx: bench.Context) -> bench.Server:
    """benchmarks/upstream.py on a free port, answering."""
    port = ctx.ports.take()
    log_file = ctx.tmp / "upstream.log"
    proc = ctx.procs.spawn([sys.executable, str(HERE / "upstream.py"), "--port", str(port)], log_file=log_file)
    upstream = bench.Server("upstream", port, proc, log_file)
    bench.wait_ready(upstream)
    return upstream


def start_sidecar(ctx: bench.Context, mlchaos: list[str]) -> tuple[Sidecar, bench.Server]:
    """The loopback model and mlchaos in front of it with the fuzz policy; both ready."""
    upstream = start_upstream(ctx)
    port, admin = ctx.ports.take(), ctx.ports.take()
    policy = ctx.tmp / "fuzz.yaml"
    policy.write_text(POLICY.format(listen=f"{HOST}:{port}", upstream=f"http://{HOST}:{upstream.port}",
                                    admin=f"{HOST}:{admin}"))
    env = {**os.environ, "MLCHAOS_ADMIN_TOKEN": ctx.admin_token}
    log_file = ctx.tmp / "mlchaos.log"
    proc = ctx.procs.spawn([*mlchaos, "run", "--config", str(policy)], log_file=log_file, env=env)
    server = bench.Server("mlchaos", port, proc, log_file, admin_port=admin)
    bench.wait_ready(server)
    return Sidecar(ctx, server, ctx.admin_token), upstream


async def replay(sidecar: Sidecar, seed: int, lo: int, hi: int, stats: HttpStats) -> int | None:
    """Connections lo..hi-1 one at a time, the sidecar checked after each: the first one with a crash."""
    for cid in range(lo, hi):
        pipelined, inputs = plan(seed, cid)
        await run_connection(sidecar.server.port, pipelined, inputs, stats, cid)
        await asyncio.sleep(0.05)  # let a log line reach the file
        if not await sidecar.check(stats):
            return cid
    return None


def show(seed: int, cid: int) -> str:
    pipelined, inputs = plan(seed, cid)
    lines = [f"connection {cid} (seed {seed}): {len(inputs)} input(s), {'pipelined' if pipelined else 'in turn'}"]
    for i, inp in enumerate(inputs):
        lines.append(f"  [{i}] {inp.kind}{' final' if inp.final else ''}: {inp.data!r}")
    return "\n".join(lines)


def http_main(args: argparse.Namespace, mlchaos: list[str]) -> tuple[HttpStats, str]:
    stats = HttpStats()
    procs = bench.Processes()
    tmp = Path(tempfile.mkdtemp(prefix="mlchaos-fuzz-"))
    try:
        ctx = bench.Context(tmp, procs, bench.Ports(), {}, mlchaos, secrets.token_hex(16))
        sidecar, _upstream = start_sidecar(ctx, mlchaos)
        bench.log(f"sidecar ready on {HOST}:{sidecar.server.port}; fuzzing")
        if args.replay:
            lo, _, hi = args.replay.partition(":")
            found = asyncio.run(replay(sidecar, args.seed, int(lo), int(hi or int(lo) + 1), stats))
            text = show(args.seed, found) if found is not None else "no crash on replay"
            return stats, text
        run = Run(args.seed, args.count, args.seconds, args.concurrency, args.check_every)
        asyncio.run(fuzz_http(sidecar, run, stats))
        procs.stop(sidecar.server.proc)
        stats.exit_status = sidecar.server.proc.returncode
        with contextlib.suppress(OSError):
            sidecar.scan_log(stats)
        if args.logs:
            args.logs.mkdir(parents=True, exist_ok=True)
            shutil.copy2(sidecar.server.log_file, args.logs / "mlchaos.log")
        return stats, ""
    finally:
        procs.stop_all()
        shutil.rmtree(tmp, ignore_errors=True)


# =========================================================================================== payload part


@dataclass
class PayloadStats:
    docs: Counter[str] = field(default_factory=Counter)  # by how they were made
    steps: Counter[str] = field(default_factory=Counter)  # "<adapter> <step>" -> times it ran
    mutations: Counter[str] = field(default_factory=Counter)  # mutation (or perturb) -> applied
    hidden: Counter[str] = field(default_factory=Counter)  # "<adapter> <step> <exception>" caught by the shell
    crashes: Counter[str] = field(default_factory=Counter)  # "<adapter> <step> <exception>"
    examples: list[str] = field(default_factory=list)
    slow: list[str] = field(default_factory=list)  # documents over SLOW_DOC seconds
    seconds: float = 0.0

    def merge(self, other: PayloadStats) -> None:
        for name in ("docs", "steps", "mutations", "hidden", "crashes"):
            getattr(self, name).update(getattr(other, name))
        self.examples += other.examples[: max(0, MAX_EXAMPLES - len(self.examples))]
        self.slow += other.slow[: max(0, MAX_EXAMPLES - len(self.slow))]

    @property
    def total(self) -> int:
        return sum(self.docs.values())


def _mutation_kwargs(fname: str, names: list[str], rng: random.Random, nprng: Any) -> dict[str, Any]:
    """Parameters within what the policy loader accepts for that fault."""
    kw: dict[str, Any] = {"rng": nprng, "fraction": rng.choice((0.0, 1.0, rng.random(), rng.random()))}
    pool = [*names, "zz"]
    if fname != "truncate_batch" and rng.random() < 0.4:
        kw["features"] = rng.sample(pool, rng.randint(1, min(3, len(pool))))
    if fname == "shift":
        kw.update(scale=rng.uniform(-10, 10), offset=rng.uniform(-1e3, 1e3), noise_std=rng.uniform(0, 10))
    elif fname == "out_of_range":
        kw.update(factor=rng.choice((10.0, 1e6, 1e300)), at=rng.choice(("scaled", "extreme")),
                  sign=rng.choice(("both", "+", "-")))
    elif fname == "rename_feature":
        if rng.random() < 0.5:
            kw["mapping"] = {rng.choice(pool): rng.choice(("new", "a", *pool))}
        else:
            kw["suffix"] = rng.choice(("_v2", "x"))
    elif fname == "reorder_features":
        kw["mode"] = rng.choice(("reverse", "shuffle"))
        if rng.random() < 0.3:
            kw["order"] = rng.sample(pool, min(2, len(pool)))
    elif fname == "default":
        kw["values"] = {rng.choice(pool): rng.choice((0, 1.5, "x", None, True))} if rng.random() < 0.7 else None
    elif fname == "stale":
        kw["rows"] = [{rng.choice(pool): rng.choice((0, 2.5, "s", None))} for _ in range(rng.randint(0, 3))]
    elif fname == "truncate_batch":
        kw.update(keep_min=rng.randint(0, 3), where=rng.choice(("random", "tail")))
    return kw


def payload_chunk(seed: int, chunk: int, size: int, verbose: bool = False) -> PayloadStats:
    """Documents ``chunk * PAYLOAD_CHUNK`` .. of the run, each through every adapter."""
    import numpy as np

    from proxy import payload as P
    from proxy.payload.adapters import AdapterOptions
    from proxy.payload.tabular import render

    options = (AdapterOptions(), AdapterOptions(feature_names=("a", "b", "c")),
               AdapterOptions(features_pointer="/x", predictions_pointer="/predictions"),
               AdapterOptions(output="label"), AdapterOptions(features_pointer="/inputs/0/data"))
    paths = ("/v1/models/m:predict", "/v2/models/m/infer", "/invocations", "/x", "")
    rng = random.Random(f"payload:{seed}:{chunk}")
    nprng = np.random.default_rng([seed, chunk])
    docs = fuzzgen.Docs(rng)
    stats = PayloadStats()
    mutation_names = sorted(P.MUTATIONS)

    for index in range(size):
        doc_started = time.monotonic()
        kind, doc = docs.doc()
        stats.docs[kind] += 1
        where = f"chunk {chunk} doc {index}"

        def crash(adapter: str, step: str, exc: BaseException, doc: Any = doc, where: str = where) -> None:
            stats.crashes[f"{adapter} {step} {type(exc).__name__}"] += 1
            if len(stats.examples) < MAX_EXAMPLES:
                tb = "".join(traceback.format_exception(exc)[-3:])
                stats.examples.append(f"crash: {where}, {adapter} {step}: {exc!r}\n{tb}doc: {doc!r:.1500}")

        def guarded(adapter: str, step: str, strict: Callable[..., Any], shell: Callable[..., Any],
                    *args: Any, doc: Any = doc, where: str = where) -> Any:
            stats.steps[f"{adapter} {step}"] += 1
            try:
                return strict(*args)
            except Exception as exc:
                key = f"{adapter} {step} {type(exc).__name__}"
                if stats.hidden[key] == 0 and len(stats.examples) < MAX_EXAMPLES:
                    stats.examples.append(f"strict {step} raised (shell returns None): {where}, {adapter}: "
                                          f"{exc!r}\ndoc: {doc!r:.1500}")
                stats.hidden[key] += 1
            try:
                return shell(*args)
            except Exception as exc:
                crash(adapter, step, exc)
                return None

        def serializes(out: Any, nan_token: bool, adapter: Any = None, opts: Any = None) -> None:
            if isinstance(out, bytes):  # a file format's writer: its output must read back
                adapter.read_response_strict(out, opts)
                return
            P.loads(P.dumps(out, nan_token=nan_token))

        # File formats (CSV, JSON Lines ...) read bytes: the document as JSON, and each table a JSON adapter read
        # from it written afresh in a file format.
        bodies: list[bytes] = [P.dumps(doc)]
        for name, adapter in P.ADAPTERS.items():
            opts = rng.choice(options)
            given = rng.choice(bodies) if adapter.RAW else doc
            # Both sides an adapter may read a table from: the request's features and the answer's.
            sides = (("request", adapter.read_strict), ("response", adapter.read_response_strict))
            for direction, strict_read in sides:
                read = "read" if direction == "request" else "read response"
                parsed = guarded(name, read, strict_read,
                                 lambda d, o, adapter=adapter, direction=direction: adapter.read(d, o, direction),
                                 given, opts)
                step = "write unchanged"
                if parsed is not None:
                    try:
                        parsed.table.validate()
                        if not adapter.RAW and len(bodies) < 4:
                            step = "render"
                            fmt, delimiter = rng.choice((("csv", ","), ("csv", ";"), ("jsonl", ","),
                                                         ("json_records", ",")))
                            bodies.append(render(parsed.table, fmt, delimiter))
                            step = "write unchanged"
                        serializes(adapter.write(parsed, parsed.table.copy(), opts), rng.random() < 0.3, adapter,
                                   opts)
                        fname = rng.choice(mutation_names)
                        step = f"mutate {fname}"
                        m = P.MUTATIONS[fname](parsed.table, **_mutation_kwargs(fname, list(parsed.table.names), rng,
                                                                                nprng))
                        stats.mutations[fname] += 1
                        step = f"write after {fname}"
                        m.table.validate()
                        out = adapter.write(parsed, m.table, opts)
                        serializes(out, rng.random() < 0.3, adapter, opts)
                        if name == "v2" and direction == "request" and isinstance(out, dict) and rng.random() < 0.2:
                            step = "pack_binary"
                            body, n = P.pack_binary(out)
                            P.loads(body[:n])
                        stats.steps[f"{name} mutate+write" if direction == "request"
                                    else f"{name} response mutate+write"] += 1
                    except Exception as exc:
                        crash(name, f"{direction} {step}", exc)
            preds = guarded(name, "predictions", adapter.predictions_strict, adapter.predictions, doc, opts)
            if preds:
                step = "perturb"
                try:
                    new = P.perturb(preds, noise_std=rng.choice((0.0, 0.05, 10.0)), flip_rate=rng.random(),
                                    classes=rng.choice((None, [0, 1, 2], ["a", "b"])), rng=nprng)
                    stats.mutations["perturb"] += 1
                    step = "write_predictions"
                    written = guarded(name, "write_predictions", adapter.write_predictions_strict,
                                      adapter.write_predictions, doc, new, opts)
                    if written is not None:
                        step = "serialize predictions"
                        serializes(written, rng.random() < 0.3)
                except Exception as exc:
                    crash(name, step, exc)
        try:
            stats.steps["detect"] += 1
            P.detect(rng.choice(paths), doc, {"inference-header-content-length": rng.choice(("5", "x", "-1"))}
                     if rng.random() < 0.2 else None)
        except Exception as exc:
            crash("-", "detect", exc)
        took = time.monotonic() - doc_started
        if took > SLOW_DOC and len(stats.slow) < MAX_EXAMPLES:
            stats.slow.append(f"{where}: {took:.1f} s: {doc!r:.300}")
        if verbose:
            print(f"{where} ({kind}): {doc!r:.500}")
    return stats


def _limit_memory() -> None:
    resource.setrlimit(resource.RLIMIT_AS, (WORKER_MEMORY, WORKER_MEMORY))


def payload_main(args: argparse.Namespace) -> PayloadStats:
    total = PayloadStats()
    started = time.monotonic()
    chunks = range(args.chunk, args.chunk + 1) if args.chunk is not None else range(-(-args.count // PAYLOAD_CHUNK))

    def size(c: int) -> int:
        return PAYLOAD_CHUNK if args.chunk is not None else min(PAYLOAD_CHUNK, args.count - c * PAYLOAD_CHUNK)

    def over() -> bool:
        return bool(time.monotonic() - started >= args.seconds)

    if args.jobs <= 1 or args.chunk is not None:
        for c in chunks:
            if over():
                break
            total.merge(payload_chunk(args.seed, c, size(c), verbose=args.chunk is not None))
    else:
        # fork: the workers inherit this module as loaded (it is a script, not an importable package).
        with ProcessPoolExecutor(args.jobs, mp_context=get_context("fork"), initializer=_limit_memory) as pool:
            it = iter(chunks)
            pending: list[Future[PayloadStats]] = []
            while True:
                while len(pending) < 2 * args.jobs and not over():
                    nxt = next(it, None)
                    if nxt is None:
                        break
                    pending.append(pool.submit(payload_chunk, args.seed, nxt, size(nxt)))
                if not pending:
                    break
                total.merge(pending.pop(0).result())
                if total.total % (50 * PAYLOAD_CHUNK) == 0:
                    rate = total.total / max(time.monotonic() - started, 1e-9)
                    bench.log(f"payload: {total.total:,} docs, {rate:,.0f}/s, crashes {sum(total.crashes.values())}")
    total.seconds = time.monotonic() - started
    return total


# =========================================================================================== report


def markdown_http(stats: HttpStats, args: argparse.Namespace, build: str, mlchaos: list[str]) -> str:
    o = stats.outcomes
    rate = stats.total / stats.seconds if stats.seconds else 0.0
    lines = [
        f"### HTTP/1.1 inputs against a running sidecar (seed {args.seed})",
        "",
        f"mlchaos {build} (`{shlex.join(mlchaos)}`) with the fuzz policy (every feature fault on 40% of the "
        f"traffic, bookkeeping and shadow on) in front of benchmarks/upstream.py; {args.concurrency} concurrent "
        f"connections, {stats.connections:,} in all ({stats.pipelined:,} pipelined), "
        f"{stats.connect_failed} failed to connect.",
        "",
        "| inputs | clean | edge | mutated | seconds | inputs/s | crashes | hung | health checks ok / failed |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
        f"| {stats.total:,} | {stats.sent['clean']:,} | {stats.sent['edge']:,} | {stats.sent['mutated']:,} "
        f"| {stats.seconds:.0f} | {rate:,.0f} | {stats.crashes} | {o['hung']} | {stats.health_ok} / "
        f"{len(stats.health_failed)} |",
        "",
        "| 1xx | 2xx | 3xx | 4xx | 5xx | closed without answer | bad answer |",
        "|---:|---:|---:|---:|---:|---:|---:|",
        f"| {o['1xx']:,} | {o['2xx']:,} | {o['3xx']:,} | {o['4xx']:,} | {o['5xx']:,} | {o['closed']:,} "
        f"| {o['bad answer']:,} |",
        "",
        f"- crashes: process exited {'no' if stats.exited is None else f'yes ({stats.exited})'}; "
        f"{len(stats.crash_lines)} traceback or exception log lines; "
        f"internal errors counted {stats.internal_errors}; error log lines without an exception "
        f"{len(stats.error_lines)}",
        f"- a normal request at the end: {stats.final_check}; health check round trip, median "
        f"{sorted(stats.health_ms)[len(stats.health_ms) // 2] if stats.health_ms else 0:.1f} ms, max "
        f"{max(stats.health_ms, default=0):.1f} ms; exit status after SIGTERM: {stats.exit_status}",
        f"- the client half-closed after {stats.half_closed:,} inputs that had no answer in time",
    ]
    for outcome, cids in stats.notable.items():
        lines.append(f"- {outcome}: first connections {', '.join(map(str, cids))} (`python benchmarks/fuzz.py http "
                     f"--seed {args.seed} --show N` prints one)")
    for lo, hi in stats.windows:
        lines.append(f"- crash evidence: reproduce with `python benchmarks/fuzz.py http --seed {args.seed} "
                     f"--replay {lo}:{hi}`")
    for line in (stats.crash_lines + stats.health_failed + stats.error_lines)[:MAX_EXAMPLES]:
        lines.append(f"  - `{line[:600]}`")
    return "\n".join(lines) + "\n"


def markdown_payload(stats: PayloadStats, args: argparse.Namespace) -> str:
    crashes = sum(stats.crashes.values())
    rate = stats.total / stats.seconds if stats.seconds else 0.0
    from proxy.payload.adapters import base

    compiled = "compiled" if Path(base.__file__ or "").suffix in (".so", ".pyd") else "interpreted"
    lines = [
        f"### Payload mutations against every adapter (seed {args.seed}, {args.jobs} process(es), "
        f"proxy.payload {compiled})",
        "",
        "| documents | valid | corrupted | random | mutations applied | crashes | strict-reader exceptions "
        "caught by the shell | seconds | documents/s |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
        f"| {stats.total:,} | {stats.total - stats.docs['corrupted'] - stats.docs['random']:,} "
        f"| {stats.docs['corrupted']:,} | {stats.docs['random']:,} | {sum(stats.mutations.values()):,} "
        f"| {crashes} | {sum(stats.hidden.values()):,} | {stats.seconds:.1f} | {rate:,.0f} |",
        "",
        "| adapter | read (request) | tables mutated and written | read (response) | response tables mutated and "
        "written | predictions read | predictions written |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    from proxy.payload import ADAPTERS

    for name in ADAPTERS:
        s = stats.steps
        lines.append(f"| {name} | {s[f'{name} read']:,} | {s[f'{name} mutate+write']:,} "
                     f"| {s[f'{name} read response']:,} | {s[f'{name} response mutate+write']:,} "
                     f"| {s[f'{name} predictions']:,} | {s[f'{name} write_predictions']:,} |")
    lines += ["", "Mutations applied: " + ", ".join(f"{k} {v:,}" for k, v in sorted(stats.mutations.items()))]
    for key, n in (stats.crashes + stats.hidden).most_common():
        kind = "crash" if key in stats.crashes else "caught by the shell"
        lines.append(f"- {kind}: {key}: {n:,}")
    lines += [f"- slow (over {SLOW_DOC:g} s through every adapter): {line}" for line in stats.slow]
    for example in stats.examples[:MAX_EXAMPLES]:
        lines += ["", "```", example, "```"]
    return "\n".join(lines) + "\n"


# =========================================================================================== main


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("part", choices=("http", "payload", "all"))
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--count", type=int, default=1_000_000, help="inputs of each part")
    ap.add_argument("--seconds", type=float, default=3600, help="bound on each part's time")
    ap.add_argument("--concurrency", type=int, default=128, help="http: connections open at once")
    ap.add_argument("--check-every", type=float, default=5.0, help="http: seconds between sidecar checks")
    ap.add_argument("--jobs", type=int, default=nproc(), help="payload: worker processes")
    ap.add_argument("--mlchaos", default=default_mlchaos(), help="the mlchaos command, split like a shell would")
    ap.add_argument("--show", type=int, metavar="CONNECTION", help="http: print one connection's inputs and stop")
    ap.add_argument("--replay", metavar="LO:HI", help="http: resend connections LO..HI-1 one at a time")
    ap.add_argument("--chunk", type=int, help=f"payload: run chunk N alone ({PAYLOAD_CHUNK} documents), printing them")
    ap.add_argument("--out", type=Path, help="also write the Markdown summary here")
    ap.add_argument("--logs", type=Path, help="http: copy the sidecar's log here")
    args = ap.parse_args(argv)
    if not 1 <= args.count <= 100_000_000 or not 0 < args.seconds <= 86_400 or not 1 <= args.concurrency <= 1000:
        ap.error("keep it bounded: 1 <= --count <= 1e8, 0 < --seconds <= 86400, 1 <= --concurrency <= 1000")
    if args.check_every <= 0 or args.jobs < 1:
        ap.error("--check-every must be > 0 and --jobs >= 1")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    mlchaos = shlex.split(args.mlchaos)
    if args.show is not None:
        print(show(args.seed, args.show))
        return 0
    started = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    parts = [f"## Fuzzing, {started}, {nproc()} cores (`nproc`)", ""]
    failed = False
    with bench.interrupts_raise():
        try:
            if args.part in ("payload", "all") and not args.replay:
                pstats = payload_main(args)
                parts.append(markdown_payload(pstats, args))
                failed |= sum(pstats.crashes.values()) > 0 or bool(pstats.slow)
            if args.part in ("http", "all") and args.chunk is None:
                build = bench.mlchaos_version(mlchaos)
                hstats, text = http_main(args, mlchaos)
                if args.replay:
                    print(text)
                    return 1 if "no crash" not in text else 0
                parts.append(markdown_http(hstats, args, build, mlchaos))
                failed |= hstats.crashes > 0 or bool(hstats.health_failed) or hstats.outcomes["hung"] > 0 \
                    or hstats.final_check != "served"
        except bench.BenchError as exc:
            bench.log(f"error: {exc}")
            return 2
        except KeyboardInterrupt:
            bench.log("interrupted; every process started is stopped")
            return 130
    text = "\n".join(parts)
    print(text, end="")
    if args.out:
        args.out.write_text(text)
    return 1 if failed else 0


if __name__ == "__main__":
    signal.signal(signal.SIGPIPE, signal.SIG_DFL)  # `fuzz.py ... | head` ends quietly
    sys.exit(main())
