#!/usr/bin/env python3
"""Throughput and added latency of mlchaos next to nginx and HAProxy, all in front of one "model".

One run starts a fixed-answer nginx "model" on 127.0.0.1 and, in front of it, an nginx reverse proxy,
HAProxy, mlchaos in pass-through and mlchaos with an experiment active. It then

1. loads every path with ``wrk -t1 -c32`` for ``--rounds`` interleaved rounds (fresh proxy processes
   each round, a 1 s warm-up before each measurement) and reports the per-path median req/s, p50 and p99;
2. loads every path at one fixed rate (wrk, with post.lua spacing the requests on a schedule) and
   reports the latency each adds to the direct path. Debian's "bombardier" package is a game, not the
   HTTP load tester; hey (Debian) fires its 32 rate-limited workers in lockstep, in bursts of 32.

Standard library only. Every server and load generator runs in its own process group and is killed on
exit, on an error and on Ctrl-C; the temporary directory is removed. All traffic goes to 127.0.0.1.
See benchmarks/README.md.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import re
import secrets
import shlex
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from types import FrameType
from typing import Any

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
HOST = "127.0.0.1"  # the only address this script ever sends traffic to

# Keep BODY in sync with post.lua.
BODY = '{"instances":[[1.0,2.0,3.0,4.0],[5.0,6.0,7.0,8.0]]}'
# The model's answer: ~80 bytes of KServe-V1-like JSON. No single quote (it sits in nginx quotes).
RESPONSE = '{"predictions":[[0.12,0.88],[0.91,0.09]],"model_name":"bench","model_version":"1"}'

PATHS: tuple[str, ...] = ("direct", "nginx", "haproxy", "passthrough", "experiment", "shift")
LETTERS = dict(zip("abcdef", PATHS, strict=True))
LABELS = {
    "direct": "direct (upstream nginx)",
    "nginx": "nginx proxy, 1 worker, keep-alive pool",
    "haproxy": "HAProxy, 1 thread, http-reuse always",
    "passthrough": "mlchaos pass-through",
    "experiment": "mlchaos, experiment 5% chaos + 5% control",
    "shift": "mlchaos, 5% shift (features rewritten) + 5% control",
}
MLCHAOS_PATHS = ("passthrough", "experiment", "shift")
# Paths whose policy keeps prediction bookkeeping on: each run checks that it recorded predictions.
BOOKKEEPING_PATHS = ("experiment", "shift")
POLICIES = {
    "passthrough": HERE / "policies" / "passthrough.yaml",
    "experiment": HERE / "policies" / "experiment.yaml",
    "shift": HERE / "policies" / "shift.yaml",
}
# command -> Debian package
TOOLS = {"nginx": "nginx", "haproxy": "haproxy", "wrk": "wrk"}
CONNECTIONS = 32

READY_TIMEOUT = 10.0  # seconds for a server to accept connections
STOP_GRACE = 5.0  # seconds between SIGTERM and SIGKILL

# --check bars
MIN_PASSTHROUGH_VS_NGINX = 0.60
MAX_P99_VS_NGINX = 2.0
MIN_EXPERIMENT_VS_PASSTHROUGH = 0.85


class BenchError(Exception):
    """A failure that ends the run with a message (and exit status 2)."""


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


# --------------------------------------------------------------------------- processes


class Processes:
    """Every child process, each the leader of its own process group; stop_all() kills them all."""

    def __init__(self) -> None:
        self._procs: list[subprocess.Popen[Any]] = []

    def spawn(self, cmd: Sequence[str], *, log_file: Path | None = None,
              env: dict[str, str] | None = None, capture: bool = False) -> subprocess.Popen[Any]:
        if capture:
            proc: subprocess.Popen[Any] = subprocess.Popen(
                list(cmd), stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                text=True, start_new_session=True, env=env, cwd=REPO)
        else:
            assert log_file is not None
            with log_file.open("wb") as out:
                proc = subprocess.Popen(
                    list(cmd), stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                    start_new_session=True, env=env, cwd=REPO)
        self._procs.append(proc)
        return proc

    def stop(self, proc: subprocess.Popen[Any]) -> None:
        """SIGTERM the process group, SIGKILL it after STOP_GRACE seconds."""
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=STOP_GRACE)
            except subprocess.TimeoutExpired:
                pass
        # Also reaches group members that outlived their leader (an nginx worker, say).
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=STOP_GRACE)
        if proc in self._procs:
            self._procs.remove(proc)

    def stop_all(self) -> None:
        for proc in reversed(list(self._procs)):
            self.stop(proc)

    def run(self, cmd: Sequence[str], timeout: float, env: dict[str, str] | None = None) -> str:
        """Run a load generator to completion (bounded by timeout) and return its stdout."""
        proc = self.spawn(cmd, capture=True, env=env)
        try:
            out, err = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired as exc:
            raise BenchError(f"{cmd[0]} did not finish within {timeout:.0f} s: {shlex.join(cmd)}") from exc
        finally:
            self.stop(proc)
        if proc.returncode != 0:
            raise BenchError(f"{shlex.join(cmd)} exited {proc.returncode}:\n{out}\n{err}")
        return str(out)


def _raise_interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


# --------------------------------------------------------------------------- tools


def find_bin(name: str) -> str | None:
    found = shutil.which(name)
    if found:
        return found
    for folder in ("/usr/sbin", "/usr/bin", "/sbin", "/usr/local/bin", "/usr/local/sbin"):
        candidate = Path(folder) / name
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return str(candidate)
    return None


def ensure_tools(needed: Sequence[str], install: bool) -> dict[str, str]:
    """Return command -> path, installing missing Debian packages first (services kept from starting)."""
    missing = [tool for tool in needed if find_bin(tool) is None]
    if missing:
        pkgs = [TOOLS[tool] for tool in missing]
        if not install:
            raise BenchError(f"missing {', '.join(missing)}; apt-get install {' '.join(pkgs)}")
        if os.geteuid() != 0:
            raise BenchError(f"missing {', '.join(missing)} and not root: apt-get install {' '.join(pkgs)}")
        log(f"installing {' '.join(pkgs)} (apt-get)")
        # Debian's nginx and haproxy packages start their service (nginx on port 80) unless
        # policy-rc.d says no; write one for the duration of the install if there is none.
        policy_rc = Path("/usr/sbin/policy-rc.d")
        created = False
        if not policy_rc.exists():
            policy_rc.write_text("#!/bin/sh\n# Temporary, from mlchaos benchmarks/run.py: "
                                 "no service starts.\nexit 101\n")
            policy_rc.chmod(0o755)
            created = True
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        try:
            subprocess.run(["apt-get", "update", "-qq"], env=env, check=True, timeout=900,
                           stdin=subprocess.DEVNULL)
            subprocess.run(["apt-get", "install", "-y", "-qq", "--no-install-recommends", *pkgs], env=env,
                           check=True, timeout=1800, stdin=subprocess.DEVNULL)
        except (subprocess.CalledProcessError, subprocess.TimeoutExpired) as exc:
            raise BenchError(f"apt-get failed: {exc}") from exc
        finally:
            if created:
                policy_rc.unlink(missing_ok=True)
    paths: dict[str, str] = {}
    for tool in needed:
        found = find_bin(tool)
        if found is None:
            raise BenchError(f"{tool} still not found after installing {TOOLS[tool]}")
        paths[tool] = found
    return paths


def tool_version(cmd: Sequence[str], pattern: str) -> str:
    try:
        done = subprocess.run(list(cmd), capture_output=True, text=True, timeout=10,
                              stdin=subprocess.DEVNULL)
    except (OSError, subprocess.TimeoutExpired):
        return "unknown"
    match = re.search(pattern, done.stdout + done.stderr)
    return match.group(1) if match else "unknown"


# --------------------------------------------------------------------------- servers


@dataclass
class Server:
    path: str
    port: int
    proc: subprocess.Popen[Any]
    log_file: Path
    admin_port: int | None = None

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.port}/v1/models/bench:predict"


class Ports:
    """Free ports on 127.0.0.1, never the same one twice in a run."""

    def __init__(self) -> None:
        self._given: set[int] = set()

    def take(self) -> int:
        for _ in range(100):
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
                sock.bind((HOST, 0))
                port = int(sock.getsockname()[1])
            if port not in self._given:
                self._given.add(port)
                return port
        raise BenchError("no free port on 127.0.0.1")


def render(template: Path, dest: Path, values: dict[str, str]) -> Path:
    text = template.read_text()
    for key, value in values.items():
        text = text.replace(f"@@{key}@@", value)
    leftover = re.search(r"@@\w+@@", text)
    if leftover:
        raise BenchError(f"{template.name}: no value for {leftover.group(0)}")
    dest.write_text(text)
    return dest


def log_tail(path: Path, lines: int = 30) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def _no_proxy_opener() -> urllib.request.OpenerDirector:
    # Ignore http_proxy and friends: every request goes straight to 127.0.0.1.
    return urllib.request.build_opener(urllib.request.ProxyHandler({}))


def wait_ready(server: Server, timeout: float = READY_TIMEOUT) -> None:
    """Poll until the port accepts connections (bounded), then require one POST to answer 200."""
    deadline = time.monotonic() + timeout
    while True:
        if server.proc.poll() is not None:
            raise BenchError(f"{server.path} exited with {server.proc.returncode} before listening:\n"
                             f"{log_tail(server.log_file)}")
        try:
            with socket.create_connection((HOST, server.port), timeout=0.5):
                break
        except OSError:
            pass
        if time.monotonic() >= deadline:
            raise BenchError(f"{server.path}: 127.0.0.1:{server.port} not accepting connections after "
                             f"{timeout:.0f} s:\n{log_tail(server.log_file)}")
        time.sleep(0.05)
    request = urllib.request.Request(server.url, data=BODY.encode(), method="POST",
                                     headers={"Content-Type": "application/json"})
    try:
        with _no_proxy_opener().open(request, timeout=5) as resp:
            status, body = resp.status, resp.read()
    except urllib.error.HTTPError as exc:
        status, body = exc.code, exc.read()
    except OSError as exc:
        raise BenchError(f"{server.path}: check request failed: {exc}\n{log_tail(server.log_file)}") from exc
    if status != 200:
        raise BenchError(f"{server.path}: check request answered {status}: {body[:200]!r}\n"
                         f"{log_tail(server.log_file)}")


def admin_get(server: Server, token: str, path: str, timeout: float = 5) -> Any:
    """GET ``path`` from an mlchaos admin API, as JSON."""
    request = urllib.request.Request(f"http://{HOST}:{server.admin_port}{path}",
                                     headers={"Authorization": f"Bearer {token}"})
    try:
        with _no_proxy_opener().open(request, timeout=timeout) as resp:
            return json.loads(resp.read())
    except (OSError, ValueError) as exc:
        raise BenchError(f"{server.path}: admin GET {path} failed: {exc}\n{log_tail(server.log_file)}") from exc


def admin_experiments(server: Server, token: str) -> list[dict[str, Any]]:
    """GET /experiments from an mlchaos admin API."""
    doc = admin_get(server, token, "/experiments")
    exps = doc.get("experiments") if isinstance(doc, dict) else None
    if not isinstance(exps, list):
        raise BenchError(f"{server.path}: admin GET /experiments: unexpected answer {doc!r:.300}")
    return exps


def require_bookkeeping(server: Server, token: str) -> None:
    """The experiment and shift paths record predictions: responses read by the bookkeeping, none left
    unparsed. Bookkeeping that cannot tell the payload format (format auto and a path that says nothing)
    parses each response and drops it, and the figures would leave the recording out."""
    doc = admin_get(server, token, "/experiments/bench/report", timeout=10)
    unparsed = doc.get("unparsed") if isinstance(doc, dict) else None
    read = doc.get("read") if isinstance(doc, dict) else None
    if not isinstance(unparsed, dict) or not isinstance(read, int) or read == 0 or any(unparsed.values()):
        raise BenchError(f"{server.path}: prediction bookkeeping recorded nothing (read {read!r}, unparsed "
                         f"{unparsed!r}): check the policy's payload format")


def require_experiments(server: Server, token: str) -> None:
    """The experiment path needs its experiment active, the pass-through path none at all."""
    exps = admin_experiments(server, token)
    active = [e.get("name") for e in exps if e.get("state") == "active"]
    if server.path in ("experiment", "shift") and not active:
        raise BenchError(f"{server.path}: no active experiment according to the admin API: {exps!r:.500}")
    if server.path == "passthrough" and exps:
        raise BenchError(f"passthrough: the policy should have no experiment, admin API lists {exps!r:.500}")
    log(f"{server.path}: active experiments per the admin API: {active or 'none'}")


@dataclass
class Context:
    tmp: Path
    procs: Processes
    ports: Ports
    bins: dict[str, str]
    mlchaos: list[str]
    admin_token: str


def start_nginx(ctx: Context, path: str, template: Path, values: dict[str, str]) -> Server:
    port = ctx.ports.take()
    conf = render(template, ctx.tmp / f"{path}.conf",
                  {"TMP": str(ctx.tmp), "PORT": str(port), "RESPONSE": RESPONSE, **values})
    log_file = ctx.tmp / f"{path}.log"
    # -p/-e keep nginx away from /etc/nginx and /var/log/nginx; the config sets every other path.
    cmd = [ctx.bins["nginx"], "-p", f"{ctx.tmp}/", "-c", str(conf), "-e", str(ctx.tmp / f"{path}-early.log")]
    proc = ctx.procs.spawn(cmd, log_file=log_file)
    return Server(path, port, proc, log_file)


def start_haproxy(ctx: Context, upstream_port: int) -> Server:
    port = ctx.ports.take()
    cfg = render(HERE / "haproxy.cfg.tmpl", ctx.tmp / "haproxy.cfg",
                 {"TMP": str(ctx.tmp), "PORT": str(port), "UPSTREAM_PORT": str(upstream_port)})
    log_file = ctx.tmp / "haproxy.log"
    proc = ctx.procs.spawn([ctx.bins["haproxy"], "-db", "-f", str(cfg)], log_file=log_file)
    return Server("haproxy", port, proc, log_file)


def start_mlchaos(ctx: Context, path: str, upstream_port: int, log_name: str | None = None) -> Server:
    """mlchaos with the policy of ``path``; ``log_name`` tells apart two processes of one policy."""
    port, admin = ctx.ports.take(), ctx.ports.take()
    cmd = [*ctx.mlchaos, "run", "--config", str(POLICIES[path]), "--listen", f"{HOST}:{port}",
           "--upstream", f"http://{HOST}:{upstream_port}", "--admin", f"{HOST}:{admin}"]
    env = {**os.environ, "MLCHAOS_ADMIN_TOKEN": ctx.admin_token}
    log_file = ctx.tmp / f"{log_name or path}.log"
    proc = ctx.procs.spawn(cmd, log_file=log_file, env=env)
    return Server(path, port, proc, log_file, admin_port=admin)


# --------------------------------------------------------------------------- load generators

_UNITS_MS = {"us": 1e-3, "ms": 1.0, "s": 1e3, "m": 60e3, "h": 3600e3}


def cpu_seconds(pid: int) -> float:
    """CPU seconds (user + system) process ``pid`` has used so far, from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime + stime


