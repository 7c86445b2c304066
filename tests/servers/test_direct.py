"""Direct calls to the real model servers, without mlchaos: what each one really answers.

Ground truth for the fault tests: the same two iris rows (predicted [0, 2]) are sent in every wire format the
servers take, first as they are, then with one input problem each (in row 0). Observed with MLServer 1.7.1
(sklearn runtime), KServe 0.21.0 and MLflow 3.17.2, scikit-learn 1.9.1, a LogisticRegression fitted on a
DataFrame with named columns:

- null: reaches the model as NaN everywhere. MLServer 500 and KServe 500 "Input X contains NaN"; MLflow 400
  BAD_REQUEST "Encountered an unexpected error while evaluating the model" (NaN in its stack_trace).
- bare NaN token: MLServer 422 json_invalid (never parsed); KServe V1 400 "Unrecognized request format",
  KServe V2 parses it → 500 NaN; MLflow parses it → 400 as null.
- column renamed: MLServer pd, KServe V1 dict / V2 pd 500 "The feature names should match"; MLflow 400
  INVALID_PARAMETER_VALUE "Model is missing inputs ['sepal_length']". Matrix forms have no names to rename.
- column missing: named forms as renamed; matrix forms 500 "X has 3 features, but ... expecting 4".
- 1e9 (out of range): 200 everywhere, prediction [2, 2]: silently wrong.
- "abc" in a number column: MLServer and KServe 500 "could not convert string to float" (KServe V1 rows:
  "dtype='numeric' is not compatible"); MLflow 400 BAD_REQUEST "could not convert string to float".
- extra column: MLServer and KServe 500 (feature names, or "X has 5 features"); MLflow 200 [0, 2] (dropped).

MLServer's 500 bodies are text/plain tracebacks (its debug setting is on by default); KServe's errors are JSON
{"error": "..."}; MLflow's are JSON {"error_code", "message", "stack_trace"?}.

Beyond the body (test_content_type_header, test_gzip, the tritonclient tests):
- Content-Type: MLServer parses JSON with none or "application/json; charset=utf-8", 422 for text/plain. KServe
  V1 parses only exactly "application/json" or none: with "; charset=utf-8" the model gets None → 500; KServe
  V2 takes anything but application/json for the binary tensor extension → 400. MLflow: none → 500, a type
  other than JSON, CSV or parquet → 415. A proxy must forward the header byte for byte.
- gzip: MLServer compresses answers over 500 bytes on Accept-Encoding: gzip and inflates a gzip request body;
  KServe and MLflow do neither (a gzip body → 400).
- Binary tensors (tritonclient's default): KServe answers them; MLServer 422 (JSON decode error).
"""

from __future__ import annotations

import copy
import gzip
import importlib
import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import pytest

from tests.servers.harness import EXPECTED, FEATURES, ROWS, Reply, RunningServer, post_json, require_servers
from tests.servers.harness import request as http_request

pytestmark = pytest.mark.slow

Columns = dict[str, list[Any]]

NAN = "Input X contains NaN"
NAMES = "The feature names should match those that were passed during fit"
NOT_FLOAT = "could not convert string to float: 'abc'"
THREE = "X has 3 features, but LogisticRegression is expecting 4 features as input"
FIVE = "X has 5 features, but LogisticRegression is expecting 4 features as input"
WRONG = [2, 2]  # what 1e9 in petal_length of row 0 makes of [0, 2]


def columns() -> Columns:
    return {name: [row[i] for row in ROWS] for i, name in enumerate(FEATURES)}


def _null(c: Columns) -> None:
    c["sepal_length"][0] = None


def _nan(c: Columns) -> None:
    c["sepal_length"][0] = float("nan")  # json.dumps writes the bare token NaN, which strict JSON has not


def _renamed(c: Columns) -> None:
    renamed = {("sepal_len" if k == "sepal_length" else k): v for k, v in c.items()}
    c.clear()
    c.update(renamed)


def _missing(c: Columns) -> None:
    del c["petal_width"]


