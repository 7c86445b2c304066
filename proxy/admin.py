"""The control plane: an aiohttp app on its own port for health, metrics, experiments and the policy."""

from __future__ import annotations

import hmac
from typing import TYPE_CHECKING, Any

import orjson
from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from .cohort import COHORTS
from .gate import overall_verdict

if TYPE_CHECKING:
    from .app import Sidecar
    from .experiments import ExperimentState

__all__ = ["SIDECAR", "make_admin_app"]

SIDECAR: web.AppKey[Sidecar] = web.AppKey("sidecar")
_OPEN = frozenset({"GET", "HEAD", "OPTIONS"})


def _json(data: Any, status: int = 200) -> web.Response:
    return web.Response(body=orjson.dumps(data), status=status, content_type="application/json")


def _error(status: int, message: str, **extra: Any) -> web.Response:
    return _json({"error": message, "source": "mlchaos", **extra}, status)


# The gate's Flagger hooks are POSTs but only read: Flagger cannot send a bearer token by default.
_READ_ONLY_POSTS = frozenset({"/gate/flagger", "/gate/flagger/rollback"})


@web.middleware
async def _auth(request: web.Request, handler: Any) -> web.StreamResponse:
    sidecar = request.app[SIDECAR]
    token = sidecar.admin_token
    if token and request.method not in _OPEN and request.path not in _READ_ONLY_POSTS:
        sent = request.headers.get("Authorization", "")
        if not (sent.startswith("Bearer ") and hmac.compare_digest(sent[7:].encode(), token.encode())):
            return _error(401, "missing or wrong bearer token")
    resp: web.StreamResponse = await handler(request)
    return resp


def experiment_view(st: ExperimentState, active: bool) -> dict[str, Any]:
    spec = st.spec
    return {
        "name": spec.name,
        "state": "active" if active else "stopped",
        "reason": st.reason or ("policy" if active else ""),
        "enabled": spec.enabled,
        "chaos_percent": spec.chaos_percent,
        "control_percent": spec.control_percent,
        "sticky_key": str(spec.sticky_key) if spec.sticky_key else "random",
        "match": dict(spec.match.source),
        "faults": [{"type": f.type, "probability": f.probability} for f in spec.faults],
        "requests": {COHORTS[i]: st.requests[i] for i in (0, 1)},
        "errors": {COHORTS[i]: st.errors[i] for i in (0, 1)},
        "faults_injected": st.faults_injected,
        "kill_switch": {"enabled": spec.kill_switch.enabled, "tripped": st.tripped,
                        "guards": st.guards.snapshot() if st.guards is not None else {}},
    }


async def healthz(request: web.Request) -> web.Response:
    return _json({"status": "ok"})


async def readyz(request: web.Request) -> web.Response:
    sidecar = request.app[SIDECAR]
    if sidecar.draining:
        return _json({"status": "draining"}, 503)
    return _json({"status": "ready"})


async def metrics(request: web.Request) -> web.Response:
    body = generate_latest(request.app[SIDECAR].metrics.registry)
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})


async def experiments(request: web.Request) -> web.Response:
    exps = request.app[SIDECAR].experiments
    active = set(map(id, exps.router.active))
    return _json({"experiments": [experiment_view(st, id(st) in active) for st in exps.states.values()]})


async def start_experiment(request: web.Request) -> web.Response:
    sidecar = request.app[SIDECAR]
    name = request.match_info["name"]
    problem = sidecar.start_experiment(name)
    if problem is not None:
        return _error(404 if problem.startswith("no experiment") else 409, problem)
    return _json({"status": "started", "experiment": name})


async def stop_experiment(request: web.Request) -> web.Response:
    sidecar = request.app[SIDECAR]
    name = request.match_info["name"]
    problem = sidecar.stop_experiment(name, "stopped through the admin API")
    if problem is not None:
        return _error(404, problem)
    return _json({"status": "stopped", "experiment": name})


async def halt(request: web.Request) -> web.Response:
    sidecar = request.app[SIDECAR]
    sidecar.halt("halted through the admin API")
    return _json({"status": "halted", "experiments": list(sidecar.experiments.states)})


async def experiment_report(request: web.Request) -> web.Response:
    data = request.app[SIDECAR].report(request.match_info["name"])
    if data is None:
        return _error(404, f"no experiment named {request.match_info['name']!r}")
    return _json(data)


# GET /experiments/NAME/verdict: 200 held, 503 deviated, 425 Too Early while inconclusive (too few
# observations, or an interval that straddles a tolerance): an orchestrator's probe that expects 200 fails
# on anything but held, and a client that wants to wait can tell "not yet" (425) from "no" (503).
VERDICT_STATUS = {"held": 200, "deviated": 503, "inconclusive": 425}


