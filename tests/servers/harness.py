"""Run the real model servers that scripts/model-servers.sh installs, as subprocesses on free loopback ports.

    server = start("mlserver", workdir)     # blocks until the readiness route answers 200 (bounded)
    ... server.url, server.model ...
    stop(server)                            # SIGTERM to the process group, then SIGKILL; always reaps

Each server runs in its own session (so its own process group: MLflow's CLI forks uvicorn, and the whole
group is signalled), with its cwd, config dirs and log file in ``workdir``. Only 127.0.0.1 is ever connected
to. KServe binds 0.0.0.0 (gRPC [::]) with no flag to change that; MLServer and MLflow are told 127.0.0.1.
The small HTTP client here (``request``, on http.client) ignores proxy settings.
"""

from __future__ import annotations

import atexit
import contextlib
import hashlib
import http.client
import json
import os
import signal
import socket
import subprocess
import time
import urllib.parse
from dataclasses import dataclass, field
from email.message import Message
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
SERVERS = ("mlserver", "kserve", "mlflow")
MODEL = "iris"
# The four columns the iris model was fitted on (scripts/servers/train_iris.py), in order.
FEATURES = ("sepal_length", "sepal_width", "petal_length", "petal_width")
# Two iris rows and what the model answers for them: 0 setosa, 2 virginica.
ROWS = ((5.1, 3.5, 1.4, 0.2), (6.7, 3.0, 5.2, 2.3))
EXPECTED = [0, 2]
START_TIMEOUT = float(os.environ.get("MLCHAOS_SERVER_START_TIMEOUT", "90"))
STOP_GRACE = 10.0
# Sessions are never left behind, even when a fixture's finalizer does not run.
_LIVE: dict[int, subprocess.Popen[bytes]] = {}


def servers_dir() -> Path:
    """Where scripts/model-servers.sh installs them: outside the clone, so a fresh clone finds them."""
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return Path(os.environ.get("MLCHAOS_SERVERS_DIR") or cache / "mlchaos" / "servers")


def pins_hash(name: str) -> str:
    """The version of a server's pins, which keys its directory: as model-servers.sh's ``hash_of``."""
    return hashlib.sha256((REPO / "scripts" / "servers" / f"{name}.txt").read_bytes()).hexdigest()[:16]


def require_servers() -> bool:
    """MLCHAOS_REQUIRE_SERVERS=1: a missing server fails the tests instead of skipping them (make test)."""
    return os.environ.get("MLCHAOS_REQUIRE_SERVERS", "").strip().lower() in ("1", "true", "yes")


class ServerError(RuntimeError):
    pass


@dataclass
class Install:
    name: str
    root: Path

    @property
    def venv(self) -> Path:
        return self.root / "venv"

    @property
    def bin(self) -> Path:
        return self.venv / "bin"

    @property
    def model_dir(self) -> Path:
        return self.root / "model"

    def problem(self) -> str | None:
        """Why this server cannot run, or None when its venv and model are installed and current."""
        stamp = self.venv / ".mlchaos-installed"
        requirements = REPO / "scripts" / "servers" / f"{self.name}.txt"
        if not (self.bin / "python").exists():
            return f"no venv at {self.venv}"
        if not stamp.exists():
            return f"{self.venv} is incomplete (no install stamp)"
        if requirements.exists():
            if not stamp.read_text().strip().endswith(pins_hash(self.name)):
                return f"{self.venv} is stale: scripts/servers/{self.name}.txt changed since it was installed"
        if not (self.model_dir / ".mlchaos-trained").exists():
            return f"no trained model at {self.model_dir}"
        return None


def install(name: str) -> Install:
    if name not in SERVERS:
        raise ValueError(f"unknown server {name!r}; one of {SERVERS}")
    return Install(name, servers_dir() / f"{name}-{pins_hash(name)}")