def _out_of_range(c: Columns) -> None:
    c["petal_length"][0] = 1e9


def _string(c: Columns) -> None:
    c["sepal_length"][0] = "abc"


def _extra(c: Columns) -> None:
    c["extra"] = [1.0, 2.0]


PROBLEMS: dict[str, Callable[[Columns], None]] = {
    "none": lambda c: None,
    "null": _null,
    "nan_token": _nan,
    "renamed": _renamed,
    "missing": _missing,
    "out_of_range": _out_of_range,
    "string": _string,
    "extra": _extra,
}


def problem(name: str) -> Columns:
    c = copy.deepcopy(columns())
    PROBLEMS[name](c)
    return c


def rows(c: Columns) -> list[list[Any]]:
    names = list(c)
    return [[c[k][i] for k in names] for i in range(len(ROWS))]


# -- request bodies, one per wire format -------------------------------------------------------------------------


def v2_columnar(c: Columns) -> dict[str, Any]:
    """V2 with the request-level content type "pd": one input per column (MLServer, KServe)."""
    return {
        "parameters": {"content_type": "pd"},
        "inputs": [{"name": k, "datatype": "FP64", "shape": [len(v)], "data": v} for k, v in c.items()],
    }


def v2_matrix(c: Columns) -> dict[str, Any]:
    """V2 with one [N, F] FP64 tensor, nested rows; the column names are not on the wire."""
    return {"inputs": [{"name": "input-0", "datatype": "FP64", "shape": [len(ROWS), len(c)], "data": rows(c)}]}


def v1_rows(c: Columns) -> dict[str, Any]:
    return {"instances": rows(c)}


def v1_dict_of_lists(c: Columns) -> dict[str, Any]:
    """KServe V1 with one dict of column → list: get_predict_input makes it a DataFrame."""
    return {"instances": [c]}


def mlflow_split(c: Columns) -> dict[str, Any]:
    return {"dataframe_split": {"columns": list(c), "data": rows(c)}}


def mlflow_records(c: Columns) -> dict[str, Any]:
    return {"dataframe_records": [dict(zip(c, r, strict=True)) for r in rows(c)]}


def mlflow_instances(c: Columns) -> dict[str, Any]:
    return {"instances": [dict(zip(c, r, strict=True)) for r in rows(c)]}


def mlflow_inputs(c: Columns) -> dict[str, Any]:
    return {"inputs": c}


def tritonclient_http() -> Any:
    """tritonclient.http from the project venv (a [test] dependency); skipped, or failed when required, if absent."""
    try:
        return importlib.import_module("tritonclient.http")
    except ImportError:
        why = 'tritonclient is not installed: pip install "tritonclient[http]" (a [test] dependency)'
        if require_servers():
            pytest.fail(why, pytrace=False)
        pytest.skip(why)


def v2_predictions(reply: Reply) -> list[Any]:
    outputs = reply.json()["outputs"]
    assert len(outputs) == 1, outputs
    data: list[Any] = np.asarray(outputs[0]["data"]).ravel().tolist()
    return data


def v1_predictions(reply: Reply) -> list[Any]:
    data: list[Any] = reply.json()["predictions"]
    return data


@dataclass(frozen=True)
class Expect:
    status: int
    fragments: tuple[str, ...] = ()
    predictions: list[int] | None = None


OK = Expect(200, predictions=EXPECTED)
SILENT = Expect(200, predictions=WRONG)


def check(reply: Reply, expect: Expect, predictions: Callable[[Reply], list[Any]]) -> None:
    shown = f"HTTP {reply.status} {reply.content_type}: {reply.text[-1500:]}"
    assert reply.status == expect.status, shown
    for fragment in expect.fragments:
        assert fragment in reply.text, f"{fragment!r} not in {shown}"
    if expect.predictions is not None:
        assert predictions(reply) == expect.predictions, shown


# -- MLServer ---------------------------------------------------------------------------------------------------

