"""The Chaos Toolkit extension (proxy/chaostoolkit): its actions and probes against a running sidecar, its
discovery, and the real ``chaos run`` of deploy/chaostoolkit/experiment.json on deploy/chaostoolkit/policy.yaml:
held on a system whose fallback model answers, deviated on one whose fallback fails, and rolled back then.

The actions and probes use only the standard library: they are tested without chaostoolkit. ``chaos run`` runs
as a subprocess of this interpreter's environment (it imports the extension from there) while the sidecar and
its upstreams serve from this test's event loop; the blocking probes called directly here run in a thread.
"""

from __future__ import annotations

import asyncio
import importlib.util
import json
import os
import sys
import time
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import yaml
from aiohttp import web

from proxy.app import Sidecar
from proxy.chaostoolkit import actions, probes
from proxy.chaostoolkit.client import AdminError, admin_settings
from proxy.policy import compile_policy
from tests.conftest import Upstream, free_port, policy_from
from tests.test_admin import call

from .conftest import DEPLOY, Process, clean_env, spawn

EXPERIMENT_FILE = DEPLOY / "chaostoolkit" / "experiment.json"
POLICY_FILE = DEPLOY / "chaostoolkit" / "policy.yaml"
# `chaos` of this interpreter's environment: one found elsewhere on PATH could not import this mlchaos.
CHAOS = Path(sys.executable).parent / "chaos"
TOKEN = "ctk-test-token"
# Traffic bounds: the example's hypothesis needs about 100 requests per cohort at 10% each, some 1,000
# requests; a run that has not decided after 20,000 requests or 90 s is broken, not slow.
MAX_REQUESTS = 20_000
MAX_TRAFFIC_SECONDS = 90.0
WORKERS = 4
StartUpstream = Callable[..., Awaitable[Upstream]]
StartSidecar = Callable[..., Awaitable[Sidecar]]


def require_chaostoolkit() -> Path:
    """The chaos command; skip without chaostoolkit, or fail under MLCHAOS_REQUIRE_SERVERS=1 (make test)."""
    if importlib.util.find_spec("chaoslib") is not None and CHAOS.exists():
        return CHAOS
    why = f"chaostoolkit is not installed beside {sys.executable} (pip install -e '.[chaostoolkit]')"
    if os.environ.get("MLCHAOS_REQUIRE_SERVERS", "").strip().lower() in ("1", "true", "yes"):
        pytest.fail(f"{why}, and MLCHAOS_REQUIRE_SERVERS=1 requires it", pytrace=False)
    pytest.skip(f"{why}; MLCHAOS_REQUIRE_SERVERS=1 makes this a failure")


# ------------------------------------------------------------------------------- the system under test

async def fallback_model(request: web.Request) -> web.Response:
    await request.read()
    return web.json_response({"predictions": [0]}, headers={"X-Model-Version": "fallback"})


async def broken_fallback(request: web.Request) -> web.Response:
    await request.read()
    return web.json_response({"error": "fallback model not loaded"}, status=503)


def example_policy(primary: str, fallback: str) -> Any:
    """deploy/chaostoolkit/policy.yaml on loopback ports, with the kill switch off: the hypothesis, not the
    seatbelt, must decide here, and a trip would stop the harmful run before it has its 100 requests."""
    raw = yaml.safe_load(POLICY_FILE.read_text(encoding="utf-8"))
    raw.update(listen="127.0.0.1:0", upstream=primary, upstreams={"fallback": fallback})
    raw["admin"]["listen"] = "127.0.0.1:0"
    for exp in raw["experiments"]:
        exp["kill_switch"] = {"enabled": False}
    return compile_policy(raw, source=yaml.safe_dump(raw))


async def system(start_upstream: StartUpstream, start_sidecar: StartSidecar, fallback_works: bool) -> Sidecar:
    primary = await start_upstream()
    fallback = await start_upstream({"/predict": fallback_model if fallback_works else broken_fallback})
    return await start_sidecar(example_policy(primary.url, fallback.url), env={"MLCHAOS_ADMIN_TOKEN": TOKEN})


async def traffic(port: int, stop: asyncio.Event) -> int:
    """Predictions through the sidecar from WORKERS clients until ``stop``, bounded in count and time."""
    sent = 0
    deadline = time.monotonic() + MAX_TRAFFIC_SECONDS

    async def worker(s: aiohttp.ClientSession) -> None:
        nonlocal sent
        while not stop.is_set() and sent < MAX_REQUESTS and time.monotonic() < deadline:
            sent += 1
            async with s.post(f"http://127.0.0.1:{port}/predict", json={"inputs": [[5.1, 3.5, 1.4, 0.2]]}) as r:
                await r.read()

    async with aiohttp.ClientSession() as s:
        await asyncio.gather(*(worker(s) for _ in range(WORKERS)))
    return sent


