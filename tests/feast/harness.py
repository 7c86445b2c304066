"""A real Feast feature server for the tests, its SDK as a client, and mlchaos between them, all on loopback.

    server = start_feast(workdir)        # writes a feature repo, feast apply, materialize-incremental, serve
    sdk = SdkClient(server)              # Feast's own SDK in the Feast venv (tests/feast/sdk_client.py)
    sdk.get(client_repo(dir, server, url), features=[...], entity_rows=[...])
    stop_process(server.process)

scripts/feature-servers.sh installs Feast into $MLCHAOS_SERVERS_DIR (default ~/.cache/mlchaos/servers)
/feast-<version>/venv. The feature repo is the test's own: a SQLite online store, a file registry and a parquet
file of DRIVERS that it writes with the venv's pandas. Every process runs in its own session, with HOME and
the XDG directories in the work directory and FEAST_USAGE=False (no telemetry); only 127.0.0.1 is used.
"""

from __future__ import annotations

import atexit
import contextlib
import hashlib
import json
import os
import selectors
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from tests.servers.harness import request

REPO = Path(__file__).resolve().parents[2]
REQUIREMENTS = REPO / "scripts" / "servers" / "feast.txt"
VIEW = "driver_hourly_stats"
FEATURES = ("conv_rate", "acc_rate", "avg_daily_trips", "city")
# The feature rows the test's parquet holds: driver -> (conv_rate, acc_rate, avg_daily_trips, city); the event
# time is NOW for all. Float32 features come back as the float32 value widened (0.25 stays 0.25).
DRIVERS: dict[int, tuple[float, float, int, str]] = {
    1000 + i: (i / 64, 0.5 + i / 128, 10 * i, f"c{i % 3}") for i in range(1, 41)
}
NOW = "2026-12-01T12:00:00Z"
UNKNOWN = 99999
START_TIMEOUT = float(os.environ.get("MLCHAOS_SERVER_START_TIMEOUT", "120"))
_LIVE: dict[int, subprocess.Popen[bytes]] = {}


def servers_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(os.environ.get("MLCHAOS_SERVERS_DIR") or Path(base) / "mlchaos" / "servers")


def feast_version() -> str:
    for line in REQUIREMENTS.read_text().splitlines():
        if line.startswith("feast=="):
            return line.split("==", 1)[1].strip()
    raise RuntimeError("scripts/servers/feast.txt pins no feast version")


def venv() -> Path:
    return servers_dir() / f"feast-{feast_version()}" / "venv"


