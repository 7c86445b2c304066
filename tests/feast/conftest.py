"""Module fixtures for the real Feast tests: one feature server, one SDK client process, one mlchaos.

Feast that scripts/feature-servers.sh has not installed is skipped, with the reason, unless
MLCHAOS_REQUIRE_SERVERS=1 (as `make test` sets): then the tests fail, so they are never skipped silently.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.feast import harness
from tests.servers.harness import require_servers


@pytest.fixture(scope="session")
def feast_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[harness.FeastServer]:
    problem = harness.problem()
    if problem:
        how = "run `scripts/feature-servers.sh feast`"
        if require_servers():
            pytest.fail(f"feast is required (MLCHAOS_REQUIRE_SERVERS=1) but {problem}: {how}", pytrace=False)
        pytest.skip(f"feast not installed ({problem}): {how}; MLCHAOS_REQUIRE_SERVERS=1 makes this a failure")
    server = harness.start_feast(tmp_path_factory.mktemp("feast"))
    try:
        yield server
    finally:
        harness.stop_process(server.process)


@pytest.fixture(scope="session")
def sdk(feast_server: harness.FeastServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[harness.SdkClient]:
    client = harness.SdkClient(tmp_path_factory.mktemp("sdk"))
    try:
        yield client
    finally:
        client.close()
