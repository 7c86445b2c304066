#!/usr/bin/env python3
"""Unary gRPC ModelInfer through nginx's ``grpc_pass`` and through mlchaos, next to direct, in one run.

One run starts a fast upstream (this script with ``--serve``: a ``grpc.aio`` server in its own process that
answers ``/inference.GRPCInferenceService/ModelInfer`` with one fixed ModelInferResponse, raw bytes, no protobuf
work), and in front of it nginx (1 worker, ``listen ... http2``, ``grpc_pass`` to a keep-alive upstream), mlchaos
in pass-through (a ``grpc:`` listener, no experiment) and mlchaos with a 5% feature-fault experiment (``shift`` on
one input tensor of a ModelInferRequest in raw_input_contents, as tritonclient sends it; control 5%). Why this
upstream and not MLServer: MLServer's gRPC answers about 600 calls/s on this machine (2026-12-05), so every path
would measure MLServer; a fixed answer leaves the proxies as the bottleneck, which is what the ratios are about. The
request is small: the iris model's four FP64 features of one row (4 inputs of shape [1], 32 bytes of tensor).

Two measurements, paths interleaved and rotated over ``--rounds`` rounds (the pairs share a machine state):

- closed loop: ``--workers`` client processes (grpc.aio, one channel each, ``--concurrency`` calls in flight
  each) call as fast as answers come for ``--seconds``; calls/s per path. Reported: mlchaos pass-through /
  nginx (bar >= 0.3) and the feature experiment / pass-through (bar >= 0.85), the median of the per-round
  ratios with their range.
- open loop: one client process sends ``--rate`` calls/s (default 500) for ``--open-seconds``, each call on its
  own schedule whatever the others do; the latency of each call from its send. Reported: p50 and p99 per path
  and what pass-through adds to direct's p50 (bar <= 0.5 ms), the median over rounds.

The machine is shared by the clients, the proxies and the upstream (``nproc`` is printed): figures are of this
machine at this time, not of a proxy alone.

    python benchmarks/grpc_bench.py                                   # the real measurement (about 3 minutes)
    python benchmarks/grpc_bench.py --rounds 1 --seconds 1 --open-seconds 0.5 --workers 1   # a quick check

Needs grpcio for the clients and the upstream (the project's test extra; the sidecar needs none) and nginx
(Debian's has http_v2; ``--install`` installs it). Every server runs in its own process group and is killed on
exit; all traffic goes to 127.0.0.1. Exit 0 when the bars hold, 1 when not, 2 on an error.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime
import json
import os
import shlex
import shutil
import signal
import struct
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(HERE))
from procs import HOST, NGINX_HEAD, free_port, quantile, wait_port  # noqa: E402 - shared with the other scripts

METHOD = "/inference.GRPCInferenceService/ModelInfer"
PATHS = ("direct", "nginx", "passthrough", "feature")
MIN_PASSTHROUGH_OVER_NGINX = 0.3
MAX_ADDED_P50_MS = 0.5
MIN_FEATURE_OVER_PASSTHROUGH = 0.85
FEATURES = ("sepal_length", "sepal_width", "petal_length", "petal_width")
ROW = (5.1, 3.5, 1.4, 0.2)
# Bounds on every wait: a worker that does not answer in this long beyond its run is killed.
WORKER_SLACK = 30.0
CALL_TIMEOUT = 5.0

# A client connection is not closed after 1,000 calls (nginx's default): the clients keep one each.
NGINX_CONF = NGINX_HEAD + """    keepalive_requests 1000000;
    upstream model { server 127.0.0.1:@UPSTREAM@; keepalive 16; keepalive_requests 1000000; }
    server {
        listen 127.0.0.1:@PORT@ http2;
        location / { grpc_pass grpc://model; }
    }
}
"""

POLICY = """listen: 127.0.0.1:@HTTP@
upstream: http://127.0.0.1:1
grpc:
  listen: 127.0.0.1:@PORT@
  upstream: 127.0.0.1:@UPSTREAM@