@dataclass
class RunningServer:
    name: str
    url: str  # http://127.0.0.1:<http port>
    model: str
    venv: Path
    model_dir: Path
    workdir: Path
    log_path: Path
    ports: dict[str, int]
    process: subprocess.Popen[bytes] = field(repr=False)
    startup_seconds: float = 0.0

    def log_tail(self, lines: int = 40) -> str:
        return log_tail(self.log_path, lines)

    @property
    def grpc_target(self) -> str:
        """host:port of the server's Open Inference Protocol gRPC port (MLServer and KServe)."""
        return f"127.0.0.1:{self.ports['grpc']}"


def log_tail(path: Path, lines: int = 40) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError as e:
        return f"<no log: {e}>"
    return "\n".join(text.splitlines()[-lines:])


def free_ports(n: int) -> list[int]:
    """n distinct free TCP ports on 127.0.0.1 (all held open until all are picked)."""
    socks = []
    try:
        for _ in range(n):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind(("127.0.0.1", 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def _command(inst: Install, ports: dict[str, int]) -> tuple[list[str], dict[str, str], str]:
    """The argv, the extra environment and the readiness path of one server."""
    if inst.name == "mlserver":
        env = {
            "MLSERVER_HOST": "127.0.0.1",
            "MLSERVER_HTTP_PORT": str(ports["http"]),
            "MLSERVER_GRPC_PORT": str(ports["grpc"]),
            "MLSERVER_METRICS_PORT": str(ports["metrics"]),
            # Inference in the server process: no worker pool to start on a 2-core machine.
            "MLSERVER_PARALLEL_WORKERS": "0",
        }
        return [str(inst.bin / "mlserver"), "start", str(inst.model_dir)], env, f"/v2/models/{MODEL}/ready"
    if inst.name == "kserve":
        argv = [
            str(inst.bin / "python"), str(inst.model_dir / "serve_kserve.py"),
            "--http_port", str(ports["http"]), "--grpc_port", str(ports["grpc"]), "--model_name", MODEL,
        ]
        return argv, {}, f"/v2/models/{MODEL}/ready"
    argv = [
        str(inst.bin / "mlflow"), "models", "serve", "-m", str(inst.model_dir),
        "-h", "127.0.0.1", "-p", str(ports["http"]), "--env-manager", "local",
    ]
    return argv, {}, "/ping"


PORT_NAMES = {"mlserver": ("http", "grpc", "metrics"), "kserve": ("http", "grpc"), "mlflow": ("http",)}


def start(name: str, workdir: Path, timeout: float = START_TIMEOUT) -> RunningServer:
    """Start one installed server and wait until it is ready; raises ServerError with its log on failure."""
    inst = install(name)
    problem = inst.problem()
    if problem:
        raise ServerError(f"{name}: {problem}: run scripts/model-servers.sh {name}")
    workdir.mkdir(parents=True, exist_ok=True)
    ports = dict(zip(PORT_NAMES[name], free_ports(len(PORT_NAMES[name])), strict=True))
    argv, extra_env, ready_path = _command(inst, ports)
    return _launch(inst, name, argv, extra_env, ready_path, ports, workdir, timeout)


def start_registry(workdir: Path, timeout: float = max(START_TIMEOUT, 180.0)) -> RunningServer:
    """The MLflow tracking server with its model registry, from the MLflow venv: a SQLite backend and a local
    artifact store in ``workdir``, artifacts served through the server (``/api/2.0/mlflow-artifacts``), one
    worker. Its first start creates and migrates the database: about 45 s on a 2-core machine."""
    inst = install("mlflow")
    problem = inst.problem()
    if problem:
        raise ServerError(f"mlflow: {problem}: run scripts/model-servers.sh mlflow")
    workdir.mkdir(parents=True, exist_ok=True)
    ports = {"http": free_ports(1)[0]}
    argv = [
        str(inst.bin / "mlflow"), "server", "--backend-store-uri", f"sqlite:///{workdir / 'registry.db'}",
        "--artifacts-destination", str(workdir / "artifacts"), "--host", "127.0.0.1", "--port", str(ports["http"]),
        "--workers", "1",
    ]
    return _launch(inst, "mlflow-registry", argv, {}, "/health", ports, workdir, timeout)


def _launch(inst: Install, name: str, argv: list[str], extra_env: dict[str, str], ready_path: str,
            ports: dict[str, int], workdir: Path, timeout: float) -> RunningServer:
    env = {
        k: v for k, v in os.environ.items()
        if not k.startswith(("PYTEST_", "VIRTUAL_ENV", "PYTHON", "MLCHAOS_", "MLSERVER_", "MLFLOW_", "KSERVE_"))
        and k.lower() not in ("http_proxy", "https_proxy", "all_proxy")
    }
    env.update({
        "PATH": f"{inst.bin}{os.pathsep}{env.get('PATH', '/usr/bin:/bin')}",  # mlflow execs `uvicorn`
        "VIRTUAL_ENV": str(inst.venv),
        "PYTHONNOUSERSITE": "1",
        "PYTHONUNBUFFERED": "1",
        # Whatever the libraries write goes to workdir, not $HOME.
        "XDG_CONFIG_HOME": str(workdir / ".config"),
        "XDG_CACHE_HOME": str(workdir / ".cache"),
        "MPLCONFIGDIR": str(workdir / ".matplotlib"),
        # MLflow 3 usage telemetry would post to a remote host: off.
        "MLFLOW_DISABLE_TELEMETRY": "true",
        "DO_NOT_TRACK": "true",
        **extra_env,
    })
    log_path = workdir / f"{name}.log"
    url = f"http://127.0.0.1:{ports['http']}"
    t0 = time.monotonic()
    with open(log_path, "wb") as log:
        log.write(f"$ {' '.join(argv)}\n# ports {ports}\n".encode())
        log.flush()
        process = subprocess.Popen(
            argv, cwd=workdir, env=env, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    _LIVE[process.pid] = process
    server = RunningServer(name, url, MODEL, inst.venv, inst.model_dir, workdir, log_path, ports, process)
    try:
        _wait_ready(server, url + ready_path, timeout)
    except BaseException:
        stop(server)
        raise
    server.startup_seconds = time.monotonic() - t0
    return server


def serve_registered(model_uri: str, tracking_uri: str, workdir: Path, env: dict[str, str] | None = None,
                     timeout: float = max(START_TIMEOUT, 180.0)) -> RunningServer:
    """``mlflow models serve -m models:/NAME@ALIAS`` with the registry at ``tracking_uri``: the scoring server
    resolves the model through the registry when it starts (``env``: MLFLOW_TRACKING_TOKEN and such)."""
    inst = install("mlflow")
    problem = inst.problem()
    if problem:
        raise ServerError(f"mlflow: {problem}: run scripts/model-servers.sh mlflow")
    workdir.mkdir(parents=True, exist_ok=True)
    ports = {"http": free_ports(1)[0]}
    argv = [str(inst.bin / "mlflow"), "models", "serve", "-m", model_uri, "-h", "127.0.0.1", "-p", str(ports["http"]),
            "--env-manager", "local"]
    extra = {"MLFLOW_TRACKING_URI": tracking_uri, **(env or {})}
    return _launch(inst, "mlflow-serve-registered", argv, extra, "/ping", ports, workdir, timeout)


REGISTRY_CLIENT = REPO / "scripts" / "servers" / "registry_client.py"


def registry_client(tracking_uri: str, workdir: Path, *args: str, env: dict[str, str] | None = None,
                    timeout: float = 240.0) -> tuple[int, Any, str]:
    """Run scripts/servers/registry_client.py with the MLflow venv against ``tracking_uri``: its exit status,
    the JSON object it printed last, and its output (for failure messages)."""
    inst = install("mlflow")
    workdir.mkdir(parents=True, exist_ok=True)
    clean = {
        k: v for k, v in os.environ.items()
        if not k.startswith(("PYTEST_", "VIRTUAL_ENV", "PYTHON", "MLCHAOS_", "MLFLOW_"))
        and k.lower() not in ("http_proxy", "https_proxy", "all_proxy", "no_proxy")
    }
    clean.update({
        "PYTHONNOUSERSITE": "1", "XDG_CONFIG_HOME": str(workdir / ".config"), "XDG_CACHE_HOME": str(workdir / ".cache"),
        "MPLCONFIGDIR": str(workdir / ".matplotlib"), "MLFLOW_DISABLE_TELEMETRY": "true", "DO_NOT_TRACK": "true",
        "MLFLOW_TRACKING_URI": tracking_uri, **(env or {}),
    })
    done = subprocess.run([str(inst.bin / "python"), str(REGISTRY_CLIENT), *args], cwd=workdir, env=clean,
                          capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL)
    lines = done.stdout.strip().splitlines()
    try:
        out = json.loads(lines[-1]) if lines else None
    except json.JSONDecodeError:
        out = None
    return done.returncode, out, f"$ registry_client.py {' '.join(args)}\n{done.stdout[-3000:]}\n{done.stderr[-6000:]}"


def _wait_ready(server: RunningServer, url: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    last = "no answer yet"
    while True:
        code = server.process.poll()
        if code is not None:
            raise ServerError(
                f"{server.name} exited with status {code} before it was ready; log {server.log_path}:\n"
                f"{server.log_tail()}"
            )
        try:
            reply = request("GET", url, timeout=2.0)
            if reply.status == 200:
                return
            last = f"HTTP {reply.status}"
        except (OSError, http.client.HTTPException) as e:
            last = f"{type(e).__name__}: {e}"
        if time.monotonic() > deadline:
            raise ServerError(
                f"{server.name} not ready after {timeout:g} s (GET {url}: {last}); log {server.log_path}:\n"
                f"{server.log_tail()}"
            )
        time.sleep(0.2)


def stop(server: RunningServer, grace: float = STOP_GRACE) -> None:
    """SIGTERM the server's process group, SIGKILL it after ``grace`` seconds, and reap the leader."""
    _kill_group(server.process, grace)


def _kill_group(process: subprocess.Popen[bytes], grace: float) -> None:
    pgid = process.pid  # start_new_session: the leader's pid is the group id
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pgid, signal.SIGTERM)
    try:
        process.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        pass
    # Children (MLflow's uvicorn) can outlive the leader: kill whatever is left of the group.
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pgid, signal.SIGKILL)
    process.wait(timeout=grace)
    _LIVE.pop(process.pid, None)


@atexit.register
def _kill_leftovers() -> None:
    for process in list(_LIVE.values()):
        _kill_group(process, 2.0)


# -- a small HTTP client (http.client: no proxies, and no header added behind our back) ---------------------


@dataclass
class Reply:
    status: int
    headers: Message
    body: bytes

    @property
    def text(self) -> str:
        return self.body.decode("utf-8", errors="replace")

    @property
    def content_type(self) -> str:
        return self.headers.get("Content-Type", "")

    def json(self) -> Any:
        return json.loads(self.body)


def request(
    method: str, url: str, body: bytes | None = None, headers: dict[str, str] | None = None, timeout: float = 30.0
) -> Reply:
    """One HTTP/1.1 request to 127.0.0.1; any status is returned, never raised.

    Unlike urllib, http.client adds no Content-Type of its own (urllib sends a form type with every POST), so
    a request "without Content-Type" really has none.
    """
    parts = urllib.parse.urlsplit(url)
    if parts.scheme != "http" or parts.hostname != "127.0.0.1" or parts.port is None:
        raise ValueError(f"only http://127.0.0.1:<port> may be connected to, not {url}")
    conn = http.client.HTTPConnection("127.0.0.1", parts.port, timeout=timeout)
    try:
        conn.request(method, urllib.parse.urlunsplit(("", "", parts.path, parts.query, "")), body, headers or {})
        resp = conn.getresponse()
        return Reply(resp.status, resp.headers, resp.read())
    finally:
        conn.close()


def post_json(url: str, payload: Any, content_type: str | None = "application/json", timeout: float = 30.0) -> Reply:
    """POST ``payload`` as JSON (bytes are sent as they are). ``json.dumps`` writes NaN as the bare token NaN."""
    body = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
    headers = {"Content-Type": content_type} if content_type else {}
    return request("POST", url, body, headers, timeout)
