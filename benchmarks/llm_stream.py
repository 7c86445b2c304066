#!/usr/bin/env python3
"""What mlchaos adds to a streamed LLM answer, next to nginx with ``proxy_buffering off`` and direct.

One run starts a streaming "model" (this script with ``--serve``: an OpenAI-style server-sent-event stream,
``--chunks`` chunks ``--gap-ms`` apart after ``--prefill-ms``, each chunk carrying the CLOCK_MONOTONIC time it
was written), and in front of it nginx (1 worker, ``proxy_buffering off``, a keep-alive pool), mlchaos in
pass-through (no experiment), and mlchaos with an LLM experiment whose control cohort every request is forced
into (the stream meter on, no fault: what observing a cohort costs). A client on one keep-alive connection per
path streams ``--requests`` answers per path per round, paths interleaved and rotated over ``--rounds``
rounds, and records

- time to first token: from writing the request to reading the first content chunk;
- chunk lag: each chunk's arrival minus the time the model wrote it (one clock: CLOCK_MONOTONIC is
  system-wide on Linux).

It reports per path the p50 and p99 of both and what each adds to direct, and checks the targets of issue 20:
pass-through adds at most 0.3 ms to the time to first token at p50 and at most 0.2 ms to a chunk's lag at p99.

    python benchmarks/llm_stream.py --mlchaos .venv/bin/mlchaos               # the real measurement
    python benchmarks/llm_stream.py --rounds 1 --requests 10                  # a quick check that it runs

Standard library only (nginx from Debian: installed with --install). Every server runs in its own process
group and is killed on exit; all traffic goes to 127.0.0.1. Exit 0 when the targets hold, 1 when not, 2 on an
error.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(HERE))
from procs import HOST, NGINX_HEAD, free_port, quantile, wait_port  # noqa: E402 - shared with the other scripts

PATHS = ("direct", "nginx", "passthrough", "control")
TOKEN = "bench-llm-override"
MAX_TTFT_P50_ADDED_MS = 0.3
MAX_CHUNK_P99_ADDED_MS = 0.2

NGINX_CONF = NGINX_HEAD + """    keepalive_requests 1000000;
    upstream model { server 127.0.0.1:@UPSTREAM@; keepalive 16; }
    server {
        listen 127.0.0.1:@PORT@;
        location / {
            proxy_pass http://model;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_buffering off;
        }
    }
}
"""

POLICY_PASSTHROUGH = "listen: 127.0.0.1:0\nupstream: http://127.0.0.1:1\n"
POLICY_CONTROL = """listen: 127.0.0.1:0
upstream: http://127.0.0.1:1
max_blast_radius: 10
cohort_override:
  enabled: true
  token_env: MLCHAOS_BENCH_TOKEN
experiments:
  - name: llm-bench
    chaos: 5
    control: 5
    payload: {format: openai}
    kill_switch: {enabled: false}
    faults:
      - type: first_token_delay
        duration: 1s