"""
FEATURE_EXPERIMENT = """max_blast_radius: 10
experiments:
  - name: grpc-bench-shift
    chaos: 5
    control: 5
    match: {method: /inference.GRPCInferenceService/ModelInfer}
    payload: {features: [sepal_length, sepal_width, petal_length, petal_width]}
    kill_switch: {enabled: false}
    faults:
      - type: shift
        features: [petal_length]
        scale: 4.0
        offset: 1.0
"""


def log(msg: str) -> None:
    print(f"[grpc_bench] {msg}", file=sys.stderr, flush=True)


# --------------------------------------------------------------------------- protobuf wire, by hand
# (no protobuf runtime: the messages are fixed, and the script stays importable without it)


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        byte = n & 0x7F
        n >>= 7
        if n:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def _field(number: int, data: bytes) -> bytes:
    """A length-delimited field (wire type 2): strings, bytes, messages, packed repeated scalars."""
    return _varint(number << 3 | 2) + _varint(len(data)) + data


def _tensor(name: str, datatype: str, shape: Sequence[int]) -> bytes:
    """InferInputTensor / InferOutputTensor: name = 1, datatype = 2, shape = 3 (packed int64)."""
    return _field(1, name.encode()) + _field(2, datatype.encode()) + _field(3, b"".join(_varint(s) for s in shape))


def infer_request(row: Sequence[float] = ROW) -> bytes:
    """ModelInferRequest{model_name: "iris", parameters: {content_type: "pd"}, one FP64 [1] input per feature,
    raw_input_contents: the values}, as tritonclient.grpc encodes it."""
    content_type = _field(1, b"content_type") + _field(2, _field(3, b"pd"))  # map entry; InferParameter.string_param
    msg = _field(1, b"iris") + _field(4, content_type)
    msg += b"".join(_field(5, _tensor(name, "FP64", [1])) for name in FEATURES)
    return msg + b"".join(_field(7, struct.pack("<d", v)) for v in row)


def infer_response() -> bytes:
    """ModelInferResponse{model_name: "iris", model_version: "1", outputs: [predict INT64 [1]], raw: [0]}."""
    return (_field(1, b"iris") + _field(2, b"1") + _field(5, _tensor("predict", "INT64", [1]))
            + _field(6, struct.pack("<q", 0)))


# --------------------------------------------------------------------------- the upstream


def serve(port: int) -> None:
    import grpc
    from grpc import aio

    answer = infer_response()

    async def model_infer(request: bytes, context: Any) -> bytes:
        return answer

    class Handler(grpc.GenericRpcHandler):
        def service(self, details: Any) -> Any:
            return grpc.unary_unary_rpc_method_handler(model_infer) if details.method == METHOD else None

    async def main() -> None:
        server = aio.server(options=[("grpc.so_reuseport", 0)])
        server.add_generic_rpc_handlers((Handler(),))
        server.add_insecure_port(f"{HOST}:{port}")
        await server.start()
        await server.wait_for_termination()

    asyncio.run(main())


# --------------------------------------------------------------------------- the clients (worker processes)


async def _closed(target: str, seconds: float, concurrency: int, start_at: float) -> dict[str, Any]:
    from grpc import aio

    request = infer_request()
    async with aio.insecure_channel(target, options=[("grpc.so_reuseport", 0)]) as channel:
        call = channel.unary_unary(METHOD)
        for _ in range(20):  # warm-up: the connection and the proxies' code paths
            await call(request, timeout=CALL_TIMEOUT)
        await asyncio.sleep(max(0.0, start_at - time.time()))
        end = start_at + seconds
        # A worker ready after start_at (a slow start on a busy machine) counts its own, shorter window.
        begin = time.time()
        calls = errors = 0

        async def loop() -> None:
            nonlocal calls, errors
            while time.time() < end:
                try:
                    await call(request, timeout=CALL_TIMEOUT)
                    calls += 1
                except aio.AioRpcError:
                    errors += 1

        await asyncio.gather(*(loop() for _ in range(concurrency)))
    return {"calls": calls, "errors": errors, "seconds": max(end - begin, 1e-3), "late": max(0.0, begin - start_at)}


async def _open(target: str, seconds: float, rate: float) -> dict[str, Any]:
    from grpc import aio

    request = infer_request()
    latencies: list[float] = []
    errors = 0
    behind = 0.0
    async with aio.insecure_channel(target, options=[("grpc.so_reuseport", 0)]) as channel:
        call = channel.unary_unary(METHOD)
        for _ in range(20):
            await call(request, timeout=CALL_TIMEOUT)

        async def one() -> None:
            nonlocal errors
            t0 = time.perf_counter()
            try:
                await call(request, timeout=CALL_TIMEOUT)
                latencies.append((time.perf_counter() - t0) * 1000.0)
            except aio.AioRpcError:
                errors += 1

        loop = asyncio.get_running_loop()
        n = max(1, int(seconds * rate))
        start = loop.time() + 0.05
        async with asyncio.TaskGroup() as tg:  # each call on its own schedule; the group waits for them all
            for i in range(n):
                delay = start + i / rate - loop.time()
                if delay > 0:
                    await asyncio.sleep(delay)
                else:
                    behind = max(behind, -delay)
                tg.create_task(one())
    return {"latencies_ms": latencies, "errors": errors, "behind_ms": behind * 1000.0}


def worker(args: argparse.Namespace) -> int:
    if args.mode == "closed":
        out = asyncio.run(_closed(args.target, args.seconds, args.concurrency, args.start_at))
    else:
        out = asyncio.run(_open(args.target, args.seconds, args.rate))
    print(json.dumps(out), flush=True)
    return 0


def run_workers(cmd: list[str], n: int, timeout: float) -> list[dict[str, Any]]:
    procs = [subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL)
             for _ in range(n)]
    outs = []
    try:
        for p in procs:
            stdout, stderr = p.communicate(timeout=timeout)
            if p.returncode != 0:
                raise RuntimeError(f"a client worker failed ({p.returncode}): {stderr.decode()[-1500:]}")
            outs.append(json.loads(stdout.decode().strip().splitlines()[-1]))
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait(5)
    return outs


def closed_loop(target: str, args: argparse.Namespace) -> tuple[float, int]:
    """Calls per second of ``--workers`` processes in a closed loop against ``target``; and their errors."""
    start_at = time.time() + args.startup  # every worker started, connected and warmed up by then
    cmd = [sys.executable, str(Path(__file__).resolve()), "--worker", "closed", "--target", target,
           "--seconds", str(args.seconds), "--concurrency", str(args.concurrency), "--start-at", repr(start_at)]
    outs = run_workers(cmd, args.workers, args.startup + args.seconds + WORKER_SLACK)
    late = max(o["late"] for o in outs)
    if late > 0.1 * args.seconds:
        log(f"{target}: a worker started {late:.2f} s late (raise --startup): its window was shorter")
    return sum(o["calls"] / o["seconds"] for o in outs), sum(o["errors"] for o in outs)


def open_loop(target: str, args: argparse.Namespace) -> dict[str, Any]:
    cmd = [sys.executable, str(Path(__file__).resolve()), "--worker", "open", "--target", target,
           "--seconds", str(args.open_seconds), "--rate", str(args.rate)]
    (out,) = run_workers(cmd, 1, args.open_seconds + CALL_TIMEOUT + WORKER_SLACK)
    return out


# --------------------------------------------------------------------------- processes and the run








def median(values: Sequence[float]) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    mid = len(ordered) // 2
    return ordered[mid] if len(ordered) % 2 else (ordered[mid - 1] + ordered[mid]) / 2


def fault_count(admin: int) -> float:
    """How many calls the feature fault acted on, from mlchaos's /metrics (mlchaos_faults_injected)."""
    import urllib.request

    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    with opener.open(f"http://{HOST}:{admin}/metrics", timeout=5) as reply:
        text = reply.read().decode()
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
               if line.startswith("mlchaos_faults_injected") and 'fault="shift"' in line)


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--mlchaos", default=None, help="the mlchaos command (default: `python -m proxy.cli` here)")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--seconds", type=float, default=3.0, help="closed loop: seconds per path per round")
    ap.add_argument("--workers", type=int, default=2, help="closed loop: client processes")
    ap.add_argument("--concurrency", type=int, default=16, help="closed loop: calls in flight per process")
    ap.add_argument("--rate", type=float, default=500.0, help="open loop: calls per second")
    ap.add_argument("--open-seconds", type=float, default=2.0, help="open loop: seconds per path per round")
    ap.add_argument("--startup", type=float, default=2.5, help="seconds the workers get to start and warm up")
    ap.add_argument("--paths", default=",".join(PATHS), help=f"a subset of {','.join(PATHS)} with direct")
    ap.add_argument("--install", action="store_true", help="apt-get install nginx when it is missing")
    ap.add_argument("--json", metavar="FILE", help="also write the summary as JSON")
    ap.add_argument("--serve", type=int, metavar="PORT", help=argparse.SUPPRESS)
    ap.add_argument("--worker", choices=("closed", "open"), dest="mode", help=argparse.SUPPRESS)
    ap.add_argument("--target", help=argparse.SUPPRESS)
    ap.add_argument("--start-at", type=float, default=0.0, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.serve:
        serve(args.serve)
        return 0
    if args.mode:
        return worker(args)
    paths = [p for p in args.paths.split(",") if p]
    if any(p not in PATHS for p in paths) or "direct" not in paths:
        ap.error(f"--paths: a subset of {','.join(PATHS)} that includes direct")
    if min(args.rounds, args.workers, args.concurrency) < 1 or min(args.seconds, args.open_seconds, args.rate) <= 0:
        ap.error("--rounds, --workers, --concurrency, --seconds, --open-seconds and --rate must be positive")
    try:
        import grpc  # noqa: F401
    except ImportError:
        log("grpcio is missing: pip install -e '.[test]'")
        return 2
    nginx = shutil.which("nginx") or next((b for b in ("/usr/sbin/nginx",) if os.access(b, os.X_OK)), None)
    if "nginx" in paths and nginx is None:
        if not args.install:
            log("nginx is missing: apt-get install nginx, or --install")
            return 2
        subprocess.run(["apt-get", "install", "-y", "-qq", "nginx-light"], check=True,
                       env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"})
        nginx = shutil.which("nginx") or "/usr/sbin/nginx"
    mlchaos = shlex.split(args.mlchaos) if args.mlchaos else [sys.executable, "-m", "proxy.cli"]
    procs: list[subprocess.Popen[bytes]] = []
    tmp = Path(tempfile.mkdtemp(prefix="mlchaos-grpc-bench-"))

    def spawn(cmd: list[str], name: str) -> subprocess.Popen[bytes]:
        with open(tmp / f"{name}.log", "wb") as out:
            proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                                    start_new_session=True, cwd=REPO)
        procs.append(proc)
        return proc

    def stop_all() -> None:
        for proc in reversed(procs):
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(proc.pid, signal.SIGTERM)
        for proc in reversed(procs):
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=5)

    started = datetime.datetime.now(datetime.UTC)
    rates: dict[str, list[float]] = {p: [] for p in paths}
    errors: dict[str, int] = dict.fromkeys(paths, 0)
    opened: dict[str, list[dict[str, Any]]] = {p: [] for p in paths}
    faulted = 0.0
    try:
        ports = {"direct": free_port()}
        wait_port(ports["direct"], spawn([sys.executable, str(Path(__file__).resolve()), "--serve",
                                          str(ports["direct"])], "upstream"), "the upstream")
        if "nginx" in paths:
            ports["nginx"] = free_port()
            conf = tmp / "nginx.conf"
            conf.write_text(NGINX_CONF.replace("@TMP@", str(tmp)).replace("@PORT@", str(ports["nginx"]))
                            .replace("@UPSTREAM@", str(ports["direct"])))
            assert nginx is not None
            wait_port(ports["nginx"], spawn([nginx, "-p", f"{tmp}/", "-c", str(conf), "-e",
                                             str(tmp / "nginx-early.log")], "nginx"), "nginx")
        admins: dict[str, int] = {}
        for path in ("passthrough", "feature"):
            if path not in paths:
                continue
            ports[path], admins[path] = free_port(), free_port()
            policy = (POLICY.replace("@HTTP@", str(free_port())).replace("@PORT@", str(ports[path]))
                      .replace("@UPSTREAM@", str(ports["direct"])))
            if path == "feature":
                policy += FEATURE_EXPERIMENT
            (tmp / f"{path}.yaml").write_text(policy)
            cmd = [*mlchaos, "run", "--config", str(tmp / f"{path}.yaml"), "--admin", f"{HOST}:{admins[path]}"]
            wait_port(ports[path], spawn(cmd, path), f"mlchaos {path}")
        log(f"paths {', '.join(ports)}; {args.rounds} rounds: closed loop {args.workers}x{args.concurrency} for "
            f"{args.seconds:g} s, open loop {args.rate:g}/s for {args.open_seconds:g} s (logs in {tmp})")
        order = list(ports)
        for r in range(args.rounds):
            rotated = order[r % len(order):] + order[:r % len(order)]
            for p in rotated:
                rate, errs = closed_loop(f"{HOST}:{ports[p]}", args)
                rates[p].append(rate)
                errors[p] += errs
            for p in rotated:
                out = open_loop(f"{HOST}:{ports[p]}", args)
                opened[p].append(out)
                errors[p] += out["errors"]
            log(f"round {r + 1}/{args.rounds}: " + ", ".join(f"{p} {rates[p][-1]:,.0f}/s" for p in order))
        if "feature" in admins:
            faulted = fault_count(admins["feature"])
    except (RuntimeError, OSError, subprocess.CalledProcessError, subprocess.TimeoutExpired) as exc:
        log(f"error: {exc}")
        for f in sorted(tmp.glob("*.log")):
            log(f"--- {f.name}:\n{f.read_text(errors='replace')[-2000:]}")
        return 2
    finally:
        stop_all()
        shutil.rmtree(tmp, ignore_errors=True)
    return report(summarise(rates, opened, errors, faulted), args, started)


