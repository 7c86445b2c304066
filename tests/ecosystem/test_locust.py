"""Locust through mlchaos against the demo model: per-cohort statistics, the gate and Locust's exit code.

Locust runs as a subprocess (it monkey-patches the standard library with gevent: it must never be imported
here); the demo model and the sidecar serve from this test's event loop while it runs.
"""

from __future__ import annotations

import csv
import json
import re
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from proxy.app import Sidecar
from tests.conftest import free_port, policy_from

from .conftest import ROOT, Finished, Process, clean_env, spawn, tool

LOCUST = tool("locust")
LOCUSTFILE = ROOT / "benchmarks" / "locustfile.py"
USERS = 8
# Requests per second of each Locust user: 8 users for 4 s send at most about 1,300 requests.
USER_RPS = 40

pytestmark = pytest.mark.skipif(LOCUST is None, reason="Locust is not installed (pip install -e '.[ecosystem]')")

StartSidecar = Callable[..., Awaitable[Sidecar]]


def experiment(name: str, share: float, faults: list[dict[str, Any]], min_requests: int = 20) -> dict[str, Any]:
    """An experiment off in the policy: the Locust hook starts it with the test and stops it at the end."""
    return {
        "name": name, "enabled": False, "chaos": share, "control": share, "sticky_key": "header:x-user-id",
        "match": {"method": "POST"}, "reveal": {"cohort": True}, "faults": faults,
        "kill_switch": {"min_requests": min_requests},
    }


async def start(start_sidecar: StartSidecar, model_url: str, exp: dict[str, Any]) -> Sidecar:
    return await start_sidecar(policy_from(model_url, {"max_blast_radius": 50, "experiments": [exp]}))


def gate_env(sidecar: Sidecar, name: str, tmp_path: Path, **extra: str) -> dict[str, str]:
    return clean_env({
        "MLCHAOS_ADMIN": f"http://127.0.0.1:{sidecar.admin_port}",
        "MLCHAOS_EXPERIMENT": name,
        "MLCHAOS_VERDICT_FILE": str(tmp_path / "verdict.json"),
        "MLCHAOS_USER_RPS": str(USER_RPS),
        **extra,
    })


def headless(sidecar: Sidecar, tmp_path: Path, run_time: str) -> list[str]:
    return [str(LOCUST), "-f", str(LOCUSTFILE), "--headless", "-u", str(USERS), "-r", str(USERS), "-t", run_time,
            "--host", f"http://127.0.0.1:{sidecar.proxy_port}", "--csv", str(tmp_path / "run"),
            "--json-file", str(tmp_path / "final"), "--only-summary", "--loglevel", "INFO"]


async def run(args: list[str], env: dict[str, str], processes: list[Process], timeout: float = 30) -> Finished:
    proc = await spawn(args, env)
    processes.append(proc)
    return await proc.wait(timeout)


def stats(tmp_path: Path) -> dict[str, tuple[int, int]]:
    """Locust's final statistics: request name -> (requests, failures).

    From --json-file, written once at exit. The --csv files are rewritten every second while Locust runs and
    not at exit, so their counts may miss the last second; their names must agree with the final ones.
    """
    entries = json.loads((tmp_path / "final.json").read_text(encoding="utf-8"))
    final = {e["name"]: (int(e["num_requests"]), int(e["num_failures"])) for e in entries}
    with open(tmp_path / "run_stats.csv", newline="", encoding="utf-8") as fh:
        names = {row["Name"] for row in csv.DictReader(fh)} - {"Aggregated"}
    assert names and names <= set(final), (names, set(final))
    return final


def by_cohort(table: dict[str, tuple[int, int]]) -> dict[str, tuple[int, int]]:
    out: dict[str, tuple[int, int]] = {}
    for name, (n, failed) in table.items():
        m = re.fullmatch(r"(v1 predict|v2 infer) \[(chaos|control|none|no-response)\]", name)
        assert m is not None, f"request name {name!r} does not name its cohort"
        prev = out.get(m[2], (0, 0))
        out[m[2]] = (prev[0] + n, prev[1] + failed)
    return out


def verdict(tmp_path: Path) -> dict[str, Any]:
    record: dict[str, Any] = json.loads((tmp_path / "verdict.json").read_text(encoding="utf-8"))
    return record


