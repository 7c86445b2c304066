"""The gRPC side of the real peers: the clients' venv, an ``mlchaos run`` with a ``grpc:`` listener, and the
Triton-shaped stream peer.

    results = run_clients([job, ...])        # scripts/servers/grpc_client.py in the grpc-clients venv
    proxy = GrpcProxy(grpc_target, http_url, experiments, workdir)   # blocks until both listeners answer
    peer = StreamPeer(workdir)                # scripts/servers/grpc_stream_server.py, Triton's stream shape

The clients (tritonclient.grpc and a raw grpcio client) run in their own venv
($MLCHAOS_SERVERS_DIR/grpc-clients-<pins hash>, installed by scripts/model-servers.sh grpc-clients) so these
tests do not depend on the project's venv having tritonclient's grpc extra. Only 127.0.0.1 is connected to.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.servers import harness
from tests.servers.harness import FEATURES, REPO, ROWS

__all__ = ["CLIENTS", "COLUMNS", "TOKEN", "GrpcProxy", "StreamPeer", "b64", "clients_problem", "encode", "forced",
           "infer_request", "require_clients", "run_clients", "unb64"]

CLIENTS = "grpc-clients"
CLIENT_SCRIPT = REPO / "scripts" / "servers" / "grpc_client.py"
STREAM_SCRIPT = REPO / "scripts" / "servers" / "grpc_stream_server.py"
INFER = "/inference.GRPCInferenceService/ModelInfer"
STREAM_INFER = "/inference.GRPCInferenceService/ModelStreamInfer"
TOKEN = "grpc-peers"
# The iris rows as the model's four named columns (a DataFrame at the server: content_type "pd").
COLUMNS: dict[str, list[float]] = {name: [row[i] for row in ROWS] for i, name in enumerate(FEATURES)}
# The job of one client process may take this long at most: its calls carry their own shorter deadlines.
CLIENT_TIMEOUT = 120.0


def clients_venv() -> Path:
    return harness.servers_dir() / f"{CLIENTS}-{harness.pins_hash(CLIENTS)}" / "venv"


def clients_problem() -> str | None:
    """Why the clients' venv cannot run, or None when it is installed and current."""
    venv = clients_venv()
    stamp = venv / ".mlchaos-installed"
    if not (venv / "bin" / "python").exists():
        return f"no venv at {venv}"
    if not stamp.exists():
        return f"{venv} is incomplete (no install stamp)"
    if not stamp.read_text().strip().endswith(harness.pins_hash(CLIENTS)):
        return f"{venv} is stale: scripts/servers/{CLIENTS}.txt changed since it was installed"
    return None


def require_clients() -> None:
    """Skip (or under MLCHAOS_REQUIRE_SERVERS=1 fail) without the clients' venv; and without grpcio in this
    interpreter, which the sidecar's gRPC listener needs (the project's grpc extra)."""
    problems = []
    if (why := clients_problem()) is not None:
        problems.append(f"{why}: run `scripts/model-servers.sh {CLIENTS}`")
    try:
        import grpc  # noqa: F401
    except ImportError:
        problems.append("grpcio is not installed in the project's venv: pip install -e '.[grpc]'")
    if problems:
        if harness.require_servers():
            pytest.fail("; ".join(problems) + " (MLCHAOS_REQUIRE_SERVERS=1)", pytrace=False)
        pytest.skip("; ".join(problems))


def _clean_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("PYTEST_", "VIRTUAL_ENV", "PYTHON", "MLCHAOS_", "GRPC_"))
           and k.lower() not in ("http_proxy", "https_proxy", "all_proxy", "grpc_proxy", "no_proxy")}
    env.update(PYTHONNOUSERSITE="1", **(extra or {}))
    return env


def run_clients(jobs: list[dict[str, Any]], timeout: float = CLIENT_TIMEOUT) -> list[dict[str, Any]]:
    """Run ``jobs`` in one client process, in order; one result each (see scripts/servers/grpc_client.py)."""
    done = subprocess.run([str(clients_venv() / "bin" / "python"), str(CLIENT_SCRIPT)], input=json.dumps(jobs),
                          capture_output=True, text=True, timeout=timeout, env=_clean_env())
    lines = done.stdout.splitlines()
    assert done.returncode == 0 and len(lines) == len(jobs), (
        f"grpc_client.py exited {done.returncode} with {len(lines)} of {len(jobs)} results:\n{done.stderr[-4000:]}")
    results = [json.loads(line) for line in lines]
    crashed = [r for r in results if r.get("crash")]
    assert not crashed, f"grpc_client.py failed inside a job: {crashed}"
    return results


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def unb64(text: str) -> bytes:
    return base64.b64decode(text)