def wrk_duration_ms(text: str) -> float:
    match = re.fullmatch(r"([\d.]+)(us|ms|s|m|h)", text.strip())
    if not match:
        raise BenchError(f"cannot read wrk duration {text!r}")
    return float(match.group(1)) * _UNITS_MS[match.group(2)]


@dataclass
class WrkResult:
    rps: float
    p50_ms: float
    p99_ms: float
    requests: int
    non2xx: int
    socket_errors: int

    @property
    def errors(self) -> int:
        return self.non2xx + self.socket_errors


def parse_wrk(out: str) -> WrkResult:
    def find(pattern: str) -> re.Match[str]:
        match = re.search(pattern, out, re.MULTILINE)
        if not match:
            raise BenchError(f"unexpected wrk output (no {pattern!r}):\n{out}")
        return match

    rps = float(find(r"^Requests/sec:\s+([\d.]+)").group(1))
    p50 = wrk_duration_ms(find(r"^\s+50%\s+(\S+)").group(1))
    p99 = wrk_duration_ms(find(r"^\s+99%\s+(\S+)").group(1))
    requests = int(find(r"^\s+(\d+) requests in").group(1))
    non2xx_match = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)
    sock_match = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    socket_errors = sum(int(n) for n in sock_match.groups()) if sock_match else 0
    return WrkResult(rps, p50, p99, requests, int(non2xx_match.group(1)) if non2xx_match else 0,
                     socket_errors)


