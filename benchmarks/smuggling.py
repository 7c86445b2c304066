#!/usr/bin/env python3
"""Request-smuggling corpus: each case replayed through nginx, HAProxy and mlchaos to a raw upstream that
records the exact bytes each proxy forwards.

The cases come from RFC 9112 section 6 (message body length) and 2.2/3 (message parsing, request line) and
from published desync research: J. Kettle, "HTTP Desync Attacks" (PortSwigger, 2019) for CL.TE, TE.CL and the
Transfer-Encoding obfuscations; R. Heinemeyer and N. Klein, "HTTP Request Smuggling in 2020" and the
"HTTP Garden" differential corpus (Kettle/Narayan 2024) for chunk-size, chunk-extension, bare-LF and
obs-fold cases. Each case says what mlchaos must do with it:

- ``refuse``: answer 4xx and forward nothing;
- ``forward``: forward it (a well-formed request, or one whose oddity mlchaos removes on the way; ``never``
  lists bytes that must not reach the upstream then);
- ``hold``: forward nothing and not answer yet (an incomplete message: the client still owes bytes).

Standalone: ``python benchmarks/smuggling.py [--results benchmarks/RESULTS.md]`` prints the table (and puts it
in RESULTS.md under "Request-smuggling corpus"). tests/dataplane/test_smuggling.py runs the same replay and
asserts the rules. Every process it starts runs in its own process group and is killed at the end; all traffic
stays on 127.0.0.1.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import textwrap
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

HOST = "127.0.0.1"
# How long a client waits for an answer: a proxy still waiting for bytes the case never sends shows as
# "no answer" (nginx's own body timeout is 60 s).
ANSWER_WAIT = 1.0
# The upstream answers once a request head arrived and then this long passed without more bytes.
UPSTREAM_QUIET = 0.1
# Forwarded bytes are counted once the upstream has been silent this long after the client is done.
SETTLE = 0.2
READY_TIMEOUT = 10.0

H = b"Host: t\r\n"


@dataclass(frozen=True)
class Case:
    name: str
    data: bytes
    expect: str  # refuse | forward | hold
    source: str
    never: tuple[bytes, ...] = ()


def _post(headers: bytes, body: bytes = b"", version: bytes = b"1.1") -> bytes:
    return b"POST /s HTTP/" + version + b"\r\n" + H + headers + b"\r\n" + body


_CHUNKED = b"Transfer-Encoding: chunked\r\n"
_SMUGGLED = b"GET /smuggled HTTP/1.1\r\nHost: t\r\n\r\n"

CASES: tuple[Case, ...] = (
    # --- Transfer-Encoding and Content-Length together (RFC 9112 6.1, 6.3; Kettle 2019)
    Case("cl-te", _post(b"Content-Length: 6\r\n" + _CHUNKED, b"0\r\n\r\nG"), "refuse", "CL.TE (Kettle 2019)"),
    Case("te-cl", _post(_CHUNKED + b"Content-Length: 4\r\n", b"5c\r\nGPOST / HTTP/1.1\r\n\r\n0\r\n\r\n"), "refuse",
         "TE.CL (Kettle 2019)"),
    Case("cl-te-smuggled-get", _post(b"Content-Length: 44\r\n" + _CHUNKED, b"0\r\n\r\n" + _SMUGGLED), "refuse",
         "CL.TE with a whole request behind"),
    # --- Transfer-Encoding obfuscations (TE.TE, Kettle 2019) and codings other than chunked (RFC 9112 6.1)
    Case("te-xchunked", _post(b"Transfer-Encoding: xchunked\r\n", b"0\r\n\r\n"), "refuse", "TE.TE: unknown coding"),
    Case("te-space-before-colon", _post(b"Transfer-Encoding : chunked\r\n", b"0\r\n\r\n"), "refuse",
         "TE.TE: whitespace before the colon (RFC 9112 5.1)"),
    Case("te-duplicate", _post(_CHUNKED + b"Transfer-Encoding: x\r\n", b"0\r\n\r\n"), "refuse",
         "TE.TE: a second Transfer-Encoding"),
    Case("te-duplicate-chunked", _post(_CHUNKED + _CHUNKED, b"0\r\n\r\n"), "refuse",
         "TE.TE: chunked twice (chunked applied twice, RFC 9112 6.1)"),
    Case("te-list-gzip-chunked", _post(b"Transfer-Encoding: gzip, chunked\r\n", b"0\r\n\r\n"), "refuse",
         "a coding list: only chunked is accepted"),
    Case("te-list-chunked-gzip", _post(b"Transfer-Encoding: chunked, gzip\r\n", b"0\r\n\r\n"), "refuse",
         "chunked not final (RFC 9112 6.3: 400)"),
    Case("te-list-leading-comma", _post(b"Transfer-Encoding: ,chunked\r\n", b"0\r\n\r\n"), "refuse",
         "empty list element"),
    Case("te-identity", _post(b"Transfer-Encoding: identity\r\n", b""), "refuse", "identity (removed in RFC 7230)"),
    Case("te-quoted", _post(b'Transfer-Encoding: "chunked"\r\n', b"0\r\n\r\n"), "refuse", "TE.TE: quoted value"),
    Case("te-empty", _post(b"Transfer-Encoding: \r\nContent-Length: 3\r\n", b"abc"), "refuse", "empty value"),
    Case("te-vertical-tab", _post(b"Transfer-Encoding:\x0bchunked\r\n", b"0\r\n\r\n"), "refuse",
         "TE.TE: VT before the value"),
    Case("te-form-feed", _post(b"Transfer-Encoding: chunked\x0c\r\n", b"0\r\n\r\n"), "refuse",
         "TE.TE: FF after the value"),
    Case("te-nbsp", _post(b"Transfer-Encoding: \xa0chunked\r\n", b"0\r\n\r\n"), "refuse",
         "TE.TE: non-ASCII space"),
    Case("te-trailing-tab", _post(b"Transfer-Encoding: chunked\t\r\n", b"0\r\n\r\n"), "refuse",
         "TE.TE: HTAB after the value"),
    Case("te-obs-fold", _post(b"Transfer-Encoding:\r\n chunked\r\n", b"0\r\n\r\n"), "refuse",
         "TE.TE: value on a folded line (obs-fold, RFC 9112 5.2)"),
    Case("te-folded-after-header", _post(b"X-Pad: x\r\n Transfer-Encoding: chunked\r\n", b"0\r\n\r\n"), "refuse",
         "TE.TE: header hidden in a continuation line"),
    Case("te-bare-lf-name", _post(b"Transfer-Encoding\n: chunked\r\n", b"0\r\n\r\n"), "refuse",
         "LF inside the field name"),
    Case("te-uppercase", _post(b"Transfer-Encoding: CHUNKED\r\n", b"3\r\nabc\r\n0\r\n\r\n"), "forward",
         "coding names are case-insensitive (RFC 9112 7)"),
    Case("te-trailing-space", _post(b"Transfer-Encoding: chunked \r\n", b"3\r\nabc\r\n0\r\n\r\n"), "forward",
         "trailing OWS is not part of the value (RFC 9110 5.5)"),
    Case("te-http10", _post(_CHUNKED, b"3\r\nabc\r\n0\r\n\r\n", b"1.0"), "refuse",
         "Transfer-Encoding in HTTP/1.0: faulty framing (RFC 9112 6.1)"),
    Case("te-http10-with-cl", _post(_CHUNKED + b"Content-Length: 5\r\n", b"0\r\n\r\n", b"1.0"), "refuse",
         "HTTP/1.0, TE and CL (RFC 9112 6.1)"),
    # --- Names that spell the framing headers another way (CGI-style servers fold "_" into "-")
    Case("te-underscore", _post(b"Transfer_Encoding: chunked\r\nContent-Length: 5\r\n", b"0\r\n\r\n"), "forward",
         "underscore in the name: dropped", (b"transfer_encoding",)),
    Case("te-double-dash", _post(b"Transfer--Encoding: chunked\r\nContent-Length: 5\r\n", b"0\r\n\r\n"), "forward",
         "repeated separator in the name: dropped", (b"transfer--encoding",)),
    Case("cl-underscore", _post(b"Content_Length: 5\r\nContent-Length: 3\r\n", b"abc"), "forward",
         "underscore in the name: dropped", (b"content_length",)),
    # --- Content-Length values (RFC 9112 6.3, RFC 9110 8.6)
    Case("cl-duplicate-different", _post(b"Content-Length: 3\r\nContent-Length: 4\r\n", b"abcd"), "refuse",
         "two different lengths"),
    Case("cl-duplicate-same", _post(b"Content-Length: 3\r\nContent-Length: 3\r\n", b"abc"), "refuse",
         "two equal lengths (RFC 9110 8.6 allows merging; refused as nginx does)"),
    Case("cl-list", _post(b"Content-Length: 3, 3\r\n", b"abc"), "refuse", "a list of lengths"),
    Case("cl-plus-sign", _post(b"Content-Length: +3\r\n", b"abc"), "refuse", "a sign"),
    Case("cl-negative", _post(b"Content-Length: -1\r\n", b""), "refuse", "a negative length"),
    Case("cl-hex", _post(b"Content-Length: 0x3\r\n", b"abc"), "refuse", "hexadecimal"),
    Case("cl-exponent", _post(b"Content-Length: 3e0\r\n", b"abc"), "refuse", "an exponent"),
    Case("cl-inner-space", _post(b"Content-Length: 1 2\r\n", b"abc"), "refuse", "whitespace inside"),
    Case("cl-nbsp", _post(b"Content-Length: \xa03\r\n", b"abc"), "refuse", "non-ASCII space"),
    Case("cl-overflow", _post(b"Content-Length: 99999999999999999999999\r\n", b"abc"), "refuse",
         "longer than 64 bits"),
    Case("cl-leading-zeros", _post(b"Content-Length: 003\r\n", b"abc"), "forward", "1*DIGIT allows zeros"),
    Case("cl-short-body", _post(b"Content-Length: 10\r\n", b"abc"), "hold", "body shorter than the length"),
    Case("cl-get-body-then-request", b"GET /a HTTP/1.1\r\n" + H + b"Content-Length: 5\r\n\r\nhello", "forward",
         "GET with a body: framed by its length, not a second request"),
    # --- Chunked bodies (RFC 9112 7.1)
    Case("chunk-size-overflow", _post(_CHUNKED, b"fffffffffffffffff1\r\nabc\r\n0\r\n\r\n"), "refuse",
         "chunk size over 64 bits"),
    Case("chunk-size-negative", _post(_CHUNKED, b"-3\r\nabc\r\n0\r\n\r\n"), "refuse", "a sign"),
    Case("chunk-size-0x", _post(_CHUNKED, b"0x3\r\nabc\r\n0\r\n\r\n"), "refuse", "0x prefix"),
    Case("chunk-size-space", _post(_CHUNKED, b"3 ;a=b\r\nabc\r\n0\r\n\r\n"), "refuse",
         "whitespace before an extension (BWS)"),
    Case("chunk-ext", _post(_CHUNKED, b"3;a=b\r\nabc\r\n0\r\n\r\n"), "forward", "a chunk extension",
         (b";a=b",)),
    Case("chunk-ext-quoted", _post(_CHUNKED, b'3;a="b c"\r\nabc\r\n0\r\n\r\n'), "forward", "a quoted extension",
         (b'"b c"',)),
    Case("chunk-ext-bare-lf", _post(_CHUNKED, b"3;a\nb\r\nabc\r\n0\r\n\r\n"), "refuse",
         "LF inside an extension (HTTP Garden)"),
    Case("chunk-bare-lf", _post(_CHUNKED, b"3\nabc\n0\n\n"), "refuse", "LF-only chunk lines"),
    Case("chunk-data-overrun", _post(_CHUNKED, b"3\r\nabcX0\r\n\r\n"), "refuse", "data longer than its size"),
    Case("chunk-trailer-cl", _post(_CHUNKED, b"3\r\nabc\r\n0\r\nContent-Length: 5\r\n\r\n"), "refuse",
         "Content-Length in the trailer section"),
    Case("chunk-no-last", _post(_CHUNKED, b"3\r\nabc\r\n"), "hold", "no last chunk yet"),
    Case("chunk-smuggled-after-last", _post(_CHUNKED, b"0\r\n\r\n" + _SMUGGLED), "forward",
         "a pipelined request after the last chunk: its own request"),
    # --- Request line (RFC 9112 3)
    Case("http09", b"GET /\r\n\r\n", "refuse", "HTTP/0.9 line, no version"),
    Case("version-0.9", b"GET / HTTP/0.9\r\n" + H + b"\r\n", "refuse", "version 0.9"),
    Case("version-1.2", b"GET / HTTP/1.2\r\n" + H + b"\r\n", "refuse", "version 1.2"),
    Case("version-2.0", b"GET / HTTP/2.0\r\n" + H + b"\r\n", "refuse", "version 2.0 over HTTP/1"),
    Case("version-lowercase", b"GET / http/1.1\r\n" + H + b"\r\n", "refuse", "lower-case protocol name"),
    Case("rtsp-line", b"GET / RTSP/1.0\r\n" + H + b"\r\n", "refuse", "another protocol's line"),
    Case("space-in-target", b"GET /a b HTTP/1.1\r\n" + H + b"\r\n", "refuse", "whitespace in the target"),
    Case("absolute-form", b"GET http://other.example/x HTTP/1.1\r\nHost: t\r\n\r\n", "forward",
         "absolute-form: its authority stands for Host (RFC 9112 3.2.2)", (b"http://other.example",)),
    Case("absolute-form-userinfo", b"GET http://u@other.example/x HTTP/1.1\r\n" + H + b"\r\n", "refuse",
         "userinfo in the target (RFC 9110 4.2.4)"),
    Case("connect", b"CONNECT other.example:443 HTTP/1.1\r\nHost: other.example:443\r\n\r\n", "refuse",
         "not a forward proxy"),
    # --- Field syntax (RFC 9112 2.2, 5)
    Case("obs-fold", b"GET / HTTP/1.1\r\n" + H + b"X-A: a\r\n b\r\n\r\n", "refuse", "obs-fold (RFC 9112 5.2)"),
    Case("bare-lf-lines", b"GET / HTTP/1.1\nHost: t\n\n", "refuse", "LF-only line ends (RFC 9112 2.2)"),
    Case("bare-cr", b"GET / HTTP/1.1\r\n" + H + b"X-A: a\rb\r\n\r\n", "refuse", "a bare CR in a value"),
    Case("nul-in-value", b"GET / HTTP/1.1\r\n" + H + b"X-A: a\x00b\r\n\r\n", "refuse", "NUL in a value"),
    Case("space-in-name", b"GET / HTTP/1.1\r\n" + H + b"X A: b\r\n\r\n", "refuse", "whitespace in a name"),
    Case("first-header-indented", b"GET / HTTP/1.1\r\n Host: t\r\n\r\n", "refuse",
         "whitespace before the first field line (RFC 9112 2.2)"),
    Case("host-duplicate", b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", "refuse",
         "two Host lines (RFC 9112 3.2)"),
    Case("host-missing", b"GET / HTTP/1.1\r\n\r\n", "refuse", "HTTP/1.1 without Host (RFC 9112 3.2)"),
    Case("plain-get", b"GET /ok HTTP/1.1\r\n" + H + b"\r\n", "forward", "control: a plain request"),
    Case("plain-chunked", _post(_CHUNKED, b"3\r\nabc\r\n0\r\n\r\n"), "forward", "control: a chunked body"),
)


# --------------------------------------------------------------------------- the recording upstream


class Recorder:
    """A raw TCP upstream: records every byte a proxy sends; answers 200 (Connection: close) once a request
    head arrived and the proxy then went quiet for UPSTREAM_QUIET."""

    def __init__(self) -> None:
        self.data = bytearray()
        self.last = 0.0
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self.port = 0

    async def start(self) -> Recorder:
        self._server = await asyncio.start_server(self._serve, HOST, 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        loop = asyncio.get_running_loop()
        seen = b""
        answered = False
        try:
            while True:
                wait = UPSTREAM_QUIET if b"\r\n\r\n" in seen and not answered else 5.0
                try:
                    chunk = await asyncio.wait_for(reader.read(65536), wait)
                except TimeoutError:
                    if answered or b"\r\n\r\n" not in seen:
                        return
                    writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok")
                    answered = True
                    continue
                if not chunk:
                    return
                self.data += chunk
                self.last = loop.time()
                seen += chunk
        except (ConnectionError, OSError):
            pass
        finally:
            writer.close()

    async def settle(self, since: float) -> None:
        """Until nothing arrived for SETTLE seconds (at most 2 s)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 2.0
        while loop.time() < deadline:
            quiet_from = max(self.last, since)
            if loop.time() - quiet_from >= SETTLE:
                return
            await asyncio.sleep(0.02)

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._server.wait_closed(), 1.0)