async def experiment_hypothesis(request: web.Request) -> web.Response:
    name = request.match_info["name"]
    st = request.app[SIDECAR].experiments.states.get(name)
    if st is None:
        return _error(404, f"no experiment named {name!r}")
    if not st.spec.hypothesis.asked():
        return _error(404, f"experiment {name!r} declares no hypothesis")
    if st.verdict is None:  # declared, not judged yet (the bookkeeping task runs every half second)
        return _json({"experiment": name, "verdict": "inconclusive", "checks": {},
                      "reason": "not judged yet"}, VERDICT_STATUS["inconclusive"])
    data = st.verdict.to_dict()
    return _json(data, VERDICT_STATUS[data["verdict"]])


async def rearm_experiment(request: web.Request) -> web.Response:
    sidecar = request.app[SIDECAR]
    name = request.match_info["name"]
    problem = sidecar.experiments.rearm(name)
    if problem is not None:
        return _error(404 if problem.startswith("no experiment") else 409, problem)
    return _json({"status": "rearmed", "experiment": name})


async def gate(request: web.Request) -> web.Response:
    """Argo Rollouts' web metric: always 200, the verdict in the JSON."""
    name = request.query.get("experiment")
    verdict = overall_verdict(request.app[SIDECAR].experiments, name)
    if verdict is None:
        return _json({"verdict": "inconclusive", "tripped": False, "n_chaos": 0, "n_control": 0, "guards": {},
                      "reason": f"no experiment named {name!r}"})
    return _json(verdict)


async def _flagger_verdict(request: web.Request) -> tuple[dict[str, Any], dict[str, Any]]:
    try:
        body = await request.json(loads=orjson.loads)
    except ValueError:
        body = {}
    if not isinstance(body, dict):
        body = {}
    meta = body.get("metadata")
    if not isinstance(meta, dict):
        meta = {}
    name = meta.get("experiment") if "experiment" in meta else request.query.get("experiment")
    if name is not None and not isinstance(name, str):
        name = str(name)  # a number is a name too; it will not match one of ours
    verdict = overall_verdict(request.app[SIDECAR].experiments, name)
    if verdict is None:
        verdict = {"verdict": "inconclusive", "tripped": False, "reason": f"no experiment named {name!r}"}
    return body, verdict


async def gate_flagger(request: web.Request) -> web.Response:
    """Flagger webhook: 200 lets the canary proceed; 503 holds it (fail or not enough data)."""
    body, verdict = await _flagger_verdict(request)
    status = 200 if verdict["verdict"] == "pass" else 503
    return _json({**verdict, "canary": {k: body.get(k) for k in ("name", "namespace", "phase") if k in body}},
                 status)


async def gate_flagger_rollback(request: web.Request) -> web.Response:
    """Flagger's rollback hook is inverted: a 2xx rolls the canary back, so 200 only when tripped."""
    _, verdict = await _flagger_verdict(request)
    return _json(verdict, 200 if verdict["tripped"] else 503)


async def get_policy(request: web.Request) -> web.Response:
    policy = request.app[SIDECAR].policy
    return web.Response(text=policy.source, content_type="application/yaml")


async def post_policy(request: web.Request) -> web.Response:
    text = await request.text()
    problems = request.app[SIDECAR].reload_text(text, origin="admin API")
    if problems:
        return _error(422, "invalid policy; the running policy stays", problems=problems)
    return _json({"status": "loaded", "summary": request.app[SIDECAR].summary()})


def make_admin_app(sidecar: Sidecar) -> web.Application:
    # A policy is text; 1 MiB is far more than any real one and bounds what a caller can make us parse.
    app = web.Application(middlewares=[_auth], client_max_size=1024 * 1024)
    app[SIDECAR] = sidecar
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/metrics", metrics)
    app.router.add_get("/experiments", experiments)
    app.router.add_post("/experiments/{name}/start", start_experiment)
    app.router.add_post("/experiments/{name}/stop", stop_experiment)
    app.router.add_post("/experiments/{name}/rearm", rearm_experiment)
    app.router.add_get("/experiments/{name}/report", experiment_report)
    app.router.add_get("/experiments/{name}/verdict", experiment_hypothesis)
    app.router.add_post("/halt", halt)
    app.router.add_get("/gate", gate)
    app.router.add_post("/gate/flagger", gate_flagger)
    app.router.add_post("/gate/flagger/rollback", gate_flagger_rollback)
    app.router.add_get("/policy", get_policy)
    app.router.add_post("/policy", post_policy)
    return app
