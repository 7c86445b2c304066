"""What the benchmark scripts share for their processes and figures: loopback ports, waiting for a listener,
quantiles. A module beside the scripts, imported with benchmarks/ on sys.path (the scripts are not a package)."""

from __future__ import annotations

import contextlib
import socket
import subprocess
import time
from collections.abc import Sequence

HOST = "127.0.0.1"  # loopback only

# The start of an nginx config for a benchmark run in a temp directory (@TMP@): one worker in the foreground, its
# files under @TMP@, no access log. A script adds its http directives, upstream and server, and closes the block.
NGINX_HEAD = """
daemon off;
master_process on;
worker_processes 1;
pid @TMP@/nginx.pid;
error_log @TMP@/nginx-error.log warn;
events { worker_connections 1024; }
http {
    access_log off;
    client_body_temp_path @TMP@/body;
    proxy_temp_path @TMP@/proxy;
    fastcgi_temp_path @TMP@/fastcgi;
    uwsgi_temp_path @TMP@/uwsgi;
    scgi_temp_path @TMP@/scgi;
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        port: int = s.getsockname()[1]
        return port


def wait_port(port: int, proc: subprocess.Popen[bytes], what: str, timeout: float = 20.0) -> None:
    """Until ``port`` takes a connection; fails at once if ``proc`` exits, and after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{what} exited with {proc.returncode}")
        with contextlib.suppress(OSError), socket.create_connection((HOST, port), timeout=0.5):
            return
        time.sleep(0.05)
    raise RuntimeError(f"{what} did not listen on {port} within {timeout:g} s")


def quantile(values: Sequence[float], q: float) -> float:
    """The nearest-rank quantile; NaN for no values."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]