MLSERVER_COLUMNAR = {
    "none": OK,
    "null": Expect(500, (NAN,)),
    "nan_token": Expect(422, ("json_invalid", "JSON decode error")),
    "renamed": Expect(500, (NAMES, "sepal_len")),
    "missing": Expect(500, (NAMES, "petal_width")),
    "out_of_range": SILENT,
    "string": Expect(500, (NOT_FLOAT,)),
    "extra": Expect(500, (NAMES, "extra")),
}
MLSERVER_MATRIX = {
    "none": OK,
    "null": Expect(500, (NAN,)),
    "nan_token": Expect(422, ("json_invalid",)),
    "missing": Expect(500, (THREE,)),
    "out_of_range": SILENT,
    "string": Expect(500, (NOT_FLOAT,)),
    "extra": Expect(500, (FIVE,)),
}


def mlserver_infer(server: RunningServer) -> str:
    return f"{server.url}/v2/models/{server.model}/infer"


@pytest.mark.parametrize("case", MLSERVER_COLUMNAR)
def test_mlserver_v2_columnar(mlserver: RunningServer, case: str) -> None:
    check(post_json(mlserver_infer(mlserver), v2_columnar(problem(case))), MLSERVER_COLUMNAR[case], v2_predictions)


@pytest.mark.parametrize("case", MLSERVER_MATRIX)
def test_mlserver_v2_matrix(mlserver: RunningServer, case: str) -> None:
    check(post_json(mlserver_infer(mlserver), v2_matrix(problem(case))), MLSERVER_MATRIX[case], v2_predictions)


def test_mlserver_routes_and_response_shape(mlserver: RunningServer) -> None:
    for path in ("/v2/health/live", "/v2/health/ready", f"/v2/models/{mlserver.model}/ready"):
        assert http_request("GET", mlserver.url + path).status == 200, path
    assert http_request("GET", mlserver.url + "/v2").json() == {
        "name": "mlserver", "version": "1.7.1", "extensions": []
    }
    # The declared inputs of model-settings.json are what the metadata route lists.
    meta = http_request("GET", f"{mlserver.url}/v2/models/{mlserver.model}").json()
    assert [i["name"] for i in meta["inputs"]] == list(FEATURES)
    assert meta["outputs"] == []

    body = post_json(mlserver_infer(mlserver), {**v2_matrix(columns()), "id": "42"}).json()
    assert body["id"] == "42" and body["model_version"] == "v1" and body["parameters"] == {}
    assert body["outputs"] == [
        {
            "name": "predict", "shape": [2, 1], "datatype": "INT64", "parameters": {"content_type": "np"},
            "data": EXPECTED,
        }
    ]
    # Without an id, MLServer makes one up (a uuid).
    assert len(post_json(mlserver_infer(mlserver), v2_matrix(columns())).json()["id"]) == 36


def test_mlserver_v2_variants(mlserver: RunningServer) -> None:
    url = mlserver_infer(mlserver)
    flat = {"inputs": [{"name": "x", "datatype": "FP64", "shape": [2, 4], "data": [v for r in ROWS for v in r]}]}
    assert v2_predictions(post_json(url, flat)) == EXPECTED
    # Columns shaped [N, 1] work as well as [N].
    tall = v2_columnar(columns())
    for i in tall["inputs"]:
        i["shape"] = [2, 1]
    assert v2_predictions(post_json(url, tall)) == EXPECTED
    # Renaming the one tensor of the matrix form changes nothing: the names are not on the wire.
    assert v2_predictions(post_json(url, v2_matrix(problem("renamed")))) == EXPECTED
    # Columnar without the "pd" content type: the default np request codec takes a single input only.
    no_pd = v2_columnar(columns())
    del no_pd["parameters"]
    reply = post_json(url, no_pd)
    assert reply.status == 400, reply.text
    assert reply.json() == {
        "error": "There was an error encoding / decoding the payload: "
        "The 'np' codec only supports a single input tensor (4 were received)"
    }
    # predict_proba on request: shape [N, 3].
    proba = post_json(url, {**v2_matrix(columns()), "outputs": [{"name": "predict_proba"}]}).json()["outputs"][0]
    assert proba["name"] == "predict_proba" and proba["shape"] == [2, 3] and proba["datatype"] == "FP64"
    assert np.argmax(np.asarray(proba["data"]).reshape(2, 3), axis=1).tolist() == EXPECTED


