"""The router: request facts in, an Assignment out, nothing written back, nothing allocated per request."""

from __future__ import annotations

from proxy.cohort import CHAOS, CONTROL, NONE
from proxy.edges.http1.request import Request
from proxy.experiments import Experiments
from proxy.metrics import Metrics
from proxy.routing import UNASSIGNED, Assignment, Router
from tests.conftest import policy_from


def _router(experiments: list[dict[str, object]], token: bytes | None = None) -> Router:
    exps = Experiments(Metrics())
    exps.apply_policy(policy_from("http://127.0.0.1:9", {"experiments": experiments,
                                                        "cohort_override": {"enabled": token is not None},
                                                        "max_blast_radius": 50}), token)
    return exps.router


def _req(path: str = "/v1/infer", method: str = "POST", headers: list[tuple[bytes, bytes]] | None = None) -> Request:
    req = Request(b"127.0.0.1")
    req.method, req.url = method, path.encode()
    req.headers = headers or []
    return req


def test_an_empty_router_assigns_nothing() -> None:
    assert Router().assign(_req()) is UNASSIGNED
    assert (UNASSIGNED.experiment, UNASSIGNED.cohort, UNASSIGNED.matched) == (None, NONE, None)


def test_the_request_is_not_written_to() -> None:
    router = _router([{"name": "e", "chaos": 1, "control": 1, "sticky_key": "header:x-user"}])
    req = _req(headers=[(b"x-user", b"u1")])
    # The compiled class has no __slots__ to list: the attributes routing could touch, by name.
    names = ("method", "url", "headers", "lines", "client_ip", "cohort_header", "token_header",
             "experiment_header", "error", "ready", "keep_alive")
    before = {name: getattr(req, name) for name in names}
    router.assign(req)
    assert {name: getattr(req, name) for name in names} == before
    assert not hasattr(req, "matched")


def test_sticky_assignments_are_the_routers_own_objects_every_time() -> None:
    router = _router([{"name": "e", "chaos": 10, "control": 10, "sticky_key": "header:x-user"}])
    seen: dict[int, Assignment] = {}
    for i in range(400):
        a = router.assign(_req(headers=[(b"x-user", b"user-%d" % i)]))
        assert a is router.assign(_req(headers=[(b"x-user", b"user-%d" % i)]))  # sticky, and not a new object
        seen.setdefault(a.cohort, a)
    assert set(seen) == {CHAOS, CONTROL, NONE}
    assert seen[CHAOS] is router.as_chaos[0] and seen[CONTROL] is router.as_control[0]
    st = router.active[0]
    assert (seen[CHAOS].experiment, seen[CONTROL].experiment) == (st, st)
    # Matched but in no cohort: no experiment, but the matched one still learns from the request.
    assert (seen[NONE].experiment, seen[NONE].matched) == (None, st)


def test_a_request_no_experiment_matches_is_unassigned_not_matched() -> None:
    router = _router([{"name": "e", "chaos": 25, "control": 25, "match": {"path": "/v2/**"}}])
    assert router.assign(_req("/v1/infer")) is UNASSIGNED


def test_the_first_matching_experiment_is_the_one_remembered() -> None:
    router = _router([
        {"name": "a", "chaos": 0.01, "control": 0.01, "sticky_key": "header:x-user"},
        {"name": "b", "chaos": 0.01, "control": 0.01, "sticky_key": "header:x-user"},
    ])
    unassigned = [a for i in range(200) if (a := router.assign(_req(headers=[(b"x-user", b"%d" % i)]))).cohort == NONE]
    assert unassigned and all(a.matched is router.active[0] for a in unassigned)


def test_forced_cohorts_need_the_token_and_may_name_the_experiment() -> None:
    router = _router([{"name": "a", "chaos": 1, "control": 1}, {"name": "b", "chaos": 1, "control": 1}], b"tok")
    force = [(b"x-mlchaos-cohort", b"chaos"), (b"x-mlchaos-token", b"tok")]

    def req(extra: list[tuple[bytes, bytes]]) -> Request:
        r = _req(headers=extra)
        for name, value in extra:
            if name == b"x-mlchaos-cohort":
                r.cohort_header = value
            elif name == b"x-mlchaos-token":
                r.token_header = value
            elif name == b"x-mlchaos-experiment":
                r.experiment_header = value
        return r

    assert router.assign(req(force)) is router.as_chaos[0]
    assert router.assign(req([*force, (b"x-mlchaos-experiment", b"b")])) is router.as_chaos[1]
    assert router.assign(req([(b"x-mlchaos-cohort", b"none"), (b"x-mlchaos-token", b"tok")])) is UNASSIGNED
    wrong = router.assign(req([(b"x-mlchaos-cohort", b"chaos"), (b"x-mlchaos-token", b"nope")]))
    assert wrong.cohort in (NONE, CHAOS, CONTROL) and (wrong.cohort == NONE) == (wrong.experiment is None)


def test_a_shadow_twin_is_never_assigned() -> None:
    # The twin an ingress sidecar sends of a chaos request passes through the dependency's sidecar, which holds an
    # experiment of the same name: in chaos by its sticky key, it must still reach the model unfaulted.
    router = _router([{"name": "e", "chaos": 50, "control": 0, "sticky_key": "header:x-user"}])
    users = [b"user-%d" % i for i in range(100)]
    chaos = [u for u in users if router.assign(_req(headers=[(b"x-user", u)])).cohort == CHAOS]
    assert chaos
    for user in chaos:
        req = _req(headers=[(b"x-user", user), (b"x-mlchaos-shadow", b"1")])
        req.shadow = True  # what the connection sets on reading the header
        assert router.assign(req) is UNASSIGNED
