"""The rollout gate's contracts: Argo Rollouts' web metric, Flagger's webhooks and `mlchaos gate`.

Contracts (shared/research/anchors-killswitch-canary.md, sections 3 and 4): Argo's ``web`` provider turns any
non-2xx into a measurement Error, so ``GET /gate`` is always 200 with the verdict in JSON; Flagger passes a
hook on 200-202 and its ``rollback`` hook is inverted (a 2xx rolls back).
"""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from proxy.app import Sidecar
from tests.conftest import policy_from

MLCHAOS = str(Path(sys.executable).with_name("mlchaos"))
TOKEN = "s3cret"
MIN = 20

# "thin" only sees /thin (it stays without data); "healthy" is untouched; "broken" aborts every chaos request.
POLICY: dict[str, Any] = {"max_blast_radius": 50, "experiments": [
    {"name": "thin", "chaos": 5, "control": 5, "match": {"path": "/thin"}, "kill_switch": {"min_requests": MIN}},
    {"name": "healthy", "chaos": 20, "control": 20, "kill_switch": {"min_requests": MIN}},
    {"name": "broken", "chaos": 20, "control": 20, "kill_switch": {"min_requests": MIN},
     "faults": [{"type": "abort", "probability": 1.0, "status": 503}]},
]}

FLAGGER_BODY = {"name": "podinfo", "namespace": "test", "phase": "Progressing", "checksum": "abc",
                "metadata": {"experiment": "healthy"}}


def flagger_body(experiment: str) -> dict[str, Any]:
    return {**FLAGGER_BODY, "metadata": {"experiment": experiment}}


async def call(port: int, method: str, path: str, **kw: Any) -> tuple[int, Any]:
    async with aiohttp.ClientSession() as s, s.request(method, f"http://127.0.0.1:{port}{path}", **kw) as r:
        if r.content_type == "application/json":
            return r.status, await r.json()
        return r.status, await r.text()


async def gate(sc: Sidecar, experiment: str | None = None) -> dict[str, Any]:
    status, body = await call(sc.admin_port, "GET", "/gate" + (f"?experiment={experiment}" if experiment else ""))
    assert status == 200, body
    assert isinstance(body, dict)
    return body


async def drive(sc: Sidecar, n: int, path: str = "/predict") -> None:
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5)) as s:
        for _ in range(n):
            async with s.get(f"http://127.0.0.1:{sc.proxy_port}{path}") as r:
                await r.read()


async def settle(sc: Sidecar) -> None:
    """Traffic until "healthy" has enough chaos requests and "broken" has tripped (bounded)."""
    for _ in range(40):
        healthy, broken = await gate(sc, "healthy"), await gate(sc, "broken")
        if healthy["n_chaos"] >= MIN and broken["tripped"]:
            return
        await drive(sc, 25)
    raise AssertionError(f"no settled state: {healthy} {broken}")


@pytest.fixture
async def settled(upstream, start_sidecar) -> Sidecar:
    sc: Sidecar = await start_sidecar(policy_from(upstream.url, POLICY), env={"MLCHAOS_ADMIN_TOKEN": TOKEN})
    await settle(sc)
    return sc


# -- Argo Rollouts: GET /gate ------------------------------------------------------------------------------

async def test_gate_is_inconclusive_while_thin_then_passes(upstream, start_sidecar) -> None:
    sc = await start_sidecar(policy_from(upstream.url, POLICY))
    v = await gate(sc, "healthy")
    assert {"verdict", "tripped", "n_chaos", "n_control", "guards", "e_value", "effect", "reason"} <= set(v)
    assert (v["verdict"], v["tripped"], v["n_chaos"], v["n_control"]) == ("inconclusive", False, 0, 0)
    assert str(MIN) in v["reason"]
    await drive(sc, 10)
    v = await gate(sc, "healthy")
    assert v["verdict"] == "inconclusive" and 0 < v["n_chaos"] + v["n_control"] <= 10 and v["n_chaos"] < MIN
    for _ in range(40):
        await drive(sc, 25)
        v = await gate(sc, "healthy")
        if v["n_chaos"] >= MIN:
            break
    assert v["verdict"] == "pass", v
    assert v["tripped"] is False and v["n_chaos"] >= MIN and v["n_control"] > 0
    assert isinstance(v["e_value"], int | float) and v["e_value"] < 100  # 1/alpha
    assert v["effect"] is None  # control has no errors: no ratio
    assert "errors" in v["guards"] and "trip" not in v


async def test_gate_fails_after_a_trip_and_says_why(settled: Sidecar) -> None:
    v = await gate(settled, "broken")
    assert v["verdict"] == "fail" and v["tripped"] is True
    assert v["trip"]["guard"] in {"errors", "seatbelt"}
    assert "kill switch tripped" in v["reason"]
    assert v["errors_chaos"] >= 1 and v["errors_control"] == 0
    assert isinstance(v["n_chaos"], int) and isinstance(v["n_control"], int)


