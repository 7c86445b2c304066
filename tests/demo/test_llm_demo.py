"""``mlchaos demo --llm``: the embedded streaming model, chat clients under load, the per-cohort table."""

from __future__ import annotations

import io
from pathlib import Path

from proxy.demo.llm import LlmServer, start_llm
from proxy.demo.llm_run import chat_load, default_llm_policy_path, format_llm_table, run_llm_demo

REPO = Path(__file__).resolve().parents[2]


def test_the_packaged_policy_is_the_one_in_policies():
    assert (REPO / "proxy" / "demo" / "llm.yaml").read_text() == (REPO / "policies" / "llm.yaml").read_text()
    assert default_llm_policy_path() == REPO / "policies" / "llm.yaml"


async def test_chat_clients_time_each_stream_and_count_how_it_ended():
    server = LlmServer(token_seconds=0.002)
    runner, port = await start_llm(server)
    try:
        results = await chat_load(f"http://127.0.0.1:{port}", duration=5.0, concurrency=4, max_requests=12)
    finally:
        await runner.cleanup()
    none = results["none"]  # no sidecar: no cohort header
    assert none.requests == 12 == none.outcomes["completed"] == server.served
    assert len(none.ttft) == 12 and all(16 <= t <= 48 for t in none.tokens)
    table = format_llm_table(results)
    assert table.splitlines()[4].split()[:2] == ["none", "12"]


async def test_run_llm_demo_end_to_end():
    out = io.StringIO()
    assert await run_llm_demo(duration=4.0, out=out, concurrency=8) == 0
    text = out.getvalue()
    rows = {f[0]: f for f in map(str.split, text.splitlines())
            if len(f) > 5 and f[0] in ("chaos", "control", "none") and f[1].isdigit()}
    assert int(rows["chaos"][1]) > 0 and int(rows["control"][1]) > 0 and int(rows["none"][1]) > 0
    completed = {name: next(t for t in f if t.endswith("%")) for name, f in rows.items()}
    assert completed["control"] == completed["none"] == "100.0%"  # nothing happens to their streams
    assert "first token at the median" in text


async def test_run_llm_demo_refuses_a_bad_policy(tmp_path: Path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("listen: nowhere\n")
    out = io.StringIO()
    assert await run_llm_demo(duration=1.0, policy_path=str(bad), out=out) == 1
    assert "cannot load" in out.getvalue()
