"""Experiments over time: schedules, max_duration, enabling by hand, the blast-radius limit, halting."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import aiohttp
import yaml
from hypothesis import given
from hypothesis import strategies as st

from proxy.cohort import bucket_of
from proxy.experiments import Experiments
from proxy.metrics import Metrics
from tests.conftest import policy_from

DEAD = "http://127.0.0.1:9"  # never dialled: these policies are only compiled
COHORT = "x-mlchaos-cohort"
MONDAY = datetime(2030, 1, 7, tzinfo=UTC)  # a Monday
DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


def experiments_for(*exps: dict[str, Any], **top: Any) -> Experiments:
    ex = Experiments(Metrics())
    ex.apply_policy(policy_from(DEAD, {"experiments": list(exps)}, **top), None)
    return ex


def active(ex: Experiments, now: datetime | None = None) -> set[str]:
    ex.refresh(now=now)
    return {st.spec.name for st in ex.router.active}


def chaos_user(name: str, chaos_buckets: int) -> str:
    for i in range(10_000):
        if bucket_of(name.encode(), f"u{i}".encode()) < chaos_buckets:
            return f"u{i}"
    raise AssertionError("no chaos user")


async def admin(sc: Any, method: str, path: str, **kw: Any) -> tuple[int, Any]:
    async with aiohttp.ClientSession() as s, s.request(method, f"http://127.0.0.1:{sc.admin_port}{path}", **kw) as r:
        return r.status, await r.json()


async def cohort_of(sc: Any, user: str) -> str | None:
    async with aiohttp.ClientSession() as s, \
            s.get(f"http://127.0.0.1:{sc.proxy_port}/", headers={"x-user-id": user}) as r:
        assert r.status == 200
        return r.headers.get(COHORT)


async def states(sc: Any) -> dict[str, dict[str, Any]]:
    _, body = await admin(sc, "GET", "/experiments")
    return {e["name"]: e for e in body["experiments"]}


# -- schedules ---------------------------------------------------------------------------------------------

def test_a_daily_window_runs_the_experiment_only_inside_it_on_its_days() -> None:
    ex = experiments_for({"name": "office-hours", "chaos": 1, "schedule": {
        "windows": [{"start": "09:00", "end": "17:00", "days": ["mon", "tue", "wed", "thu", "fri"]}]}})
    assert active(ex, MONDAY.replace(hour=10)) == {"office-hours"}
    assert active(ex, MONDAY.replace(hour=9)) == {"office-hours"}
    assert active(ex, MONDAY.replace(hour=8, minute=59, second=59)) == set()
    assert active(ex, MONDAY.replace(hour=17)) == set()  # the end is exclusive
    assert active(ex, MONDAY + timedelta(days=4, hours=16, minutes=59)) == {"office-hours"}  # Friday
    assert active(ex, MONDAY + timedelta(days=5, hours=10)) == set()  # Saturday


def test_a_window_that_spans_midnight_belongs_to_the_day_it_starts() -> None:
    friday = MONDAY + timedelta(days=4)
    ex = experiments_for({"name": "night", "chaos": 1, "schedule": {
        "windows": [{"start": "22:00", "end": "02:00", "days": ["fri"]}]}})
    assert active(ex, friday.replace(hour=23)) == {"night"}
    assert active(ex, friday + timedelta(days=1, hours=1, minutes=59)) == {"night"}  # Saturday 01:59
    assert active(ex, friday + timedelta(days=1, hours=2)) == set()
    assert active(ex, friday.replace(hour=1)) == set()  # Thursday's night, not Friday's
    assert active(ex, friday + timedelta(days=1, hours=23)) == set()


def test_schedule_start_and_end_bound_the_experiment() -> None:
    ex = experiments_for({"name": "bounded", "chaos": 1, "schedule": {
        "start": "2030-01-07T10:00:00Z", "end": "2030-01-07T12:00:00+01:00"}})
    assert active(ex, MONDAY.replace(hour=9, minute=59)) == set()
    assert active(ex, MONDAY.replace(hour=10)) == {"bounded"}
    assert active(ex, MONDAY.replace(hour=10, minute=59)) == {"bounded"}
    assert active(ex, MONDAY.replace(hour=11)) == set()  # 12:00+01:00 is 11:00 UTC


def test_refresh_reports_each_change_once_with_its_reason() -> None:
    ex = experiments_for({"name": "w", "chaos": 1, "schedule": {"windows": [{"start": "09:00", "end": "10:00"}]}})
    ex.refresh(now=MONDAY.replace(hour=8))
    assert ex.refresh(now=MONDAY.replace(hour=9)) == [("w", True, "policy")]
    assert ex.refresh(now=MONDAY.replace(hour=9, minute=30)) == []
    assert ex.refresh(now=MONDAY.replace(hour=10)) == [("w", False, "outside schedule")]
    assert ex.metrics.registry.get_sample_value("mlchaos_experiment_active", {"experiment": "w"}) == 0


@given(
    when=st.datetimes(min_value=datetime(2030, 1, 1), max_value=datetime(2031, 1, 1), timezones=st.just(UTC)),
    start=st.tuples(st.integers(0, 23), st.integers(0, 59)),
    end=st.tuples(st.integers(0, 23), st.integers(0, 59)),
    days=st.sets(st.integers(0, 6), min_size=1),
)
def test_any_daily_window_matches_its_definition(when: datetime, start: tuple[int, int], end: tuple[int, int],
                                                 days: set[int]) -> None:
    if start == end:
        return
    window = {"start": f"{start[0]:02d}:{start[1]:02d}", "end": f"{end[0]:02d}:{end[1]:02d}",
              "days": [DAYS[d] for d in sorted(days)]}
    ex = experiments_for({"name": "w", "chaos": 1, "schedule": {"windows": [window]}})
    t = (when.hour, when.minute)
    if start < end:
        expected = when.weekday() in days and start <= t < end
    else:
        expected = (when.weekday() in days and t >= start) or ((when.weekday() - 1) % 7 in days and t < end)
    assert (active(ex, when) == {"w"}) == expected


def test_daily_windows_are_evaluated_in_utc_whatever_the_timezone_of_now() -> None:
    ex = experiments_for({"name": "w", "chaos": 1, "schedule": {"windows": [{"start": "09:00", "end": "17:00"}]}})
    # 18:00 at UTC+2 is 16:00 UTC: inside the window.
    assert active(ex, datetime(2030, 1, 7, 18, 0, tzinfo=timezone(timedelta(hours=2)))) == {"w"}


# -- max_duration ------------------------------------------------------------------------------------------

def test_max_duration_stops_the_experiment_for_good() -> None:
    ex = experiments_for({"name": "short", "chaos": 1, "schedule": {"max_duration": "0.3s"}})
    assert active(ex) == {"short"}
    time.sleep(0.35)
    assert ex.refresh() == [("short", False, "max_duration reached")]
    assert active(ex) == set()
    assert ex.refresh() == []


async def test_the_ticker_stops_an_experiment_after_its_max_duration(upstream, start_sidecar) -> None:
    sc = await start_sidecar(policy_from(upstream.url, {"experiments": [
        {"name": "short", "chaos": 5, "sticky_key": "header:x-user-id", "reveal": {"cohort": True},
         "schedule": {"max_duration": "500ms"}}]}))
    user = chaos_user("short", 500)
    t0 = time.monotonic()
    assert await cohort_of(sc, user) == "chaos"
    for _ in range(40):
        if (await states(sc))["short"]["state"] == "stopped":
            break
        await asyncio.sleep(0.1)
    elapsed = time.monotonic() - t0
    exp = (await states(sc))["short"]
    assert exp["state"] == "stopped" and exp["reason"] == "max_duration reached"
    assert 0.45 <= elapsed <= 2.5
    assert await cohort_of(sc, user) is None


# -- enabling by hand, the blast radius, halting -----------------------------------------------------------

async def test_a_disabled_experiment_runs_only_once_started_through_the_admin_api(upstream, start_sidecar) -> None:
    sc = await start_sidecar(policy_from(upstream.url, {"experiments": [
        {"name": "later", "chaos": 5, "enabled": False, "sticky_key": "header:x-user-id",
         "reveal": {"cohort": True}}]}))
    user = chaos_user("later", 500)
    assert (await states(sc))["later"]["state"] == "stopped"
    assert await cohort_of(sc, user) is None
    status, body = await admin(sc, "POST", "/experiments/later/start")
    assert (status, body["status"]) == (200, "started")
    assert (await states(sc))["later"]["state"] == "active"
    assert await cohort_of(sc, user) == "chaos"


async def test_starting_an_experiment_past_max_blast_radius_is_refused(upstream, start_sidecar) -> None:
    sc = await start_sidecar(policy_from(upstream.url, {"max_blast_radius": 5, "experiments": [
        {"name": "big", "chaos": 4},
        {"name": "extra", "chaos": 2, "enabled": False}]}))
    status, body = await admin(sc, "POST", "/experiments/extra/start")
    assert status == 409
    assert "max_blast_radius" in body["error"] and "6%" in body["error"]
    assert (await states(sc))["extra"]["state"] == "stopped"
    assert (await admin(sc, "POST", "/experiments/big/stop"))[0] == 200
    assert (await admin(sc, "POST", "/experiments/extra/start"))[0] == 200
    assert (await admin(sc, "POST", "/experiments/big/start"))[0] == 409
    assert {n for n, e in (await states(sc)).items() if e["state"] == "active"} == {"extra"}


async def test_starting_or_stopping_an_unknown_experiment_is_a_404(upstream, start_sidecar) -> None:
    sc = await start_sidecar(policy_from(upstream.url, {"experiments": [{"name": "real", "chaos": 1}]}))
    assert (await admin(sc, "POST", "/experiments/ghost/start"))[0] == 404
    assert (await admin(sc, "POST", "/experiments/ghost/stop"))[0] == 404


async def test_a_halted_policy_runs_nothing_and_refuses_starts(upstream, start_sidecar) -> None:
    sc = await start_sidecar(policy_from(upstream.url, {"halted": True, "experiments": [
        {"name": "one", "chaos": 5, "sticky_key": "header:x-user-id", "reveal": {"cohort": True}},
        {"name": "two", "chaos": 1, "enabled": False}]}))
    assert {e["state"] for e in (await states(sc)).values()} == {"stopped"}
    assert await cohort_of(sc, chaos_user("one", 500)) is None
    status, body = await admin(sc, "POST", "/experiments/one/start")
    assert status == 409 and "halted" in body["error"]
    assert sc.metrics.registry.get_sample_value("mlchaos_experiment_active", {"experiment": "one"}) == 0


def test_a_scheduled_experiment_that_opens_cannot_push_chaos_past_max_blast_radius() -> None:
    ex = experiments_for(
        {"name": "scheduled", "chaos": 4, "schedule": {"start": "2099-01-01T00:00:00Z"}},
        {"name": "by-hand", "chaos": 2, "enabled": False},
        max_blast_radius=5)
    assert ex.start("by-hand") is None  # nothing else runs yet: 2% is within 5%
    ex.refresh(now=datetime(2099, 1, 2, tzinfo=UTC))
    running = {st.spec.name: st.chaos_buckets for st in ex.router.active}
    assert sum(running.values()) <= 500, running


async def test_a_reload_cannot_push_chaos_past_max_blast_radius(upstream, start_sidecar) -> None:
    exps: list[dict[str, Any]] = [{"name": "big", "chaos": 4, "enabled": False},
                                  {"name": "by-hand", "chaos": 2, "enabled": False}]
    sc = await start_sidecar(policy_from(upstream.url, {"experiments": exps}, max_blast_radius=5))
    assert (await admin(sc, "POST", "/experiments/by-hand/start"))[0] == 200
    exps[0]["enabled"] = True  # the loader accepts it: enabled experiments add up to 4%
    text = yaml.safe_dump({"listen": "127.0.0.1:0", "upstream": upstream.url, "admin": {"listen": "127.0.0.1:0"},
                           "max_blast_radius": 5, "experiments": exps})
    status, _ = await admin(sc, "POST", "/policy", data=text)
    running = [e for e in (await states(sc)).values() if e["state"] == "active"]
    chaos = sum(e["chaos_percent"] for e in running)
    assert status == 422 or chaos <= 5, f"{chaos}% in chaos: {[e['name'] for e in running]}"