async def test_gate_answers_json_200_with_every_field_argo_reads(settled: Sidecar) -> None:
    async with aiohttp.ClientSession() as s, \
            s.get(f"http://127.0.0.1:{settled.admin_port}/gate", params={"experiment": "healthy"}) as r:
        assert r.status == 200
        assert r.content_type == "application/json"
        v = json.loads(await r.read())
    # What an AnalysisTemplate's successCondition would use: result.verdict == "pass".
    assert v["verdict"] == "pass"
    for field, kind in (("tripped", bool), ("n_chaos", int), ("n_control", int), ("guards", dict)):
        assert isinstance(v[field], kind), field


async def test_gate_for_an_unknown_experiment_is_200_inconclusive(settled: Sidecar) -> None:
    v = await gate(settled, "nope")
    assert v["verdict"] == "inconclusive" and v["tripped"] is False
    assert v["n_chaos"] == 0 and v["n_control"] == 0 and v["guards"] == {}
    assert "nope" in v["reason"]


async def test_gate_without_an_experiment_combines_them(settled: Sidecar) -> None:
    v = await gate(settled)
    assert v["verdict"] == "fail" and v["tripped"] is True
    assert {e["experiment"]: e["verdict"] for e in v["experiments"]} == {
        "thin": "inconclusive", "healthy": "pass", "broken": "fail"}
    assert set(v["guards"]) == {"thin", "healthy", "broken"}


# -- Flagger: POST /gate/flagger and /gate/flagger/rollback ------------------------------------------------

async def test_flagger_hook_is_200_on_pass(settled: Sidecar) -> None:
    status, body = await call(settled.admin_port, "POST", "/gate/flagger", json=FLAGGER_BODY)
    assert status == 200, body
    assert body["verdict"] == "pass" and body["reason"]
    assert body["canary"] == {"name": "podinfo", "namespace": "test", "phase": "Progressing"}


async def test_flagger_hook_is_503_on_fail_with_the_reason(settled: Sidecar) -> None:
    status, body = await call(settled.admin_port, "POST", "/gate/flagger", json=flagger_body("broken"))
    assert status == 503
    assert body["verdict"] == "fail" and "kill switch tripped" in body["reason"]


async def test_flagger_hook_is_503_while_inconclusive(settled: Sidecar) -> None:
    for name in ("thin", "nope"):
        status, body = await call(settled.admin_port, "POST", "/gate/flagger", json=flagger_body(name))
        assert status == 503, name
        assert body["verdict"] == "inconclusive" and body["reason"]


async def test_flagger_hooks_need_no_token_but_mutations_still_do(settled: Sidecar) -> None:
    # The fixture's sidecar has MLCHAOS_ADMIN_TOKEN set; Flagger sends no Authorization header.
    status, _ = await call(settled.admin_port, "POST", "/gate/flagger", json=FLAGGER_BODY)
    assert status == 200
    status, _ = await call(settled.admin_port, "POST", "/gate/flagger/rollback", json=flagger_body("broken"))
    assert status == 200
    status, body = await call(settled.admin_port, "POST", "/experiments/healthy/stop")
    assert status == 401, body
    status, _ = await call(settled.admin_port, "POST", "/experiments/broken/rearm")
    assert status == 401
    status, _ = await call(settled.admin_port, "POST", "/halt")
    assert status == 401
    assert (await gate(settled, "healthy"))["verdict"] == "pass"  # nothing was stopped
    status, _ = await call(settled.admin_port, "POST", "/experiments/healthy/stop",
                           headers={"Authorization": f"Bearer {TOKEN}"})
    assert status == 200