def explain(res: Finished) -> str:
    return f"exit code {res.returncode}; stderr:\n{res.stderr[-4000:]}"


async def test_passing_experiment_exits_zero_with_cohorts_side_by_side(
        tmp_path: Path, demo_model: str, start_sidecar: StartSidecar, processes: list[Process]) -> None:
    name = "locust-pass"
    delay = {"type": "delay", "probability": 1.0, "distribution": "fixed", "duration": "2ms"}
    sidecar = await start(start_sidecar, demo_model, experiment(name, 20, [delay]))

    res = await run(headless(sidecar, tmp_path, "4s"), gate_env(sidecar, name, tmp_path), processes)

    assert res.returncode == 0, explain(res)
    table = stats(tmp_path)
    assert {"v2 infer [chaos]", "v2 infer [control]", "v2 infer [none]"} <= set(table), table
    cohorts = by_cohort(table)
    total = sum(n for n, _ in cohorts.values())
    assert total >= 200, cohorts
    assert sum(failed for _, failed in cohorts.values()) == 0, cohorts
    assert set(cohorts) == {"chaos", "control", "none"}
    # 20% chaos, 20% control, 60% none, by a hash of x-user-id over 5,000 simulated users.
    assert 0.12 <= cohorts["chaos"][0] / total <= 0.28, cohorts
    assert 0.12 <= cohorts["control"][0] / total <= 0.28, cohorts
    assert 0.50 <= cohorts["none"][0] / total <= 0.70, cohorts

    record = verdict(tmp_path)
    assert record["verdict"] == "pass" and record["exit_code"] == 0 and record["problems"] == [], record
    gate = record["gate"]
    assert gate["tripped"] is False
    # The sidecar counted every chaos request Locust recorded (and those cut short at the stop).
    assert cohorts["chaos"][0] <= gate["n_chaos"] <= cohorts["chaos"][0] + USERS
    assert cohorts["control"][0] <= gate["n_control"] <= cohorts["control"][0] + USERS
    assert "mlchaos: gate verdict: pass" in res.stderr
    # The hook started the experiment (it is off in the policy) and stopped it at the end.
    st = sidecar.experiments.states[name]
    assert st.manual == "stopped" and st.running_since is None
    assert not sidecar.experiments.router.active


async def test_tripped_kill_switch_fails_the_run(
        tmp_path: Path, demo_model: str, start_sidecar: StartSidecar, processes: list[Process]) -> None:
    name = "locust-fail"
    abort = {"type": "abort", "probability": 1.0, "status": 503}
    sidecar = await start(start_sidecar, demo_model, experiment(name, 25, [abort]))

    res = await run(headless(sidecar, tmp_path, "4s"), gate_env(sidecar, name, tmp_path), processes)

    assert res.returncode == 1, explain(res)
    cohorts = by_cohort(stats(tmp_path))
    # Every cohort must be there; a missing one fails with the whole table and the gate's record (a CI run once
    # had no control request at all, which the guards' 20-request minimum should make all but impossible).
    assert {"chaos", "control", "none"} <= cohorts.keys(), (cohorts, verdict(tmp_path))
    chaos, control, none = cohorts["chaos"], cohorts["control"], cohorts["none"]
    # Every chaos request was aborted until the kill switch tripped (the error guard, a few chaos errors
    # against none in the untouched traffic); after that everyone is outside the experiment.
    assert chaos[0] >= 1 and chaos[1] == chaos[0], cohorts
    assert control[0] >= 1 and control[1] == 0, cohorts
    assert none[1] == 0 and none[0] > chaos[0] + control[0], cohorts
    record = verdict(tmp_path)
    assert record["verdict"] == "fail" and record["exit_code"] == 1, record
    assert record["gate"]["tripped"] is True and record["gate"]["trip"]["guard"] in ("seatbelt", "errors")
    # The failed chaos requests alone do not fail the run: the gate does.
    assert record["other_failures"] == 0 and record["problems"] == []
    assert re.search(r"mlchaos: gate verdict: fail \(.*tripped True\): (seatbelt|errors) guard: ", res.stderr)
    assert sidecar.experiments.states[name].tripped is not None