def summarise(rates: dict[str, list[float]], opened: dict[str, list[dict[str, Any]]], errors: dict[str, int],
              faulted: float) -> dict[str, Any]:
    """Per path: calls/s per round and their median, open-loop p50/p99 per round and their medians; the paired
    ratios and added latencies, per round and their medians."""
    paths: dict[str, dict[str, Any]] = {}
    for p, per_round in rates.items():
        p50s = [quantile(o["latencies_ms"], 0.5) for o in opened[p]]
        p99s = [quantile(o["latencies_ms"], 0.99) for o in opened[p]]
        paths[p] = {"calls_per_s": per_round, "calls_per_s_median": median(per_round), "open_p50_ms": p50s,
                    "open_p99_ms": p99s, "open_p50_ms_median": median(p50s), "open_p99_ms_median": median(p99s),
                    "open_calls": sum(len(o["latencies_ms"]) for o in opened[p]),
                    "open_behind_ms_max": max((o["behind_ms"] for o in opened[p]), default=0.0), "errors": errors[p]}
    pairs: dict[str, list[float]] = {}

    def ratio(name: str, a: str, b: str) -> None:
        if a in paths and b in paths:
            pairs[name] = [x / y for x, y in zip(paths[a]["calls_per_s"], paths[b]["calls_per_s"], strict=True)]

    def added(name: str, a: str) -> None:
        if a in paths:
            pairs[name] = [x - y for x, y in zip(paths[a]["open_p50_ms"], paths["direct"]["open_p50_ms"], strict=True)]

    ratio("passthrough_over_nginx", "passthrough", "nginx")
    ratio("feature_over_passthrough", "feature", "passthrough")
    ratio("nginx_over_direct", "nginx", "direct")
    ratio("passthrough_over_direct", "passthrough", "direct")
    added("passthrough_added_p50_ms", "passthrough")
    added("nginx_added_p50_ms", "nginx")
    added("feature_added_p50_ms", "feature")
    return {"paths": paths, "pairs": {k: {"per_round": v, "median": median(v), "min": min(v), "max": max(v)}
                                      for k, v in pairs.items()},
            "faulted_calls": faulted}