def problem() -> str | None:
    """Why Feast cannot run here, or None when its venv is installed and current."""
    v = venv()
    stamp = v / ".mlchaos-installed"
    if not (v / "bin" / "feast").exists():
        return f"no feast venv at {v}"
    if not stamp.exists():
        return f"{v} is incomplete (no install stamp)"
    want = hashlib.sha256(REQUIREMENTS.read_bytes()).hexdigest()[:16]
    if not stamp.read_text().strip().endswith(want):
        return f"{v} is stale: scripts/servers/feast.txt changed since it was installed"
    return None


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def env_for(workdir: Path) -> dict[str, str]:
    """A clean environment for Feast's processes: its venv first, everything it writes under ``workdir``."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("PYTEST_", "VIRTUAL_ENV", "PYTHON", "MLCHAOS_", "FEAST_"))
           and k.lower() not in ("http_proxy", "https_proxy", "all_proxy")}
    env.update({
        "PATH": f"{venv() / 'bin'}{os.pathsep}{env.get('PATH', '/usr/bin:/bin')}",
        "VIRTUAL_ENV": str(venv()), "PYTHONNOUSERSITE": "1", "PYTHONUNBUFFERED": "1", "FEAST_USAGE": "False",
        "HOME": str(workdir), "XDG_CONFIG_HOME": str(workdir / ".config"), "XDG_CACHE_HOME": str(workdir / ".cache"),
    })
    return env


FEATURES_PY = f'''
from datetime import timedelta

from feast import Entity, FeatureService, FeatureView, Field, FileSource
from feast.types import Float32, Int64, String
from feast.value_type import ValueType

driver = Entity(name="driver", join_keys=["driver_id"], value_type=ValueType.INT64)
source = FileSource(name="driver_stats_source", path="data/driver_stats.parquet", timestamp_field="event_timestamp")
{VIEW} = FeatureView(
    name="{VIEW}", entities=[driver], ttl=timedelta(days=36500), online=True, source=source,
    schema=[Field(name="conv_rate", dtype=Float32), Field(name="acc_rate", dtype=Float32),
            Field(name="avg_daily_trips", dtype=Int64), Field(name="city", dtype=String)],
)
driver_activity = FeatureService(name="driver_activity", features=[{VIEW}])
'''

MAKE_PARQUET = """
import json, sys
import pandas as pd
rows = json.load(open(sys.argv[1]))
df = pd.DataFrame(rows)
df["event_timestamp"] = pd.to_datetime(df["event_timestamp"], utc=True)
df.to_parquet(sys.argv[2])
"""


@dataclass
class FeastServer:
    url: str
    port: int
    repo: Path
    workdir: Path
    log_path: Path
    process: subprocess.Popen[bytes] = field(repr=False)

    @property
    def registry(self) -> Path:
        return self.repo / "data" / "registry.db"

    def log_tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError as e:
            return f"<no log: {e}>"


def _run(argv: list[str], cwd: Path, env: dict[str, str], log: Path, timeout: float) -> None:
    with open(log, "ab") as out:
        out.write(f"$ {' '.join(argv)}\n".encode())
        out.flush()
        done = subprocess.run(argv, cwd=cwd, env=env, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                              timeout=timeout, check=False)
    if done.returncode != 0:
        tail = "\n".join(log.read_text(errors="replace").splitlines()[-30:])
        raise RuntimeError(f"{' '.join(argv)} failed with status {done.returncode}:\n{tail}")


def write_repo(repo: Path, env: dict[str, str], log: Path) -> None:
    """The feature repo: feature_store.yaml, the definitions, and the parquet of DRIVERS."""
    (repo / "data").mkdir(parents=True)
    (repo / "feature_store.yaml").write_text(yaml.safe_dump({
        "project": "mlchaos_test", "registry": "data/registry.db", "provider": "local",
        "online_store": {"type": "sqlite", "path": "data/online_store.db"},
        "entity_key_serialization_version": 3,
    }))
    (repo / "features.py").write_text(FEATURES_PY)
    rows = [{"driver_id": d, "event_timestamp": NOW, "conv_rate": c, "acc_rate": a, "avg_daily_trips": t,
             "city": city} for d, (c, a, t, city) in DRIVERS.items()]
    (repo / "rows.json").write_text(json.dumps(rows))
    _run([str(venv() / "bin" / "python"), "-c", MAKE_PARQUET, "rows.json", "data/driver_stats.parquet"],
         repo, env, log, 120)


def start_feast(workdir: Path, timeout: float = START_TIMEOUT) -> FeastServer:
    """A fresh feature repo in ``workdir``, applied and materialized, served on a free loopback port."""
    env = env_for(workdir)
    repo = workdir / "repo"
    log = workdir / "feast.log"
    write_repo(repo, env, log)
    feast = str(venv() / "bin" / "feast")
    _run([feast, "apply"], repo, env, log, timeout)
    _run([feast, "materialize-incremental", "2026-12-02T00:00:00"], repo, env, log, timeout)
    port = free_port()
    with open(log, "ab") as out:
        process = subprocess.Popen([feast, "serve", "-h", "127.0.0.1", "-p", str(port)], cwd=repo, env=env,
                                   stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                                   start_new_session=True)
    _LIVE[process.pid] = process
    server = FeastServer(f"http://127.0.0.1:{port}", port, repo, workdir, log, process)
    deadline = time.monotonic() + timeout
    while True:
        if process.poll() is not None:
            raise RuntimeError(f"feast serve exited with {process.returncode}:\n{server.log_tail()}")
        with contextlib.suppress(OSError):
            if request("GET", server.url + "/health", timeout=2).status == 200:
                return server
        if time.monotonic() > deadline:
            stop_process(process)
            raise RuntimeError(f"feast serve not ready after {timeout:g} s:\n{server.log_tail()}")
        time.sleep(0.2)


def client_repo(directory: Path, server: FeastServer, url: str) -> Path:
    """A client repo whose SDK asks ``url`` (the feature server, or mlchaos in front of it) over HTTP."""
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "feature_store.yaml").write_text(yaml.safe_dump({
        "project": "mlchaos_test", "registry": str(server.registry), "provider": "local",
        "online_store": {"type": "remote", "path": url}, "entity_key_serialization_version": 3,
    }))
    return directory


class SdkClient:
    """tests/feast/sdk_client.py in the Feast venv: one long-lived process, one JSON line per call."""

    def __init__(self, workdir: Path, timeout: float = START_TIMEOUT) -> None:
        workdir.mkdir(parents=True, exist_ok=True)
        self.stderr = (workdir / "sdk.log").open("wb")
        self.process = subprocess.Popen(
            [str(venv() / "bin" / "python"), str(Path(__file__).with_name("sdk_client.py"))], cwd=workdir,
            env=env_for(workdir), stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self.stderr,
            start_new_session=True)
        _LIVE[self.process.pid] = self.process
        self.selector = selectors.DefaultSelector()
        assert self.process.stdout is not None
        self.selector.register(self.process.stdout, selectors.EVENT_READ)
        assert self._line(timeout).get("ready")

    def _line(self, timeout: float) -> dict[str, Any]:
        assert self.process.stdout is not None
        if not self.selector.select(timeout):
            raise TimeoutError(f"the Feast SDK client did not answer within {timeout:g} s")
        line = self.process.stdout.readline()
        if not line:
            raise RuntimeError(f"the Feast SDK client exited with {self.process.poll()}")
        answer: dict[str, Any] = json.loads(line)
        return answer

    def get(self, repo: Path, *, entity_rows: list[dict[str, Any]], features: list[str] | None = None,
            feature_service: str | None = None, full_feature_names: bool = False,
            timeout: float = 60.0) -> dict[str, Any]:
        assert self.process.stdin is not None
        req = {"repo": str(repo), "entity_rows": entity_rows, "full_feature_names": full_feature_names}
        req.update({"features": features} if features is not None else {"feature_service": feature_service})
        self.process.stdin.write(json.dumps(req).encode() + b"\n")
        self.process.stdin.flush()
        return self._line(timeout)

    def close(self) -> None:
        if self.process.stdin is not None:
            self.process.stdin.close()
        stop_process(self.process)
        self.selector.close()
        if self.process.stdout is not None:
            self.process.stdout.close()
        self.stderr.close()


class Mlchaos:
    """``python -m proxy run`` of this tree in front of ``upstream``, with ``experiments`` (all disabled: a test
    starts the one it wants through the admin API)."""

    def __init__(self, upstream: str, experiments: list[dict[str, Any]], workdir: Path, token: str) -> None:
        self.port, self.admin = free_port(), free_port()
        policy = {"listen": f"127.0.0.1:{self.port}", "upstream": upstream,
                  "admin": {"listen": f"127.0.0.1:{self.admin}"}, "cohort_override": {"enabled": True},
                  "max_blast_radius": 50, "experiments": experiments}
        path = workdir / "policy.yaml"
        path.write_text(yaml.safe_dump(policy))
        self.log = (workdir / "mlchaos.log").open("wb")
        self.process = subprocess.Popen([sys.executable, "-m", "proxy", "run", "--config", str(path)], cwd=REPO,
                                        stdout=self.log, stderr=subprocess.STDOUT, start_new_session=True,
                                        env={**os.environ, "MLCHAOS_OVERRIDE_TOKEN": token})
        _LIVE[self.process.pid] = self.process
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            with contextlib.suppress(OSError):
                if request("GET", f"{self.admin_url}/readyz", timeout=1).status == 200:
                    return
            time.sleep(0.1)
        self.stop()
        raise RuntimeError("mlchaos did not become ready")

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def admin_url(self) -> str:
        return f"http://127.0.0.1:{self.admin}"

    def start(self, name: str) -> None:
        reply = request("POST", f"{self.admin_url}/experiments/{name}/start")
        assert reply.status == 200, reply.text

    def stop_experiment(self, name: str) -> None:
        reply = request("POST", f"{self.admin_url}/experiments/{name}/stop")
        assert reply.status == 200, reply.text

    def metric(self, name: str, **labels: str) -> float:
        """One sample of /metrics (0 when absent)."""
        text = request("GET", f"{self.admin_url}/metrics").text
        want = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
        for line in text.splitlines():
            if line.startswith(name + "{"):
                got = ",".join(sorted(line[len(name) + 1:line.rindex("}")].split(",")))
                if got == want:
                    return float(line.rsplit(" ", 1)[1])
        return 0.0

    def stop(self) -> None:
        stop_process(self.process)
        self.log.close()


def stop_process(process: subprocess.Popen[bytes], grace: float = 10.0) -> None:
    """SIGTERM the process's group (each runs in its own session), SIGKILL after ``grace``; always reaped."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=grace)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)  # children that outlived the leader
    _LIVE.pop(process.pid, None)


@atexit.register
def _kill_leftovers() -> None:
    for process in list(_LIVE.values()):
        stop_process(process, 2.0)
