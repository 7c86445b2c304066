"""The demo's system under test: an inference service, the feature store it reads and the model it calls.

Three aiohttp applications, served on loopback ports in the demo's event loop:

Feature store (``FeatureStore``)
    Feast's online serving wire format (``POST /get-online-features``, column-oriented answer, see
    proxy/payload/adapters/feast.py): per ``user_id``, ``user_profile:account_age_days`` and
    ``user_profile:avg_amount_30d`` (fixed per user) and ``user_activity:txn_count_1h``, which the feature
    pipeline recomputes every ``refresh`` seconds (a fresh Poisson draw around the user's own rate): a value
    older than one refresh is a stale one.
Primary model (``make_model_app``)
    Open Inference Protocol V2 (``POST /v2/models/risk/infer``): one ``[N, 4]`` FP64 tensor (the three stored
    features and the request's amount), answering a ``label`` (1: send the payment to review) and its
    ``probability``. Fixed weights: the same features always get the same answer.
Inference service (``InferenceService``)
    What clients call: KServe V1 (``POST /v1/models/risk:predict``, ``{"instances": [{"user_id", "amount"}]}``
    answered ``{"predictions": [label, ...]}``). It looks the users' features up in the feature store, then
    asks the primary model. Its error paths: when the feature store fails it goes on with ``DEFAULTS``
    (``x-feature-source: default``); when the model fails it answers with the fallback model, a rule on the
    amount alone (``x-model-version: fallback``). It propagates ``BAGGAGE`` (the user id, trace context and
    mlchaos's shadow mark) to both dependencies, as a traced service passes its baggage on.

Everything is deterministic given the seed, but for which refresh a lookup falls in (wall-clock time).
"""

from __future__ import annotations

import asyncio
import math
import zlib
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import aiohttp
import numpy as np
import orjson
from aiohttp import web

__all__ = [
    "BAGGAGE", "DEFAULTS", "FEATURES", "FeatureStore", "InferenceService", "make_model_app", "primary_label",
    "serve",
]

MODEL = "risk"
ENTITY = "user_id"
# The stored features, as the service asks for them, and the order the model reads them in (then the amount).
FEATURES = ("user_activity:txn_count_1h", "user_profile:account_age_days", "user_profile:avg_amount_30d")
# What the service uses when the feature store does not answer: population-typical values.
DEFAULTS: Mapping[str, float] = {"txn_count_1h": 2.0, "account_age_days": 365.0, "avg_amount_30d": 80.0}
# Headers the service passes on to its dependencies: the sticky key the sidecars share, the trace context, and
# the mark of a shadow twin (the dependency's sidecar leaves a twin alone).
BAGGAGE = ("x-user-id", "traceparent", "x-mlchaos-shadow")
# A dependency that takes longer has failed, for the service.
DEPENDENCY_TIMEOUT = 2.0
# The primary model: a logistic score; 1 (review) above 0.5.
WEIGHTS = np.array([0.9, -0.0015, 0.0, 1.0])
BIAS = -2.6
PRIMARY_VERSION = "primary-3"
FALLBACK_VERSION = "fallback"
# The fallback model knows the amount only: review anything above this.
FALLBACK_LIMIT = 400.0
_DUMPS = orjson.OPT_SERIALIZE_NUMPY


def _h(*parts: object) -> int:
    """A stable 32-bit hash (Python's own is salted per process)."""
    return zlib.crc32("|".join(map(str, parts)).encode())


@dataclass(frozen=True, slots=True)
class UserProfile:
    rate: float  # mean transactions per hour
    account_age_days: float
    avg_amount_30d: float


def profile(seed: int, user: str) -> UserProfile:
    rng = np.random.default_rng([seed, _h("profile", user)])
    return UserProfile(float(rng.lognormal(math.log(2.0), 0.6)), float(np.round(rng.uniform(5, 2000))),
                       float(np.round(rng.lognormal(math.log(80.0), 0.5), 2)))


def primary_label(txn_count: float, account_age: float, avg_amount: float, amount: float) -> tuple[int, float]:
    """The primary model on one row: (label, probability of review)."""
    z = BIAS + WEIGHTS[0] * txn_count + WEIGHTS[1] * account_age + WEIGHTS[3] * math.log(max(amount, 0.01)
                                                                                         / max(avg_amount, 0.01))
    p = 1.0 / (1.0 + math.exp(-z))
    return int(p > 0.5), p