async def state_of(sc: Sidecar, name: str) -> dict[str, Any]:
    status, body = await call(sc.admin_port, "GET", "/experiments")
    assert status == 200
    return next(e for e in body["experiments"] if e["name"] == name)


def settings(sc: Sidecar, token: str | None = TOKEN) -> tuple[dict[str, Any], dict[str, Any]]:
    """chaostoolkit's (configuration, secrets) for this sidecar."""
    return {"mlchaos_admin_url": f"http://127.0.0.1:{sc.admin_port}"}, ({"admin_token": token} if token else {})


@pytest.fixture
def no_admin_env() -> Iterator[None]:
    """The extension falls back to MLCHAOS_ADMIN_URL / MLCHAOS_ADMIN_TOKEN: none may leak in from outside."""
    names = ("MLCHAOS_ADMIN_URL", "MLCHAOS_ADMIN_TOKEN")
    saved = {k: os.environ.pop(k) for k in names if k in os.environ}
    yield
    # What a test set goes too: a token left behind reaches every later test's sidecar (its admin API then
    # refuses their calls: the Feast tests failed so in a whole run).
    for k in names:
        os.environ.pop(k, None)
    os.environ.update(saved)


# ------------------------------------------------------------------- the actions and probes, called directly

def test_settings_come_from_configuration_then_secrets_then_the_environment(monkeypatch) -> None:
    monkeypatch.setenv("MLCHAOS_ADMIN_URL", "http://10.0.0.1:9000/")
    monkeypatch.setenv("MLCHAOS_ADMIN_TOKEN", "from-env")
    assert admin_settings(None, None) == ("http://10.0.0.1:9000", "from-env", 5.0)
    assert admin_settings({"mlchaos_admin_url": "http://h:1", "mlchaos_timeout": 2}, {"admin_token": "s"}) == (
        "http://h:1", "s", 2.0)
    monkeypatch.delenv("MLCHAOS_ADMIN_URL")
    monkeypatch.delenv("MLCHAOS_ADMIN_TOKEN")
    assert admin_settings({}, {}) == ("http://127.0.0.1:9000", None, 5.0)
    # An empty token is no token: chaostoolkit needs the variable set even when the admin API has none.
    assert admin_settings({}, {"admin_token": ""})[1] is None
    # Nothing listening: the activity fails with the reason, it does not hang.
    with pytest.raises(AdminError, match="Connection refused"):
        probes.gate(configuration={"mlchaos_admin_url": f"http://127.0.0.1:{free_port()}", "mlchaos_timeout": 2})


async def test_actions_start_stop_halt_and_need_the_token(start_upstream, start_sidecar, no_admin_env) -> None:
    sc = await system(start_upstream, start_sidecar, fallback_works=True)
    configuration, secrets = settings(sc)
    with pytest.raises(AdminError, match="401"):
        await asyncio.to_thread(actions.start_experiment, "model-fails", configuration, {})
    assert (await state_of(sc, "model-fails"))["state"] == "stopped"
    assert await asyncio.to_thread(actions.start_experiment, "model-fails", configuration, secrets) == {
        "status": "started", "experiment": "model-fails"}
    assert (await state_of(sc, "model-fails"))["state"] == "active"
    assert (await asyncio.to_thread(actions.stop_experiment, "model-fails", configuration, secrets))["status"] == \
        "stopped"
    exp = await state_of(sc, "model-fails")
    assert exp["state"] == "stopped" and exp["reason"] == "stopped through the admin API"
    await asyncio.to_thread(actions.start_experiment, "model-fails", configuration, secrets)
    halted = await asyncio.to_thread(actions.halt, configuration, secrets)
    assert halted["status"] == "halted" and (await state_of(sc, "model-fails"))["state"] == "stopped"
    with pytest.raises(AdminError, match=r"404.*no experiment named 'nope'"):
        await asyncio.to_thread(actions.start_experiment, "nope", configuration, secrets)
    with pytest.raises(AdminError, match=r"404.*no experiment named 'nope'"):
        await asyncio.to_thread(probes.verdict, "nope", 0, configuration, secrets)
    # The environment is the last resort, for the URL and the token alike.
    os.environ.update(MLCHAOS_ADMIN_URL=configuration["mlchaos_admin_url"], MLCHAOS_ADMIN_TOKEN=TOKEN)
    assert (await asyncio.to_thread(actions.start_experiment, "model-fails"))["status"] == "started"