def report(summary: dict[str, Any], args: argparse.Namespace, started: datetime.datetime) -> int:
    load = ", ".join(f"{v:.2f}" for v in os.getloadavg())
    print(f"grpc_bench {started:%Y-%m-%d %H:%M} UTC, nproc {os.cpu_count()} (shared machine; load average at the end "
          f"{load}), {args.rounds} rounds; "
          f"closed loop {args.workers} processes x {args.concurrency} in flight, {args.seconds:g} s per path; "
          f"open loop {args.rate:g} calls/s for {args.open_seconds:g} s per path")
    print()
    print("| path | calls/s (median) | calls/s per round | open p50 | open p99 | errors |")
    print("|---|---:|---|---:|---:|---:|")
    for p, row in summary["paths"].items():
        per_round = ", ".join(f"{v:,.0f}" for v in row["calls_per_s"])
        print(f"| {p} | {row['calls_per_s_median']:,.0f} | {per_round} | {row['open_p50_ms_median']:.3f} ms | "
              f"{row['open_p99_ms_median']:.3f} ms | {row['errors']} |")
    print()
    pairs = summary["pairs"]
    for name, pair in pairs.items():
        unit = " ms" if name.endswith("_ms") else ""
        fmt = "{:+.3f}" if unit else "{:.3f}"
        print(f"- {name}: median {fmt.format(pair['median'])}{unit} (rounds: "
              f"{', '.join(fmt.format(v) for v in pair['per_round'])})")
    if "feature" in summary["paths"]:
        print(f"- the feature fault acted on {summary['faulted_calls']:,.0f} calls")
    checks = []
    if "passthrough_over_nginx" in pairs:
        v = pairs["passthrough_over_nginx"]["median"]
        checks.append((f"pass-through >= {MIN_PASSTHROUGH_OVER_NGINX} x nginx's calls/s",
                       v >= MIN_PASSTHROUGH_OVER_NGINX, f"{v:.3f}"))
    if "passthrough_added_p50_ms" in pairs:
        v = pairs["passthrough_added_p50_ms"]["median"]
        checks.append((f"pass-through adds <= {MAX_ADDED_P50_MS} ms at p50, {args.rate:g} calls/s",
                       v <= MAX_ADDED_P50_MS, f"{v:+.3f} ms"))
    if "feature_over_passthrough" in pairs:
        v = pairs["feature_over_passthrough"]["median"]
        checks.append((f"5% feature faults >= {MIN_FEATURE_OVER_PASSTHROUGH} x pass-through's calls/s",
                       v >= MIN_FEATURE_OVER_PASSTHROUGH, f"{v:.3f}"))
        checks.append(("the feature fault acted", summary["faulted_calls"] > 0, f"{summary['faulted_calls']:,.0f}"))
    checks.append(("no errors", all(r["errors"] == 0 for r in summary["paths"].values()), ""))
    print()
    ok = True
    for name, passed, value in checks:
        print(f"- {'PASS' if passed else 'FAIL'}: {name} {value}".rstrip())
        ok = ok and passed
    if args.json:
        Path(args.json).write_text(json.dumps({"args": {k: v for k, v in vars(args).items() if k != "mode"},
                                               "date": f"{started:%Y-%m-%d %H:%M} UTC", "nproc": os.cpu_count(),
                                               "loadavg": os.getloadavg(),
                                               **summary}, indent=2))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