# --------------------------------------------------------------------------- one replay


@dataclass
class Outcome:
    status: str  # the first response's status code, "closed" or "no answer"
    forwarded: bytes

    def cell(self) -> str:
        if not self.forwarded:
            return self.status
        return f"fwd {len(self.forwarded)} B ({self.status})"


async def replay(port: int, recorder: Recorder, data: bytes) -> Outcome:
    loop = asyncio.get_running_loop()
    mark = len(recorder.data)
    reader, writer = await asyncio.open_connection(HOST, port)
    status = "no answer"
    try:
        writer.write(data)
        await writer.drain()
        head = await asyncio.wait_for(reader.readuntil(b"\r\n"), ANSWER_WAIT)
        parts = head.split(b" ", 2)
        status = parts[1].decode("latin-1") if len(parts) > 1 else "?"
    except TimeoutError:  # before OSError, its base class
        pass
    except asyncio.IncompleteReadError as exc:
        status = "closed" if not exc.partial else "?"
    except (ConnectionError, OSError):
        status = "closed"
    finally:
        writer.close()
        with contextlib.suppress(Exception):
            await writer.wait_closed()
    await recorder.settle(loop.time())
    return Outcome(status, bytes(recorder.data[mark:]))


async def replay_all(port: int, recorder: Recorder, cases: tuple[Case, ...] = CASES,
                     each: Callable[[Case], Awaitable[None]] | None = None) -> dict[str, Outcome]:
    """Every case, one at a time on a fresh connection; ``each`` runs after every case (the metric checks)."""
    out = {}
    for case in cases:
        out[case.name] = await replay(port, recorder, case.data)
        if each is not None:
            await each(case)
    return out


