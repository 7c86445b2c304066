"""The guards of one experiment (ExperimentGuards), as the data plane feeds them, and how they reach the metrics."""

from __future__ import annotations

import asyncio
from typing import Any

import aiohttp
import pytest
from prometheus_client import CollectorRegistry, generate_latest

from proxy.cohort import CHAOS, CONTROL
from proxy.declare.fields import fields_of
from proxy.experiments import Experiments, ExperimentState
from proxy.killswitch.errors_guard import ErrorsConfig, ErrorsGuard
from proxy.killswitch.guards import GUARD_NAMES, ExperimentGuards, is_error
from proxy.killswitch.latency_guard import LatencyConfig, LatencyGuard
from proxy.killswitch.registry import GUARDS
from proxy.killswitch.seatbelt_guard import SeatbeltConfig, SeatbeltGuard
from proxy.killswitch.sequential import CountGuard
from proxy.metrics import Metrics
from proxy.policy import PolicyError, load_policy_text, policy_schema
from proxy.policy.model import KillSwitch
from tests.conftest import policy_from

ALPHA = 0.01
ERRORS_OFF = ErrorsConfig(enabled=False)
BELT_OFF = SeatbeltConfig(enabled=False)
SLO_100MS = LatencyConfig(slo=0.1)
BELT = SeatbeltConfig(enabled=True, max_error_rate=0.5, min_requests=20)


def feed(g: ExperimentGuards, pairs: int, chaos: tuple[int, float], control: tuple[int, float] = (200, 0.01)
         ) -> tuple[str | None, int]:
    """Alternate one chaos and one control request ``pairs`` times; the first trip and the chaos count then."""
    for i in range(1, pairs + 1):
        for is_chaos, (status, seconds) in ((True, chaos), (False, control)):
            tripped = g.observe(is_chaos, status, seconds)
            if tripped is not None:
                return tripped, i
    return None, pairs


# -- is_error ----------------------------------------------------------------------------------------------

@pytest.mark.parametrize(("status", "include_4xx", "expected"), [
    (200, False, False), (204, False, False), (301, False, False), (399, True, False),
    (400, False, False), (404, False, False), (429, False, False), (499, False, False),
    (400, True, True), (404, True, True), (429, True, True), (499, True, True),
    (500, False, True), (502, False, True), (503, True, True), (504, False, True), (599, False, True),
    (0, False, True), (0, True, True),  # closed without an answer (dropped)
    (99, False, True), (100, False, False), (101, False, False),
])
def test_is_error(status: int, include_4xx: bool, expected: bool) -> None:
    assert is_error(status, include_4xx) is expected


# -- the errors guard --------------------------------------------------------------------------------------

def test_errors_guard_trips_on_a_hard_fault() -> None:
    g = ExperimentGuards(KillSwitch.of(alpha=ALPHA, seatbelt=BELT_OFF))
    assert g.guard("latency") is None and g.guard("seatbelt") is None
    assert isinstance(g.guard("errors"), ErrorsGuard)
    tripped, n = feed(g, 200, chaos=(503, 0.001))
    assert tripped == "errors"
    assert n <= 30, f"a hard fault took {n} chaos requests"
    assert g.tripped_guard == "errors" and "more errors than the untouched traffic" in g.trip_reason
    assert g.e_values()["errors"] >= 1 / ALPHA


def test_dropped_connections_count_as_errors() -> None:
    g = ExperimentGuards(KillSwitch.of(alpha=ALPHA, seatbelt=BELT_OFF))
    assert feed(g, 200, chaos=(0, 0.001))[0] == "errors"


def test_a_guard_reports_its_trip_once() -> None:
    g = ExperimentGuards(KillSwitch.of(alpha=ALPHA, seatbelt=BELT_OFF))
    assert feed(g, 200, chaos=(503, 0.001))[0] == "errors"
    assert [g.observe(True, 503, 0.001) for _ in range(50)] == [None] * 50
    assert g.tripped_guard == "errors"