async def test_rearm_after_a_trip(upstream, start_sidecar) -> None:
    sc = await start_sidecar(policy_from(upstream.url, {"max_blast_radius": 50, "experiments": [{
        "name": "broken", "chaos": 25, "control": 25, "faults": [{"type": "abort", "status": 503}],
        "kill_switch": {"seatbelt": {"min_requests": 10}}}]}))
    configuration, secrets = settings(sc, token=None)
    with pytest.raises(AdminError, match=r"409.*has not tripped"):
        await asyncio.to_thread(actions.rearm_experiment, "broken", configuration, secrets)
    stop = asyncio.Event()
    task = asyncio.get_running_loop().create_task(traffic(sc.proxy_port, stop))
    deadline = time.monotonic() + 20
    while not (await state_of(sc, "broken"))["kill_switch"]["tripped"] and time.monotonic() < deadline:
        await asyncio.sleep(0.1)
    stop.set()
    await task
    assert (await state_of(sc, "broken"))["kill_switch"]["tripped"]
    gate = await asyncio.to_thread(probes.gate, "broken", configuration, secrets)
    assert gate["verdict"] == "fail" and gate["tripped"] is True
    assert (await asyncio.to_thread(actions.rearm_experiment, "broken", configuration, secrets))["status"] == \
        "rearmed"
    exp = await state_of(sc, "broken")
    assert exp["state"] == "active" and not exp["kill_switch"]["tripped"]


async def test_load_policy_from_a_file_or_inline(upstream, start_sidecar, tmp_path) -> None:
    sc = await start_sidecar(policy_from(upstream.url))
    configuration, secrets = settings(sc, token=None)
    inline = {"listen": f"127.0.0.1:{sc.proxy_port}", "upstream": upstream.url,
              "admin": {"listen": f"127.0.0.1:{sc.admin_port}"},
              "experiments": [{"name": "inline", "chaos": 1, "faults": [{"type": "delay", "duration": "1ms"}]}]}
    loaded = await asyncio.to_thread(actions.load_policy, None, inline, configuration, secrets)
    assert loaded["status"] == "loaded"
    assert [e["name"] for e in (await call(sc.admin_port, "GET", "/experiments"))[1]["experiments"]] == ["inline"]
    path = tmp_path / "policy.yaml"
    path.write_text(yaml.safe_dump({**inline, "experiments": [{**inline["experiments"][0], "name": "from-file"}]}))
    await asyncio.to_thread(actions.load_policy, str(path), None, configuration, secrets)
    assert [e["name"] for e in (await call(sc.admin_port, "GET", "/experiments"))[1]["experiments"]] == ["from-file"]
    # An invalid policy fails the action with the loader's problems, and the running policy stays.
    with pytest.raises(AdminError, match=r"422.*experiments\[0\]\.chaos"):
        await asyncio.to_thread(actions.load_policy, None, "experiments: [{name: x, chaos: 900}]",
                                configuration, secrets)
    assert [e["name"] for e in (await call(sc.admin_port, "GET", "/experiments"))[1]["experiments"]] == ["from-file"]
    with pytest.raises(AdminError, match="one of path or policy"):
        actions.load_policy(configuration=configuration, secrets=secrets)


