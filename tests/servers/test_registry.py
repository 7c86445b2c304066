"""Registry chaos against a real MLflow tracking server, with MLflow's own client through ``mlchaos run``.

The registry (``mlflow_registry`` in conftest) holds model ``fraud``: version 1 (no signature, predicts PROBE as
[1, 0]) and version 2 (a signature on columns a and b, predicts [0, 1]), alias ``champion`` -> 2. Each test runs
one mlchaos in front of it with one experiment, sticky on the Authorization header: MLflow's client sends
``Bearer $MLFLOW_TRACKING_TOKEN`` on every registry and artifact call, so a token picks the caller's cohort, as
a deploy pipeline's credentials would. The clients are scripts/servers/registry_client.py (pyfunc.load_model,
MlflowClient lookups) and ``mlflow models serve``, in the MLflow venv.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from proxy.cohort import bucket_of
from proxy.policy.model import BUCKETS
from tests.conftest import free_port
from tests.servers import harness
from tests.servers.conftest import Registry
from tests.servers.harness import request

pytestmark = pytest.mark.slow

EXPERIMENT = "registry"
CHAMPION = "models:/fraud@champion"
# MLflow's client retries 503s and resets 7 times with backoff factor 2 (minutes); these keep a failing load
# to seconds. The backoff factor is an integer in MLflow's settings.
FEW_RETRIES = {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "2", "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "0",
               "MLFLOW_HTTP_REQUEST_BACKOFF_JITTER": "0", "MLFLOW_HTTP_REQUEST_TIMEOUT": "20"}


def token(cohort: str) -> str:
    """A tracking token whose callers land in ``cohort`` (chaos, or none) of the experiment (chaos 50%)."""
    for k in range(1000):
        candidate = f"deploy-{k}"
        bucket = bucket_of(EXPERIMENT.encode(), f"Bearer {candidate}".encode())
        if (bucket < BUCKETS // 2) == (cohort == "chaos"):
            return candidate
    raise AssertionError("no token found")


class Mlchaos:
    """``mlchaos run`` in front of the registry, with one experiment of ``faults`` (every registry path)."""

    def __init__(self, upstream: str, faults: list[dict[str, Any]], tmp: Path) -> None:
        self.port, self.admin = free_port(), free_port()
        policy = {
            "listen": f"127.0.0.1:{self.port}", "upstream": upstream, "admin": {"listen": f"127.0.0.1:{self.admin}"},
            "max_blast_radius": 50,
            "experiments": [{"name": EXPERIMENT, "chaos": 50, "control": 0, "sticky_key": "header:authorization",
                             "match": {"path": "/api/2.0/**"}, "faults": faults, "kill_switch": {"enabled": False}}],
        }
        (tmp / "policy.yaml").write_text(yaml.safe_dump(policy))
        self.log_path = tmp / "mlchaos.log"
        self.tmp = tmp
        with self.log_path.open("wb") as log:
            self.proc = subprocess.Popen([sys.executable, "-m", "proxy", "run", "--config", str(tmp / "policy.yaml")],
                                         stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                         env={k: v for k, v in os.environ.items() if not k.startswith("MLCHAOS_")})
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            try:
                if request("GET", f"http://127.0.0.1:{self.admin}/readyz", timeout=1).status == 200:
                    return
            except OSError:
                pass
            time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"mlchaos did not become ready:\n{self.log_path.read_text()}")

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def client(self, *args: str, cohort: str = "chaos", env: dict[str, str] | None = None) -> tuple[int, Any, str]:
        return harness.registry_client(self.url, self.tmp / "client", *args,
                                       env={"MLFLOW_TRACKING_TOKEN": token(cohort), **(env or {})})

    def audit(self) -> list[dict[str, Any]]:
        lines = [json.loads(line) for line in self.log_path.read_text().splitlines() if line.startswith("{")]
        return [line for line in lines if line.get("event") == "registry_fault"]

    def injected(self, fault: str) -> float:
        text = request("GET", f"http://127.0.0.1:{self.admin}/metrics").text
        for line in text.splitlines():
            if line.startswith("mlchaos_faults_injected_total{") and f'fault="{fault}"' in line:
                return float(line.rsplit(" ", 1)[1])
        return 0.0

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)


@pytest.fixture
def mlchaos(mlflow_registry: Registry, tmp_path: Path) -> Iterator[Any]:
    made: list[Mlchaos] = []

    def start(*faults: dict[str, Any]) -> Mlchaos:
        workdir = tmp_path / f"mlchaos{len(made)}"
        workdir.mkdir()
        made.append(Mlchaos(mlflow_registry.url, list(faults), workdir))
        return made[-1]

    yield start
    for m in made:
        m.stop()


@pytest.fixture(scope="module")
def direct(mlflow_registry: Registry, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """What MLflow's client gets from the registry itself: the champion's and version 1's loads, the lookups."""
    work = tmp_path_factory.mktemp("direct")
    out = {}
    for key, args in {"champion": ("load", CHAMPION), "v1": ("load", "models:/fraud/1"),
                      "lookup": ("lookup", "fraud", "champion")}.items():
        code, result, log = harness.registry_client(mlflow_registry.url, work, *args)
        assert code == 0, log
        out[key] = result
    assert out["champion"]["predictions"] != out["v1"]["predictions"]
    assert out["champion"]["has_signature"] and not out["v1"]["has_signature"]
    return out