def run_wrk(ctx: Context, url: str, seconds: int, env: dict[str, str] | None = None) -> WrkResult:
    cmd = [ctx.bins["wrk"], "-t1", f"-c{CONNECTIONS}", f"-d{seconds}s", "-s", str(HERE / "post.lua"), url,
           "--latency"]
    if env is None:  # throughput mode: make sure post.lua defines no delay()
        env = {k: v for k, v in os.environ.items() if not k.startswith("MLCHAOS_BENCH_")}
    return parse_wrk(ctx.procs.run(cmd, timeout=seconds + 30, env=env))


@dataclass
class RateResult:
    rate: int
    achieved_rps: float
    p50_ms: float
    p99_ms: float
    requests: int
    errors: int


def run_rate(ctx: Context, url: str, rate: int, seconds: int) -> RateResult:
    """wrk in post.lua's fixed-rate mode: 32 connections sending on one schedule of `rate` slots a second."""
    env = {**os.environ, "MLCHAOS_BENCH_RATE": str(rate), "MLCHAOS_BENCH_CONNECTIONS": str(CONNECTIONS)}
    res = run_wrk(ctx, url, seconds, env=env)
    return RateResult(rate=rate, achieved_rps=res.rps, p50_ms=res.p50_ms, p99_ms=res.p99_ms,
                      requests=res.requests, errors=res.errors)