def test_healthy_traffic_does_not_trip() -> None:
    g = ExperimentGuards(KillSwitch.of(alpha=ALPHA, latency=LatencyConfig(slo=0.5)))
    assert feed(g, 5000, chaos=(200, 0.01)) == (None, 5000)
    assert g.tripped_guard is None
    assert all(v < 1 / ALPHA for v in g.e_values().values())


def test_the_same_errors_in_both_cohorts_do_not_trip() -> None:
    g = ExperimentGuards(KillSwitch.of(alpha=ALPHA, seatbelt=BELT_OFF))
    # Every 10th request fails in each cohort: no difference, no trip.
    for i in range(3000):
        status = 503 if i % 10 == 0 else 200
        assert g.observe(True, status, 0.01) is None
        assert g.observe(False, status, 0.01) is None


def test_control_errors_never_trip_the_errors_guard() -> None:
    g = ExperimentGuards(KillSwitch.of(alpha=ALPHA, seatbelt=BELT_OFF))
    assert feed(g, 500, chaos=(200, 0.01), control=(503, 0.01)) == (None, 500)


def test_4xx_count_only_with_include_4xx() -> None:
    plain = ExperimentGuards(KillSwitch.of(alpha=ALPHA, seatbelt=BELT_OFF))
    assert feed(plain, 500, chaos=(404, 0.01)) == (None, 500)
    strict = ExperimentGuards(KillSwitch.of(alpha=ALPHA, errors=ErrorsConfig(include_4xx=True), seatbelt=BELT_OFF))
    tripped, n = feed(strict, 500, chaos=(404, 0.01))
    assert tripped == "errors" and n <= 30


def test_errors_guard_can_be_turned_off() -> None:
    g = ExperimentGuards(KillSwitch.of(alpha=ALPHA, errors=ERRORS_OFF, seatbelt=BELT_OFF))
    assert g.guard("errors") is None
    assert feed(g, 500, chaos=(503, 0.01)) == (None, 500)
    assert g.e_values() == {}


# -- the latency guard -------------------------------------------------------------------------------------

def test_latency_guard_counts_requests_over_the_slo() -> None:
    g = ExperimentGuards(KillSwitch.of(alpha=ALPHA, errors=ERRORS_OFF, latency=SLO_100MS, seatbelt=BELT_OFF))
    assert isinstance(g.guard("latency"), LatencyGuard)
    tripped, n = feed(g, 200, chaos=(200, 0.25), control=(200, 0.02))
    assert tripped == "latency" and n <= 30
    assert "0.1s" in g.trip_reason
    assert g.e_values()["latency"] >= 1 / ALPHA


def test_latency_at_the_slo_is_not_over_it() -> None:
    g = ExperimentGuards(KillSwitch.of(alpha=ALPHA, errors=ERRORS_OFF, latency=SLO_100MS, seatbelt=BELT_OFF))
    assert feed(g, 500, chaos=(200, 0.1), control=(200, 0.02)) == (None, 500)


def test_latency_guard_ignores_status() -> None:
    # Fast errors are not slow requests (the errors guard is off here).
    g = ExperimentGuards(KillSwitch.of(alpha=ALPHA, errors=ERRORS_OFF, latency=SLO_100MS, seatbelt=BELT_OFF))
    assert feed(g, 500, chaos=(503, 0.001)) == (None, 500)


def test_latency_guard_is_off_without_an_slo() -> None:
    g = ExperimentGuards(KillSwitch.of(alpha=ALPHA, errors=ERRORS_OFF, seatbelt=BELT_OFF))
    assert g.guard("latency") is None
    assert feed(g, 500, chaos=(200, 30.0)) == (None, 500)


# -- the seatbelt ------------------------------------------------------------------------------------------