def test_mlserver_error_bodies(mlserver: RunningServer) -> None:
    url = mlserver_infer(mlserver)
    # A 500 is a text/plain traceback (MLServer's debug setting defaults to on), naming the server's files.
    reply = post_json(url, v2_matrix(problem("null")))
    assert reply.status == 500 and reply.content_type.startswith("text/plain"), reply.content_type
    assert reply.text.startswith("Traceback (most recent call last):") and "site-packages" in reply.text
    missing = post_json(f"{mlserver.url}/v2/models/nope/infer", v2_matrix(columns()))
    assert (missing.status, missing.json()) == (404, {"error": "Model nope not found"})
    assert post_json(url, b"{not json").status == 422
    # A shape that does not match the data reaches numpy: 500.
    bad_shape = {"inputs": [{"name": "x", "datatype": "FP64", "shape": [3, 4], "data": [list(r) for r in ROWS]}]}
    reply = post_json(url, bad_shape)
    assert reply.status == 500 and "cannot reshape array of size 8 into shape (3,4)" in reply.text


def test_mlserver_tritonclient(mlserver: RunningServer) -> None:
    """tritonclient.http (the V2 client MLServer itself depends on) against MLServer: JSON tensors only."""
    triton = tritonclient_http()
    client = triton.InferenceServerClient(mlserver.url.removeprefix("http://"))
    try:
        assert client.is_server_live() and client.is_server_ready() and client.is_model_ready(mlserver.model)
        meta = client.get_model_metadata(mlserver.model)
        assert [i["name"] for i in meta["inputs"]] == list(FEATURES)
        x = np.array(ROWS, dtype=np.float64)
        matrix = triton.InferInput("input-0", [2, 4], "FP64")
        matrix.set_data_from_numpy(x, binary_data=False)
        out = triton.InferRequestedOutput("predict", binary_data=False)
        result = client.infer(mlserver.model, [matrix], outputs=[out])
        assert result.as_numpy("predict").ravel().tolist() == EXPECTED
        cols = []
        for j, name in enumerate(FEATURES):
            col = triton.InferInput(name, [2], "FP64")
            col.set_data_from_numpy(np.ascontiguousarray(x[:, j]), binary_data=False)
            cols.append(col)
        result = client.infer(mlserver.model, cols, outputs=[out], parameters={"content_type": "pd"})
        assert result.as_numpy("predict").ravel().tolist() == EXPECTED
        # The binary tensor extension (tritonclient's default) is not supported: the body is not JSON → 422.
        binary = triton.InferInput("input-0", [2, 4], "FP64")
        binary.set_data_from_numpy(x, binary_data=True)
        with pytest.raises(triton.InferenceServerException) as raised:
            client.infer(mlserver.model, [binary])
        assert str(raised.value.status()) == "422" and "JSON decode error" in str(raised.value)
    finally:
        client.close()


# -- KServe -----------------------------------------------------------------------------------------------------

KSERVE_V1_ROWS = {
    "none": OK,
    "null": Expect(500, (NAN,)),
    "nan_token": Expect(400, ("Unrecognized request format",)),
    "missing": Expect(500, (THREE,)),
    "out_of_range": SILENT,
    "string": Expect(500, ("dtype='numeric' is not compatible with arrays of bytes/strings",)),
    "extra": Expect(500, (FIVE,)),
}
KSERVE_V1_DICT = {
    "none": OK,
    "null": Expect(500, (NAN,)),
    "nan_token": Expect(400, ("Unrecognized request format",)),
    "renamed": Expect(500, (NAMES, "sepal_len")),
    "missing": Expect(500, (NAMES, "petal_width")),
    "out_of_range": SILENT,
    "string": Expect(500, (NOT_FLOAT,)),
    "extra": Expect(500, (NAMES, "extra")),
}
KSERVE_V2_MATRIX = {
    "none": OK,
    "null": Expect(500, (NAN,)),
    "nan_token": Expect(500, (NAN,)),  # the V2 route's JSON parser takes NaN; the model refuses it
    "missing": Expect(500, (THREE,)),
    "out_of_range": SILENT,
    "string": Expect(500, (NOT_FLOAT,)),
    "extra": Expect(500, (FIVE,)),
}
KSERVE_V2_COLUMNAR = {
    "none": OK,
    "null": Expect(500, (NAN,)),
    "nan_token": Expect(500, (NAN,)),
    "renamed": Expect(500, (NAMES, "sepal_len")),
    "missing": Expect(500, (NAMES, "petal_width")),
    "out_of_range": SILENT,
    "string": Expect(500, (NOT_FLOAT,)),
    "extra": Expect(500, (NAMES, "extra")),
}


