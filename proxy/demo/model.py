"""An embedded demo model server: an iris-like softmax classifier behind KServe V1 and Open Inference V2.

It exists so ``mlchaos demo`` and the tests have a real HTTP model to stand behind the sidecar without
installing a serving stack. The wire formats follow shared/research/ml-serving-protocols.md, sections 1-2:

KServe V1
    ``GET /v1/models`` · ``GET /v1/models/iris`` · ``POST /v1/models/iris:predict`` (class indexes)
    · ``POST /v1/models/iris:predict_proba`` (one probability vector per row). Rows come as
    ``{"instances": [[5.1, 3.5, 1.4, 0.2], ...]}``, as objects keyed by feature name, as one object of
    columns (``{"instances": [{"sepal_length": [5.1, 6.7], ...}]}``), or under ``"inputs"``.
Open Inference Protocol V2
    ``GET /v2`` · ``/v2/health/live`` · ``/v2/health/ready`` · ``/v2/models/iris[/versions/1]``
    · ``.../ready`` · ``POST .../infer``. Either one ``[N, 4]`` tensor (data flat or nested) or four
    tensors named by feature, each of shape ``[N]`` or ``[N, 1]``.

Bad input gets 400 and unknown models or versions 404, always as ``{"error": "..."}``.

The weights are fixed, so the same rows always get the same answer; ``latency``/``jitter`` make the
model slow on purpose (the only use of ``seed``). Run it alone with ``python -m proxy.demo.model``.
"""

from __future__ import annotations

import argparse
import asyncio
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import numpy as np
import orjson
from aiohttp import web
from numpy.typing import NDArray

from .. import __version__

__all__ = [
    "CLASSES", "FEATURES", "MODEL_NAME", "MODEL_VERSION", "make_app", "predict", "predict_proba",
    "sample_labeled_rows", "sample_rows", "start_model",
]

MODEL_NAME = "iris"
MODEL_VERSION = "1"
FEATURES = ("sepal_length", "sepal_width", "petal_length", "petal_width")
CLASSES = ("setosa", "versicolor", "virginica")
OUTPUTS = ("label", "probabilities")
# One request may not carry more rows than this: a demo model, not a batch scorer.
MAX_ROWS = 10_000

# Per-class means and standard deviations of the four features (cm), close to Fisher's iris data.
CLASS_MEANS = np.array([
    [5.01, 3.43, 1.46, 0.25],
    [5.94, 2.77, 4.26, 1.33],
    [6.59, 2.97, 5.55, 2.03],
])
CLASS_STDS = np.array([
    [0.35, 0.38, 0.17, 0.11],
    [0.52, 0.31, 0.47, 0.20],
    [0.64, 0.32, 0.55, 0.28],
])

# Fixed softmax-linear weights: the Gaussian classifier with a pooled diagonal covariance that the
# means and stds above imply, centred, scaled by 0.3 (a temperature, so probabilities are not all 0 or 1)
# and rounded. It gives about 98% of sampled rows the class they were drawn from.
WEIGHTS = np.array([
    [-0.948, 0.963, -3.717, -6.816],
    [0.105, -0.747, 0.813, 0.906],
    [0.843, -0.216, 2.904, 5.913],
])
BIAS = np.array([21.258, 1.770, -23.031])

_DUMPS_OPTS = orjson.OPT_SERIALIZE_NUMPY
_FLOAT_TYPES = frozenset({"FP16", "FP32", "FP64"})
_INT_TYPES = frozenset({f"{s}INT{b}" for s in ("", "U") for b in (8, 16, 32, 64)})


# ----------------------------------------------------------------------------------------------- model

def predict_proba(x: NDArray[np.float64]) -> NDArray[np.float64]:
    """Class probabilities, shape ``[N, 3]``, for feature rows of shape ``[N, 4]``."""
    logits = x @ WEIGHTS.T + BIAS
    logits -= logits.max(axis=1, keepdims=True)
    e = np.exp(logits)
    out: NDArray[np.float64] = e / e.sum(axis=1, keepdims=True)
    return out


def predict(x: NDArray[np.float64]) -> tuple[NDArray[np.int64], NDArray[np.float64]]:
    """Class indexes (``[N]``, int64) and probabilities (``[N, 3]``)."""
    proba = predict_proba(x)
    return proba.argmax(axis=1).astype(np.int64), proba


