"""The real LLM peers that scripts/llm-servers.sh installs: llama.cpp's OpenAI-compatible server on the tiny
model, and the real clients (openai SDK, LangChain) run from their own venv.

    server = start_llama(workdir)                  # blocks until /v1/models answers (bounded)
    results = await run_clients([job, ...])        # scripts/servers/llm_client.py in the clients' venv
    harness.stop(server)

Both live under MLCHAOS_SERVERS_DIR (default ~/.cache/mlchaos/servers, outside the clone). Only 127.0.0.1 is
connected to. The server is started with ``--interrupt_requests False`` (otherwise a new request cuts the
running stream short, which would look like a fault) and without ping events.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import subprocess
import time
from pathlib import Path
from typing import Any

from tests.servers import harness
from tests.servers.harness import REPO, RunningServer, ServerError

__all__ = ["CLIENTS", "LLAMA", "problem", "run_clients", "servers_dir", "start_llama"]

LLAMA = "llamacpp"
CLIENTS = "llm-clients"
MODEL = "tiny"
CLIENT_SCRIPT = REPO / "scripts" / "servers" / "llm_client.py"
START_TIMEOUT = float(os.environ.get("MLCHAOS_SERVER_START_TIMEOUT", "90"))


def servers_dir() -> Path:
    return Path(os.environ.get("MLCHAOS_SERVERS_DIR") or Path.home() / ".cache" / "mlchaos" / "servers")


def _venv(name: str) -> Path:
    return servers_dir() / name / "venv"


def problem(name: str) -> str | None:
    """Why ``name`` (llamacpp or llm-clients) cannot run, or None when it is installed and current."""
    venv = _venv(name)
    stamp = venv / ".mlchaos-installed"
    if not (venv / "bin" / "python").exists():
        return f"no venv at {venv}"
    if not stamp.exists():
        return f"{venv} is incomplete (no install stamp)"
    want = hashlib.sha256((REPO / "scripts" / "servers" / f"{name}.txt").read_bytes()).hexdigest()[:16]
    if not stamp.read_text().strip().endswith(want):
        return f"{venv} is stale: scripts/servers/{name}.txt changed since it was installed"
    if name == LLAMA and not (servers_dir() / LLAMA / "model" / ".mlchaos-trained").exists():
        return f"no model at {servers_dir() / LLAMA / 'model'}"
    return None


def start_llama(workdir: Path, timeout: float = START_TIMEOUT) -> RunningServer:
    """llama.cpp's server on a free loopback port, serving the tiny model for chat, completions and embeddings."""
    why = problem(LLAMA)
    if why:
        raise ServerError(f"{LLAMA}: {why}: run scripts/llm-servers.sh {LLAMA}")
    workdir.mkdir(parents=True, exist_ok=True)
    venv = _venv(LLAMA)
    model = servers_dir() / LLAMA / "model" / "tiny.gguf"
    (port,) = harness.free_ports(1)
    argv = [str(venv / "bin" / "python"), "-m", "llama_cpp.server", "--model", str(model), "--model_alias", MODEL,
            "--embedding", "True", "--interrupt_requests", "False", "--disable_ping_events", "True",
            "--host", "127.0.0.1", "--port", str(port), "--verbose", "False"]
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("PYTEST_", "VIRTUAL_ENV", "PYTHON", "MLCHAOS_"))
           and k.lower() not in ("http_proxy", "https_proxy", "all_proxy")}
    env.update(PYTHONNOUSERSITE="1", PYTHONUNBUFFERED="1", XDG_CACHE_HOME=str(workdir / ".cache"),
               VIRTUAL_ENV=str(venv))
    log_path = workdir / "llamacpp.log"
    t0 = time.monotonic()
    with open(log_path, "wb") as log:
        process = subprocess.Popen(argv, cwd=workdir, env=env, stdin=subprocess.DEVNULL, stdout=log,
                                   stderr=subprocess.STDOUT, start_new_session=True)
    harness._LIVE[process.pid] = process
    server = RunningServer(LLAMA, f"http://127.0.0.1:{port}", MODEL, venv, model.parent, workdir, log_path,
                           {"http": port}, process)
    try:
        harness._wait_ready(server, server.url + "/v1/models", timeout)
    except BaseException:
        harness.stop(server)
        raise
    server.startup_seconds = time.monotonic() - t0
    return server


async def run_clients(jobs: list[dict[str, Any]], timeout: float = 120.0) -> list[dict[str, Any]]:
    """Run ``jobs`` (see scripts/servers/llm_client.py) in the clients' venv, one after the other, in one
    process; returns one result per job. The event loop stays free meanwhile (the sidecar runs on it)."""
    why = problem(CLIENTS)
    if why:
        raise ServerError(f"{CLIENTS}: {why}: run scripts/llm-servers.sh {CLIENTS}")
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("PYTEST_", "VIRTUAL_ENV", "PYTHON", "OPENAI_", "LANGCHAIN_", "LANGSMITH_"))
           and k.lower() not in ("http_proxy", "https_proxy", "all_proxy")}
    env.update(PYTHONNOUSERSITE="1", LANGCHAIN_TRACING_V2="false", OPENAI_API_KEY="unused")
    proc = await asyncio.create_subprocess_exec(
        str(_venv(CLIENTS) / "bin" / "python"), str(CLIENT_SCRIPT), stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, env=env)
    try:
        out, err = await asyncio.wait_for(proc.communicate(json.dumps(jobs).encode()), timeout)
    except TimeoutError:
        proc.kill()
        await proc.wait()
        raise
    if proc.returncode != 0:
        raise RuntimeError(f"llm_client.py failed ({proc.returncode}): {err.decode(errors='replace')[-3000:]}")
    results: list[dict[str, Any]] = json.loads(out)
    return results