def infer_request(contents: str = "raw", features: dict[str, list[float]] | None = None, version: str = "") -> bytes:
    """A serialized ModelInferRequest for the iris model, as tritonclient builds it (raw_input_contents) or with
    typed fp64_contents."""
    return encode([{"contents": contents, "features": features or COLUMNS, "version": version}])[0]


def encode(specs: list[dict[str, Any]]) -> list[bytes]:
    jobs = [{"client": "encode", "model": harness.MODEL, **spec} for spec in specs]
    return [unb64(r["request"]) for r in run_clients(jobs)]


def forced(experiment: str, cohort: str = "chaos") -> dict[str, str]:
    """The metadata that put a call in ``cohort`` of ``experiment`` (cohort override, and the match below)."""
    return {"x-chaos": "on", "x-mlchaos-cohort": cohort, "x-mlchaos-token": TOKEN, "x-mlchaos-experiment": experiment}


def _free_port() -> int:
    return harness.free_ports(1)[0]


def _wait_tcp(port: int, process: subprocess.Popen[bytes], deadline: float, what: str, log: Path) -> None:
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{what} exited with {process.returncode}:\n{harness.log_tail(log)}")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=1):
            return
        time.sleep(0.1)
    raise RuntimeError(f"{what} is not listening on {port}:\n{harness.log_tail(log)}")


def _stop(process: subprocess.Popen[bytes]) -> None:
    process.terminate()
    try:
        process.wait(10)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(10)


class GrpcProxy:
    """``mlchaos run`` in front of one server: HTTP to ``http_url`` (the policy needs one) and gRPC from
    ``.target`` to ``grpc_target``. Every experiment matches only calls with ``x-chaos: on`` metadata, so a
    call without it is unassigned; ``forced(name)`` puts a call in an experiment's chaos cohort."""

    def __init__(self, grpc_target: str, http_url: str, experiments: dict[str, dict[str, Any]], tmp: Path,
                 upstreams: dict[str, str] | None = None, payload: dict[str, Any] | None = None) -> None:
        self.port, self.grpc_port, self.admin = harness.free_ports(3)
        self.target = f"127.0.0.1:{self.grpc_port}"
        policy: dict[str, Any] = {
            "listen": f"127.0.0.1:{self.port}", "upstream": http_url,
            "admin": {"listen": f"127.0.0.1:{self.admin}"},
            "grpc": {"listen": self.target, "upstream": grpc_target},
            "cohort_override": {"enabled": True},
            "experiments": [
                {"name": name, "chaos": 0.01, "control": 0.01, "faults": [fault],
                 "match": {"headers": {"x-chaos": "on"}}, "payload": payload or {"features": list(FEATURES)},
                 "kill_switch": {"enabled": False}}
                for name, fault in experiments.items()
            ],
        }
        if upstreams:
            policy["upstreams"] = upstreams
        path = tmp / "policy.yaml"
        path.write_text(yaml.safe_dump(policy))
        self.log_path = tmp / "mlchaos.log"
        with open(self.log_path, "wb") as log:
            self.proc = subprocess.Popen([sys.executable, "-m", "proxy", "run", "--config", str(path)], stdout=log,
                                         stderr=subprocess.STDOUT, env={**os.environ, "MLCHAOS_OVERRIDE_TOKEN": TOKEN})
        deadline = time.monotonic() + 20
        try:
            while True:
                try:
                    if harness.request("GET", f"http://127.0.0.1:{self.admin}/readyz", timeout=1).status == 200:
                        break
                except OSError:
                    pass
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"mlchaos did not become ready:\n{harness.log_tail(self.log_path)}")
                time.sleep(0.1)
            _wait_tcp(self.grpc_port, self.proc, deadline, "mlchaos", self.log_path)
        except BaseException:
            _stop(self.proc)
            raise

    def metrics(self) -> str:
        return harness.request("GET", f"http://127.0.0.1:{self.admin}/metrics", timeout=5).text

    def stop(self) -> None:
        _stop(self.proc)


class StreamPeer:
    """scripts/servers/grpc_stream_server.py on a free port: Triton's ModelStreamInfer shape, which
    tritonclient's streaming API reads (neither real server here answers it in that shape)."""

    def __init__(self, tmp: Path) -> None:
        self.port = _free_port()
        self.target = f"127.0.0.1:{self.port}"
        self.log_path = tmp / "stream-peer.log"
        with open(self.log_path, "wb") as log:
            self.proc = subprocess.Popen([str(clients_venv() / "bin" / "python"), str(STREAM_SCRIPT), str(self.port)],
                                         stdout=log, stderr=subprocess.STDOUT, env=_clean_env(), cwd=tmp)
        try:
            _wait_tcp(self.port, self.proc, time.monotonic() + 30, "the stream peer", self.log_path)
        except BaseException:
            _stop(self.proc)
            raise

    def stop(self) -> None:
        _stop(self.proc)