# --------------------------------------------------------------------------- report


def fmt_rps(value: float | None) -> str:
    return "–" if value is None else f"{value:,.0f}"


def fmt_ms(value: float | None) -> str:
    return "–" if value is None else f"{value:.2f} ms"


def fmt_ratio(num: float | None, den: float | None) -> str:
    return "–" if num is None or not den else f"{num / den:.2f}"


def fmt_signed_ms(value: float | None) -> str:
    return "–" if value is None else f"{value:+.2f} ms"


@dataclass
class Median:
    rps: float
    p50_ms: float
    p99_ms: float
    errors: int


@dataclass
class Report:
    meta: dict[str, Any]
    rounds: list[dict[str, WrkResult]] = field(default_factory=list)
    rate: dict[str, RateResult] = field(default_factory=dict)
    # Requests sent to each path (warm-ups, measurements, the readiness check, the fixed-rate load).
    sent: dict[str, int] = field(default_factory=dict)
    # GET /experiments of the experiment path after the load: what cohorts the requests fell in.
    experiments_after: list[dict[str, Any]] = field(default_factory=list)
    checks: list[dict[str, Any]] = field(default_factory=list)

    def median(self, path: str) -> Median | None:
        results = [rnd[path] for rnd in self.rounds if path in rnd]
        if not results:
            return None
        return Median(statistics.median(r.rps for r in results), statistics.median(r.p50_ms for r in results),
                      statistics.median(r.p99_ms for r in results), sum(r.errors for r in results))

    def to_json(self) -> dict[str, Any]:
        medians = {p: self.median(p) for p in PATHS}
        return {
            "meta": self.meta,
            "wrk_rounds": [{p: asdict(r) for p, r in rnd.items()} for rnd in self.rounds],
            "wrk_median": {p: asdict(m) for p, m in medians.items() if m is not None},
            "rate": {p: asdict(r) for p, r in self.rate.items()},
            "requests_sent": self.sent,
            "experiments_after": self.experiments_after,
            "checks": self.checks,
        }