@pytest.mark.parametrize(("fallback_works", "status", "verdict"), [(True, 200, "held"), (False, 503, "deviated")])
async def test_verdict_waits_for_a_decision_and_cohort_metrics_count(
        start_upstream, start_sidecar, fallback_works: bool, status: int, verdict: str) -> None:
    sc = await system(start_upstream, start_sidecar, fallback_works)
    configuration, secrets = settings(sc)
    # Not started: nothing to wait for, so the probe answers at once, undecided.
    began = time.monotonic()
    early = await asyncio.to_thread(probes.verdict, "model-fails", 30, configuration, secrets)
    assert early["status"] == 425 and early["verdict"] == "inconclusive" and time.monotonic() - began < 5
    await asyncio.to_thread(actions.start_experiment, "model-fails", configuration, secrets)
    stop = asyncio.Event()
    task = asyncio.get_running_loop().create_task(traffic(sc.proxy_port, stop))
    try:
        decided = await asyncio.to_thread(probes.verdict, "model-fails", 60, configuration, secrets)
    finally:
        stop.set()
        sent = await task
    assert decided["status"] == status and decided["verdict"] == verdict, decided
    # Held needs every check held; deviated comes with the first check that deviates (the other may still be
    # short of its sample), and none held: the fallback's 503s carry no marker and are errors.
    statuses = {name: c["status"] for name, c in decided["checks"].items()}
    assert set(statuses) == {"error_rate", "marker"}
    if fallback_works:
        assert set(statuses.values()) == {"held"}
    else:
        assert "deviated" in statuses.values() and "held" not in statuses.values()
    metrics = await asyncio.to_thread(probes.cohort_metrics, "model-fails", configuration, secrets)
    chaos, control = metrics["chaos"], metrics["control"]
    assert metrics["state"] == "active" and chaos["requests"] >= 80 and control["requests"] >= 80
    assert chaos["requests"] + control["requests"] <= sent
    assert control["errors"] == 0 and chaos["errors"] == (0 if fallback_works else chaos["requests"])
    assert metrics["error_rate_increase"] == pytest.approx(0.0 if fallback_works else 1.0)
    assert metrics["faults_injected"] == {"fallback": chaos["requests"]}
    for cohort in (chaos, control):
        p = cohort["latency_seconds"]
        assert 0 < p["p50"] <= p["p95"] <= p["p99"] < 5
    gate = await asyncio.to_thread(probes.gate, "model-fails", configuration, secrets)
    assert gate["hypothesis"]["verdict"] == verdict


def test_cohort_quantiles_interpolate_within_buckets() -> None:
    buckets: list[list[Any]] = [[0.01, 0], [0.1, 50], [1.0, 100], ["+Inf", 100]]
    assert probes._quantile(buckets, 0.5) == pytest.approx(0.1)
    assert probes._quantile(buckets, 0.25) == pytest.approx(0.055)
    assert probes._quantile(buckets, 0.99) == pytest.approx(0.982)
    assert probes._quantile([[0.1, 0], ["+Inf", 10]], 0.5) == 0.1  # beyond the last bound: that bound
    assert probes._quantile([[0.1, 0], ["+Inf", 0]], 0.5) is None


def test_discover_lists_every_activity_with_its_arguments() -> None:
    require_chaostoolkit()
    from proxy.chaostoolkit import discover

    found = discover(discover_system=False)
    assert found["extension"]["name"] == "mlchaos"
    activities = {(a["type"], a["name"]): a for a in found["activities"]}
    assert set(activities) == {("action", n) for n in actions.__all__} | {("probe", n) for n in probes.__all__}
    verdict = activities[("probe", "verdict")]
    assert verdict["mod"] == "proxy.chaostoolkit.probes" and verdict["return_type"] == "mapping"
    assert [(a["name"], a.get("type"), a.get("default", "-")) for a in verdict["arguments"]] == [
        ("experiment", "string", "-"), ("wait", "number", 0.0), ("configuration", "object", None),
        ("secrets", "object", None)]


async def test_chaos_discover_finds_the_extension(tmp_path, processes) -> None:
    """``chaos discover mlchaos`` imports the distribution's top package and calls its discover()."""
    chaos = require_chaostoolkit()
    out = tmp_path / "discovery.json"
    proc = await spawn([str(chaos), "--no-version-check", "--no-log-file", "--settings", str(tmp_path / "s.yaml"),
                        "discover", "--no-install", "--no-system-info", "--discovery-path", str(out), "mlchaos"],
                       clean_env(), cwd=tmp_path)
    processes.append(proc)
    done = await proc.wait(timeout=60)
    assert done.returncode == 0 and out.exists(), done.stdout + done.stderr
    found = json.loads(out.read_text())
    assert found["extension"]["name"] == "mlchaos"
    assert sorted(a["name"] for a in found["activities"]) == sorted([*actions.__all__, *probes.__all__])


def test_the_readme_shows_the_example_experiment() -> None:
    """The README's JSON is deploy/chaostoolkit/experiment.json, its second probe left out for brevity."""
    readme = (DEPLOY.parent / "README.md").read_text(encoding="utf-8")
    section = readme.split("## Chaos Toolkit, LitmusChaos, Chaos Mesh", 1)[1].split("\n## ", 1)[0]
    shown = json.loads("{" + section.split("```json\n", 1)[1].split("```", 1)[0] + "}")
    example = json.loads(EXPERIMENT_FILE.read_text(encoding="utf-8"))
    assert shown["method"] == example["method"] and shown["rollbacks"] == example["rollbacks"]
    hypothesis = example["steady-state-hypothesis"]
    assert shown["steady-state-hypothesis"] == {**hypothesis, "probes": hypothesis["probes"][:1]}
    assert "chaos run --hypothesis-strategy after-method-only --rollback-strategy deviated" in section