@pytest.mark.parametrize("path", [
    "/gate/flagger/../../halt", "/gate/flagger/%2e%2e/%2e%2e/halt", "/gate/flagger/..%2f..%2fhalt",
    "/gate/flagger/rollback/../../../experiments/healthy/stop", "/gate/../halt", "//halt",
])
async def test_the_token_exemption_cannot_be_reached_around(settled: Sidecar, path: str) -> None:
    # Raw bytes on the socket: an HTTP client would normalize these paths before sending them.
    reader, writer = await asyncio.open_connection("127.0.0.1", settled.admin_port)
    writer.write(f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\nConnection: close\r\n\r\n".encode())
    head = (await asyncio.wait_for(reader.read(), 5)).split(b"\r\n", 1)[0]
    writer.close()
    await writer.wait_closed()
    assert head.split(b" ")[1] in (b"401", b"404"), head
    assert settled.experiments.halted is None
    assert all(st.manual is None for st in settled.experiments.states.values())


async def test_flagger_rollback_is_200_only_when_tripped(settled: Sidecar) -> None:
    expected = {"broken": 200, "healthy": 503, "thin": 503, "nope": 503}
    got = {}
    for name in expected:
        status, body = await call(settled.admin_port, "POST", "/gate/flagger/rollback", json=flagger_body(name))
        got[name] = status
        assert body["tripped"] is (name == "broken")
    assert got == expected


async def test_flagger_rollback_follows_a_rearm(settled: Sidecar) -> None:
    status, _ = await call(settled.admin_port, "POST", "/gate/flagger/rollback", json=flagger_body("broken"))
    assert status == 200
    status, _ = await call(settled.admin_port, "POST", "/experiments/broken/rearm",
                           headers={"Authorization": f"Bearer {TOKEN}"})
    assert status == 200
    status, body = await call(settled.admin_port, "POST", "/gate/flagger/rollback", json=flagger_body("broken"))
    assert status == 503 and body["verdict"] == "inconclusive"  # re-armed: counts start again


@pytest.mark.parametrize("body", [
    b"{not json", b"", b"[1, 2]", b'"podinfo"', b"null", b'{"metadata": "healthy"}', b'{"metadata": null}',
    b'{"metadata": {"experiment": 5}}', b'{"metadata": {"experiment": ["healthy"]}}', b"\xff\xfe",
])
async def test_flagger_hooks_answer_a_verdict_to_any_body(settled: Sidecar, body: bytes) -> None:
    for path in ("/gate/flagger", "/gate/flagger/rollback"):
        status, verdict = await call(settled.admin_port, "POST", path, data=body,
                                     headers={"Content-Type": "application/json"})
        assert status in (200, 503), (path, status, verdict)
        assert isinstance(verdict, dict) and verdict["verdict"] in {"pass", "fail", "inconclusive"}


async def test_flagger_hook_takes_the_experiment_from_the_query_too(settled: Sidecar) -> None:
    body = {k: v for k, v in FLAGGER_BODY.items() if k != "metadata"}
    status, verdict = await call(settled.admin_port, "POST", "/gate/flagger?experiment=healthy", json=body)
    assert status == 200 and verdict["experiment"] == "healthy"
    status, verdict = await call(settled.admin_port, "POST", "/gate/flagger?experiment=broken", json=body)
    assert status == 503 and verdict["verdict"] == "fail"


async def test_flagger_hook_without_an_experiment_uses_the_combined_verdict(settled: Sidecar) -> None:
    status, verdict = await call(settled.admin_port, "POST", "/gate/flagger", json={"name": "podinfo"})
    assert status == 503 and verdict["verdict"] == "fail"  # "broken" tripped


# -- mlchaos gate ------------------------------------------------------------------------------------------

async def mlchaos_gate(*args: str, env: dict[str, str] | None = None, timeout: float = 20) -> tuple[int, str, str]:
    # A subprocess, so this loop keeps serving the in-process sidecar the command asks.
    proc = await asyncio.create_subprocess_exec(
        MLCHAOS, "gate", *args, stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE, env=env)
    try:
        out, err = await asyncio.wait_for(proc.communicate(), timeout)
    except TimeoutError:
        proc.kill()
        await proc.wait()
        raise
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


@pytest.mark.parametrize(("experiment", "code", "verdict"), [
    ("healthy", 0, "pass"), ("broken", 1, "fail"), ("thin", 2, "inconclusive"), ("nope", 2, "inconclusive"),
])
async def test_cli_gate_exit_codes(settled: Sidecar, experiment: str, code: int, verdict: str) -> None:
    rc, out, err = await mlchaos_gate("--admin", f"http://127.0.0.1:{settled.admin_port}", "--experiment", experiment)
    assert rc == code, (out, err)
    assert json.loads(out)["verdict"] == verdict


async def test_cli_gate_without_experiment_uses_the_combined_verdict(settled: Sidecar) -> None:
    rc, out, _ = await mlchaos_gate("--admin", f"http://127.0.0.1:{settled.admin_port}/")
    assert rc == 1 and json.loads(out)["verdict"] == "fail"


async def test_cli_gate_is_inconclusive_when_the_admin_url_is_dead(settled: Sidecar) -> None:
    from tests.killswitch.prom import free_port

    rc, out, err = await mlchaos_gate("--admin", f"http://127.0.0.1:{free_port()}", "--experiment", "healthy",
                                      "--timeout", "2")
    assert rc == 2 and out == ""
    assert "no verdict" in err


async def test_cli_gate_is_inconclusive_when_the_url_is_not_a_gate(settled: Sidecar) -> None:
    rc, out, err = await mlchaos_gate("--admin", f"http://127.0.0.1:{settled.proxy_port}", "--experiment",
                                      "healthy", "--timeout", "2")  # the data plane: echo JSON, not a verdict
    assert rc == 2, (out, err)