def evaluate_checks(report: Report) -> list[dict[str, Any]]:
    nginx, passthrough, experiment = (report.median(p) for p in ("nginx", "passthrough", "experiment"))
    checks: list[dict[str, Any]] = []
    missing = "not measured (see --only)"

    def add(name: str, ok: bool, detail: str) -> None:
        checks.append({"bar": name, "ok": ok, "detail": detail})

    name = f"mlchaos pass-through req/s >= {MIN_PASSTHROUGH_VS_NGINX:.0%} of nginx"
    if passthrough and nginx:
        add(name, passthrough.rps >= MIN_PASSTHROUGH_VS_NGINX * nginx.rps,
            f"{passthrough.rps / nginx.rps:.0%} ({passthrough.rps:,.0f} vs {nginx.rps:,.0f})")
    else:
        add(name, False, missing)
    name = f"mlchaos pass-through p99 <= {MAX_P99_VS_NGINX:g}x nginx p99"
    if passthrough and nginx:
        add(name, passthrough.p99_ms <= MAX_P99_VS_NGINX * nginx.p99_ms,
            f"{passthrough.p99_ms / nginx.p99_ms:.2f}x "
            f"({passthrough.p99_ms:.2f} ms vs {nginx.p99_ms:.2f} ms)")
    else:
        add(name, False, missing)
    name = f"mlchaos experiment req/s >= {MIN_EXPERIMENT_VS_PASSTHROUGH:.0%} of pass-through"
    if experiment and passthrough:
        add(name, experiment.rps >= MIN_EXPERIMENT_VS_PASSTHROUGH * passthrough.rps,
            f"{experiment.rps / passthrough.rps:.0%} ({experiment.rps:,.0f} vs {passthrough.rps:,.0f})")
    else:
        add(name, False, missing)
    shift = report.median("shift")
    name = f"mlchaos 5% shift req/s >= {MIN_EXPERIMENT_VS_PASSTHROUGH:.0%} of pass-through"
    if shift and passthrough:
        add(name, shift.rps >= MIN_EXPERIMENT_VS_PASSTHROUGH * passthrough.rps,
            f"{shift.rps / passthrough.rps:.0%} ({shift.rps:,.0f} vs {passthrough.rps:,.0f})")
    elif any("shift" in rnd for rnd in report.rounds):
        add(name, False, missing)
    name = "no non-2xx or socket errors on the mlchaos paths"
    if experiment and passthrough:
        errs = {p: m.errors for p in MLCHAOS_PATHS if (m := report.median(p)) is not None}
        add(name, sum(errs.values()) == 0, ", ".join(f"{p} {n}" for p, n in errs.items()))
    else:
        add(name, False, missing)
    return checks


def cohort_lines(report: Report) -> list[str]:
    """How the experiment path's requests fell into cohorts, per its admin API (a sanity check)."""
    sent = report.sent.get("experiment")
    if not report.experiments_after or not sent:
        return []
    out = []
    for exp in report.experiments_after:
        requests = exp.get("requests") or {}
        shares = ", ".join(f"{cohort} {int(n):,} ({int(n) / sent:.1%})" for cohort, n in requests.items())
        errors = exp.get("errors") or {}
        error_text = ", ".join(f"{cohort} {n}" for cohort, n in errors.items()) or "none"
        out.append(f"experiment `{exp.get('name')}` ({exp.get('state')}) over the {sent:,} requests sent: "
                   f"{shares}; faults injected {exp.get('faults_injected')}; errors {error_text}")
    return ["", *out]