# ------------------------------------------------------------------------------------------ feature store

def _timestamp(seconds: float) -> str:
    return datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class FeatureStore:
    """The online store: answers what the pipeline last materialized, in Feast's column-oriented format."""

    def __init__(self, seed: int, refresh: float, clock: Any = None) -> None:
        self.seed = seed
        self.refresh = refresh
        self.loop_time = clock or asyncio.get_running_loop().time
        self.started = self.loop_time()
        self.wall_start = datetime.now(UTC).timestamp()
        self.lookups = 0

    def row(self, user: str) -> tuple[list[float], list[str]]:
        """The user's features now, and their event timestamps."""
        epoch = int((self.loop_time() - self.started) // self.refresh)
        p = profile(self.seed, user)
        count = float(np.random.default_rng([self.seed, _h("activity", user), epoch]).poisson(p.rate))
        computed = _timestamp(self.wall_start + epoch * self.refresh)
        return [count, p.account_age_days, p.avg_amount_30d], [computed, "2026-01-01T00:00:00Z",
                                                               "2026-01-01T00:00:00Z"]

    async def get_online_features(self, request: web.Request) -> web.Response:
        try:
            doc = orjson.loads(await request.read())
            users = [str(u) for u in doc["entities"][ENTITY]]
            refs = [str(r) for r in doc["features"]]
        except (orjson.JSONDecodeError, KeyError, TypeError):
            return web.Response(status=422, body=orjson.dumps("expected features and entities.user_id"),
                                content_type="application/json")
        self.lookups += 1
        known = {name: i for i, name in enumerate(FEATURES)}
        rows = [self.row(u) for u in users]
        results: list[dict[str, Any]] = [{"values": users, "statuses": ["PRESENT"] * len(users),
                                          "event_timestamps": ["1970-01-01T00:00:00Z"] * len(users)}]
        for ref in refs:
            j = known.get(ref)
            if j is None:
                results.append({"values": [None] * len(users), "statuses": ["NOT_FOUND"] * len(users),
                                "event_timestamps": ["1970-01-01T00:00:00Z"] * len(users)})
                continue
            results.append({"values": [r[0][j] for r in rows], "statuses": ["PRESENT"] * len(users),
                            "event_timestamps": [r[1][j] for r in rows]})
        names = [ENTITY] + [ref.split(":", 1)[-1] for ref in refs]
        return web.Response(body=orjson.dumps({"metadata": {"feature_names": names}, "results": results}),
                            content_type="application/json")

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_post("/get-online-features", self.get_online_features)
        return app


# ------------------------------------------------------------------------------------------------- model

async def _infer(request: web.Request) -> web.Response:
    try:
        doc = orjson.loads(await request.read())
        (tensor,) = doc["inputs"]
        n, width = tensor["shape"]
        data = [float(v) for v in tensor["data"]]
        if width != 4 or len(data) != n * width:
            raise ValueError(f"expected [N, 4], got {tensor['shape']}")
    except (orjson.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
        return web.json_response({"error": f"bad input: {exc}"}, status=400)
    answers = [primary_label(*data[i * 4:i * 4 + 4]) for i in range(n)]
    outputs = [{"name": "label", "shape": [n], "datatype": "INT64", "data": [a[0] for a in answers]},
               {"name": "probability", "shape": [n], "datatype": "FP64", "data": [round(a[1], 6) for a in answers]}]
    return web.Response(body=orjson.dumps({"model_name": MODEL, "model_version": PRIMARY_VERSION, "outputs": outputs}),
                        content_type="application/json")


def make_model_app() -> web.Application:
    app = web.Application()
    app.router.add_post(f"/v2/models/{MODEL}/infer", _infer)
    return app


# ------------------------------------------------------------------------------------- inference service

class DependencyError(Exception):
    pass


class InferenceService:
    """Features from the store (defaults when it fails), then the primary model (the fallback when it fails)."""

    def __init__(self, features_url: str, model_url: str) -> None:
        self.features_url = features_url.rstrip("/") + "/get-online-features"
        self.model_url = model_url.rstrip("/") + f"/v2/models/{MODEL}/infer"
        self.session: aiohttp.ClientSession | None = None
        # Answers per path taken: how often each error path ran.
        self.paths = {"features": 0, "default_features": 0, "primary": 0, "fallback": 0}

    async def start(self) -> None:
        self.session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=DEPENDENCY_TIMEOUT),
                                             connector=aiohttp.TCPConnector(limit=64))

    async def close(self) -> None:
        if self.session is not None:
            await self.session.close()

    async def _post(self, url: str, doc: object, baggage: dict[str, str]) -> Any:
        assert self.session is not None
        try:
            async with self.session.post(url, data=orjson.dumps(doc, option=_DUMPS),
                                         headers={**baggage, "content-type": "application/json"}) as r:
                body = await r.read()
                if r.status != 200:
                    raise DependencyError(f"{url} answered {r.status}")
                return orjson.loads(body)
        except (aiohttp.ClientError, TimeoutError, orjson.JSONDecodeError) as exc:
            raise DependencyError(f"{url}: {exc!r}") from None

    async def features(self, users: list[str], baggage: dict[str, str]) -> tuple[list[list[float]], bool]:
        """Per user the three stored features, and whether they came from the store (else the defaults)."""
        defaults = [DEFAULTS[ref.split(":", 1)[1]] for ref in FEATURES]
        try:
            doc = await self._post(self.features_url, {"features": list(FEATURES), "entities": {ENTITY: users}},
                                   baggage)
            names = doc["metadata"]["feature_names"]
            columns = {name: result["values"] for name, result in zip(names, doc["results"], strict=True)}
            rows = []
            for i in range(len(users)):
                row = []
                for ref, default in zip(FEATURES, defaults, strict=True):
                    value = columns[ref.split(":", 1)[1]][i]
                    row.append(float(value) if isinstance(value, int | float) else default)  # a missing value
                rows.append(row)
            self.paths["features"] += 1
            return rows, True
        except (DependencyError, KeyError, TypeError, ValueError, IndexError):
            self.paths["default_features"] += 1
            return [list(defaults) for _ in users], False

    async def predict(self, request: web.Request) -> web.Response:
        try:
            doc = orjson.loads(await request.read())
            instances = doc["instances"]
            users = [str(i["user_id"]) for i in instances]
            amounts = [float(i["amount"]) for i in instances]
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError):
            return web.json_response({"error": 'expected {"instances": [{"user_id": ..., "amount": ...}]}'},
                                     status=400)
        baggage = {k: v for k in BAGGAGE if (v := request.headers.get(k)) is not None}
        rows, fresh = await self.features(users, baggage)
        x = [r + [a] for r, a in zip(rows, amounts, strict=True)]
        headers = {"x-feature-source": "store" if fresh else "default"}
        try:
            answer = await self._post(self.model_url, {"inputs": [{"name": "input-0", "shape": [len(x), 4],
                                                                   "datatype": "FP64",
                                                                   "data": [v for r in x for v in r]}]}, baggage)
            (labels,) = [o["data"] for o in answer["outputs"] if o["name"] == "label"]
            self.paths["primary"] += 1
            headers["x-model-version"] = PRIMARY_VERSION
        except (DependencyError, KeyError, TypeError, ValueError):
            labels = [int(a > FALLBACK_LIMIT) for a in amounts]
            self.paths["fallback"] += 1
            headers["x-model-version"] = FALLBACK_VERSION
        return web.Response(body=orjson.dumps({"predictions": labels}), content_type="application/json",
                            headers=headers)

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_post(f"/v1/models/{MODEL}:predict", self.predict)
        return app


async def serve(app: web.Application, host: str = "127.0.0.1") -> tuple[web.AppRunner, int]:
    """Serve ``app`` on a free port of ``host``; returns the runner (``cleanup()`` stops it) and the port."""
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=1.0, handle_signals=False)
    await runner.setup()
    try:
        await web.TCPSite(runner, host, 0).start()
    except BaseException:
        await runner.cleanup()
        raise
    port: int = runner.addresses[0][1]
    return runner, port
