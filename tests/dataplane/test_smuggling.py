"""Request smuggling: the corpus of benchmarks/smuggling.py through mlchaos, and side by side with nginx and
HAProxy, each in front of a raw upstream that records the bytes it receives."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from proxy.app import Sidecar
from tests.benchmark_scripts import load
from tests.conftest import policy_from
from tests.dataplane.conftest import RawClient, errors_total, eventually, get
from tests.servers.harness import require_servers

smuggling = load("smuggling")
CASES = smuggling.CASES


def test_the_corpus_is_large_named_once_and_says_what_each_case_must_do() -> None:
    assert len(CASES) >= 40
    assert len({c.name for c in CASES}) == len(CASES)
    assert {c.expect for c in CASES} == {"refuse", "forward", "hold"}
    # Both kinds of case are there: smuggling attempts and the well-formed requests they imitate.
    assert sum(c.expect == "refuse" for c in CASES) >= 30 and sum(c.expect == "forward" for c in CASES) >= 10


async def start_recording(start_sidecar: Any) -> tuple[Sidecar, Any]:
    recorder = await smuggling.Recorder().start()
    sc = await start_sidecar(policy_from(f"http://127.0.0.1:{recorder.port}"))
    return sc, recorder


def check_case(case: Any, outcome: Any, counted: dict[str, float]) -> list[str]:
    """What is wrong with mlchaos's handling of one case (empty: nothing)."""
    problems = []
    if case.expect == "refuse":
        if outcome.forwarded or not outcome.status.startswith("4"):
            problems.append(f"{case.name}: expected a 4xx and nothing forwarded, got {outcome.cell()}")
        if counted["malformed_request"] != 1:
            problems.append(f"{case.name}: refused but counted {counted['malformed_request']} times")
    elif case.expect == "hold":
        if outcome.forwarded or outcome.status != "no answer":
            problems.append(f"{case.name}: expected nothing forwarded and no answer yet, got {outcome.cell()}")
    else:
        if not outcome.forwarded or outcome.status != "200":
            problems.append(f"{case.name}: expected it forwarded and answered, got {outcome.cell()}")
        if counted["malformed_request"]:
            problems.append(f"{case.name}: forwarded but counted as malformed")
    lowered = outcome.forwarded.lower()
    for never in case.never:
        if never.lower() in lowered:
            problems.append(f"{case.name}: {never!r} reached the upstream: {outcome.forwarded!r}")
    if case.never and case.name.endswith(("underscore", "double-dash")) and counted["request_header_dropped"] != 1:
        problems.append(f"{case.name}: the dropped header was counted {counted['request_header_dropped']} times")
    return problems


KINDS = ("malformed_request", "request_header_dropped")


@pytest.mark.slow
async def test_mlchaos_refuses_holds_or_forwards_each_case_as_its_rule_says_and_counts_it(start_sidecar):
    sc, recorder = await start_recording(start_sidecar)
    problems: list[str] = []
    try:
        for case in CASES:
            before = {k: errors_total(sc, k) for k in KINDS}
            outcome = await smuggling.replay(sc.proxy_port, recorder, case.data)
            problems += check_case(case, outcome, {k: errors_total(sc, k) - before[k] for k in KINDS})
        assert not problems, "\n".join(problems)
        # Refusing 40-odd attacks in a row leaves it serving.
        async with await RawClient.connect(sc.proxy_port) as c:
            r = await c.request(get("/after"))
        assert r.status == 200 and r.body == b"ok"
    finally:
        await recorder.close()
    plane = sc.plane
    assert plane is not None
    assert await eventually(lambda: len(plane.connections) == 0)  # none left hanging


async def test_a_refused_smuggling_attempt_behind_good_pipelined_requests_leaves_them_answered(start_sidecar):
    sc, recorder = await start_recording(start_sidecar)
    cl_te = next(c for c in CASES if c.name == "cl-te")
    try:
        async with await RawClient.connect(sc.proxy_port) as c:
            await c.send(get("/a") + cl_te.data)
            a, bad = await c.responses(2)
            assert await c.closed_by_peer()
        assert (a.status, bad.status) == (200, 400)
        await recorder.settle(0.0)
        assert recorder.data.count(b"HTTP/1.1\r\n") == 1 and b"/s " not in recorder.data
    finally:
        await recorder.close()


@pytest.mark.slow
async def test_the_corpus_through_nginx_haproxy_and_mlchaos_mlchaos_forwards_nothing_nginx_refuses(
        start_sidecar, tmp_path: Path):
    nginx, haproxy = smuggling.find_bin("nginx"), smuggling.find_bin("haproxy")
    if nginx is None or haproxy is None:
        missing = " and ".join(n for n, b in (("nginx", nginx), ("haproxy", haproxy)) if b is None)
        how = "apt-get install nginx haproxy (make system-deps does)"
        if require_servers():
            pytest.fail(f"{missing} required (MLCHAOS_REQUIRE_SERVERS=1) but not found: {how}", pytrace=False)
        pytest.skip(f"{missing} not found: {how}; MLCHAOS_REQUIRE_SERVERS=1 makes this a failure")
    sc, recorder = await start_recording(start_sidecar)
    try:
        rows = await smuggling.run(nginx, haproxy, sc.proxy_port, recorder, tmp_path)
    finally:
        await recorder.close()
    text = smuggling.section(rows, smuggling.versions(nginx, haproxy))
    (tmp_path / "smuggling.md").write_text(text)
    print("\n" + text)
    # The reference proxies really ran the corpus: each forwarded the plain request and refused some cases.
    for col in ("nginx", "HAProxy"):
        assert next(r for r in rows if r.case.name == "plain-get").cells[col].forwarded
        assert any(not r.cells[col].forwarded for r in rows)
    leaks = [f"{r.case.name}: nginx {r.cells['nginx'].cell()}, mlchaos {r.cells['mlchaos'].cell()}"
             for r in rows if not r.cells["nginx"].forwarded and r.cells["mlchaos"].forwarded]
    assert not leaks, "mlchaos forwarded what nginx did not:\n" + "\n".join(leaks)