def markdown(report: Report, args: argparse.Namespace) -> str:
    meta = report.meta
    medians = {p: report.median(p) for p in PATHS}
    processes = "one process per proxy for all rounds" if args.same_process else "fresh proxy processes each round"
    nginx, haproxy, direct = medians["nginx"], medians["haproxy"], medians["direct"]
    lines = [
        f"## mlchaos benchmark, {meta['date_utc']}",
        "",
        f"- machine: {meta['cores']} cores (`nproc`), {meta['kernel']}; load generator, proxies and "
        "upstream share them",
        f"- nginx {meta['versions']['nginx']}, HAProxy {meta['versions']['haproxy']}, "
        f"wrk {meta['versions']['wrk']}, "
        f"Python {meta['versions']['python']} (runner), mlchaos {meta['versions']['mlchaos']}",
        f"- throughput: `wrk -t1 -c{CONNECTIONS} -d{args.duration}s --latency`, {len(report.rounds)} interleaved "
        f"round(s), {processes}, "
        f"{args.warmup:g} s warm-up before each measurement; figures are per-path medians",
        f"- upstream: nginx, 1 worker, fixed {len(RESPONSE)}-byte JSON answer; request: POST of a "
        f"{len(BODY)}-byte JSON body",
        "",
        "| path | req/s (median) | vs nginx | vs HAProxy | vs direct | p50 | p99 | p99 vs nginx | errors |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for path in PATHS:
        med = medians[path]
        if med is None:
            continue
        vs = [fmt_ratio(med.rps, other.rps if other else None) for other in (nginx, haproxy, direct)]
        lines.append(
            f"| {LABELS[path]} | {fmt_rps(med.rps)} | {' | '.join(vs)} | {fmt_ms(med.p50_ms)} "
            f"| {fmt_ms(med.p99_ms)} | {fmt_ratio(med.p99_ms, nginx.p99_ms if nginx else None)} | {med.errors} |")
    passthrough = medians["passthrough"]
    for path in ("experiment", "shift"):
        med = medians[path]
        if passthrough and med:
            # The round's own pass-through ran next to it: the per-round ratios show how much of the spread
            # is the machine's.
            per_round = [f"{rnd[path].rps / rnd['passthrough'].rps:.2f}" for rnd in report.rounds
                         if path in rnd and "passthrough" in rnd]
            lines += ["", f"{path} / pass-through (median req/s): **{med.rps / passthrough.rps:.2f}** "
                          f"(per round: {', '.join(per_round)})"]

    lines += cohort_lines(report)

    if len(report.rounds) > 1:
        header = " | ".join(f"round {i + 1}" for i in range(len(report.rounds)))
        lines += ["", "Per round, req/s (p99):", "", f"| path | {header} |",
                  "|---|" + "---:|" * len(report.rounds)]
        for path in PATHS:
            cells = [f"{fmt_rps(rnd[path].rps)} ({fmt_ms(rnd[path].p99_ms)})" if path in rnd else "–"
                     for rnd in report.rounds]
            if any(cell != "–" for cell in cells):
                lines.append(f"| {LABELS[path]} | {' | '.join(cells)} |")

    if report.rate:
        base = report.rate.get("direct")
        lines += [
            "",
            f"Added latency at a fixed {args.rate} req/s (`wrk -t1 -c{CONNECTIONS} -d{args.rate_duration}s`, "
            f"post.lua sending on a schedule of one request every {1000 / args.rate:g} ms), vs direct:",
            "",
            "| path | achieved req/s | p50 | p99 | added p50 | added p99 | errors |",
            "|---|---:|---:|---:|---:|---:|---:|",
        ]
        for path in PATHS:
            res = report.rate.get(path)
            if res is None:
                continue
            short = " (rate not held)" if res.achieved_rps < 0.95 * res.rate else ""
            lines.append(
                f"| {LABELS[path]} | {fmt_rps(res.achieved_rps)}{short} | {fmt_ms(res.p50_ms)} "
                f"| {fmt_ms(res.p99_ms)} | {fmt_signed_ms(res.p50_ms - base.p50_ms if base else None)} "
                f"| {fmt_signed_ms(res.p99_ms - base.p99_ms if base else None)} | {res.errors} |")

    if report.checks:
        lines += ["", "Check bars (`--check`):", ""]
        for check in report.checks:
            lines.append(f"- {'PASS' if check['ok'] else 'FAIL'}: {check['bar']}: {check['detail']}")
    return "\n".join(lines) + "\n"


# --------------------------------------------------------------------------- main


def parse_only(text: str | None) -> list[str]:
    if not text:
        return list(PATHS)
    chosen: set[str] = set()
    for item in (part.strip().lower() for part in text.split(",")):
        if not item:
            continue
        name = LETTERS.get(item, item)
        if name not in PATHS:
            raise argparse.ArgumentTypeError(
                f"unknown path {item!r}: use {', '.join(PATHS)} or the letters a-e")
        chosen.add(name)
    return [p for p in PATHS if p in chosen]  # always the a..e order


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Benchmark mlchaos against direct, nginx and HAProxy in front of one nginx 'model' "
                    "(all on 127.0.0.1). Prints a Markdown report on stdout; progress goes to stderr.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--rounds", type=int, default=3, help="interleaved wrk rounds; medians are reported")
    parser.add_argument("--same-process", action="store_true",
                        help="keep one process per proxy for every round (default: fresh proxies each round)")
    # wrk takes whole seconds only.
    parser.add_argument("--duration", type=int, default=5, help="seconds per wrk measurement")
    parser.add_argument("--warmup", type=int, default=1, help="seconds of wrk warm-up before each one; 0: none")
    parser.add_argument("--only", type=parse_only, default=",".join(PATHS), metavar="PATHS",
                        help="comma-separated subset of: direct,nginx,haproxy,passthrough,experiment "
                             "(or a,b,c,d,e)")
    parser.add_argument("--rate", type=int, default=2000,
                        help="total req/s for the added-latency part; 0 skips it")
    parser.add_argument("--rate-duration", type=int, default=10, help="seconds of fixed-rate load per path")
    parser.add_argument("--mlchaos", default=str(REPO / ".venv" / "bin" / "mlchaos"),
                        help="command that runs mlchaos (split like a shell would)")
    parser.add_argument("--out", type=Path, help="also write the Markdown report to this file")
    parser.add_argument("--json", type=Path, help="write the raw figures as JSON to this file")
    parser.add_argument("--check", action="store_true",
                        help=f"exit 1 unless pass-through >= {MIN_PASSTHROUGH_VS_NGINX:.0%} of nginx req/s, "
                             f"pass-through p99 <= {MAX_P99_VS_NGINX:g}x nginx p99, experiment >= "
                             f"{MIN_EXPERIMENT_VS_PASSTHROUGH:.0%} of pass-through req/s, and no errors on "
                             "the mlchaos paths".replace("%", "%%"))
    parser.add_argument("--logs", type=Path,
                        help="copy every server's config and log here before the temporary directory goes")
    parser.add_argument("--no-install", action="store_true",
                        help="fail instead of apt-get installing missing nginx/haproxy/wrk")
    args = parser.parse_args(argv)
    if args.rounds < 1 or args.duration <= 0 or args.warmup < 0 or args.rate < 0 or args.rate_duration <= 0:
        parser.error("--rounds must be >= 1, --duration/--rate-duration > 0, --warmup/--rate >= 0")
    if args.duration > 600 or args.rate_duration > 600 or args.rounds > 50:
        parser.error("keep it bounded: --duration/--rate-duration <= 600 s, --rounds <= 50")
    return args


