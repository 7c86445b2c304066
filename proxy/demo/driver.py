"""A bounded load driver for the demo: realistic inference traffic, measured per cohort.

``drive`` sends a mix of KServe V1 ``:predict`` and Open Inference V2 ``/infer`` requests (1-4 iris rows
each, in every body layout the demo model accepts) from a few thousand simulated users, each named in
``x-user-id`` so a sticky experiment keeps a user in one cohort. The sidecar names the cohort of every
answer in ``x-mlchaos-cohort`` and the fault it injected in ``x-mlchaos-fault`` when the policy reveals
them; the driver groups what it measures by that header.

It always stops: at ``duration`` seconds or ``max_requests`` requests, whichever comes first. Requests
in flight at the deadline are allowed to finish, each within its own 10 s timeout.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Literal

import aiohttp
import numpy as np
import orjson
from numpy.typing import NDArray

from ..cohort import COHORTS
from .model import FEATURES, MODEL_NAME, sample_rows

__all__ = [
    "COHORT_HEADER", "FAULT_HEADER", "NO_RESPONSE", "CohortStats", "Progress", "RequestMaker", "Results", "drive",
    "format_progress", "format_table",
]

COHORT_HEADER = "x-mlchaos-cohort"
FAULT_HEADER = "x-mlchaos-fault"
# Cohort of requests that got no answer at all (refused, reset, timed out): no header to read.
NO_RESPONSE = "no-response"
REQUEST_TIMEOUT = 10.0
USERS = 5_000


@dataclass(slots=True)
class CohortStats:
    requests: int = 0
    # Status >= 500, connection errors and timeouts.
    errors: int = 0
    # 4xx answers: counted apart, since a client error is not an outage.
    client_errors: int = 0
    # Every attempt's wall time, failed ones included (a timeout counts as its full wait).
    latencies_ms: list[float] = field(default_factory=list)
    # Fault types named by x-mlchaos-fault.
    faults: Counter[str] = field(default_factory=Counter)
    # Status codes, or "timeout" / "connection error" when there was no answer.
    outcomes: Counter[int | str] = field(default_factory=Counter)

    @property
    def error_rate(self) -> float:
        return self.errors / self.requests if self.requests else 0.0

    def percentile(self, q: float) -> float:
        """Latency percentile in ms; NaN when there are no requests."""
        if not self.latencies_ms:
            return math.nan
        return float(np.percentile(np.asarray(self.latencies_ms), q))

    @property
    def p50_ms(self) -> float:
        return self.percentile(50)

    @property
    def p99_ms(self) -> float:
        return self.percentile(99)


@dataclass(slots=True)
class Results:
    cohorts: dict[str, CohortStats]
    elapsed: float
    stopped_by: Literal["duration", "max_requests"]

    def __getitem__(self, cohort: str) -> CohortStats:
        """Stats of one cohort; an empty record when none of its requests was seen."""
        return self.cohorts.get(cohort) or CohortStats()

    @property
    def requests(self) -> int:
        return sum(s.requests for s in self.cohorts.values())

    @property
    def errors(self) -> int:
        return sum(s.errors for s in self.cohorts.values())

    @property
    def rate(self) -> float:
        return self.requests / self.elapsed if self.elapsed > 0 else 0.0


@dataclass(frozen=True, slots=True)
class Progress:
    elapsed: float
    duration: float
    requests: int
    errors: int
    # Requests answered so far per cohort.
    cohorts: Mapping[str, int]

    @property
    def rate(self) -> float:
        return self.requests / self.elapsed if self.elapsed > 0 else 0.0


# ------------------------------------------------------------------------------------------ traffic

def _rows(rng: np.random.Generator) -> NDArray[np.float64]:
    return sample_rows(rng, int(rng.integers(1, 5)))


def make_request(rng: np.random.Generator, seq: int) -> tuple[str, bytes]:
    """Path and JSON body of one inference request, in a layout drawn at random:

    V1 rows as lists (35%) or as feature objects (15%); V2 one [N,4] tensor with flat (25%) or nested
    (15%) data; V2 one column per feature (10%). A fifth of V2 requests use the versioned path.
    """
    x = _rows(rng)
    n = len(x)
    draw = float(rng.random())
    if draw < 0.5:
        if draw < 0.35:
            instances: list[object] = x.tolist()
        else:
            instances = [dict(zip(FEATURES, row, strict=True)) for row in x.tolist()]
        return f"/v1/models/{MODEL_NAME}:predict", orjson.dumps({"instances": instances})
    version = "/versions/1" if rng.random() < 0.2 else ""
    path = f"/v2/models/{MODEL_NAME}{version}/infer"
    if draw < 0.9:
        nested = draw >= 0.75
        inputs = [{
            "name": "input-0",
            "shape": [n, len(FEATURES)],
            "datatype": "FP64" if nested else "FP32",
            "data": x.tolist() if nested else x.ravel().tolist(),
        }]
    else:
        shape = [n] if rng.random() < 0.5 else [n, 1]
        inputs = [{"name": name, "shape": shape, "datatype": "FP64", "data": x[:, j].tolist()}
                  for j, name in enumerate(FEATURES)]
    return path, orjson.dumps({"id": f"req-{seq}", "inputs": inputs})


# (generator, sequence number, user) -> (path, JSON body) of one request.
RequestMaker = Callable[[np.random.Generator, int, str], tuple[str, bytes]]


def _fault_types(value: str) -> list[str]:
    """``"delay"``, ``"delay, abort"`` or ``"abort;status=503"`` → the fault types named."""
    out = []
    for item in value.split(","):
        name = item.split(";", 1)[0].strip()
        if name:
            out.append(name)
    return out


# ------------------------------------------------------------------------------------------- driver

async def drive(
    url_base: str,
    *,
    duration: float,
    concurrency: int = 16,
    max_requests: int = 100_000,
    seed: int = 0,
    on_progress: Callable[[Progress], None] | None = None,
    progress_interval: float = 0.5,
    users: int = USERS,
    make: RequestMaker | None = None,
) -> Results:
    """Send inference traffic to ``url_base`` (``http://host:port``) and measure it per cohort.

    ``concurrency`` requests are in flight at a time over one keep-alive session. ``on_progress`` is
    called every ``progress_interval`` seconds and once at the end. ``make`` builds each request from the
    generator, its sequence number and its user (default: ``make_request``'s iris traffic).
    """
    if concurrency < 1:
        raise ValueError("concurrency must be >= 1")
    if users < 1:
        raise ValueError("users must be >= 1")
    base = url_base.rstrip("/")
    rng = np.random.default_rng(seed)
    stats: dict[str, CohortStats] = {}
    issued = 0
    answered = 0
    errors = 0
    loop = asyncio.get_running_loop()
    start = loop.time()
    deadline = start + max(0.0, duration)

    def progress() -> Progress:
        return Progress(loop.time() - start, duration, answered, errors,
                        {name: s.requests for name, s in stats.items()})

    def record(cohort: str, outcome: int | str, elapsed_ms: float, fault: str | None) -> None:
        nonlocal answered, errors
        s = stats.get(cohort)
        if s is None:
            s = stats[cohort] = CohortStats()
        s.requests += 1
        s.latencies_ms.append(elapsed_ms)
        s.outcomes[outcome] += 1
        if isinstance(outcome, str) or outcome >= 500:
            s.errors += 1
            errors += 1
        elif outcome >= 400:
            s.client_errors += 1
        if fault:
            s.faults.update(_fault_types(fault))
        answered += 1

    async def worker(session: aiohttp.ClientSession) -> None:
        nonlocal issued
        while issued < max_requests and loop.time() < deadline:
            issued += 1
            if make is None:
                path, body = make_request(rng, issued)
                user = f"user-{int(rng.integers(users))}"
            else:
                user = f"user-{int(rng.integers(users))}"
                path, body = make(rng, issued, user)
            headers = {"content-type": "application/json", "x-user-id": user}
            t0 = time.perf_counter()
            try:
                async with session.post(base + path, data=body, headers=headers) as resp:
                    await resp.read()
                    cohort = resp.headers.get(COHORT_HEADER, "").strip().lower() or "none"
                    fault = resp.headers.get(FAULT_HEADER)
                    record(cohort, resp.status, (time.perf_counter() - t0) * 1e3, fault)
            except TimeoutError:
                record(NO_RESPONSE, "timeout", (time.perf_counter() - t0) * 1e3, None)
            except (aiohttp.ClientError, OSError):
                record(NO_RESPONSE, "connection error", (time.perf_counter() - t0) * 1e3, None)

    async def reporter(done: asyncio.Event) -> None:
        assert on_progress is not None
        while not done.is_set():
            try:
                await asyncio.wait_for(done.wait(), timeout=progress_interval)
            except TimeoutError:
                on_progress(progress())

    connector = aiohttp.TCPConnector(limit=concurrency)
    timeout = aiohttp.ClientTimeout(total=REQUEST_TIMEOUT)
    done = asyncio.Event()
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
        async with asyncio.TaskGroup() as tg:
            if on_progress is not None and progress_interval > 0:
                tg.create_task(reporter(done))
            try:
                await asyncio.gather(*(worker(session) for _ in range(concurrency)))
            finally:
                done.set()
    if on_progress is not None:
        on_progress(progress())
    return Results(stats, loop.time() - start, "max_requests" if issued >= max_requests else "duration")


# ------------------------------------------------------------------------------------------- output

def _ms(value: float) -> str:
    return "-" if math.isnan(value) else f"{value:.1f}"


def _faults(c: Counter[str]) -> str:
    return " ".join(f"{name}={n}" for name, n in c.most_common()) or "-"


def format_table(results: Results) -> str:
    """Per-cohort results as an aligned plain-text table (chaos, control and none always listed)."""
    names = list(COHORTS) + sorted(set(results.cohorts) - set(COHORTS))
    header = ("cohort", "requests", "errors", "error %", "p50 ms", "p99 ms", "faults")
    rows = []
    for name in names:
        s = results[name]
        rows.append((name, str(s.requests), str(s.errors), f"{100 * s.error_rate:.1f}" if s.requests else "-",
                     _ms(s.p50_ms), _ms(s.p99_ms), _faults(s.faults)))
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]

    def line(cells: tuple[str, ...]) -> str:
        first = cells[0].ljust(widths[0])
        middle = [c.rjust(w) for c, w in zip(cells[1:-1], widths[1:-1], strict=True)]
        return "  ".join([first, *middle, cells[-1]]).rstrip()

    out = [line(header), "  ".join("-" * w for w in widths)]
    out.extend(line(r) for r in rows)
    client = {n: results[n].client_errors for n in names if results[n].client_errors}
    if client:
        out.append("4xx answers (not counted as errors): "
                   + ", ".join(f"{n} {c}" for n, c in client.items()))
    return "\n".join(out)


def format_progress(p: Progress) -> str:
    """One short line (no newline) to rewrite in place with ``\\r``."""
    counts = "  ".join(f"{name} {p.cohorts.get(name, 0)}" for name in COHORTS)
    extra = "".join(f"  {name} {n}" for name, n in sorted(p.cohorts.items()) if name not in COHORTS)
    return (f"{p.elapsed:5.1f}/{p.duration:g}s  {p.rate:7.1f} req/s  {p.requests} req  "
            f"[{counts}{extra}]  errors {p.errors}")