def test_seatbelt_trips_after_min_requests() -> None:
    g = ExperimentGuards(KillSwitch.of(alpha=ALPHA, errors=ERRORS_OFF, seatbelt=BELT))
    assert isinstance(g.guard("seatbelt"), SeatbeltGuard)
    results = [g.observe(True, 503, 0.01) for _ in range(19)]
    assert results == [None] * 19, "the seatbelt waits for min_requests chaos requests"
    assert g.observe(True, 503, 0.01) == "seatbelt"
    assert g.tripped_guard == "seatbelt" and "0.5" in g.trip_reason


def test_seatbelt_counts_chaos_requests_only() -> None:
    g = ExperimentGuards(KillSwitch.of(alpha=ALPHA, errors=ERRORS_OFF, seatbelt=BELT))
    # Control failing does not move it, nor do control requests count towards min_requests.
    assert [g.observe(False, 503, 0.01) for _ in range(100)] == [None] * 100
    assert [g.observe(True, 503, 0.01) for _ in range(19)] == [None] * 19
    assert g.observe(True, 503, 0.01) == "seatbelt"


def test_seatbelt_holds_below_its_rate() -> None:
    g = ExperimentGuards(KillSwitch.of(alpha=ALPHA, errors=ERRORS_OFF, seatbelt=BELT))
    # 30% of chaos requests fail, steadily: below the 50% limit.
    for i in range(1000):
        assert g.observe(True, 503 if i % 10 < 3 else 200, 0.01) is None, i


def test_seatbelt_trips_without_any_control_traffic() -> None:
    # The absolute limit needs no comparison: a control cohort that gets nothing does not blind it.
    g = ExperimentGuards(KillSwitch.of(alpha=ALPHA, seatbelt=SeatbeltConfig(enabled=True, min_requests=10)))
    tripped = [g.observe(True, 503, 0.01) for _ in range(10)]
    assert "seatbelt" in tripped or "errors" in tripped


# -- evaluation errors fail closed -------------------------------------------------------------------------

def counting(g: ExperimentGuards, name: str) -> ErrorsGuard | LatencyGuard:
    guard = g.guard(name)
    assert isinstance(guard, ErrorsGuard | LatencyGuard)
    return guard


class Boom(CountGuard):
    """A guard whose evaluation raises."""

    def observe(self, chaos: bool, bad: bool) -> bool:
        raise ZeroDivisionError("division by zero in the guard")


def test_a_guard_that_raises_trips_evaluation() -> None:
    g = ExperimentGuards(KillSwitch.of(alpha=ALPHA))
    counting(g, "errors").count = Boom()
    assert g.observe(False, 200, 0.01) == "evaluation"
    assert g.tripped_guard == "evaluation"
    assert "guard evaluation failed" in g.trip_reason and "ZeroDivisionError" in g.trip_reason
    assert g.observe(True, 200, 0.01) is None  # reported once


def test_a_latency_guard_that_raises_trips_evaluation() -> None:
    g = ExperimentGuards(KillSwitch.of(alpha=ALPHA, latency=SLO_100MS))
    counting(g, "latency").count = Boom()
    assert g.observe(True, 200, 0.01) == "evaluation"


async def test_an_evaluation_error_stops_the_experiment_in_the_proxy(upstream, start_sidecar) -> None:
    policy = policy_from(upstream.url, {"max_blast_radius": 50, "experiments": [
        {"name": "fragile", "chaos": 25, "control": 25, "reveal": {"cohort": True}}]})
    sc = await start_sidecar(policy)
    st = sc.experiments.states["fragile"]
    assert st.guards is not None
    counting(st.guards, "errors").count = Boom()
    async with aiohttp.ClientSession() as s:
        # Half the requests are in a cohort: the first of them trips it, and is answered normally.
        for _ in range(60):
            async with s.get(f"http://127.0.0.1:{sc.proxy_port}/x") as r:
                assert r.status == 200
            if st.tripped is not None:
                break
        await asyncio.sleep(0)
        assert st.tripped is not None and st.tripped["guard"] == "evaluation"
        for _ in range(20):
            async with s.get(f"http://127.0.0.1:{sc.proxy_port}/x") as r:
                assert r.status == 200 and "x-mlchaos-cohort" not in r.headers
        async with s.get(f"http://127.0.0.1:{sc.admin_port}/experiments") as r:
            exp = (await r.json())["experiments"][0]
    assert exp["state"] == "stopped" and "evaluation" in exp["reason"]