# --------------------------------------------------------------------------- nginx and HAProxy

NGINX_CONF = """\
daemon off;
master_process off;
worker_processes 1;
pid {tmp}/nginx.pid;
error_log {tmp}/nginx-error.log info;
events {{ worker_connections 256; }}
http {{
    access_log off;
    client_body_temp_path {tmp}/body;
    proxy_temp_path {tmp}/proxy;
    fastcgi_temp_path {tmp}/fastcgi;
    uwsgi_temp_path {tmp}/uwsgi;
    scgi_temp_path {tmp}/scgi;
    # Defaults otherwise: ignore_invalid_headers on, underscores_in_headers off, proxy_request_buffering on.
    upstream model {{ server {host}:{upstream}; keepalive 8; }}
    server {{
        listen {host}:{port};
        location / {{
            proxy_pass http://model;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
        }}
    }}
}}
"""

HAPROXY_CFG = """\
global
    maxconn 256
defaults
    mode http
    timeout connect 2s
    timeout client 10s
    timeout server 10s
    timeout http-request 10s
frontend corpus
    bind {host}:{port}
    default_backend model
backend model
    server model {host}:{upstream}
"""


def find_bin(name: str) -> str | None:
    found = shutil.which(name)
    if found:
        return found
    for folder in ("/usr/sbin", "/usr/bin", "/sbin", "/usr/local/sbin", "/usr/local/bin"):
        candidate = Path(folder) / name
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return str(candidate)
    return None


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        port: int = s.getsockname()[1]
    return port