def sample_labeled_rows(rng: np.random.Generator, n: int) -> tuple[NDArray[np.float64], NDArray[np.int64]]:
    """``n`` realistic rows and the class each was drawn from; classes equally likely.

    Values are rounded to 0.1 cm like the original measurements, and never below 0.1.
    """
    y = rng.integers(0, len(CLASSES), size=n).astype(np.int64)
    x = rng.normal(CLASS_MEANS[y], CLASS_STDS[y])
    return np.maximum(np.round(x, 1), 0.1), y


def sample_rows(rng: np.random.Generator, n: int) -> NDArray[np.float64]:
    """``n`` realistic feature rows, shape ``[n, 4]`` (see ``sample_labeled_rows``)."""
    return sample_labeled_rows(rng, n)[0]


# ------------------------------------------------------------------------------------------- decoding

class BadInput(ValueError):
    """The request is malformed; the message is sent to the client in a 400."""


def _value(v: object, where: str) -> float:
    # The demo refuses missing values outright. Real servers differ: MLServer, KServe V2 and MLflow let a
    # JSON null through as NaN and the model then fails (500) or answers; the bare NaN token is not JSON
    # at all and orjson rejects it while parsing, as MLServer (422) and KServe V1 (400) do.
    if v is None:
        raise BadInput(f"{where}: null is not a number (this model does not accept missing values)")
    if isinstance(v, bool) or not isinstance(v, int | float):
        raise BadInput(f"{where}: expected a number, got {orjson.dumps(v).decode()[:40]}")
    f = float(v)
    if f != f or f in (float("inf"), float("-inf")):
        raise BadInput(f"{where}: expected a finite number, got {v!r}")
    return f


def _flatten(data: object, where: str, out: list[float]) -> None:
    """Row-major leaves of a flat or nested list, checked to be numbers."""
    if isinstance(data, list):
        for i, item in enumerate(data):
            _flatten(item, f"{where}[{i}]", out)
            if len(out) > MAX_ROWS * len(FEATURES):
                raise BadInput(f"too many values: at most {MAX_ROWS} rows per request")
    else:
        out.append(_value(data, where))


def _check_names(names: set[str], where: str) -> None:
    missing = [f for f in FEATURES if f not in names]
    unknown = sorted(names - set(FEATURES))
    problems = []
    if missing:
        problems.append(f"missing feature(s) {', '.join(missing)}")
    if unknown:
        problems.append(f"unknown feature(s) {', '.join(unknown)}")
    if problems:
        raise BadInput(f"{where}: {'; '.join(problems)} (expected {', '.join(FEATURES)})")


def _list_row(row: list[Any], where: str) -> list[float]:
    if len(row) != len(FEATURES):
        raise BadInput(f"{where}: expected {len(FEATURES)} values ({', '.join(FEATURES)}), got {len(row)}")
    return [_value(v, f"{where}[{j}]") for j, v in enumerate(row)]


def _columns(cols: dict[str, Any], where: str) -> list[list[float]]:
    """Rows from an object of equal-length columns keyed by feature name."""
    _check_names(set(cols), where)
    n: int | None = None
    for name in FEATURES:
        col = cols[name]
        if not isinstance(col, list) or not col:
            raise BadInput(f"{where}.{name}: expected a non-empty list of numbers")
        if n is not None and len(col) != n:
            raise BadInput(f"{where}: columns differ in length ({len(col)} for {name}, {n} before)")
        n = len(col)
    return [[_value(cols[name][i], f"{where}.{name}[{i}]") for name in FEATURES] for i in range(n or 0)]


