"""Per-cohort LLM metrics, the drift between chaos and control answers, and the kill switch on streams."""

from __future__ import annotations

from typing import Any

import pytest

from proxy.metrics import Metrics
from proxy.observe.llm import LlmObserver
from tests.llm.conftest import FORCE_CHAOS, FORCE_CONTROL, chat, llm_sidecar

BODY: dict[str, Any] = {"model": "m", "messages": [{"role": "user", "content": "Tell me a story"}],
                        "max_tokens": 8, "stream": True}


def _value(sc: Any, name: str, **labels: str) -> float:
    got = sc.metrics.registry.get_sample_value(name, {"experiment": "e1", **labels})
    return 0.0 if got is None else float(got)


async def test_time_to_first_token_and_between_chunks_per_cohort(llm, start_sidecar):
    _, url = llm
    sc = await llm_sidecar(start_sidecar, url, [{"type": "first_token_delay", "duration": "300ms"},
                                                {"type": "token_delay", "duration": "30ms"}])
    for _ in range(2):
        await chat(sc.proxy_port, BODY, FORCE_CHAOS)
        await chat(sc.proxy_port, BODY, FORCE_CONTROL)
    ttft = "mlchaos_llm_time_to_first_token_seconds"
    assert _value(sc, ttft + "_count", cohort="chaos") == 2 == _value(sc, ttft + "_count", cohort="control")
    assert _value(sc, ttft + "_sum", cohort="chaos") >= 2 * 0.3
    assert _value(sc, ttft + "_sum", cohort="control") < 2 * 0.15
    # 8 content chunks: 7 gaps per answer, each at least the token delay in chaos (timers may shave a little).
    gap = "mlchaos_llm_time_between_chunks_seconds"
    assert _value(sc, gap + "_count", cohort="chaos") == 14
    assert _value(sc, gap + "_sum", cohort="chaos") >= 14 * 0.030 * 0.95
    assert _value(sc, gap + "_sum", cohort="control") < 14 * 0.02
    assert _value(sc, "mlchaos_llm_chunks_per_answer_sum", cohort="chaos") == 16
    assert _value(sc, "mlchaos_llm_streams_total", cohort="control", outcome="completed") == 2
    assert _value(sc, "mlchaos_llm_finish_reasons_total", cohort="chaos", reason="length") == 2


@pytest.mark.parametrize(("fault", "outcome", "reason"), [
    ({"type": "stream_truncate", "after": 3, "ending": "done"}, "no_finish", "none"),
    ({"type": "stream_truncate", "after": 3, "ending": "abort"}, "completed", "abort"),
    ({"type": "stream_truncate", "after": 3, "ending": "eof"}, "no_done", "none"),
    ({"type": "stream_truncate", "after": 3, "ending": "close"}, "cut", "none"),
    ({"type": "stream_error", "after": 3}, "error", "none"),
    ({"type": "stream_stall", "after": 3, "duration": "10ms", "then": "reset"}, "cut", "none"),
])
async def test_how_each_stream_ended_is_counted_and_failures_are_errors(llm, start_sidecar, fault, outcome, reason):
    _, url = llm
    sc = await llm_sidecar(start_sidecar, url, [fault])
    await chat(sc.proxy_port, BODY, FORCE_CHAOS)
    assert _value(sc, "mlchaos_llm_streams_total", cohort="chaos", outcome=outcome) == 1
    assert _value(sc, "mlchaos_llm_finish_reasons_total", cohort="chaos", reason=reason) == 1
    failed = outcome in ("error", "no_done", "cut")
    assert _value(sc, "mlchaos_requests_total", cohort="chaos", code="dropped") == (1 if failed else 0)
    assert _value(sc, "mlchaos_requests_total", cohort="chaos", code="2xx") == (0 if failed else 1)


async def test_whole_answers_are_read_off_the_request_path(llm, start_sidecar):
    _, url = llm
    sc = await llm_sidecar(start_sidecar, url, [{"type": "max_tokens_clamp", "max_tokens": 2}])
    await chat(sc.proxy_port, {**BODY, "stream": False}, FORCE_CHAOS)
    await chat(sc.proxy_port, {**BODY, "stream": False}, FORCE_CONTROL)
    report = sc.report("e1")
    assert report is not None
    cohorts = report["llm"]["cohorts"]
    assert cohorts["chaos"]["finish_reasons"] == {"length": 1} and cohorts["chaos"]["tokens_sum"] == 2
    assert cohorts["control"]["tokens_sum"] == 8
    assert "streams" not in cohorts["chaos"] or not cohorts["chaos"]["streams"]


async def test_drift_between_chaos_and_control_answers(llm, start_sidecar):
    _, url = llm
    sc = await llm_sidecar(start_sidecar, url, [{"type": "empty_completion"}])
    for i in range(30):
        body = {**BODY, "messages": [{"role": "user", "content": f"story {i}"}], "stop": [" the"]}
        await chat(sc.proxy_port, body, FORCE_CHAOS)
        await chat(sc.proxy_port, body, FORCE_CONTROL)
    report = sc.report("e1")
    assert report is not None
    drift = report["llm"]["drift"]
    assert drift["answer_tokens"]["n_chaos"] == drift["answer_tokens"]["n_control"] == 30
    assert drift["answer_tokens"]["ks_p"] < 0.01 and "ks" in drift["answer_tokens"]["alarms"]
    assert drift["finish_reason"]["chi2_p"] < 0.01
    ks_p = sc.metrics.registry.get_sample_value(
        "mlchaos_llm_drift", {"experiment": "e1", "measure": "answer_tokens", "statistic": "ks_p"})
    assert ks_p is not None and ks_p < 0.01


def test_no_drift_between_identical_answers():
    obs = LlmObserver("e", Metrics().llm)
    for i in range(50):
        for cohort in (0, 1):
            obs.answers[cohort].append((i % 7, "length" if i % 3 else "stop"))
    drift = obs.compute(0.0)
    assert drift["answer_tokens"].ks_p == 1.0 and not drift["finish_reason"].alarms


async def test_the_ttft_guard_trips_when_chaos_first_tokens_are_late(llm, start_sidecar):
    _, url = llm
    sc = await llm_sidecar(start_sidecar, url, [{"type": "first_token_delay", "duration": "200ms"}],
                           kill_switch={"ttft": {"slo": "100ms"}, "errors": {"enabled": False}})
    tripped = None
    for _ in range(30):  # bounded: with every chaos stream late and none of control's, a few dozen suffice
        await chat(sc.proxy_port, BODY, FORCE_CHAOS)
        await chat(sc.proxy_port, BODY, FORCE_CONTROL)
        tripped = sc.experiments.states["e1"].tripped
        if tripped is not None:
            break
    assert tripped is not None and tripped["guard"] == "ttft"
    assert _value(sc, "mlchaos_killswitch_trips_total", guard="ttft") == 1


async def test_the_error_guard_counts_errored_streams(llm, start_sidecar):
    _, url = llm
    sc = await llm_sidecar(start_sidecar, url, [{"type": "stream_error", "after": 1}],
                           kill_switch={"errors": {"enabled": True}})
    tripped = None
    for _ in range(30):
        await chat(sc.proxy_port, BODY, FORCE_CHAOS)
        await chat(sc.proxy_port, BODY, FORCE_CONTROL)
        tripped = sc.experiments.states["e1"].tripped
        if tripped is not None:
            break
    assert tripped is not None and tripped["guard"] in ("errors", "seatbelt")