def mlchaos_version(mlchaos: list[str]) -> str:
    try:
        done = subprocess.run([*mlchaos, "--version"], capture_output=True, text=True, timeout=20,
                              stdin=subprocess.DEVNULL)
    except (OSError, subprocess.TimeoutExpired):
        return "unknown"
    first = (done.stdout.strip() or done.stderr.strip()).splitlines()[:1]
    # "mlchaos 0.1.0 (data plane: compiled)" -> "0.1.0 (data plane: compiled)"
    version = first[0].partition(" ")[2] if done.returncode == 0 and first else ""
    return version or "unknown"


def collect_meta(bins: dict[str, str], mlchaos: list[str], paths: Sequence[str]) -> dict[str, Any]:
    versions = {
        "nginx": tool_version([bins["nginx"], "-v"], r"nginx/(\S+)"),
        "haproxy": tool_version([bins["haproxy"], "-v"], r"version (\S+)") if "haproxy" in bins else "–",
        "wrk": tool_version([bins["wrk"], "-v"], r"wrk (?:debian/)?(\S+)"),
        "python": platform.python_version(),
        "mlchaos": mlchaos_version(mlchaos) if any(p in MLCHAOS_PATHS for p in paths) else "–",
    }
    return {
        "date_utc": datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%S UTC"),
        "cores": len(os.sched_getaffinity(0)),  # what nproc prints
        "kernel": f"{platform.system()} {platform.release()}",
        "versions": versions,
        "paths": list(paths),
    }


def start_proxy(ctx: Context, path: str, upstream_port: int) -> Server:
    if path == "nginx":
        return start_nginx(ctx, "nginx", HERE / "nginx-proxy.conf.tmpl", {"UPSTREAM_PORT": str(upstream_port)})
    if path == "haproxy":
        return start_haproxy(ctx, upstream_port)
    return start_mlchaos(ctx, path, upstream_port)


