"""The demo model server over real loopback sockets: every route, every body layout, every refusal."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import aiohttp
import numpy as np
import orjson
import pytest

from proxy.demo.model import CLASSES, FEATURES, sample_labeled_rows, start_model

# Three rows of Fisher's iris data, one per class.
SETOSA = [5.1, 3.5, 1.4, 0.2]
VIRGINICA = [6.7, 3.0, 5.2, 2.3]
VERSICOLOR = [5.9, 2.8, 4.3, 1.3]
ROWS = [SETOSA, VIRGINICA, VERSICOLOR]
LABELS = [0, 2, 1]


class Api:
    def __init__(self, base: str, session: aiohttp.ClientSession) -> None:
        self.base = base
        self.session = session

    async def call(self, method: str, path: str, body: Any = None, *, raw: bytes | None = None,
                   ) -> tuple[int, Any]:
        data = raw if raw is not None else (orjson.dumps(body) if body is not None else None)
        headers = {"content-type": "application/json"} if data is not None else {}
        async with self.session.request(method, self.base + path, data=data, headers=headers) as resp:
            assert resp.content_type == "application/json"
            return resp.status, orjson.loads(await resp.read())

    async def get(self, path: str) -> tuple[int, Any]:
        return await self.call("GET", path)

    async def post(self, path: str, body: Any = None, *, raw: bytes | None = None) -> tuple[int, Any]:
        return await self.call("POST", path, body, raw=raw)


@asynccontextmanager
async def serve(*, latency: float = 0.0, seed: int = 0) -> AsyncIterator[Api]:
    runner, port = await start_model(latency=latency, seed=seed)
    try:
        async with aiohttp.ClientSession() as session:
            yield Api(f"http://127.0.0.1:{port}", session)
    finally:
        await runner.cleanup()


@pytest.fixture
async def api() -> AsyncIterator[Api]:
    async with serve() as a:
        yield a


def _v2_output(body: dict[str, Any], name: str) -> dict[str, Any]:
    (out,) = [o for o in body["outputs"] if o["name"] == name]
    return out


V1 = "/v1/models/iris:predict"
V2 = "/v2/models/iris/infer"


# --- KServe V1 -------------------------------------------------------------------------------------------

async def test_v1_list_and_ready(api: Api) -> None:
    assert await api.get("/v1/models") == (200, {"models": ["iris"]})
    assert await api.get("/v1/models/iris") == (200, {"name": "iris", "ready": True})


async def test_v1_unknown_model(api: Api) -> None:
    status, body = await api.get("/v1/models/nope")
    assert status == 404 and "nope" in body["error"]
    status, body = await api.post("/v1/models/nope:predict", {"instances": ROWS})
    assert status == 404 and "nope" in body["error"]


async def test_v1_predict_list_rows(api: Api) -> None:
    assert await api.post("/v1/models/iris:predict", {"instances": ROWS}) == (200, {"predictions": LABELS})


async def test_v1_predict_inputs_key(api: Api) -> None:
    assert await api.post("/v1/models/iris:predict", {"inputs": ROWS}) == (200, {"predictions": LABELS})


async def test_v1_predict_dict_rows(api: Api) -> None:
    rows = [dict(zip(FEATURES, r, strict=True)) for r in ROWS]
    # Key order does not matter.
    rows[1] = dict(reversed(list(rows[1].items())))
    assert await api.post("/v1/models/iris:predict", {"instances": rows}) == (200, {"predictions": LABELS})


async def test_v1_predict_columns(api: Api) -> None:
    columns = {name: [r[j] for r in ROWS] for j, name in enumerate(FEATURES)}
    assert await api.post(V1, {"instances": [columns]}) == (200, {"predictions": LABELS})
    assert await api.post(V1, {"inputs": columns}) == (200, {"predictions": LABELS})


async def test_v1_predict_proba(api: Api) -> None:
    status, body = await api.post("/v1/models/iris:predict_proba", {"instances": ROWS})
    assert status == 200
    proba = np.array(body["predictions"])
    assert proba.shape == (3, len(CLASSES))
    assert np.allclose(proba.sum(axis=1), 1.0, atol=1e-5)
    assert proba.argmax(axis=1).tolist() == LABELS


# --- Open Inference Protocol V2 ------------------------------------------------------------------------

async def test_v2_health_and_server_metadata(api: Api) -> None:
    assert await api.get("/v2/health/live") == (200, {"live": True})
    assert await api.get("/v2/health/ready") == (200, {"ready": True})
    status, body = await api.get("/v2")
    assert status == 200 and body["name"] and body["version"] and body["extensions"] == []


@pytest.mark.parametrize("path", ["/v2/models/iris", "/v2/models/iris/versions/1"])
async def test_v2_model_metadata(api: Api, path: str) -> None:
    status, body = await api.get(path)
    assert status == 200
    assert body["name"] == "iris" and body["versions"] == ["1"]
    assert body["inputs"] == [{"name": "input-0", "datatype": "FP32", "shape": [-1, 4]}]
    assert [(o["name"], o["datatype"], o["shape"]) for o in body["outputs"]] == [
        ("label", "INT64", [-1]), ("probabilities", "FP32", [-1, 3])]
    assert body["parameters"]["feature_names"] == list(FEATURES)
    assert await api.get(f"{path}/ready") == (200, {"name": "iris", "ready": True})


async def test_v2_unknown_model_and_version(api: Api) -> None:
    for path in ("/v2/models/nope", "/v2/models/nope/ready", "/v2/models/iris/versions/2"):
        status, body = await api.get(path)
        assert status == 404 and body["error"], path
    infer = {"inputs": [{"name": "x", "shape": [1, 4], "datatype": "FP32", "data": SETOSA}]}
    status, body = await api.post("/v2/models/nope/infer", infer)
    assert status == 404 and body == {"error": "Model nope not found"}
    status, body = await api.post("/v2/models/iris/versions/7/infer", infer)
    assert status == 404 and "version 7" in body["error"]


@pytest.mark.parametrize("nested", [False, True])
@pytest.mark.parametrize("datatype", ["FP32", "FP64"])
async def test_v2_matrix(api: Api, nested: bool, datatype: str) -> None:
    data = ROWS if nested else [v for r in ROWS for v in r]
    req = {"id": "42", "inputs": [{"name": "input-0", "shape": [3, 4], "datatype": datatype, "data": data}]}
    status, body = await api.post("/v2/models/iris/infer", req)
    assert status == 200
    assert body["model_name"] == "iris" and body["model_version"] == "1"
    assert body["id"] == "42" and body["parameters"] == {}
    assert _v2_output(body, "label") == {"name": "label", "shape": [3], "datatype": "INT64", "data": LABELS}
    proba = _v2_output(body, "probabilities")
    assert proba["shape"] == [3, 3] and proba["datatype"] == "FP32" and len(proba["data"]) == 9
    assert np.array(proba["data"]).reshape(3, 3).argmax(axis=1).tolist() == LABELS


@pytest.mark.parametrize("shape_of", [lambda n: [n], lambda n: [n, 1]])
async def test_v2_columnar(api: Api, shape_of: Any) -> None:
    inputs = [{"name": name, "shape": shape_of(3), "datatype": "FP64", "data": [r[j] for r in ROWS]}
              for j, name in enumerate(FEATURES)]
    inputs.reverse()  # named, so order does not matter
    status, body = await api.post("/v2/models/iris/infer", {"inputs": inputs})
    assert status == 200
    assert _v2_output(body, "label")["data"] == LABELS
    assert isinstance(body["id"], str) and body["id"]  # made up when the request has none


async def test_v2_versions_path(api: Api) -> None:
    req = {"inputs": [{"name": "x", "shape": [1, 4], "datatype": "FP32", "data": [VIRGINICA]}]}
    status, body = await api.post("/v2/models/iris/versions/1/infer", req)
    assert status == 200 and _v2_output(body, "label")["data"] == [2]


async def test_v2_requested_outputs(api: Api) -> None:
    req = {"inputs": [{"name": "x", "shape": [1, 4], "datatype": "FP32", "data": SETOSA}],
           "outputs": [{"name": "probabilities"}]}
    status, body = await api.post("/v2/models/iris/infer", req)
    assert status == 200 and [o["name"] for o in body["outputs"]] == ["probabilities"]


# --- Refusals --------------------------------------------------------------------------------------------

def _matrix(shape: list[Any], data: Any, datatype: str = "FP32") -> dict[str, Any]:
    return {"inputs": [{"name": "input-0", "shape": shape, "datatype": datatype, "data": data}]}


def _columns(**overrides: Any) -> dict[str, Any]:
    cols = {name: {"name": name, "shape": [1], "datatype": "FP64", "data": [SETOSA[j]]}
            for j, name in enumerate(FEATURES)}
    for name, value in overrides.items():
        if value is None:
            del cols[name]
        else:
            cols[name] = value
    return {"inputs": list(cols.values())}


BAD: list[tuple[str, str, Any, str]] = [
    # (case, path, body, words the error must contain); bytes bodies are sent as is
    ("v1 invalid JSON", V1, b'{"instances": [[5.1, 3.5', "invalid JSON"),
    ("v1 empty body", V1, b"", "invalid JSON"),
    ("v1 NaN token", V1, b'{"instances": [[NaN, 3.5, 1.4, 0.2]]}', "invalid JSON"),
    ("v1 null", V1, {"instances": [[5.1, None, 1.4, 0.2]]}, "null"),
    ("v1 null in dict row", V1, {"instances": [{**dict(zip(FEATURES, SETOSA, strict=True)),
                                                "petal_width": None}]}, "petal_width"),
    ("v1 short row", V1, {"instances": [[5.1, 3.5, 1.4]]}, "expected 4 values"),
    ("v1 string value", V1, {"instances": [[5.1, "3.5", 1.4, 0.2]]}, "expected a number"),
    ("v1 bool value", V1, {"instances": [[5.1, True, 1.4, 0.2]]}, "expected a number"),
    ("v1 missing feature", V1, {"instances": [dict(zip(FEATURES[:3], SETOSA, strict=False))]},
     "missing feature(s) petal_width"),
    ("v1 unknown feature", V1, {"instances": [{**dict(zip(FEATURES, SETOSA, strict=True)), "colour": 1}]},
     "unknown feature(s) colour"),
    ("v1 empty instances", V1, {"instances": []}, "non-empty"),
    ("v1 no instances", V1, {"rows": [SETOSA]}, "instances"),
    ("v1 both keys", V1, {"instances": [SETOSA], "inputs": [SETOSA]}, "not both"),
    ("v1 not an object", V1, [SETOSA], "JSON object"),
    ("v1 ragged columns", V1, {"inputs": {"sepal_length": [5.1, 6.7], "sepal_width": [3.5],
                                          "petal_length": [1.4], "petal_width": [0.2]}}, "differ in length"),
    ("v2 invalid JSON", V2, b"{inputs:", "invalid JSON"),
    ("v2 NaN token", V2, b'{"inputs":[{"name":"x","shape":[1,4],"datatype":"FP32","data":[NaN,1,1,1]}]}',
     "invalid JSON"),
    ("v2 null", V2, _matrix([1, 4], [5.1, None, 1.4, 0.2]), "null"),
    ("v2 no inputs", V2, {"id": "1"}, "inputs"),
    ("v2 shape [N,3]", V2, _matrix([1, 3], [5.1, 3.5, 1.4]), "[N,4]"),
    ("v2 shape [4]", V2, _matrix([4], SETOSA), "[N,4]"),
    ("v2 data count", V2, _matrix([2, 4], SETOSA), "needs 8 values, data has 4"),
    ("v2 bad shape value", V2, _matrix([1, "4"], SETOSA), "shape"),
    ("v2 BYTES", V2, _matrix([1, 4], ["a", "b", "c", "d"], "BYTES"), "BYTES"),
    ("v2 two unnamed inputs", V2, {"inputs": _matrix([1, 4], SETOSA)["inputs"] * 2}, "got 2 inputs"),
    ("v2 missing column", V2, _columns(petal_width=None), "missing feature(s) petal_width"),
    ("v2 column lengths", V2, _columns(sepal_width={"name": "sepal_width", "shape": [2], "datatype": "FP64",
                                                    "data": [3.5, 3.0]}), "rows"),
    ("v2 column shape", V2, _columns(sepal_width={"name": "sepal_width", "shape": [1, 2], "datatype": "FP64",
                                                  "data": [3.5, 3.0]}), "[N] or [N,1]"),
    ("v2 null in column", V2, _columns(sepal_width={"name": "sepal_width", "shape": [1], "datatype": "FP64",
                                                    "data": [None]}), "null"),
    ("v2 unknown output", V2, {**_matrix([1, 4], SETOSA), "outputs": [{"name": "logits"}]}, "logits"),
    ("v2 id not a string", V2, {**_matrix([1, 4], SETOSA), "id": 42}, "id"),
]


@pytest.mark.parametrize(("path", "body", "words"), [b[1:] for b in BAD], ids=[b[0] for b in BAD])
async def test_bad_input_is_400_json(api: Api, path: str, body: Any, words: str) -> None:
    if isinstance(body, bytes):
        status, reply = await api.post(path, raw=body)
    else:
        status, reply = await api.post(path, body)
    assert status == 400
    assert set(reply) == {"error"} and words in reply["error"]


async def test_routing_misses_answer_json(api: Api) -> None:
    status, body = await api.get("/nothing/here")
    assert status == 404 and "error" in body
    status, body = await api.call("PUT", V1, {"instances": ROWS})
    assert status == 405 and "error" in body
    status, body = await api.post("/v1/models/iris:explain", {"instances": ROWS})
    assert status == 501 and "error" in body
    status, body = await api.post("/v1/models/iris:train", {"instances": ROWS})
    assert status == 404 and "train" in body["error"]


# --- Behaviour -------------------------------------------------------------------------------------------

async def test_deterministic(api: Api) -> None:
    x, _ = sample_labeled_rows(np.random.default_rng(7), 20)
    first = await api.post("/v1/models/iris:predict_proba", {"instances": x.tolist()})
    second = await api.post("/v1/models/iris:predict_proba", {"instances": x.tolist()})
    assert first == second
    async with serve(seed=99) as other:
        assert await other.post("/v1/models/iris:predict_proba", {"instances": x.tolist()}) == first


async def test_generated_rows_get_all_classes(api: Api) -> None:
    x, y = sample_labeled_rows(np.random.default_rng(0), 90)
    status, body = await api.post("/v1/models/iris:predict", {"instances": x.tolist()})
    assert status == 200
    predictions = np.array(body["predictions"])
    assert set(predictions.tolist()) == {0, 1, 2}
    assert (predictions == y).mean() > 0.9  # the fixed weights are a sensible classifier
    assert (x >= 0.1).all() and np.array_equal(np.round(x, 1), x)


async def test_latency_option() -> None:
    async with serve(latency=0.2) as slow:
        t0 = time.perf_counter()
        assert (await slow.get("/v2/health/ready"))[0] == 200
        assert time.perf_counter() - t0 < 0.15  # health checks are not slowed
        t0 = time.perf_counter()
        assert (await slow.post(V1, {"instances": ROWS}))[0] == 200
        assert time.perf_counter() - t0 >= 0.2