# -------------------------------------------------------------------------------------- the real chaos run

async def chaos_run(sc: Sidecar, tmp_path: Path, processes: list[Process]) -> tuple[int, dict[str, Any], str]:
    """``chaos run`` of the example while traffic flows: (exit code, journal, output)."""
    chaos = require_chaostoolkit()
    journal = tmp_path / "journal.json"
    args = [str(chaos), "--no-version-check", "--log-file", str(tmp_path / "chaostoolkit.log"),
            "--settings", str(tmp_path / "settings.yaml"), "run", "--journal-path", str(journal),
            # The verdict judges the experiment the method starts: before it there is nothing to judge.
            "--hypothesis-strategy", "after-method-only", "--rollback-strategy", "deviated", str(EXPERIMENT_FILE)]
    env = clean_env({"MLCHAOS_ADMIN_URL": f"http://127.0.0.1:{sc.admin_port}", "MLCHAOS_ADMIN_TOKEN": TOKEN})
    stop = asyncio.Event()
    task = asyncio.get_running_loop().create_task(traffic(sc.proxy_port, stop))
    try:
        proc = await spawn(args, env, cwd=tmp_path)
        processes.append(proc)
        done = await proc.wait(timeout=100)
    finally:
        stop.set()
        await task
    assert journal.exists(), done.stdout + done.stderr
    return done.returncode, json.loads(journal.read_text()), done.stdout + done.stderr


def after_probes(journal: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {p["activity"]["name"]: p for p in journal["steady_states"]["after"]["probes"]}


async def test_chaos_run_holds_when_the_fallback_answers(start_upstream, start_sidecar, tmp_path,
                                                         processes) -> None:
    sc = await system(start_upstream, start_sidecar, fallback_works=True)
    code, journal, out = await chaos_run(sc, tmp_path, processes)
    assert code == 0, out
    assert journal["status"] == "completed" and journal["deviated"] is False, out
    assert journal["steady_states"]["before"] is None  # after-method-only
    assert journal["steady_states"]["after"]["steady_state_met"] is True
    [started] = journal["run"]
    assert started["activity"]["name"] == "start-experiment" and started["status"] == "succeeded"
    assert started["output"] == {"status": "started", "experiment": "model-fails"}
    probes_after = after_probes(journal)
    verdict = probes_after["hypothesis-verdict"]["output"]
    assert verdict["status"] == 200 and verdict["verdict"] == "held"
    assert verdict["checks"]["marker"]["status"] == "held" and verdict["checks"]["marker"]["n"] >= 80
    assert probes_after["error-rate-increase"]["output"]["error_rate_increase"] == 0.0
    # Held: the rollback strategy `deviated` plays no rollback, and the experiment goes on.
    assert journal["rollbacks"] == []
    assert (await state_of(sc, "model-fails"))["state"] == "active"


async def test_chaos_run_deviates_and_rolls_back_when_the_fallback_fails(start_upstream, start_sidecar, tmp_path,
                                                                         processes) -> None:
    sc = await system(start_upstream, start_sidecar, fallback_works=False)
    code, journal, out = await chaos_run(sc, tmp_path, processes)
    assert code != 0, out
    # chaoslib 1.45 ends a deviated run "completed" (exit code 1); older ones said "failed".
    assert journal["deviated"] is True and journal["status"] in ("completed", "failed"), out
    assert journal["steady_states"]["after"]["steady_state_met"] is False
    verdict = after_probes(journal)["hypothesis-verdict"]
    assert verdict["tolerance_met"] is False
    assert verdict["output"]["status"] == 503 and verdict["output"]["verdict"] == "deviated"
    # The verdict deviates with the first check that does; neither can hold on the broken fallback's 503s.
    statuses = {name: c["status"] for name, c in verdict["output"]["checks"].items()}
    assert set(statuses) == {"error_rate", "marker"}
    assert "deviated" in statuses.values() and "held" not in statuses.values()
    # The rollback ran, and it stopped the experiment.
    [rollback] = journal["rollbacks"]
    assert rollback["activity"]["name"] == "stop-experiment" and rollback["status"] == "succeeded"
    assert rollback["output"] == {"status": "stopped", "experiment": "model-fails"}
    exp = await state_of(sc, "model-fails")
    assert exp["state"] == "stopped" and exp["reason"] == "stopped through the admin API"
