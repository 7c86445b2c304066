"""Real data-feed peers for the tests, all on loopback: nginx serving files, moto's S3 server, an mlchaos sidecar
in front of each, and the real clients (pandas, boto3, s3fs) in their own process.

    peers_problem()                      # why the peers cannot run here, or None
    nginx = Nginx(root, workdir)         # nginx -p workdir serving root on a free port
    moto = Moto(workdir)                 # moto_server -H 127.0.0.1 -p PORT
    sidecar = Sidecar(upstream, experiments, workdir)    # environment: staging: an experiment may take 100%
    with sidecar.running("nan"): ...     # the one experiment started through the admin API, stopped after
    clients = Clients(); clients.call({"op": "read", ...})                   # tests/datafeeds/client.py

scripts/data-servers.sh installs moto and the clients into $MLCHAOS_SERVERS_DIR/NAME-HASH/venv; nginx is the
Debian package (make system-deps).
"""

from __future__ import annotations

import atexit
import contextlib
import json
import os
import selectors
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml

from tests.servers.harness import free_ports, pins_hash, request, servers_dir

REPO = Path(__file__).resolve().parents[2]
PEERS = ("moto", "data-clients", "great-expectations")
TOKEN = "datafeeds"
START_TIMEOUT = float(os.environ.get("MLCHAOS_SERVER_START_TIMEOUT", "60"))
# The feed every test reads: 40 rows of an id, an amount, a city and a count, the same every run.
ROWS: list[dict[str, Any]] = [{"id": i, "amount": round(10 + i * 1.25, 2), "city": ("oslo", "lima", "pune")[i % 3],
                               "qty": i % 7} for i in range(1, 41)]
_LIVE: dict[int, subprocess.Popen[bytes]] = {}


def venv(name: str) -> Path:
    return servers_dir() / f"{name}-{pins_hash(name)}" / "venv"


def nginx_binary() -> str | None:
    return shutil.which("nginx") or next((p for p in ("/usr/sbin/nginx",) if os.access(p, os.X_OK)), None)


def peers_problem(names: tuple[str, ...] = PEERS) -> str | None:
    for name in names:
        v = venv(name)
        stamp = v / ".mlchaos-installed"
        if not stamp.exists() or not stamp.read_text().strip().endswith(pins_hash(name)):
            return f"no current {name} venv at {v}: run `scripts/data-servers.sh {name}`"
    if nginx_binary() is None:
        return "no nginx: apt-get install nginx (make system-deps does)"
    return None


def _wait_ready(url: str, process: subprocess.Popen[bytes], log: Path, what: str) -> None:
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{what} exited with {process.returncode}:\n{log.read_text(errors='replace')[-2000:]}")
        with contextlib.suppress(OSError):
            if request("GET", url, timeout=2).status < 500:
                return
        time.sleep(0.1)
    stop_process(process)
    raise RuntimeError(f"{what} not ready after {START_TIMEOUT:g} s:\n{log.read_text(errors='replace')[-2000:]}")


def _spawn(argv: list[str], log: Path, env: dict[str, str] | None = None,
           cwd: Path | None = None) -> subprocess.Popen[bytes]:
    with log.open("ab") as out:
        process = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                                   start_new_session=True, env=env, cwd=cwd)
    _LIVE[process.pid] = process
    return process


def stop_process(process: subprocess.Popen[bytes], grace: float = 10.0) -> None:
    """SIGTERM the process's group, SIGKILL after ``grace``; always reaped."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, 15)
    try:
        process.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, 9)
        process.wait(timeout=grace)
    _LIVE.pop(process.pid, None)


NGINX_CONF = """\
daemon off;
master_process off;
worker_processes 1;
pid {work}/nginx.pid;
error_log {work}/nginx-error.log warn;
events {{ worker_connections 256; }}
http {{
    access_log off;
    client_body_temp_path {work}/body;
    proxy_temp_path {work}/proxy;
    fastcgi_temp_path {work}/fastcgi;
    uwsgi_temp_path {work}/uwsgi;
    scgi_temp_path {work}/scgi;
    sendfile on;
    types {{ text/csv csv; application/x-ndjson jsonl; application/json json;
             application/vnd.apache.parquet parquet; text/plain txt; }}
    default_type application/octet-stream;
    server {{
        listen 127.0.0.1:{port};
        root {root};
    }}
}}
"""


class Nginx:
    """nginx serving ``root`` over HTTP on a free loopback port (a temp prefix: no system config is read)."""

    def __init__(self, root: Path, workdir: Path) -> None:
        binary = nginx_binary()
        assert binary is not None
        workdir.mkdir(parents=True, exist_ok=True)
        (self.port,) = free_ports(1)
        conf = workdir / "nginx.conf"
        conf.write_text(NGINX_CONF.format(work=workdir, port=self.port, root=root))
        self.process = _spawn([binary, "-p", str(workdir), "-c", str(conf)], workdir / "nginx.log")
        _wait_ready(self.url + "/", self.process, workdir / "nginx.log", "nginx")

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def stop(self) -> None:
        stop_process(self.process)


class Moto:
    """moto's standalone S3 server on a free loopback port, in-memory."""

    def __init__(self, workdir: Path) -> None:
        workdir.mkdir(parents=True, exist_ok=True)
        (self.port,) = free_ports(1)
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(workdir), "PYTHONNOUSERSITE": "1"}
        self.process = _spawn([str(venv("moto") / "bin" / "moto_server"), "-H", "127.0.0.1", "-p", str(self.port)],
                              workdir / "moto.log", env)
        _wait_ready(self.url + "/moto-api/", self.process, workdir / "moto.log", "moto_server")

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def stop(self) -> None:
        stop_process(self.process)