def merge_experiments(total: list[dict[str, Any]], found: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per-experiment counts summed over the processes of the rounds (each round starts fresh ones)."""
    by_name = {e.get("name"): e for e in total}
    for exp in found:
        acc = by_name.get(exp.get("name"))
        if acc is None:
            by_name[exp.get("name")] = {**exp, "requests": dict(exp.get("requests") or {}),
                                        "errors": dict(exp.get("errors") or {})}
            continue
        acc["state"] = exp.get("state")
        acc["faults_injected"] = (acc.get("faults_injected") or 0) + (exp.get("faults_injected") or 0)
        for key in ("requests", "errors"):
            for cohort, n in (exp.get(key) or {}).items():
                acc[key][cohort] = acc[key].get(cohort, 0) + n
    return list(by_name.values())


def benchmark(args: argparse.Namespace, report: Report, ctx: Context, paths: Sequence[str]) -> None:
    upstream = start_nginx(ctx, "direct", HERE / "nginx-upstream.conf.tmpl", {})
    wait_ready(upstream)
    log(f"direct: ready on 127.0.0.1:{upstream.port}")
    servers = {"direct": upstream}
    report.sent["direct"] = 1  # wait_ready's check request
    proxies = [p for p in paths if p != "direct"]

    def start_round(rnd: int) -> None:
        # A fresh process per proxy and round: on this shared machine one process can run 20% faster or
        # slower than the next for its whole life (where it lands), so medians over one process per path
        # would carry that luck into the ratios.
        for path in proxies:
            old = servers.pop(path, None)
            if old is not None:
                if path == "experiment":
                    report.experiments_after = merge_experiments(report.experiments_after,
                                                                 admin_experiments(old, ctx.admin_token))
                if path in BOOKKEEPING_PATHS:
                    require_bookkeeping(old, ctx.admin_token)
                ctx.procs.stop(old.proc)
            server = servers[path] = start_proxy(ctx, path, upstream.port)
            wait_ready(server)
            report.sent[path] = report.sent.get(path, 0) + 1
            if server.admin_port is not None:
                require_experiments(server, ctx.admin_token)
            if rnd == 0:
                log(f"{path}: ready on 127.0.0.1:{server.port}")

    for rnd in range(args.rounds):
        if rnd == 0 or not args.same_process:
            start_round(rnd)
        results: dict[str, WrkResult] = {}
        report.rounds.append(results)
        for path in paths:
            url = servers[path].url
            if args.warmup > 0:
                report.sent[path] += run_wrk(ctx, url, args.warmup).requests
            res = run_wrk(ctx, url, args.duration)
            report.sent[path] += res.requests
            results[path] = res
            log(f"round {rnd + 1}/{args.rounds} {path}: {res.rps:,.0f} req/s, p50 {res.p50_ms:.2f} ms, "
                f"p99 {res.p99_ms:.2f} ms, errors {res.errors}")
            if servers[path].proc.poll() is not None:
                raise BenchError(f"{path} exited during the run:\n{log_tail(servers[path].log_file)}")

    if args.rate:
        for path in paths:
            res_rate = run_rate(ctx, servers[path].url, args.rate, args.rate_duration)
            report.rate[path] = res_rate
            report.sent[path] += res_rate.requests
            log(f"rate {args.rate} {path}: {res_rate.achieved_rps:,.0f} req/s, p50 {res_rate.p50_ms:.2f} ms, "
                f"p99 {res_rate.p99_ms:.2f} ms, errors {res_rate.errors}")

    if "experiment" in servers:
        report.experiments_after = merge_experiments(report.experiments_after,
                                                     admin_experiments(servers["experiment"], ctx.admin_token))
    for path in BOOKKEEPING_PATHS:
        if path in servers:
            require_bookkeeping(servers[path], ctx.admin_token)


@contextlib.contextmanager
def interrupts_raise() -> Iterator[None]:
    """SIGTERM and SIGHUP unwind like Ctrl-C, so every finally: block (process cleanup) runs."""
    old = {sig: signal.signal(sig, _raise_interrupt) for sig in (signal.SIGTERM, signal.SIGHUP)}
    try:
        yield
    finally:
        for sig, handler in old.items():
            signal.signal(sig, handler)


def keep_logs(tmp: Path, dest: Path) -> None:
    dest.mkdir(parents=True, exist_ok=True)
    for item in tmp.iterdir():
        if item.is_file() and item.suffix in {".log", ".conf", ".cfg"}:
            shutil.copy2(item, dest / item.name)
    log(f"server configs and logs copied to {dest}")


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    paths: list[str] = args.only
    mlchaos = shlex.split(args.mlchaos)
    needed = ["nginx", "wrk"]
    if "haproxy" in paths:
        needed.append("haproxy")
    with interrupts_raise():
        procs = Processes()
        tmp = Path(tempfile.mkdtemp(prefix="mlchaos-bench-"))
        tmp.chmod(0o755)  # nginx workers run as nobody when started by root
        try:
            bins = ensure_tools(needed, install=not args.no_install)
            if any(p in MLCHAOS_PATHS for p in paths):
                exe = shutil.which(mlchaos[0]) if mlchaos else None
                if exe is None:
                    raise BenchError(f"mlchaos command not found: {args.mlchaos!r} (set --mlchaos, or "
                                     "--only direct,nginx,haproxy)")
            report = Report(meta=collect_meta(bins, mlchaos, paths))
            ctx = Context(tmp, procs, Ports(), bins, mlchaos, secrets.token_hex(16))
            benchmark(args, report, ctx, paths)
        except BenchError as exc:
            log(f"error: {exc}")
            return 2
        except KeyboardInterrupt:
            log("interrupted; stopping every process started")
            return 130
        finally:
            # A second Ctrl-C must not cut the cleanup short.
            old_int = signal.signal(signal.SIGINT, signal.SIG_IGN)
            try:
                procs.stop_all()
                if args.logs:
                    keep_logs(tmp, args.logs)
                shutil.rmtree(tmp, ignore_errors=True)
            finally:
                signal.signal(signal.SIGINT, old_int)

    if args.check:
        report.checks = evaluate_checks(report)
    text = markdown(report, args)
    print(text, end="")
    if args.out:
        args.out.write_text(text)
    if args.json:
        args.json.write_text(json.dumps(report.to_json(), indent=2) + "\n")
    failed = [c for c in report.checks if not c["ok"]]
    for check in failed:
        log(f"check failed: {check['bar']}: {check['detail']}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