def kserve_predict(server: RunningServer) -> str:
    return f"{server.url}/v1/models/{server.model}:predict"


def kserve_infer(server: RunningServer) -> str:
    return f"{server.url}/v2/models/{server.model}/infer"


def check_kserve_error(reply: Reply) -> None:
    if reply.status >= 400:
        assert reply.content_type == "application/json" and set(reply.json()) == {"error"}, reply.text


@pytest.mark.parametrize("case", KSERVE_V1_ROWS)
def test_kserve_v1_rows(kserve: RunningServer, case: str) -> None:
    reply = post_json(kserve_predict(kserve), v1_rows(problem(case)))
    check(reply, KSERVE_V1_ROWS[case], v1_predictions)
    check_kserve_error(reply)


@pytest.mark.parametrize("case", KSERVE_V1_DICT)
def test_kserve_v1_dict_of_lists(kserve: RunningServer, case: str) -> None:
    reply = post_json(kserve_predict(kserve), v1_dict_of_lists(problem(case)))
    check(reply, KSERVE_V1_DICT[case], v1_predictions)
    check_kserve_error(reply)


@pytest.mark.parametrize("case", KSERVE_V2_MATRIX)
def test_kserve_v2_matrix(kserve: RunningServer, case: str) -> None:
    reply = post_json(kserve_infer(kserve), v2_matrix(problem(case)))
    check(reply, KSERVE_V2_MATRIX[case], v2_predictions)
    check_kserve_error(reply)


@pytest.mark.parametrize("case", KSERVE_V2_COLUMNAR)
def test_kserve_v2_columnar(kserve: RunningServer, case: str) -> None:
    reply = post_json(kserve_infer(kserve), v2_columnar(problem(case)))
    check(reply, KSERVE_V2_COLUMNAR[case], v2_predictions)
    check_kserve_error(reply)


def test_kserve_routes_and_response_shape(kserve: RunningServer) -> None:
    get = lambda path: http_request("GET", kserve.url + path)  # noqa: E731
    assert get("/").json() == {"status": "alive"}
    assert get("/v1/models").json() == {"models": [kserve.model]}
    assert get(f"/v1/models/{kserve.model}").json() == {"name": kserve.model, "ready": True}
    assert get(f"/v2/models/{kserve.model}/ready").json() == {"name": kserve.model, "ready": True}
    assert get("/v2").json() == {"name": "kserve", "version": "0.21.0", "extensions": ["model_repository_extension"]}
    # No inputs are declared by a plain kserve.Model: the metadata cannot tell the feature names.
    assert get(f"/v2/models/{kserve.model}").json() == {
        "name": kserve.model, "versions": None, "platform": "", "inputs": [], "outputs": []
    }
    assert get("/metrics").status == 200

    body = post_json(kserve_infer(kserve), {**v2_matrix(columns()), "id": "42"}).json()
    assert body["id"] == "42" and body["model_version"] is None and body["parameters"] is None
    assert body["outputs"] == [
        {"name": "output-0", "shape": [2], "datatype": "INT64", "parameters": None, "data": EXPECTED}
    ]
    # V1: "inputs" is taken like "instances"; flat V2 data works like nested.
    assert v1_predictions(post_json(kserve_predict(kserve), {"inputs": [list(r) for r in ROWS]})) == EXPECTED
    flat = {"inputs": [{"name": "x", "datatype": "FP64", "shape": [2, 4], "data": [v for r in ROWS for v in r]}]}
    assert v2_predictions(post_json(kserve_infer(kserve), flat)) == EXPECTED
    assert v2_predictions(post_json(kserve_infer(kserve), v2_matrix(problem("renamed")))) == EXPECTED


