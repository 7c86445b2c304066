"""Feature faults through a real ``mlchaos run``, against each real model server.

One mlchaos process per server, with one experiment per fault; a test forces the chaos cohort of the fault it
wants (cohort override headers and ``x-mlchaos-experiment``), or the control and unassigned cohorts, whose
answers must be byte-identical to a direct call. What each fault does to each server is asserted against the
ground truth in test_direct.py.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.servers.harness import EXPECTED, ROWS, Reply, RunningServer, post_json, request
from tests.servers.test_direct import (
    NAMES,
    NAN,
    columns,
    mlflow_split,
    tritonclient_http,
    v1_dict_of_lists,
    v1_predictions,
    v2_columnar,
    v2_predictions,
)

pytestmark = pytest.mark.slow

TOKEN = "through-mlchaos"
FEATURES = ["sepal_length", "sepal_width", "petal_length", "petal_width"]
# One experiment per fault: tiny shares (forced cohorts do the work), every request matches.
FAULTS: dict[str, dict[str, Any]] = {
    "rename": {"type": "rename_feature", "mapping": {"petal_length": "petal_len"}},
    "drop": {"type": "drop_feature", "features": ["petal_width"]},
    "nan": {"type": "nan", "features": ["sepal_width"], "fraction": 1.0},
    "shift": {"type": "shift", "features": ["petal_length", "petal_width"], "scale": 4.0, "offset": 1.0},
    "out_of_range": {"type": "out_of_range", "features": ["petal_length"], "at": "scaled", "factor": 1e6, "sign": "+"},
    "type_swap": {"type": "type_swap", "features": ["sepal_length"], "fraction": 1.0},
    # The model's answer as a table: its outputs are the response's features.
    "nan_response": {"type": "nan", "target": "response", "fraction": 1.0},
}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


class Proxy:
    def __init__(self, upstream: str, tmp: Path) -> None:
        self.port, self.admin = _free_port(), _free_port()
        policy = {
            "listen": f"127.0.0.1:{self.port}", "upstream": upstream, "admin": {"listen": f"127.0.0.1:{self.admin}"},
            "cohort_override": {"enabled": True},
            # Inference is idempotent: declared as a user would, so that a POST meeting a keep-alive close is sent
            # again rather than answered 502. (MLServer closes its connection after the 500 of an exception without
            # saying so; the proxy no longer reuses a connection that answered 5xx, tests/dataplane/test_retries.py.)
            "upstream_idempotent": True,
            "experiments": [{"name": name, "chaos": 0.01, "control": 0.01, "faults": [fault],
                             "payload": {"features": FEATURES}, "reveal": {"fault": True, "cohort": True},
                             "kill_switch": {"enabled": False}} for name, fault in FAULTS.items()],
        }
        path = tmp / "policy.yaml"
        path.write_text(yaml.safe_dump(policy))
        env = {**os.environ, "MLCHAOS_OVERRIDE_TOKEN": TOKEN}
        self.log = (tmp / "mlchaos.log").open("wb")
        self.proc = subprocess.Popen([sys.executable, "-m", "proxy", "run", "--config", str(path)],
                                     stdout=self.log, stderr=subprocess.STDOUT, env=env)
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            try:
                if request("GET", f"http://127.0.0.1:{self.admin}/readyz", timeout=1).status == 200:
                    return
            except OSError:
                pass
            time.sleep(0.1)
        self.stop()
        raise RuntimeError("mlchaos did not become ready")

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def post(self, path: str, payload: Any, *, cohort: str, experiment: str = "shift") -> Reply:
        import json

        body = json.dumps(payload).encode()
        headers = {"Content-Type": "application/json", "x-mlchaos-cohort": cohort, "x-mlchaos-token": TOKEN,
                   "x-mlchaos-experiment": experiment}
        return request("POST", self.url(path), body, headers)

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        self.log.close()


@pytest.fixture(scope="module")
def proxies(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Proxy]]:
    made: dict[str, Proxy] = {}

    def get(server: RunningServer) -> Proxy:
        if server.url not in made:
            made[server.url] = Proxy(server.url, tmp_path_factory.mktemp("mlchaos"))
        return made[server.url]

    yield get  # type: ignore[misc]
    for p in made.values():
        p.stop()


def _same_as_direct(proxy: Proxy, direct_url: str, path: str, payload: Any) -> None:
    direct = post_json(direct_url, payload)
    for cohort in ("control", "none"):
        via = proxy.post(path, payload, cohort=cohort)
        assert (via.status, via.body) == (direct.status, direct.body), cohort
        assert via.headers.get("x-mlchaos-fault") is None


# -- MLServer, V2 columnar (pd) --------------------------------------------------------------------------------

def _mlserver_path(server: RunningServer) -> str:
    return f"/v2/models/{server.model}/infer"


def _v2(payload_id: str = "r1") -> dict[str, Any]:
    return {"id": payload_id, **v2_columnar(columns())}


def test_mlserver_control_and_unassigned_answers_are_byte_identical(mlserver, proxies):
    path = _mlserver_path(mlserver)
    _same_as_direct(proxies(mlserver), mlserver.url + path, path, _v2())


def test_mlserver_answers_500_to_a_renamed_column_through_mlchaos(mlserver, proxies):
    reply = proxies(mlserver).post(_mlserver_path(mlserver), _v2(), cohort="chaos", experiment="rename")
    assert reply.status == 500 and NAMES in reply.text
    assert reply.headers["x-mlchaos-fault"] == "rename_feature"


def test_mlserver_answers_500_to_a_null_feature(mlserver, proxies):
    reply = proxies(mlserver).post(_mlserver_path(mlserver), _v2(), cohort="chaos", experiment="nan")
    assert reply.status == 500 and NAN in reply.text


def test_mlserver_shifted_features_change_predictions_with_status_200(mlserver, proxies):
    reply = proxies(mlserver).post(_mlserver_path(mlserver), _v2(), cohort="chaos", experiment="shift")
    assert reply.status == 200 and v2_predictions(reply) != EXPECTED


def test_mlserver_out_of_range_values_are_silently_wrong(mlserver, proxies):
    reply = proxies(mlserver).post(_mlserver_path(mlserver), _v2(), cohort="chaos", experiment="out_of_range")
    assert reply.status == 200 and v2_predictions(reply) != EXPECTED


def test_mlserver_answer_table_changed_by_a_response_side_feature_fault(mlserver, proxies):
    import json

    path = _mlserver_path(mlserver)
    direct = json.loads(post_json(mlserver.url + path, _v2()).body)
    reply = proxies(mlserver).post(path, _v2(), cohort="chaos", experiment="nan_response")
    assert reply.status == 200 and reply.headers["x-mlchaos-fault"] == "nan"
    chaos = json.loads(reply.body)
    # The real server's answer, every output's values null, everything else as it answered.
    assert direct["outputs"] and all(o["data"] for o in direct["outputs"])
    assert chaos["outputs"] == [{**o, "data": [None] * len(o["data"])} for o in direct["outputs"]]
    assert {k: v for k, v in chaos.items() if k != "outputs"} == {k: v for k, v in direct.items() if k != "outputs"}


def test_tritonclient_through_mlchaos_sees_the_shift_only_in_chaos(mlserver, proxies):
    import numpy as np
    import tritonclient.http as httpclient

    proxy = proxies(mlserver)
    cols = columns()
    inputs = []
    for name in FEATURES:
        inp = httpclient.InferInput(name, [2], "FP64")
        inp.set_data_from_numpy(np.asarray(cols[name], dtype=np.float64), binary_data=False)
        inputs.append(inp)
    client = httpclient.InferenceServerClient(url=f"127.0.0.1:{proxy.port}")
    try:
        def labels(cohort: str) -> list[int]:
            headers = {"x-mlchaos-cohort": cohort, "x-mlchaos-token": TOKEN, "x-mlchaos-experiment": "shift"}
            result = client.infer(mlserver.model, inputs, parameters={"content_type": "pd"}, headers=headers)
            out = result.get_response()["outputs"][0]
            return [int(x) for x in result.as_numpy(out["name"]).ravel()]
        assert labels("control") == EXPECTED
        assert labels("chaos") != EXPECTED
    finally:
        client.close()


def test_kserve_binary_tensors_through_mlchaos_see_the_shift_only_in_chaos(kserve, proxies):
    import numpy as np

    triton = tritonclient_http()
    client = triton.InferenceServerClient(f"127.0.0.1:{proxies(kserve).port}")
    x = np.array(ROWS, dtype=np.float64)
    binary = triton.InferInput("input-0", [2, 4], "FP64")
    binary.set_data_from_numpy(x, binary_data=True)  # tritonclient's default framing: the binary extension
    try:
        def labels(cohort: str) -> list[int]:
            headers = {"x-mlchaos-cohort": cohort, "x-mlchaos-token": TOKEN, "x-mlchaos-experiment": "shift"}
            return [int(v) for v in client.infer(kserve.model, [binary], headers=headers).as_numpy("output-0")]
        assert labels("control") == EXPECTED
        assert labels("chaos") != EXPECTED  # decoded, shifted, encoded again: KServe took it and answered
    finally:
        client.close()


# -- KServe, V1 dict of columns --------------------------------------------------------------------------------

def _kserve_path(server: RunningServer) -> str:
    return f"/v1/models/{server.model}:predict"


def test_kserve_control_and_unassigned_answers_are_byte_identical(kserve, proxies):
    path = _kserve_path(kserve)
    _same_as_direct(proxies(kserve), kserve.url + path, path, v1_dict_of_lists(columns()))


def test_kserve_answers_500_to_a_missing_column(kserve, proxies):
    reply = proxies(kserve).post(_kserve_path(kserve), v1_dict_of_lists(columns()), cohort="chaos", experiment="drop")
    assert reply.status == 500 and NAMES in reply.text


def test_kserve_quietly_accepts_numbers_sent_as_strings(kserve, proxies):
    # Observed: KServe builds a DataFrame and sklearn coerces "5.1" back to 5.1; only non-numeric text
    # ("abc", test_direct.py) fails. The fault is real on the wire and invisible in the answer.
    reply = proxies(kserve).post(_kserve_path(kserve), v1_dict_of_lists(columns()), cohort="chaos",
                                 experiment="type_swap")
    assert reply.headers["x-mlchaos-fault"] == "type_swap"
    assert reply.status == 200 and v1_predictions(reply) == EXPECTED


def test_kserve_shifted_features_change_predictions(kserve, proxies):
    reply = proxies(kserve).post(_kserve_path(kserve), v1_dict_of_lists(columns()), cohort="chaos",
                                 experiment="shift")
    assert reply.status == 200 and v1_predictions(reply) != EXPECTED


# -- MLflow, dataframe_split --------------------------------------------------------------------------------

def test_mlflow_control_and_unassigned_answers_are_byte_identical(mlflow_server, proxies):
    _same_as_direct(proxies(mlflow_server), mlflow_server.url + "/invocations", "/invocations",
                    mlflow_split(columns()))


def test_mlflow_answers_400_naming_the_missing_input(mlflow_server, proxies):
    reply = proxies(mlflow_server).post("/invocations", mlflow_split(columns()), cohort="chaos", experiment="drop")
    assert reply.status == 400 and "Model is missing inputs ['petal_width']" in reply.text


def test_mlflow_answers_400_to_a_null_feature(mlflow_server, proxies):
    reply = proxies(mlflow_server).post("/invocations", mlflow_split(columns()), cohort="chaos", experiment="nan")
    assert reply.status == 400


def test_mlflow_shifted_features_change_predictions(mlflow_server, proxies):
    reply = proxies(mlflow_server).post("/invocations", mlflow_split(columns()), cohort="chaos", experiment="shift")
    assert reply.status == 200 and v1_predictions(reply) != EXPECTED