async def wait_listening(port: int, proc: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + READY_TIMEOUT
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{proc.args[0]} exited {proc.returncode}: {log.read_text(errors='replace')[-2000:]}")
        try:
            _, writer = await asyncio.open_connection(HOST, port)
        except OSError:
            await asyncio.sleep(0.05)
            continue
        writer.close()
        return
    raise RuntimeError(f"{proc.args[0]} did not listen on {port} within {READY_TIMEOUT:g}s")


def stop(proc: subprocess.Popen[bytes]) -> None:
    """SIGTERM the process group this harness started, SIGKILL it if it lingers."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        if proc.poll() is not None and sig == signal.SIGKILL:
            break
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, sig)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=3)
            break


@contextlib.asynccontextmanager
async def reference_proxy(kind: str, binary: str, upstream: int, tmp: Path) -> AsyncIterator[int]:
    """nginx or HAProxy on a free port in front of ``upstream``; yields the port."""
    port = free_port()
    log = tmp / f"{kind}.log"
    if kind == "nginx":
        conf = tmp / "nginx.conf"
        conf.write_text(NGINX_CONF.format(tmp=tmp, host=HOST, port=port, upstream=upstream))
        cmd = [binary, "-p", str(tmp), "-c", str(conf)]
    else:
        conf = tmp / "haproxy.cfg"
        conf.write_text(HAPROXY_CFG.format(host=HOST, port=port, upstream=upstream))
        cmd = [binary, "-db", "-f", str(conf)]
    with log.open("wb") as out:
        proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                                start_new_session=True)
    try:
        await wait_listening(port, proc, log)
        yield port
    finally:
        stop(proc)


# --------------------------------------------------------------------------- the table


@dataclass
class Row:
    case: Case
    cells: dict[str, Outcome] = field(default_factory=dict)


COLUMNS = ("nginx", "HAProxy", "mlchaos")


def table(rows: list[Row]) -> str:
    lines = ["| case | source | nginx | HAProxy | mlchaos |", "|---|---|---|---|---|"]
    for row in rows:
        cells = " | ".join(row.cells[c].cell() if c in row.cells else "-" for c in COLUMNS)
        lines.append(f"| `{row.case.name}` | {row.case.source} | {cells} |")
    return "\n".join(lines)


def section(rows: list[Row], versions: dict[str, str]) -> str:
    date = datetime.now(UTC).strftime("%Y-%m-%d")
    refused = {c: sum(1 for r in rows if c in r.cells and not r.cells[c].forwarded) for c in COLUMNS}
    intro = (
        f"{len(rows)} cases (benchmarks/smuggling.py: RFC 9112 section 6 and published desync research) replayed"
        f" one per connection through each proxy to a raw upstream that records the bytes it receives"
        f" (tests/dataplane/test_smuggling.py asserts the rules). A cell is the status the client got (`closed`:"
        f" closed without an answer; `no answer`: still waiting for bytes after {ANSWER_WAIT:g} s) or `fwd N B`:"
        f" the upstream received N bytes. Forwarding nothing: nginx {refused['nginx']}, HAProxy"
        f" {refused['HAProxy']}, mlchaos {refused['mlchaos']}. mlchaos forwards nothing of any case nginx"
        f" forwards nothing of. Versions: {', '.join(f'{k} {v}' for k, v in versions.items())}."
    )
    return (f"## Request-smuggling corpus ({date}, nproc {os.cpu_count()})\n\n"
            + textwrap.fill(intro, 115, break_on_hyphens=False) + "\n\n" + table(rows) + "\n")


def versions(nginx: str | None, haproxy: str | None) -> dict[str, str]:
    out = {}
    if nginx:
        text = subprocess.run([nginx, "-v"], capture_output=True, text=True, timeout=10).stderr
        out["nginx"] = text.strip().rpartition("/")[2]
    if haproxy:
        text = subprocess.run([haproxy, "-v"], capture_output=True, text=True, timeout=10).stdout
        match = re.search(r"version (\S+)", text)
        out["HAProxy"] = match.group(1) if match else "?"
    return out


def update_results(path: Path, text: str) -> None:
    """Replace (or append) the "Request-smuggling corpus" section of RESULTS.md."""
    old = path.read_text()
    start = old.find("## Request-smuggling corpus")
    if start < 0:
        path.write_text(old.rstrip("\n") + "\n\n" + text)
        return
    end = old.find("\n## ", start + 3)
    path.write_text(old[:start] + text + (old[end + 1:] if end >= 0 else ""))


async def run(nginx: str, haproxy: str, mlchaos_port: int, mlchaos_recorder: Recorder, tmp: Path,
              each: Callable[[Case], Awaitable[None]] | None = None) -> list[Row]:
    """The corpus through nginx and HAProxy (started here) and an mlchaos already running on ``mlchaos_port``
    in front of ``mlchaos_recorder``, the three side by side."""
    recorders = {"nginx": await Recorder().start(), "HAProxy": await Recorder().start()}
    try:
        (tmp / "nginx").mkdir(exist_ok=True)
        (tmp / "haproxy").mkdir(exist_ok=True)
        async with reference_proxy("nginx", nginx, recorders["nginx"].port, tmp / "nginx") as nginx_port, \
                reference_proxy("haproxy", haproxy, recorders["HAProxy"].port, tmp / "haproxy") as haproxy_port:
            results = await asyncio.gather(
                replay_all(nginx_port, recorders["nginx"]),
                replay_all(haproxy_port, recorders["HAProxy"]),
                replay_all(mlchaos_port, mlchaos_recorder, each=each),
            )
    finally:
        for rec in recorders.values():
            await rec.close()
    return [Row(case, {col: res[case.name] for col, res in zip(COLUMNS, results, strict=True)}) for case in CASES]


async def _main(args: argparse.Namespace) -> int:
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from proxy.app import Sidecar
    from proxy.policy import compile_policy

    nginx, haproxy = find_bin("nginx"), find_bin("haproxy")
    if nginx is None or haproxy is None:
        print("nginx and haproxy are needed: apt-get install nginx haproxy", file=sys.stderr)
        return 2
    recorder = await Recorder().start()
    policy = compile_policy({"listen": f"{HOST}:0", "upstream": f"http://{HOST}:{recorder.port}",
                             "admin": {"listen": f"{HOST}:0"}})
    sidecar = Sidecar(policy, env={})
    await sidecar.start()
    try:
        with tempfile.TemporaryDirectory(prefix="mlchaos-smuggling-") as tmp:
            rows = await run(nginx, haproxy, sidecar.proxy_port, recorder, Path(tmp))
    finally:
        await sidecar.stop(drain=0.5)
        await recorder.close()
    text = section(rows, versions(nginx, haproxy))
    print(text)
    if args.results:
        update_results(Path(args.results), text)
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--results", help="also write the table into this RESULTS.md")
    return asyncio.run(_main(parser.parse_args()))


if __name__ == "__main__":
    sys.exit(main())