def test_kserve_quirks(kserve: RunningServer) -> None:
    # V1 records of scalars: pandas refuses to build the frame.
    records = post_json(kserve_predict(kserve), {"instances": [dict(zip(FEATURES, r, strict=True)) for r in ROWS]})
    assert records.status == 500 and "If using all scalar values, you must pass an index" in records.text
    # Columnar without "pd": only the first input reaches the model.
    no_pd = v2_columnar(columns())
    del no_pd["parameters"]
    reply = post_json(kserve_infer(kserve), no_pd)
    assert reply.status == 500 and "Expected 2D array, got 1D array instead" in reply.text
    # Malformed JSON: V1 400 from KServe, V2 422 from FastAPI.
    v1_bad = post_json(kserve_predict(kserve), b"{not json")
    assert v1_bad.status == 400 and "Unrecognized request format" in v1_bad.text
    assert post_json(kserve_infer(kserve), b"{not json").status == 422
    for url in (f"{kserve.url}/v1/models/nope:predict", f"{kserve.url}/v2/models/nope/infer"):
        reply = post_json(url, v2_matrix(columns()) if "/v2/" in url else v1_rows(columns()))
        assert (reply.status, reply.json()) == (404, {"error": "Model with name nope does not exist."})
    # Only the outputs the model produces can be asked for.
    proba = post_json(kserve_infer(kserve), {**v2_matrix(columns()), "outputs": [{"name": "predict_proba"}]})
    assert proba.status == 400 and "Unexpected inference output 'predict_proba'" in proba.text
    explain = post_json(f"{kserve.url}/v1/models/{kserve.model}:explain", v1_rows(columns()))
    assert explain.status == 501, explain.text


def test_kserve_tritonclient_binary(kserve: RunningServer) -> None:
    """KServe implements the binary tensor extension that tritonclient uses by default."""
    triton = tritonclient_http()
    client = triton.InferenceServerClient(kserve.url.removeprefix("http://"))
    try:
        assert client.is_server_ready() and client.is_model_ready(kserve.model)
        x = np.array(ROWS, dtype=np.float64)
        binary = triton.InferInput("input-0", [2, 4], "FP64")
        binary.set_data_from_numpy(x, binary_data=True)
        result = client.infer(kserve.model, [binary])
        assert result.as_numpy("output-0").tolist() == EXPECTED
        assert result.get_output("output-0")["parameters"] == {"binary_data_size": 16}
        # JSON tensors: tritonclient sends no Content-Type, and KServe then expects the binary framing.
        plain = triton.InferInput("input-0", [2, 4], "FP64")
        plain.set_data_from_numpy(x, binary_data=False)
        with pytest.raises(triton.InferenceServerException) as raised:
            client.infer(kserve.model, [plain], outputs=[triton.InferRequestedOutput("output-0", binary_data=False)])
        assert str(raised.value.status()) == "400" and "inference-header-content-length" in str(raised.value)
        # ... unless the caller sets it.
        result = client.infer(
            kserve.model, [plain], outputs=[triton.InferRequestedOutput("output-0", binary_data=False)],
            headers={"Content-Type": "application/json"},
        )
        assert result.as_numpy("output-0").tolist() == EXPECTED
    finally:
        client.close()


# -- MLflow -----------------------------------------------------------------------------------------------------