# -- kill switch off ---------------------------------------------------------------------------------------

def state_of(extra: dict[str, Any], name: str = "exp") -> tuple[Experiments, ExperimentState, CollectorRegistry]:
    registry = CollectorRegistry()
    exps = Experiments(Metrics(registry))
    exps.apply_policy(policy_from("http://127.0.0.1:9", extra), None)
    return exps, exps.states[name], registry


def test_kill_switch_disabled_has_no_guards() -> None:
    _, st, registry = state_of({"experiments": [{"name": "exp", "chaos": 1, "kill_switch": {"enabled": False}}]})
    assert st.guards is None
    assert [st.observe(CHAOS, 503, 0.01) for _ in range(1000)] == [None] * 1000
    assert st.requests == [1000, 0] and st.errors == [1000, 0]
    text = generate_latest(registry).decode()
    assert 'mlchaos_killswitch_tripped{experiment="exp"} 0.0' in text
    assert 'mlchaos_killswitch_evalue{experiment="exp"' not in text


def test_policy_fields_reach_the_guards() -> None:
    _, st, _ = state_of({"experiments": [{"name": "exp", "chaos": 1, "kill_switch": {
        "alpha": 0.001, "errors": {"include_4xx": True}, "latency": {"slo": "250ms"},
        "seatbelt": {"max_error_rate": 0.2, "min_requests": 7}, "min_requests": 42}}]})
    g = st.guards
    assert g is not None
    assert g.spec == KillSwitch.of(enabled=True, alpha=0.001, min_requests=42,
                                   errors=ErrorsConfig(enabled=True, include_4xx=True), latency=LatencyConfig(slo=0.25),
                                   seatbelt=SeatbeltConfig(enabled=True, max_error_rate=0.2, min_requests=7))
    assert [guard.name for guard in g.chain] == ["errors", "latency", "seatbelt"]
    latency = g.guard("latency")
    assert g.include_4xx is True and isinstance(latency, LatencyGuard) and latency.slo == 0.25


def test_defaults_turn_the_errors_guard_and_seatbelt_on() -> None:
    _, st, _ = state_of({"experiments": [{"name": "exp", "chaos": 1}]})
    assert st.guards is not None
    assert [guard.name for guard in st.guards.chain] == ["errors", "seatbelt"]
    assert st.spec.kill_switch == KillSwitch()


# -- ExperimentState.observe, Experiments.trip and the metrics ---------------------------------------------

def test_observe_counts_requests_and_errors_per_cohort() -> None:
    _, st, _ = state_of({"experiments": [{"name": "exp", "chaos": 1, "kill_switch": {"enabled": False}}]})
    for status in (200, 404, 503, 0):
        st.observe(CHAOS, status, 0.01)
    for status in (200, 500):
        st.observe(CONTROL, status, 0.01)
    assert st.requests == [4, 2] and st.errors == [2, 1]