def decode_v1(body: object) -> NDArray[np.float64]:
    """Feature rows of a KServe V1 / TF Serving row-format request body."""
    if not isinstance(body, dict):
        raise BadInput('expected a JSON object with "instances" or "inputs"')
    if "instances" in body and "inputs" in body:
        raise BadInput('use "instances" or "inputs", not both')
    key = "instances" if "instances" in body else "inputs"
    if key not in body:
        raise BadInput('expected "instances" or "inputs"')
    data = body[key]
    if isinstance(data, dict):  # the columnar format: {"inputs": {"sepal_length": [...], ...}}
        rows = _columns(data, key)
    elif isinstance(data, list) and data:
        rows = []
        for i, inst in enumerate(data):
            where = f"{key}[{i}]"
            if isinstance(inst, list):
                rows.append(_list_row(inst, where))
            elif isinstance(inst, dict) and any(isinstance(v, list) for v in inst.values()):
                rows.extend(_columns(inst, where))  # KServe reads an object of lists as a DataFrame
            elif isinstance(inst, dict):
                _check_names(set(inst), where)
                rows.append([_value(inst[f], f"{where}.{f}") for f in FEATURES])
            else:
                raise BadInput(f"{where}: expected a list of {len(FEATURES)} numbers or a feature object")
    else:
        raise BadInput(f'"{key}" must be a non-empty list of rows')
    if len(rows) > MAX_ROWS:
        raise BadInput(f"too many rows: {len(rows)} (at most {MAX_ROWS})")
    return np.array(rows, dtype=np.float64)


def _shape(inp: dict[str, Any], where: str) -> list[int]:
    shape = inp.get("shape")
    if not isinstance(shape, list) or not all(isinstance(d, int) and not isinstance(d, bool) and d >= 0
                                              for d in shape):
        raise BadInput(f"{where}.shape: expected a list of non-negative integers, got {shape!r}")
    return shape


def _tensor_data(inp: dict[str, Any], where: str, expected: int) -> list[float]:
    datatype = inp.get("datatype")
    if datatype not in _FLOAT_TYPES and datatype not in _INT_TYPES:
        raise BadInput(f"{where}.datatype: {datatype!r} is not supported (expected FP32 or FP64)")
    if "data" not in inp:
        raise BadInput(f"{where}.data: missing (binary tensor data is not supported by this model)")
    values: list[float] = []
    _flatten(inp["data"], f"{where}.data", values)
    if len(values) != expected:
        raise BadInput(f"{where}: shape {inp['shape']} needs {expected} values, data has {len(values)}")
    return values


def decode_v2(body: object) -> tuple[NDArray[np.float64], str | None, tuple[str, ...]]:
    """Feature rows, request id and requested output names of an Open Inference V2 request body."""
    if not isinstance(body, dict):
        raise BadInput('expected a JSON object with "inputs"')
    inputs = body.get("inputs")
    if not isinstance(inputs, list) or not inputs or not all(isinstance(i, dict) for i in inputs):
        raise BadInput('"inputs" must be a non-empty list of tensors')
    req_id = body.get("id")
    if req_id is not None and not isinstance(req_id, str):
        raise BadInput('"id" must be a string')
    outputs = _requested_outputs(body.get("outputs"))
    names = [inp.get("name") for inp in inputs]
    for i, name in enumerate(names):
        if not isinstance(name, str) or not name:
            raise BadInput(f"inputs[{i}].name: expected a non-empty string")
    if any(name in FEATURES for name in names):
        return _decode_columnar(inputs), req_id, outputs
    if len(inputs) != 1:
        raise BadInput(f"expected one [N,{len(FEATURES)}] input, or {len(FEATURES)} inputs named "
                       f"{', '.join(FEATURES)}; got {len(inputs)} inputs")
    shape = _shape(inputs[0], "inputs[0]")
    if len(shape) != 2 or shape[1] != len(FEATURES) or shape[0] < 1:
        raise BadInput(f"inputs[0].shape: expected [N,{len(FEATURES)}] with N >= 1, got {shape}")
    if shape[0] > MAX_ROWS:
        raise BadInput(f"too many rows: {shape[0]} (at most {MAX_ROWS})")
    values = _tensor_data(inputs[0], "inputs[0]", shape[0] * shape[1])
    return np.array(values, dtype=np.float64).reshape(shape[0], shape[1]), req_id, outputs


def _decode_columnar(inputs: list[dict[str, Any]]) -> NDArray[np.float64]:
    by_name: dict[str, tuple[int, dict[str, Any]]] = {}
    for i, inp in enumerate(inputs):
        if inp["name"] in by_name:
            raise BadInput(f"inputs[{i}]: input {inp['name']!r} appears twice")
        by_name[inp["name"]] = (i, inp)
    _check_names(set(by_name), "inputs")
    n: int | None = None
    columns = []
    for name in FEATURES:
        i, inp = by_name[name]
        where = f"inputs[{i}]"
        shape = _shape(inp, where)
        if not (len(shape) == 1 or (len(shape) == 2 and shape[1] == 1)) or shape[0] < 1:
            raise BadInput(f"{where}.shape: a column needs shape [N] or [N,1] with N >= 1, got {shape}")
        if n is not None and shape[0] != n:
            raise BadInput(f"{where}: {name} has {shape[0]} rows, the columns before have {n}")
        n = shape[0]
        if n > MAX_ROWS:
            raise BadInput(f"too many rows: {n} (at most {MAX_ROWS})")
        columns.append(_tensor_data(inp, where, n))
    return np.array(columns, dtype=np.float64).T.copy()