MLFLOW_FORMATS: dict[str, Callable[[Columns], dict[str, Any]]] = {
    "dataframe_split": mlflow_split,
    "dataframe_records": mlflow_records,
    "instances": mlflow_instances,
    "inputs": mlflow_inputs,
}
MLFLOW_NAN = Expect(400, ("BAD_REQUEST", "Encountered an unexpected error while evaluating the model", NAN))
MLFLOW = {
    "none": OK,
    "null": MLFLOW_NAN,
    "nan_token": MLFLOW_NAN,
    "renamed": Expect(400, ("INVALID_PARAMETER_VALUE", "Model is missing inputs ['sepal_length']", "'sepal_len'")),
    "missing": Expect(400, ("INVALID_PARAMETER_VALUE", "Model is missing inputs ['petal_width']")),
    "out_of_range": SILENT,
    "string": Expect(400, ("BAD_REQUEST", NOT_FLOAT)),
    "extra": OK,  # an input the signature does not name is dropped
}


def mlflow_invocations(server: RunningServer) -> str:
    return f"{server.url}/invocations"


@pytest.mark.parametrize("case", MLFLOW)
@pytest.mark.parametrize("fmt", MLFLOW_FORMATS)
def test_mlflow_invocations(mlflow_server: RunningServer, fmt: str, case: str) -> None:
    reply = post_json(mlflow_invocations(mlflow_server), MLFLOW_FORMATS[fmt](problem(case)))
    check(reply, MLFLOW[case], v1_predictions)
    if reply.status >= 400:
        assert reply.content_type == "application/json"
        assert {"error_code", "message"} <= set(reply.json()), reply.text


def test_mlflow_routes_and_formats(mlflow_server: RunningServer) -> None:
    url = mlflow_invocations(mlflow_server)
    for path in ("/ping", "/health"):
        reply = http_request("GET", mlflow_server.url + path)
        assert (reply.status, reply.text) == (200, "\n"), path
    assert http_request("GET", mlflow_server.url + "/version").text == "3.17.2"
    # The index is kept and ignored; CSV works too.
    split = mlflow_split(columns())
    split["dataframe_split"]["index"] = [7, 9]
    assert post_json(url, split).json() == {"predictions": EXPECTED}
    csv = ",".join(FEATURES) + "\n" + "".join(",".join(map(str, r)) + "\n" for r in ROWS)
    assert post_json(url, csv.encode(), content_type="text/csv").json() == {"predictions": EXPECTED}
    # The signature names the columns: a bare matrix cannot be matched to them.
    for key in ("instances", "inputs"):
        reply = post_json(url, {key: [list(r) for r in ROWS]})
        assert reply.status == 400 and "Failed to enforce schema" in reply.text, reply.text


def test_mlflow_request_errors(mlflow_server: RunningServer) -> None:
    url = mlflow_invocations(mlflow_server)
    two = post_json(url, {**mlflow_split(columns()), **v1_rows(columns())})
    assert two.status == 400 and two.json()["error_code"] == "BAD_REQUEST"
    assert "exactly one of the input fields" in two.text
    bare = post_json(url, [list(r) for r in ROWS])
    assert bare.status == 400 and "Received a list" in bare.text
    bad = post_json(url, b"{not json")
    assert bad.status == 400 and "Ensure that input is a valid JSON formatted string" in bad.text


# -- all three --------------------------------------------------------------------------------------------------

V1_NONE = "Expected 2D array, got scalar array instead"  # KServe V1 did not parse the body: the model got None
NOT_BINARY = "inference-header-content-length' header is missing"  # KServe V2 took the body for binary tensors
UNSUPPORTED = "This predictor only supports the following content types"
CONTENT_TYPES = [
    # (fixture, route, Content-Type header, status, fragment of the body)
    ("mlserver", "v2", None, 200, '"data":[0,2]'),
    ("mlserver", "v2", "application/json; charset=utf-8", 200, '"data":[0,2]'),
    ("mlserver", "v2", "text/plain", 422, "model_attributes_type"),
    ("mlserver", "v2", "application/x-www-form-urlencoded", 422, "model_attributes_type"),
    ("kserve", "v1", None, 200, '"predictions":[0,2]'),
    ("kserve", "v1", "application/json; charset=utf-8", 500, V1_NONE),
    ("kserve", "v1", "text/plain", 500, V1_NONE),
    ("kserve", "v2", None, 400, NOT_BINARY),
    ("kserve", "v2", "application/json; charset=utf-8", 200, '"data":[0,2]'),
    ("kserve", "v2", "text/plain", 400, NOT_BINARY),
    ("mlflow_server", "invocations", None, 500, "Internal Server Error"),
    ("mlflow_server", "invocations", "application/json; charset=utf-8", 200, '"predictions": [0, 2]'),
    ("mlflow_server", "invocations", "text/plain", 415, UNSUPPORTED),
    ("mlflow_server", "invocations", "application/x-www-form-urlencoded", 415, UNSUPPORTED),
]