@pytest.mark.parametrize(("on_inconclusive", "code"), [("pass", 0), ("fail", 1)])
async def test_inconclusive_gate(tmp_path: Path, demo_model: str, start_sidecar: StartSidecar,
                                 processes: list[Process], on_inconclusive: str, code: int) -> None:
    name = "locust-short"
    sidecar = await start(start_sidecar, demo_model, experiment(name, 10, [], min_requests=1_000_000))
    env = gate_env(sidecar, name, tmp_path, MLCHAOS_ON_INCONCLUSIVE=on_inconclusive)

    res = await run(headless(sidecar, tmp_path, "2s"), env, processes)

    assert res.returncode == code, explain(res)
    record = verdict(tmp_path)
    assert record["verdict"] == "inconclusive" and record["exit_code"] == code, record
    assert "WARNING/mlchaos.locust: mlchaos: gate verdict: inconclusive" in res.stderr
    assert by_cohort(stats(tmp_path))["chaos"][0] > 0


async def test_unreachable_admin_api_fails_the_run(
        tmp_path: Path, demo_model: str, start_sidecar: StartSidecar, processes: list[Process]) -> None:
    sidecar = await start(start_sidecar, demo_model, experiment("locust-x", 10, []))
    env = gate_env(sidecar, "locust-x", tmp_path, MLCHAOS_ADMIN=f"http://127.0.0.1:{free_port()}")

    res = await run(headless(sidecar, tmp_path, "1s"), env, processes)

    assert res.returncode == 1, explain(res)
    record = verdict(tmp_path)
    assert record["verdict"] is None and len(record["problems"]) == 2, record
    assert "could not start experiment 'locust-x'" in record["problems"][0]


async def test_distributed_master_and_two_workers(
        tmp_path: Path, demo_model: str, start_sidecar: StartSidecar, processes: list[Process]) -> None:
    name = "locust-distributed"
    sidecar = await start(start_sidecar, demo_model, experiment(name, 20, []))
    port = free_port()
    env = gate_env(sidecar, name, tmp_path)
    master = [*headless(sidecar, tmp_path, "4s"), "--master", "--master-bind-host", "127.0.0.1",
              "--master-bind-port", str(port), "--expect-workers", "2", "--expect-workers-max-wait", "20"]
    worker = [str(LOCUST), "-f", str(LOCUSTFILE), "--worker", "--master-host", "127.0.0.1",
              "--master-port", str(port), "--loglevel", "INFO"]

    m = await spawn(master, env)
    processes.append(m)
    workers = [await spawn(worker, env) for _ in range(2)]
    processes.extend(workers)
    res = await m.wait(45)
    done = [await w.wait(20) for w in workers]  # the master tells its workers to quit

    assert res.returncode == 0, explain(res)
    assert all(w.returncode == 0 for w in done), [w.stderr[-2000:] for w in done]
    assert re.search(r"2 workers? connected", res.stderr), res.stderr[-4000:]
    # Only the master talks to the admin API, once each way.
    assert res.stderr.count("mlchaos: started experiment") == 1
    assert res.stderr.count("mlchaos: gate verdict: pass") == 1
    assert not any("mlchaos:" in w.stderr for w in done)
    # The master's statistics aggregate both workers' requests, still named by cohort.
    cohorts = by_cohort(stats(tmp_path))
    assert set(cohorts) == {"chaos", "control", "none"}
    total = sum(n for n, _ in cohorts.values())
    assert total >= 200 and 0.10 <= cohorts["chaos"][0] / total <= 0.30, cohorts
    # The master reads the gate as its workers stop: at most one request per user may be on either side.
    gate = verdict(tmp_path)["gate"]
    assert abs(gate["n_chaos"] - cohorts["chaos"][0]) <= USERS, (gate, cohorts)


async def test_the_package_imports_without_locust(tmp_path: Path, processes: list[Process]) -> None:
    """Locust is an optional extra: the package runs without it, and proxy.locust says what to install."""
    code = """
import sys
sys.modules["locust"] = None  # as if Locust were not installed
import proxy, proxy.app, proxy.cli, proxy.admin, proxy.gate, proxy.demo.run
try:
    import proxy.locust
except ImportError as exc:
    print("refused:", exc)
"""
    res = await run([sys.executable, "-c", code], clean_env(), processes)
    assert res.returncode == 0, res.stderr
    assert "refused: proxy.locust needs Locust: pip install 'mlchaos[load]'" in res.stdout
