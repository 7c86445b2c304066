"""Session fixtures for the real data-feed tests: the dataset, nginx and moto serving it, and the clients.

Peers that scripts/data-servers.sh has not installed (or no nginx) are skipped, with the reason, unless
MLCHAOS_REQUIRE_SERVERS=1 (as `make test` sets): then the tests fail, so they are never skipped silently.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.datafeeds import harness
from tests.servers.harness import require_servers

BUCKET = "feeds"


@pytest.fixture(scope="session")
def peers() -> None:
    problem = harness.peers_problem()
    if problem:
        if require_servers():
            pytest.fail(f"the data-feed peers are required (MLCHAOS_REQUIRE_SERVERS=1) but: {problem}", pytrace=False)
        pytest.skip(f"{problem}; MLCHAOS_REQUIRE_SERVERS=1 makes this a failure")


@pytest.fixture(scope="session")
def clients(peers: None) -> Iterator[harness.Clients]:
    c = harness.Clients()
    try:
        yield c
    finally:
        c.close()


@pytest.fixture(scope="session")
def dataset(clients: harness.Clients, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """nginx's root: feeds/data.{csv,jsonl,json,parquet} of harness.ROWS, written by pandas."""
    root = tmp_path_factory.mktemp("www")
    clients.ok({"op": "write_dataset", "dir": str(root / "feeds"), "rows": harness.ROWS})
    return root


@pytest.fixture(scope="session")
def nginx(dataset: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[harness.Nginx]:
    server = harness.Nginx(dataset, tmp_path_factory.mktemp("nginx"))
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def moto(dataset: Path, clients: harness.Clients, tmp_path_factory: pytest.TempPathFactory) -> Iterator[harness.Moto]:
    """moto's S3 with bucket ``feeds`` holding the dataset's four files under the same keys."""
    server = harness.Moto(tmp_path_factory.mktemp("moto"))
    try:
        for name in ("data.csv", "data.jsonl", "data.json", "data.parquet"):
            clients.ok({"op": "s3_put", "endpoint": server.url, "bucket": BUCKET, "key": f"feeds/{name}",
                        "file": str(dataset / "feeds" / name)})
        yield server
    finally:
        server.stop()