"""


def log(msg: str) -> None:
    print(f"[llm_stream] {msg}", file=sys.stderr, flush=True)


# --------------------------------------------------------------------------- the streaming model


async def _serve_one(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, chunks: int, gap: float,
                     prefill: float) -> None:
    try:
        while True:
            head = await reader.readuntil(b"\r\n\r\n")
            length = 0
            for line in head.split(b"\r\n"):
                if line.lower().startswith(b"content-length:"):
                    length = int(line.split(b":", 1)[1])
            if length:
                await reader.readexactly(length)
            writer.write(b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n")
            await asyncio.sleep(prefill)
            for i in range(chunks):
                if i:
                    await asyncio.sleep(gap)
                event = (b'data: {"t":%d,"object":"chat.completion.chunk","choices":[{"index":0,"delta":'
                         b'{"content":" w%d"},"finish_reason":null}]}\n\n' % (time.monotonic_ns(), i))
                writer.write(b"%x\r\n%s\r\n" % (len(event), event))
            tail = (b'data: {"t":0,"object":"chat.completion.chunk","choices":[{"index":0,"delta":{},'
                    b'"finish_reason":"length"}]}\n\ndata: [DONE]\n\n')
            writer.write(b"%x\r\n%s\r\n0\r\n\r\n" % (len(tail), tail))
            await writer.drain()
    except (asyncio.IncompleteReadError, ConnectionError):
        pass
    finally:
        writer.close()


def serve(port: int, chunks: int, gap: float, prefill: float) -> None:
    async def main() -> None:
        server = await asyncio.start_server(lambda r, w: _serve_one(r, w, chunks, gap, prefill), HOST, port)
        async with server:
            await server.serve_forever()

    asyncio.run(main())


# --------------------------------------------------------------------------- the client


@dataclass
class Samples:
    ttft_ms: list[float] = field(default_factory=list)
    lag_ms: list[float] = field(default_factory=list)
    errors: int = 0


class Client:
    """One keep-alive connection; streams answers and times each chunk as it is read."""

    def __init__(self, port: int, headers: dict[str, str]) -> None:
        self.port = port
        body = b'{"model":"m","messages":[{"role":"user","content":"hi"}],"stream":true}'
        extra = "".join(f"{k}: {v}\r\n" for k, v in headers.items())
        self.request = (f"POST /v1/chat/completions HTTP/1.1\r\nhost: {HOST}\r\ncontent-type: application/json\r\n"
                        f"content-length: {len(body)}\r\n{extra}\r\n").encode() + body
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def one(self, out: Samples, chunks: int) -> None:
        if self.writer is None:
            self.reader, self.writer = await asyncio.open_connection(HOST, self.port)
        reader, writer = self.reader, self.writer
        assert reader is not None
        t0 = time.monotonic_ns()
        writer.write(self.request)
        head = await reader.readuntil(b"\r\n\r\n")
        if not head.startswith(b"HTTP/1.1 200") or b"chunked" not in head.lower():
            raise RuntimeError(f"unexpected answer head: {head[:200]!r}")
        buf, seen, first = b"", 0, True
        while True:
            size = int((await reader.readuntil(b"\r\n")).strip(), 16)
            if size == 0:
                await reader.readuntil(b"\r\n")
                break
            data = (await reader.readexactly(size + 2))[:-2]
            now = time.monotonic_ns()
            buf += data
            while b"\n\n" in buf:
                event, buf = buf.split(b"\n\n", 1)
                if not event.startswith(b'data: {"t":') or event.startswith(b'data: {"t":0,'):
                    continue
                sent = int(event[11:event.index(b",", 11)])
                out.lag_ms.append((now - sent) / 1e6)
                if first:
                    out.ttft_ms.append((now - t0) / 1e6)
                    first = False
                seen += 1
        if seen != chunks:
            raise RuntimeError(f"{seen} chunks instead of {chunks}")

    async def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            with contextlib.suppress(ConnectionError):
                await self.writer.wait_closed()


async def measure(ports: dict[str, int], rounds: int, requests: int, chunks: int) -> dict[str, Samples]:
    samples = {p: Samples() for p in ports}
    headers = {p: ({"x-mlchaos-cohort": "control", "x-mlchaos-token": TOKEN} if p == "control" else {})
               for p in ports}
    clients = {p: Client(port, headers[p]) for p, port in ports.items()}
    order = list(ports)
    try:
        for p in order:  # warm-up: connections, pools, code paths
            for _ in range(3):
                await clients[p].one(Samples(), chunks)
        for r in range(rounds):
            rotated = order[r % len(order):] + order[:r % len(order)]
            for p in rotated:
                for _ in range(requests):
                    try:
                        await clients[p].one(samples[p], chunks)
                    except (RuntimeError, ConnectionError, asyncio.IncompleteReadError) as exc:
                        samples[p].errors += 1
                        log(f"{p}: {exc}")
                        await clients[p].close()
                        clients[p] = Client(ports[p], headers[p])
            log(f"round {r + 1}/{rounds} done")
    finally:
        for c in clients.values():
            await c.close()
    return samples


# --------------------------------------------------------------------------- processes








def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--mlchaos", default=None,
                    help="the mlchaos command (default: `python -m proxy.cli` of this checkout)")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--requests", type=int, default=40, help="streamed answers per path per round")
    ap.add_argument("--chunks", type=int, default=32)
    ap.add_argument("--gap-ms", type=float, default=5.0)
    ap.add_argument("--prefill-ms", type=float, default=2.0)
    ap.add_argument("--paths", default=",".join(PATHS), help=f"a subset of {','.join(PATHS)}")
    ap.add_argument("--install", action="store_true", help="apt-get install nginx when it is missing")
    ap.add_argument("--json", metavar="FILE", help="also write the samples' summary as JSON")
    ap.add_argument("--serve", type=int, metavar="PORT", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.serve:
        serve(args.serve, args.chunks, args.gap_ms / 1000, args.prefill_ms / 1000)
        return 0
    paths = [p for p in args.paths.split(",") if p]
    if any(p not in PATHS for p in paths) or "direct" not in paths:
        ap.error(f"--paths: a subset of {','.join(PATHS)} that includes direct")
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
    tmp = Path(tempfile.mkdtemp(prefix="mlchaos-llm-bench-"))

    def spawn(cmd: list[str], name: str, env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
        with open(tmp / f"{name}.log", "wb") as out:
            proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                                    start_new_session=True, cwd=REPO, env=env)
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

    try:
        ports = {"direct": free_port()}
        model = spawn([sys.executable, str(Path(__file__).resolve()), "--serve", str(ports["direct"]),
                       "--chunks", str(args.chunks), "--gap-ms", str(args.gap_ms),
                       "--prefill-ms", str(args.prefill_ms)], "model")
        wait_port(ports["direct"], model, "the model")
        up = f"http://{HOST}:{ports['direct']}"
        if "nginx" in paths:
            ports["nginx"] = free_port()
            conf = tmp / "nginx.conf"
            conf.write_text(NGINX_CONF.replace("@TMP@", str(tmp)).replace("@PORT@", str(ports["nginx"]))
                            .replace("@UPSTREAM@", str(ports["direct"])))
            assert nginx is not None
            wait_port(ports["nginx"], spawn([nginx, "-p", f"{tmp}/", "-c", str(conf), "-e",
                                             str(tmp / "nginx-early.log")], "nginx"), "nginx")
        for path, policy in (("passthrough", POLICY_PASSTHROUGH), ("control", POLICY_CONTROL)):
            if path not in paths:
                continue
            ports[path] = free_port()
            (tmp / f"{path}.yaml").write_text(policy)
            cmd = [*mlchaos, "run", "--config", str(tmp / f"{path}.yaml"), "--listen", f"{HOST}:{ports[path]}",
                   "--upstream", up, "--admin", f"{HOST}:{free_port()}"]
            wait_port(ports[path], spawn(cmd, path, {**os.environ, "MLCHAOS_BENCH_TOKEN": TOKEN}), f"mlchaos {path}")
        log(f"paths {', '.join(ports)}: {args.rounds} rounds x {args.requests} streams x {args.chunks} chunks "
            f"{args.gap_ms:g} ms apart (logs in {tmp})")
        samples = asyncio.run(measure(ports, args.rounds, args.requests, args.chunks))
    except (RuntimeError, OSError, subprocess.CalledProcessError) as exc:
        log(f"error: {exc}")
        for f in sorted(tmp.glob("*.log")):
            log(f"--- {f.name}:\n{f.read_text(errors='replace')[-2000:]}")
        return 2
    finally:
        stop_all()
        shutil.rmtree(tmp, ignore_errors=True)
    return report(samples, args)


def report(samples: dict[str, Samples], args: argparse.Namespace) -> int:
    direct = samples["direct"]
    base_ttft, base_lag = quantile(direct.ttft_ms, 0.5), quantile(direct.lag_ms, 0.99)
    rows: dict[str, dict[str, Any]] = {}
    print("| path | streams | TTFT p50 | TTFT p99 | chunk lag p50 | chunk lag p99 | TTFT p50 added | "
          "chunk p99 added | errors |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for path, s in samples.items():
        row = {"streams": len(s.ttft_ms), "ttft_p50_ms": quantile(s.ttft_ms, 0.5),
               "ttft_p99_ms": quantile(s.ttft_ms, 0.99), "lag_p50_ms": quantile(s.lag_ms, 0.5),
               "lag_p99_ms": quantile(s.lag_ms, 0.99), "errors": s.errors}
        row["ttft_p50_added_ms"] = row["ttft_p50_ms"] - base_ttft
        row["lag_p99_added_ms"] = row["lag_p99_ms"] - base_lag
        rows[path] = row
        print(f"| {path} | {row['streams']} | {row['ttft_p50_ms']:.3f} ms | {row['ttft_p99_ms']:.3f} ms | "
              f"{row['lag_p50_ms']:.3f} ms | {row['lag_p99_ms']:.3f} ms | {row['ttft_p50_added_ms']:+.3f} ms | "
              f"{row['lag_p99_added_ms']:+.3f} ms | {s.errors} |")
    ok = True
    if "passthrough" in rows:
        p = rows["passthrough"]
        checks = [(f"pass-through adds <= {MAX_TTFT_P50_ADDED_MS} ms to TTFT at p50",
                   p["ttft_p50_added_ms"] <= MAX_TTFT_P50_ADDED_MS, f"{p['ttft_p50_added_ms']:+.3f} ms"),
                  (f"pass-through adds <= {MAX_CHUNK_P99_ADDED_MS} ms to a chunk at p99",
                   p["lag_p99_added_ms"] <= MAX_CHUNK_P99_ADDED_MS, f"{p['lag_p99_added_ms']:+.3f} ms"),
                  ("no errors", all(r["errors"] == 0 for r in rows.values()), "")]
        print()
        for name, passed, value in checks:
            print(f"- {'PASS' if passed else 'FAIL'}: {name} {value}")
            ok = ok and passed
    if args.json:
        Path(args.json).write_text(json.dumps({"args": vars(args), "paths": rows}, indent=2))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