def _requested_outputs(raw: object) -> tuple[str, ...]:
    if raw is None:
        return OUTPUTS
    if not isinstance(raw, list) or not all(isinstance(o, dict) for o in raw):
        raise BadInput('"outputs" must be a list of {"name": ...} objects')
    names = []
    for i, o in enumerate(raw):
        name = o.get("name")
        if name not in OUTPUTS:
            raise BadInput(f"outputs[{i}].name: unknown output {name!r} (known: {', '.join(OUTPUTS)})")
        names.append(name)
    return tuple(names) or OUTPUTS


# --------------------------------------------------------------------------------------------- server

def _json(obj: object, status: int = 200) -> web.Response:
    return web.Response(body=orjson.dumps(obj, option=_DUMPS_OPTS), status=status,
                        content_type="application/json")


def _error(status: int, message: str) -> web.Response:
    return _json({"error": message}, status)


def _not_found(model: str, version: str | None = None) -> web.Response:
    if model != MODEL_NAME:
        return _error(404, f"Model {model} not found")
    return _error(404, f"Model {model} version {version} not found")


def _model_ok(req: web.Request) -> web.Response | None:
    """A 404 reply when the path names another model or version, else None."""
    model = req.match_info["model"]
    version = req.match_info.get("version")
    if model != MODEL_NAME or (version is not None and version != MODEL_VERSION):
        return _not_found(model, version)
    return None