def test_a_trip_stops_routing_and_shows_in_the_metrics() -> None:
    exps, st, registry = state_of({"max_blast_radius": 10, "experiments": [
        {"name": "exp", "chaos": 10, "kill_switch": {"seatbelt": {"enabled": False}}}]})
    assert list(exps.router.active) == [st]
    seen: list[str] = []
    exps.on_trip = lambda s: seen.append(s.spec.name)
    guard = None
    for _ in range(200):
        guard = st.observe(CHAOS, 503, 0.01) or st.observe(CONTROL, 200, 0.01)
        if guard is not None:
            break
    assert guard == "errors"
    exps.trip(st, guard)
    assert list(exps.router.active) == [] and seen == ["exp"]
    assert st.tripped is not None
    assert st.tripped["guard"] == "errors" and st.tripped["n_chaos"] == st.requests[CHAOS]
    assert st.tripped["errors_control"] == 0 and "errors" in st.tripped["guards"]
    exps.trip(st, "seatbelt")  # a second trip changes nothing
    assert st.tripped["guard"] == "errors" and seen == ["exp"]
    text = generate_latest(registry).decode()
    assert 'mlchaos_killswitch_tripped{experiment="exp"} 1.0' in text
    assert 'mlchaos_killswitch_evalue{experiment="exp",guard="errors"}' in text
    assert 'mlchaos_experiment_active{experiment="exp"} 0.0' in text
    assert 'mlchaos_killswitch_trips_total{experiment="exp",guard="errors"} 1.0' in text
    for g in GUARD_NAMES:
        if g != "errors":
            assert f'mlchaos_killswitch_trips_total{{experiment="exp",guard="{g}"}} 0.0' in text

    rearmed: list[str] = []
    exps.on_rearm = lambda s: rearmed.append(s.spec.name)
    assert exps.rearm("exp") is None and rearmed == ["exp"]
    assert list(exps.router.active) == [st] and exps.states["exp"].tripped is None and st.requests == [0, 0]
    assert st.guards is not None and st.guards.tripped_guard is None
    text = generate_latest(registry).decode()
    assert 'mlchaos_killswitch_tripped{experiment="exp"} 0.0' in text
    assert 'mlchaos_killswitch_trips_total{experiment="exp",guard="errors"} 1.0' in text
    assert exps.rearm("exp") == "its kill switch has not tripped"
    assert exps.rearm("nope") is not None


def test_a_reload_keeps_a_trip_and_the_evidence() -> None:
    extra = {"max_blast_radius": 10, "experiments": [{"name": "exp", "chaos": 10}]}
    exps, st, _ = state_of(extra)
    for _ in range(5):
        st.observe(CHAOS, 503, 0.01)
    exps.trip(st, "errors")
    exps.apply_policy(policy_from("http://127.0.0.1:9", extra), None)
    new = exps.states["exp"]
    assert new is not st and new.tripped == st.tripped and new.guards is st.guards
    assert list(exps.router.active) == []


# -- what the registry derives -----------------------------------------------------------------------------

def test_names_policy_sections_and_schema_follow_the_registry() -> None:
    names = [guard.name for guard in GUARDS]
    assert GUARD_NAMES == (*names, "evaluation")
    sections = {f.name: f for f in fields_of(KillSwitch) if f.section is not None}
    assert list(sections) == names
    defs = policy_schema()["$defs"]
    for guard in GUARDS:
        assert sections[guard.name].section is guard.Config
        assert set(defs[f"{guard.name}_guard"]["properties"]) == {f.name for f in fields_of(guard.Config)}
    assert KillSwitch().guards == tuple(guard.Config() for guard in GUARDS)


@pytest.mark.parametrize(("section", "path", "message"), [
    ("{seatbelt: {max_rate: 0.2}}", "seatbelt.max_rate", "unknown field (expected one of: enabled, max_error_rate, "
                                                         "min_requests)"),
    ("{latency: {slo: 0ms}}", "latency.slo", "must be > 0, got '0ms'"),
    ("{errors: {include_4xx: maybe}}", "errors.include_4xx", "expected true or false"),
    ("{errors: [include_4xx]}", "errors", "expected a mapping"),
    ("{colour: red}", "colour", "unknown field (expected one of: alpha, enabled, errors, latency, min_requests, "
                                "seatbelt, ttft)"),
])
def test_a_guard_section_reports_problems_at_its_path(section: str, path: str, message: str) -> None:
    text = f"upstream: http://127.0.0.1:9\nexperiments: [{{name: e, chaos: 1, kill_switch: {section}}}]\n"
    with pytest.raises(PolicyError) as info:
        load_policy_text(text)
    assert (f"experiments[0].kill_switch.{path}", message) in [(p, m[:len(message)]) for p, m in info.value.problems]
