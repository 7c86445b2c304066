"""Session-scoped fixtures that run the real model servers: ``mlserver``, ``kserve`` and ``mlflow_server``.

Each starts its server once per test session on free loopback ports and returns a
``tests.servers.harness.RunningServer`` (``.url``, ``.model``, ``.venv``, ``.model_dir``, ``.log_path``,
``.ports``). A server that scripts/model-servers.sh has not installed is skipped, with the reason, unless
MLCHAOS_REQUIRE_SERVERS=1 is set (as `make test` does): then its tests fail, so they can never be skipped
silently. A server that is installed but does not start always fails, with the tail of its log.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from tests.servers import grpc_peers, harness
from tests.servers.harness import RunningServer


def require_installed(name: str) -> None:
    """Skip (or, under MLCHAOS_REQUIRE_SERVERS=1, fail) when scripts/model-servers.sh has not installed ``name``."""
    problem = harness.install(name).problem()
    if problem:
        how = f"run `scripts/model-servers.sh {name}`"
        if harness.require_servers():
            pytest.fail(f"{name} is required (MLCHAOS_REQUIRE_SERVERS=1) but {problem}: {how}", pytrace=False)
        pytest.skip(f"{name} not installed ({problem}): {how}; MLCHAOS_REQUIRE_SERVERS=1 makes this a failure")


def run_server(name: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    require_installed(name)
    server = harness.start(name, tmp_path_factory.mktemp(name))
    try:
        yield server
    finally:
        harness.stop(server)


@pytest.fixture(scope="session")
def mlserver(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    """Seldon MLServer 1.7 with the sklearn runtime: V2 REST at ``.url`` (gRPC and metrics in ``.ports``)."""
    yield from run_server("mlserver", tmp_path_factory)


@pytest.fixture(scope="session")
def kserve(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    """KServe 0.21 Python ModelServer: V1 and V2 REST at ``.url`` (V2 gRPC on ``.ports["grpc"]``)."""
    yield from run_server("kserve", tmp_path_factory)


@pytest.fixture(scope="session")
def mlflow_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    """MLflow 3.17 scoring server (`mlflow models serve --env-manager local`): /invocations at ``.url``."""
    yield from run_server("mlflow", tmp_path_factory)


@pytest.fixture(scope="session")
def stream_peer(tmp_path_factory: pytest.TempPathFactory) -> Iterator[grpc_peers.StreamPeer]:
    """A Triton-shaped ModelStreamInfer peer (scripts/servers/grpc_stream_server.py) for tritonclient's stream,
    which neither MLServer nor KServe answers in that shape; from the grpc-clients venv."""
    grpc_peers.require_clients()
    peer = grpc_peers.StreamPeer(tmp_path_factory.mktemp("stream-peer"))
    try:
        yield peer
    finally:
        peer.stop()


@dataclass
class Registry:
    server: RunningServer
    name: str
    # Per version ("1", "2"): its run_id and model_id, as registered.
    versions: dict[str, dict[str, str]]

    @property
    def url(self) -> str:
        return self.server.url


REGISTERED = "fraud"


@pytest.fixture(scope="session")
def mlflow_registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Registry]:
    """MLflow 3.17's tracking server with its registry (`mlflow server`, SQLite, artifacts served through it), from
    the MLflow venv, with model ``fraud`` registered twice by scripts/servers/registry_client.py: version 1 without a
    signature, version 2 with one, alias ``champion`` -> 2."""
    require_installed("mlflow")
    workdir = tmp_path_factory.mktemp("registry")
    server = harness.start_registry(workdir)
    try:
        code, out, log = harness.registry_client(server.url, workdir / "register", "register", REGISTERED)
        assert code == 0, log
        yield Registry(server, REGISTERED, {v["version"]: v for v in out["versions"]})
    finally:
        harness.stop(server)