@web.middleware
async def _json_errors(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    """Routing misses (404, 405) and oversized bodies (413) answer in JSON like the rest."""
    try:
        return await handler(request)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        resp = _error(exc.status, exc.reason if exc.status != 404 else f"no route for {request.path}")
        if "Allow" in exc.headers:
            resp.headers["Allow"] = exc.headers["Allow"]
        return resp


class _DemoModel:
    def __init__(self, latency: float, jitter: float, seed: int) -> None:
        self.latency = latency
        self.jitter = jitter
        self.rng = np.random.default_rng(seed)

    async def _think(self) -> None:
        delay = self.latency + (float(self.rng.exponential(self.jitter)) if self.jitter > 0 else 0.0)
        if delay > 0:
            await asyncio.sleep(delay)

    async def _body(self, req: web.Request) -> object:
        raw = await req.read()
        try:
            return orjson.loads(raw)
        except orjson.JSONDecodeError as exc:
            raise BadInput(f"invalid JSON: {exc}") from None

    # --- KServe V1

    async def v1_list(self, req: web.Request) -> web.Response:
        return _json({"models": [MODEL_NAME]})

    async def v1_ready(self, req: web.Request) -> web.Response:
        return _model_ok(req) or _json({"name": MODEL_NAME, "ready": True})

    async def v1_post(self, req: web.Request) -> web.Response:
        model, sep, verb = req.match_info["target"].rpartition(":")
        if not sep:
            return _error(404, f"no route for POST {req.path} (expected /v1/models/<model>:predict)")
        if model != MODEL_NAME:
            return _not_found(model)
        if verb == "explain":
            return _error(501, "this model has no explainer")
        if verb not in ("predict", "predict_proba"):
            return _error(404, f"unknown verb :{verb} (expected :predict or :predict_proba)")
        try:
            x = decode_v1(await self._body(req))
        except BadInput as exc:
            return _error(400, str(exc))
        await self._think()
        labels, proba = predict(x)
        if verb == "predict_proba":
            return _json({"predictions": proba.astype(np.float32)})
        return _json({"predictions": labels})

    # --- Open Inference Protocol V2

    async def v2_server(self, req: web.Request) -> web.Response:
        return _json({"name": "mlchaos-demo", "version": __version__, "extensions": []})

    async def v2_live(self, req: web.Request) -> web.Response:
        return _json({"live": True})

    async def v2_server_ready(self, req: web.Request) -> web.Response:
        return _json({"ready": True})

    async def v2_metadata(self, req: web.Request) -> web.Response:
        return _model_ok(req) or _json({
            "name": MODEL_NAME,
            "versions": [MODEL_VERSION],
            "platform": "numpy",
            "inputs": [{"name": "input-0", "datatype": "FP32", "shape": [-1, len(FEATURES)]}],
            "outputs": [
                {"name": "label", "datatype": "INT64", "shape": [-1]},
                {"name": "probabilities", "datatype": "FP32", "shape": [-1, len(CLASSES)]},
            ],
            # Not in the spec's required fields: how to read the matrix, and the columnar alternative
            # (one [N] tensor per feature, named as below).
            "parameters": {"feature_names": list(FEATURES), "class_names": list(CLASSES)},
        })

    async def v2_model_ready(self, req: web.Request) -> web.Response:
        return _model_ok(req) or _json({"name": MODEL_NAME, "ready": True})

    async def v2_infer(self, req: web.Request) -> web.Response:
        if (miss := _model_ok(req)) is not None:
            return miss
        try:
            x, req_id, wanted = decode_v2(await self._body(req))
        except BadInput as exc:
            return _error(400, str(exc))
        await self._think()
        labels, proba = predict(x)
        n = len(labels)
        tensors = {
            "label": {"name": "label", "shape": [n], "datatype": "INT64", "data": labels},
            "probabilities": {"name": "probabilities", "shape": [n, len(CLASSES)], "datatype": "FP32",
                              "data": proba.astype(np.float32).ravel()},
        }
        return _json({
            "model_name": MODEL_NAME,
            "model_version": MODEL_VERSION,
            # Like MLServer: echo the client's id, or make one up.
            "id": req_id if req_id is not None else str(uuid.uuid4()),
            "parameters": {},
            "outputs": [tensors[name] for name in wanted],
        })


def make_app(*, latency: float = 0.0, jitter: float = 0.0, seed: int = 0) -> web.Application:
    """The demo model as an aiohttp application.

    ``latency`` seconds are slept on every inference request (``:predict``, ``/infer``), plus an
    exponential draw with mean ``jitter`` from a generator seeded with ``seed``. Health and metadata
    routes answer at once.
    """
    if latency < 0 or jitter < 0:
        raise ValueError("latency and jitter must be >= 0")
    m = _DemoModel(latency, jitter, seed)
    app = web.Application(middlewares=[_json_errors])
    r = app.router
    r.add_get("/v1/models", m.v1_list)
    r.add_get("/v1/models/{model}", m.v1_ready)
    r.add_post("/v1/models/{target}", m.v1_post)
    r.add_get("/v2", m.v2_server)
    r.add_get("/v2/health/live", m.v2_live)
    r.add_get("/v2/health/ready", m.v2_server_ready)
    for prefix in ("/v2/models/{model}", "/v2/models/{model}/versions/{version}"):
        r.add_get(prefix, m.v2_metadata)
        r.add_get(f"{prefix}/ready", m.v2_model_ready)
        r.add_post(f"{prefix}/infer", m.v2_infer)
    return app


async def start_model(
    host: str = "127.0.0.1", port: int = 0, *, latency: float = 0.0, jitter: float = 0.0, seed: int = 0
) -> tuple[web.AppRunner, int]:
    """Serve the demo model in this event loop; returns the runner (``await runner.cleanup()`` to stop)
    and the bound port, which is a free one when ``port`` is 0."""
    runner = web.AppRunner(make_app(latency=latency, jitter=jitter, seed=seed), access_log=None,
                           shutdown_timeout=1.0)
    await runner.setup()
    try:
        site = web.TCPSite(runner, host, port)
        await site.start()
    except BaseException:
        await runner.cleanup()
        raise
    bound: int = runner.addresses[0][1]
    return runner, bound


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m proxy.demo.model",
                                     description="Serve the mlchaos demo iris model (KServe V1 and V2).")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8080)
    parser.add_argument("--latency", type=float, default=0.0, help="seconds slept per inference request")
    parser.add_argument("--jitter", type=float, default=0.0, help="mean extra latency, seconds")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    app = make_app(latency=args.latency, jitter=args.jitter, seed=args.seed)
    web.run_app(app, host=args.host, port=args.port, access_log=None)


if __name__ == "__main__":
    main()
