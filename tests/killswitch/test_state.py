"""The kill switch's state file: tripped experiments survive a restart, and an unreadable file fails closed."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import yaml

from proxy.app import Sidecar
from proxy.killswitch.state import load_state, save_state
from tests.conftest import policy_from

COHORT = "x-mlchaos-cohort"

TRIP: dict[str, Any] = {"guard": "errors", "reason": "the chaos cohort has more errors than control",
                        "at": "2026-03-01T12:00:00+00:00", "n_chaos": 9, "n_control": 11,
                        "errors_chaos": 9, "errors_control": 0, "guards": {"errors": {"e_value": 123.4}}}


def experiments_yaml(*, faulty: bool = True, names: tuple[str, ...] = ("boom",)) -> dict[str, Any]:
    """Experiments taking all traffic; ``faulty`` aborts every chaos request so the kill switch trips fast."""
    share = 25
    return {"max_blast_radius": 50, "experiments": [
        {"name": name, "chaos": share, "control": share, "reveal": {"cohort": True},
         "faults": [{"type": "abort", "probability": 1.0, "status": 503}] if faulty else []}
        for name in names]}


async def call(port: int, method: str, path: str, **kw: Any) -> tuple[int, Any]:
    async with aiohttp.ClientSession() as s, s.request(method, f"http://127.0.0.1:{port}{path}", **kw) as r:
        if r.content_type == "application/json":
            return r.status, await r.json()
        return r.status, await r.text()


async def experiments(sc: Sidecar) -> dict[str, dict[str, Any]]:
    status, body = await call(sc.admin_port, "GET", "/experiments")
    assert status == 200
    return {e["name"]: e for e in body["experiments"]}


async def drive(sc: Sidecar, n: int) -> list[tuple[int, str | None]]:
    out = []
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5)) as s:
        for _ in range(n):
            async with s.get(f"http://127.0.0.1:{sc.proxy_port}/predict") as r:
                await r.read()
                out.append((r.status, r.headers.get(COHORT)))
    return out


async def trip(sc: Sidecar, name: str, limit: int = 400) -> None:
    """Send traffic until the experiment's kill switch trips (bounded by ``limit`` requests)."""
    for _ in range(limit // 20):
        await drive(sc, 20)
        if (await experiments(sc))[name]["kill_switch"]["tripped"]:
            return
    raise AssertionError(f"{name} did not trip within {limit} requests")


async def wait_for_file(path: Path, pred: Any, timeout: float = 3.0) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        try:
            doc: dict[str, Any] = json.loads(path.read_text())
            if pred(doc):
                return doc
        except (OSError, ValueError):
            pass
        if time.monotonic() >= deadline:
            raise AssertionError(f"{path} never matched; it holds {path.read_text() if path.exists() else None!r}")
        await asyncio.sleep(0.02)


# -- the file ---------------------------------------------------------------------------------------------

def test_save_then_load_round_trips(tmp_path: Path) -> None:
    path = str(tmp_path / "state.json")
    state = {"boom": TRIP, "other": {**TRIP, "guard": "seatbelt"}}
    save_state(path, state)
    assert load_state(path) == state
    doc = json.loads(Path(path).read_text())
    assert doc["version"] == 1 and doc["tripped"] == state


def test_values_json_cannot_hold_are_written_as_text(tmp_path: Path) -> None:
    path = str(tmp_path / "state.json")
    when = datetime(2026, 3, 1, tzinfo=UTC)
    save_state(path, {"boom": {"at": when}})
    assert load_state(path) == {"boom": {"at": str(when)}}


def test_save_replaces_the_previous_state_and_can_empty_it(tmp_path: Path) -> None:
    path = str(tmp_path / "state.json")
    save_state(path, {"a": TRIP, "b": TRIP})
    save_state(path, {"b": TRIP})
    assert load_state(path) == {"b": TRIP}
    save_state(path, {})
    assert load_state(path) == {}


def test_save_is_atomic_and_leaves_no_temporary_file(tmp_path: Path) -> None:
    path = str(tmp_path / "state.json")
    for i in range(5):
        save_state(path, {f"e{i}": TRIP})
    assert os.listdir(tmp_path) == ["state.json"]


def test_a_failed_save_keeps_the_old_file_and_removes_its_temporary(tmp_path: Path) -> None:
    path = str(tmp_path / "state.json")
    save_state(path, {"boom": TRIP})
    before = Path(path).read_bytes()

    class Unprintable:
        def __str__(self) -> str:
            raise RuntimeError("cannot print")

    with pytest.raises(RuntimeError, match="cannot print"):
        save_state(path, {"boom": {"x": Unprintable()}})
    assert Path(path).read_bytes() == before
    assert os.listdir(tmp_path) == ["state.json"]


def test_save_creates_the_folder(tmp_path: Path) -> None:
    path = str(tmp_path / "a" / "b" / "state.json")
    save_state(path, {"boom": TRIP})
    assert load_state(path) == {"boom": TRIP}


def test_no_state_file_configured_means_nothing_tripped_and_nothing_written(tmp_path: Path) -> None:
    assert load_state(None) == {}
    save_state(None, {"boom": TRIP})
    assert os.listdir(tmp_path) == []


def test_a_missing_file_means_nothing_tripped(tmp_path: Path) -> None:
    assert load_state(str(tmp_path / "absent.json")) == {}


@pytest.mark.parametrize("text", [
    "{not json", "", "[]", "null", '{"version": 1}', '{"tripped": []}', '{"tripped": "boom"}', "\xff\xfe",
])
def test_a_corrupt_file_raises_value_error(tmp_path: Path, text: str) -> None:
    path = tmp_path / "state.json"
    path.write_bytes(text.encode("latin-1"))
    with pytest.raises(ValueError):
        load_state(str(path))


def test_entries_that_are_not_trip_records_are_ignored(tmp_path: Path) -> None:
    path = tmp_path / "state.json"
    path.write_text(json.dumps({"version": 1, "tripped": {"ok": TRIP, "junk": 3, "also": None}}))
    assert load_state(str(path)) == {"ok": TRIP}


# -- through the sidecar -----------------------------------------------------------------------------------

async def test_a_corrupt_state_file_halts_every_experiment_and_logs(upstream, start_sidecar, tmp_path,
                                                                    log_events) -> None:
    path = tmp_path / "state.json"
    path.write_text("{ this is not json")
    policy = policy_from(upstream.url, experiments_yaml(faulty=False, names=("one", "two")), state_file=str(path))
    sc = await start_sidecar(policy)
    exps = await experiments(sc)
    assert {name: e["state"] for name, e in exps.items()} == {"one": "stopped", "two": "stopped"}
    assert all("state unreadable" in e["reason"] for e in exps.values()), exps
    # Fail closed: no request is put in a cohort.
    assert {cohort for _, cohort in await drive(sc, 40)} == {None}
    unreadable = [(lvl, f) for e, lvl, f in log_events if e == "state_unreadable"]
    assert len(unreadable) == 1
    level, fields = unreadable[0]
    assert level == logging.ERROR and fields["path"] == str(path) and fields["error"]
    # The gate does not say pass for an experiment that cannot run.
    status, verdict = await call(sc.admin_port, "GET", "/gate?experiment=one")
    assert status == 200 and verdict["verdict"] != "pass"
    # An operator may start one by hand after looking.
    status, _ = await call(sc.admin_port, "POST", "/experiments/one/start")
    assert status == 200
    assert (await experiments(sc))["one"]["state"] == "active"
    assert (await experiments(sc))["two"]["state"] == "stopped"


async def test_a_state_file_that_cannot_be_read_halts_too(upstream, start_sidecar, tmp_path, log_events) -> None:
    folder = tmp_path / "state.json"
    folder.mkdir()  # reading a folder fails with an OSError, not a ValueError
    sc = await start_sidecar(policy_from(upstream.url, experiments_yaml(faulty=False), state_file=str(folder)))
    assert (await experiments(sc))["boom"]["state"] == "stopped"
    assert any(e == "state_unreadable" for e, _, _ in log_events)


async def test_a_missing_state_file_starts_normally(upstream, start_sidecar, tmp_path) -> None:
    path = tmp_path / "none-yet.json"
    sc = await start_sidecar(policy_from(upstream.url, experiments_yaml(faulty=False), state_file=str(path)))
    assert (await experiments(sc))["boom"]["state"] == "active"
    assert not path.exists()  # nothing tripped, nothing written


async def test_a_trip_is_written_to_the_state_file(upstream, start_sidecar, tmp_path, log_events) -> None:
    path = tmp_path / "state.json"
    sc = await start_sidecar(policy_from(upstream.url, experiments_yaml(), state_file=str(path)))
    await trip(sc, "boom")
    doc = await wait_for_file(path, lambda d: "boom" in d.get("tripped", {}))
    rec = doc["tripped"]["boom"]
    assert rec["guard"] in {"errors", "seatbelt"} and rec["reason"] and rec["at"]
    assert rec["n_chaos"] >= 1 and rec["errors_chaos"] >= 1 and rec["errors_control"] == 0
    assert os.listdir(tmp_path) == ["state.json"]
    assert [f["experiment"] for e, _, f in log_events if e == "killswitch_tripped"] == ["boom"]


async def test_a_state_file_that_cannot_be_written_never_affects_the_proxy(upstream, start_sidecar, tmp_path,
                                                                            log_events) -> None:
    folder = tmp_path / "sub"
    folder.mkdir()
    path = folder / "state.json"
    sc = await start_sidecar(policy_from(upstream.url, experiments_yaml(), state_file=str(path)))
    folder.rmdir()
    folder.write_text("a file where the folder was")  # the next write fails with an OSError
    await trip(sc, "boom")
    deadline = time.monotonic() + 3
    while not any(e == "state_write_failed" for e, _, _ in log_events) and time.monotonic() < deadline:
        await asyncio.sleep(0.02)
    failed = [(lvl, f) for e, lvl, f in log_events if e == "state_write_failed"]
    assert len(failed) == 1 and failed[0][0] == logging.ERROR and failed[0][1]["path"] == str(path)
    # The trip still holds in the running process, and requests are answered.
    assert (await experiments(sc))["boom"]["state"] == "stopped"
    assert {status for status, _ in await drive(sc, 20)} == {200}


async def test_a_tripped_experiment_stays_tripped_after_a_restart_until_rearmed(upstream, start_sidecar,
                                                                               tmp_path, log_events) -> None:
    path = tmp_path / "state.json"
    policy = policy_from(upstream.url, experiments_yaml(), state_file=str(path))
    first = Sidecar(policy, env={})
    await first.start()
    try:
        await trip(first, "boom")
        await wait_for_file(path, lambda d: "boom" in d.get("tripped", {}))
        before = (await experiments(first))["boom"]["kill_switch"]["tripped"]
    finally:
        await first.stop(drain=0.5)

    # "Restart": a new process would read the same policy and the same file.
    second = await start_sidecar(policy)
    exp = (await experiments(second))["boom"]
    assert exp["state"] == "stopped"
    assert exp["kill_switch"]["tripped"] == before
    assert "earlier run" in exp["reason"]
    assert any(e == "killswitch_restored" and f["experiments"] == ["boom"] for e, _, f in log_events)
    status, verdict = await call(second.admin_port, "GET", "/gate?experiment=boom")
    assert status == 200 and verdict["verdict"] == "fail" and verdict["tripped"] is True
    # No chaos is routed while it stays tripped.
    assert {cohort for _, cohort in await drive(second, 30)} == {None}
    # Starting by hand is refused: it must be re-armed.
    status, body = await call(second.admin_port, "POST", "/experiments/boom/start")
    assert status == 409 and "re-arm" in body["error"]

    status, body = await call(second.admin_port, "POST", "/experiments/boom/rearm")
    assert (status, body) == (200, {"status": "rearmed", "experiment": "boom"})
    exp = (await experiments(second))["boom"]
    assert exp["state"] == "active" and exp["kill_switch"]["tripped"] is None
    assert json.loads(path.read_text())["tripped"] == {}
    assert any(e == "killswitch_rearmed" for e, _, _ in log_events)
    # A second re-arm has nothing to do; an unknown name is 404.
    status, body = await call(second.admin_port, "POST", "/experiments/boom/rearm")
    assert status == 409
    status, body = await call(second.admin_port, "POST", "/experiments/nope/rearm")
    assert status == 404
    # Chaos is routed again (and, its fault still on, it trips again).
    assert {cohort for _, cohort in await drive(second, 40)} >= {"chaos", "control"}


async def test_rearm_needs_the_admin_token(upstream, start_sidecar, tmp_path) -> None:
    path = tmp_path / "state.json"
    path.write_text(json.dumps({"version": 1, "tripped": {"boom": TRIP}}))
    sc = await start_sidecar(policy_from(upstream.url, experiments_yaml(), state_file=str(path)),
                             env={"MLCHAOS_ADMIN_TOKEN": "s3cret"})
    status, _ = await call(sc.admin_port, "POST", "/experiments/boom/rearm")
    assert status == 401
    assert (await experiments(sc))["boom"]["kill_switch"]["tripped"] == TRIP
    status, _ = await call(sc.admin_port, "POST", "/experiments/boom/rearm",
                           headers={"Authorization": "Bearer s3cret"})
    assert status == 200


async def test_a_trip_of_another_experiment_keeps_the_restored_ones(upstream, start_sidecar, tmp_path) -> None:
    path = tmp_path / "state.json"
    path.write_text(json.dumps({"version": 1, "tripped": {"two": TRIP}}))
    sc = await start_sidecar(policy_from(upstream.url, experiments_yaml(names=("one", "two")),
                                         state_file=str(path)))
    assert (await experiments(sc))["two"]["kill_switch"]["tripped"] == TRIP
    await trip(sc, "one")
    doc = await wait_for_file(path, lambda d: "one" in d.get("tripped", {}))
    assert set(doc["tripped"]) == {"one", "two"}


async def test_a_restored_trip_waits_for_an_experiment_added_back_by_a_reload(upstream, start_sidecar,
                                                                              tmp_path) -> None:
    path = tmp_path / "state.json"
    path.write_text(json.dumps({"version": 1, "tripped": {"two": TRIP}}))
    # "two" tripped in an earlier run and is not in this policy for now.
    sc = await start_sidecar(policy_from(upstream.url, experiments_yaml(faulty=False, names=("one",)),
                                         state_file=str(path)))
    raw = {"listen": "127.0.0.1:0", "upstream": upstream.url, "admin": {"listen": "127.0.0.1:0"},
           "state_file": str(path), **experiments_yaml(faulty=False, names=("one", "two"))}
    status, body = await call(sc.admin_port, "POST", "/policy", data=yaml.safe_dump(raw))
    assert status == 200, body
    exp = (await experiments(sc))["two"]
    assert exp["kill_switch"]["tripped"] is not None and exp["state"] == "stopped"


async def test_a_trip_keeps_saved_trips_of_experiments_out_of_the_policy(upstream, start_sidecar, tmp_path) -> None:
    path = tmp_path / "state.json"
    path.write_text(json.dumps({"version": 1, "tripped": {"gone": TRIP}}))
    sc = await start_sidecar(policy_from(upstream.url, experiments_yaml(names=("one",)), state_file=str(path)))
    await trip(sc, "one")
    await wait_for_file(path, lambda d: "one" in d.get("tripped", {}))
    assert set(json.loads(path.read_text())["tripped"]) == {"one", "gone"}