@pytest.mark.parametrize(
    ("name", "route", "content_type", "status", "fragment"), CONTENT_TYPES,
    ids=[f"{c[0]}-{c[1]}-{c[2]}" for c in CONTENT_TYPES],
)
def test_content_type_header(
    request: pytest.FixtureRequest, name: str, route: str, content_type: str | None, status: int, fragment: str
) -> None:
    """The same valid JSON body under other Content-Type headers: a proxy must forward the header unchanged."""
    server: RunningServer = request.getfixturevalue(name)
    url, body = {
        "v2": (f"{server.url}/v2/models/{server.model}/infer", v2_matrix(columns())),
        "v1": (f"{server.url}/v1/models/{server.model}:predict", v1_rows(columns())),
        "invocations": (f"{server.url}/invocations", mlflow_split(columns())),
    }[route]
    reply = post_json(url, body, content_type=content_type)
    assert reply.status == status and fragment in reply.text, f"HTTP {reply.status}: {reply.text[:500]}"


GZIP_ROWS = 300  # the answer must pass Starlette's GZipMiddleware threshold (500 bytes)


def many_rows_body(name: str) -> tuple[str, dict[str, Any]]:
    many = [list(r) for r in ROWS] * (GZIP_ROWS // len(ROWS))
    if name == "mlflow_server":
        return "/invocations", {"dataframe_split": {"columns": list(FEATURES), "data": many}}
    tensor = {"name": "x", "datatype": "FP64", "shape": [GZIP_ROWS, 4], "data": many}
    return "/v2/models/iris/infer", {"inputs": [tensor]}


def answer(reply: Reply, encoded: bool) -> list[Any]:
    payload = json.loads(gzip.decompress(reply.body) if encoded else reply.body)
    return payload["predictions"] if "predictions" in payload else np.asarray(payload["outputs"][0]["data"]).tolist()


@pytest.mark.parametrize(
    ("name", "gzips_response", "gzip_body_error"),
    [
        ("mlserver", True, None),  # None: a gzip request body is inflated and answered
        ("kserve", False, "There was an error parsing the body"),
        ("mlflow_server", False, "Ensure that input is a valid JSON formatted string"),
    ],
)
def test_gzip(request: pytest.FixtureRequest, name: str, gzips_response: bool, gzip_body_error: str | None) -> None:
    """Accept-Encoding: gzip (is the answer compressed?) and Content-Encoding: gzip (is the body inflated?)."""
    server: RunningServer = request.getfixturevalue(name)
    path, body = many_rows_body(name)
    raw = json.dumps(body).encode()
    expected = EXPECTED * (GZIP_ROWS // len(ROWS))
    headers = {"Content-Type": "application/json", "Accept-Encoding": "gzip"}
    reply = http_request("POST", server.url + path, raw, headers)
    assert reply.status == 200, reply.text[:500]
    assert reply.headers.get("Content-Encoding") == ("gzip" if gzips_response else None), dict(reply.headers)
    assert answer(reply, gzips_response) == expected
    reply = http_request(
        "POST", server.url + path, gzip.compress(raw), {"Content-Type": "application/json", "Content-Encoding": "gzip"}
    )
    if gzip_body_error is None:
        assert reply.status == 200 and answer(reply, False) == expected, reply.text[:500]
    else:
        assert reply.status == 400 and gzip_body_error in reply.text, reply.text[:500]