def test_a_caller_outside_the_cohort_sees_exactly_what_the_registry_says(mlflow_registry, mlchaos, direct):
    m = mlchaos({"type": "registry_version", "offset": -1}, {"type": "strip_signature"},
                {"type": "scramble_metadata"}, {"type": "corrupt_artifact"})
    code, lookup, log = m.client("lookup", "fraud", "champion", cohort="none")
    assert code == 0, log
    assert lookup == direct["lookup"]
    code, loaded, log = m.client("load", CHAMPION, cohort="none")
    assert code == 0, log
    assert loaded == direct["champion"]
    # Byte for byte, call by call (the MLmodel file and the pickle included).
    model_id = mlflow_registry.versions["2"]["model_id"]
    headers = {"Authorization": f"Bearer {token('none')}"}
    for path in ("/api/2.0/mlflow/registered-models/alias?name=fraud&alias=champion",
                 "/api/2.0/mlflow/registered-models/get?name=fraud",
                 "/api/2.0/mlflow/model-versions/get-download-uri?name=fraud&version=2",
                 f"/api/2.0/mlflow-artifacts/artifacts/0/models/{model_id}/artifacts/MLmodel",
                 f"/api/2.0/mlflow-artifacts/artifacts/0/models/{model_id}/artifacts/model.pkl"):
        via, straight = request("GET", m.url + path, headers=headers), request("GET", mlflow_registry.url + path)
        assert (via.status, via.body, via.headers.get("etag")) == (straight.status, straight.body,
                                                                  straight.headers.get("etag"))
    assert m.audit() == []


def test_registry_version_makes_the_client_quietly_load_the_previous_version(mlflow_registry, mlchaos, direct):
    m = mlchaos({"type": "registry_version", "offset": -1})
    code, loaded, log = m.client("load", CHAMPION)
    assert code == 0, log
    assert loaded["predictions"] == direct["v1"]["predictions"] != direct["champion"]["predictions"]
    assert loaded["run_id"] == mlflow_registry.versions["1"]["run_id"] and not loaded["has_signature"]
    code, lookup, log = m.client("lookup", "fraud", "champion")
    assert code == 0, log
    v1 = mlflow_registry.versions["1"]
    # Every answer agrees: the alias, the registered model, the version's own record, its files.
    assert lookup["alias"]["version"] == lookup["get"]["version"] == "1"
    assert lookup["alias"]["run_id"] == lookup["get"]["run_id"] == v1["run_id"]  # learned during the load
    assert lookup["registered"]["aliases"] == {"champion": "1"} and lookup["latest"] == ["1"]
    assert "champion" in lookup["get"]["aliases"] and v1["model_id"] in lookup["download_uri"]
    audit = [a for a in m.audit() if a["call"] == "alias"]
    assert audit and all(a["model"] == "fraud" and a["asked"] == "2" and a["served"] == "1" for a in audit)