class Sidecar:
    """``python -m proxy run`` of this tree in front of ``upstream``, with ``experiments`` (all disabled; a test
    starts the one it wants). ``environment: staging`` lets one experiment take all matching traffic."""

    def __init__(self, upstream: str, experiments: list[dict[str, Any]], workdir: Path,
                 extra: dict[str, Any] | None = None, command: list[str] | None = None) -> None:
        workdir.mkdir(parents=True, exist_ok=True)
        self.port, self.admin = free_ports(2)
        policy = {"listen": f"127.0.0.1:{self.port}", "upstream": upstream, "environment": "staging",
                  "admin": {"listen": f"127.0.0.1:{self.admin}"}, "max_blast_radius": 100,
                  "upstream_idempotent": True, "experiments": experiments, **(extra or {})}
        path = workdir / "policy.yaml"
        path.write_text(yaml.safe_dump(policy))
        self.log_path = workdir / "mlchaos.log"
        env = {k: v for k, v in os.environ.items() if not k.startswith("MLCHAOS_ADMIN")}
        # This tree's proxy by default (cwd: the repository); a benchmark may name an installed mlchaos.
        argv = [*(command or [sys.executable, "-m", "proxy"]), "run", "--config", str(path)]
        self.process = _spawn(argv, self.log_path, env, cwd=REPO)
        _wait_ready(f"{self.admin_url}/readyz", self.process, self.log_path, "mlchaos")

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def admin_url(self) -> str:
        return f"http://127.0.0.1:{self.admin}"

    @contextlib.contextmanager
    def running(self, name: str) -> Iterator[None]:
        reply = request("POST", f"{self.admin_url}/experiments/{name}/start")
        assert reply.status == 200, reply.text
        try:
            yield
        finally:
            reply = request("POST", f"{self.admin_url}/experiments/{name}/stop")
            assert reply.status == 200, reply.text

    def experiment(self, name: str) -> dict[str, Any]:
        reply = request("GET", f"{self.admin_url}/experiments")
        found: dict[str, Any] = next(e for e in reply.json()["experiments"] if e["name"] == name)
        return found

    def stop(self) -> None:
        stop_process(self.process)


class Clients:
    """tests/datafeeds/client.py in the data-clients venv: one process, one JSON line per call."""

    def __init__(self, timeout: float = 120.0) -> None:
        python = venv("data-clients") / "bin" / "python"
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "PYTHONNOUSERSITE": "1", "HOME": "/tmp",
               "AWS_EC2_METADATA_DISABLED": "true", "NO_PROXY": "127.0.0.1", "no_proxy": "127.0.0.1"}
        self.process = subprocess.Popen([str(python), str(Path(__file__).with_name("client.py"))],
                                        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                                        text=True, env=env, start_new_session=True)
        self.selector = selectors.DefaultSelector()
        assert self.process.stdout is not None
        self.selector.register(self.process.stdout, selectors.EVENT_READ)
        assert self._line(timeout) == {"ready": True}

    def _line(self, timeout: float) -> Any:
        assert self.process.stdout is not None
        if not self.selector.select(timeout):
            raise TimeoutError(f"the client gave no answer within {timeout:g} s")
        line = self.process.stdout.readline()
        if not line:
            raise RuntimeError(f"the client exited with {self.process.wait(5)}")
        return json.loads(line)

    def call(self, req: dict[str, Any], timeout: float = 60.0) -> dict[str, Any]:
        assert self.process.stdin is not None
        self.process.stdin.write(json.dumps(req) + "\n")
        self.process.stdin.flush()
        answer: dict[str, Any] = self._line(timeout)
        return answer

    def ok(self, req: dict[str, Any], timeout: float = 60.0) -> Any:
        answer = self.call(req, timeout)
        assert "ok" in answer, answer
        return answer["ok"]

    def close(self) -> None:
        assert self.process.stdin is not None and self.process.stdout is not None
        self.selector.close()
        self.process.stdin.close()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self.process.stdout.close()


@atexit.register
def _kill_leftovers() -> None:
    for process in list(_LIVE.values()):
        stop_process(process, 2.0)