def test_a_scoring_server_started_through_mlchaos_serves_the_previous_version(mlflow_registry, mlchaos, direct,
                                                                            tmp_path):
    m = mlchaos({"type": "registry_version", "version": "1"})
    server = harness.serve_registered(CHAMPION, m.url, tmp_path / "serve",
                                      env={"MLFLOW_TRACKING_TOKEN": token("chaos")})
    try:
        probe = {"dataframe_split": {"columns": ["a", "b"], "data": [[2.0, 1.0], [-2.0, -1.5]]}}
        reply = harness.post_json(server.url + "/invocations", probe)
        assert reply.status == 200, reply.text
        assert reply.json()["predictions"] == direct["v1"]["predictions"]
    finally:
        harness.stop(server)
    lines = [(a["fault"], a["model"], a["asked"], a["served"], a.get("alias")) for a in m.audit()]
    assert ("registry_version", "fraud", "2", "1", "champion") in lines, lines


def test_strip_signature_loads_without_a_schema_and_a_wrong_column_gets_through(mlchaos, direct):
    assert "error" in direct["champion"]["wrong_column"]  # the signature refuses a frame without column b
    m = mlchaos({"type": "strip_signature"})
    code, loaded, log = m.client("load", CHAMPION)
    assert code == 0, log
    assert not loaded["has_signature"]
    assert loaded["predictions"] == direct["champion"]["predictions"]
    assert isinstance(loaded["wrong_column"], list)
    assert [a["path"].rsplit("/", 1)[-1] for a in m.audit()] == ["MLmodel"]


def test_scramble_metadata_hides_the_description_tags_and_run(mlchaos, direct):
    m = mlchaos({"type": "scramble_metadata", "what": ["tags", "description", "run_id"], "mode": "remove"})
    code, lookup, log = m.client("lookup", "fraud", "champion")
    assert code == 0, log
    assert direct["lookup"]["alias"]["tags"] == {"validated": "true"}
    assert lookup["alias"]["tags"] == {} and not lookup["alias"]["description"]
    assert lookup["alias"]["run_id"] is None and lookup["get"]["run_id"] is None
    assert lookup["alias"]["version"] == direct["lookup"]["alias"]["version"]


def test_corrupt_artifact_makes_the_load_fail_to_unpickle(mlchaos):
    m = mlchaos({"type": "corrupt_artifact", "mode": "flip", "count": 8})
    code, out, log = m.client("load", CHAMPION)
    assert code == 3, log
    assert "pickle" in (out["error"] + out["message"]).lower() or "load key" in out["message"], out
    assert [a["path"].rsplit("/", 1)[-1] for a in m.audit()] == ["model.pkl"]


def test_a_registry_answering_503_is_retried_then_the_load_fails(mlchaos):
    m = mlchaos({"type": "abort", "status": 503, "error_code": "TEMPORARILY_UNAVAILABLE", "retry_after": 0})
    code, out, log = m.client("load", CHAMPION, env=FEW_RETRIES)
    assert code == 3, log
    assert "503" in out["message"] or "too many" in out["message"].lower(), out
    # The first call (the alias lookup) and its two retries, and nothing after it.
    assert m.injected("abort") == 3


def test_a_registry_that_drops_connections_is_retried_then_the_load_fails(mlchaos):
    m = mlchaos({"type": "drop", "mode": "reset"})
    code, out, log = m.client("load", CHAMPION, env=FEW_RETRIES)
    assert code == 3, log
    assert m.injected("drop") == 3, out


def test_a_slow_registry_delays_the_load_but_it_succeeds(mlchaos, direct):
    m = mlchaos({"type": "delay", "distribution": "fixed", "duration": "300ms"})
    t0 = time.monotonic()
    code, loaded, log = m.client("load", CHAMPION)
    assert code == 0, log
    assert loaded == direct["champion"]
    # Every call of the load waited: the alias, the model, the URI, 2 listings, server-info is not under /api/2.0,
    # and 5 files: at least 9 calls of 300 ms.
    assert m.injected("delay") >= 9 and time.monotonic() - t0 >= 9 * 0.3
