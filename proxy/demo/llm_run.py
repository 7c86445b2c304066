"""``mlchaos demo --llm``: an embedded streaming LLM, a sidecar in front of it, and chat clients under load.

The model (proxy/demo/llm.py) streams like vLLM: 40 ms to the first token, 10 ms a token after it. The chat
clients stream every answer, as chat UIs do, and time it as a user would: time to the first token, whether
the stream ended properly (a finish_reason, then ``[DONE]``), and what went wrong when it did not. The table
is per cohort, from the ``x-mlchaos-cohort`` header the policy reveals; the sidecar's own view (its LLM
metrics, the drift between chaos and control answers, the kill switch) follows. Everything binds free
loopback ports and shuts down after ``duration`` seconds. The policy is ``policies/llm.yaml``.
"""

from __future__ import annotations

import asyncio
import itertools
import random
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

import aiohttp
import orjson

from ..app import Sidecar
from ..policy import load_policy_file
from .llm import LlmServer, start_llm
from .run import HOST, retarget

__all__ = ["LlmCohort", "chat_load", "format_llm_table", "run_llm_demo"]

TOKEN_SECONDS = 0.010
PREFILL_SECONDS = 0.040
USERS = 500
QUESTIONS = ("Tell me a story", "Summarise the news", "Write a haiku about rain", "Explain TCP", "Plan a trip")


def default_llm_policy_path() -> Path:
    here = Path(__file__).resolve().parent
    repo = here.parents[1] / "policies" / "llm.yaml"
    return repo if repo.is_file() else here / "llm.yaml"


@dataclass
class LlmCohort:
    """What the chat clients of one cohort saw."""

    requests: int = 0
    ttft: list[float] = field(default_factory=list)
    tokens: list[int] = field(default_factory=list)
    # completed, no_finish (looks complete: [DONE] without a finish_reason), no_done, error_event, cut,
    # http_<status>, timeout
    outcomes: Counter[str] = field(default_factory=Counter)
    finish: Counter[str] = field(default_factory=Counter)

    def quantile(self, values: list[float], q: float) -> float:
        if not values:
            return float("nan")
        ordered = sorted(values)
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))]

    @property
    def completed(self) -> float:
        return self.outcomes["completed"] / self.requests if self.requests else float("nan")


async def _one_chat(session: aiohttp.ClientSession, url: str, user: int, rng: random.Random,
                    results: dict[str, LlmCohort]) -> None:
    body = {"model": "demo", "messages": [{"role": "system", "content": "You are helpful."},
                                          {"role": "user", "content": rng.choice(QUESTIONS)}],
            "max_tokens": rng.randint(16, 48), "stream": True}
    t0 = time.monotonic()
    outcome, ttft, tokens, finish, done = "cut", None, 0, None, False
    cohort = "none"
    try:
        async with session.post(url + "/v1/chat/completions", json=body,
                                headers={"x-user-id": f"user-{user}"}) as r:
            cohort = r.headers.get("x-mlchaos-cohort", "none")
            if r.status != 200:
                outcome = f"http_{r.status}"
                await r.read()
            else:
                outcome = "no_done"
                while True:
                    line = await r.content.readline()
                    if not line:
                        break
                    if not line.startswith(b"data: "):
                        continue
                    data = line[6:].strip()
                    if data == b"[DONE]":
                        done = True
                        continue
                    doc = orjson.loads(data)
                    if "error" in doc:
                        outcome = "error_event"
                        break
                    for choice in doc.get("choices") or ():
                        if (choice.get("delta") or {}).get("content"):
                            tokens += 1
                            if ttft is None:
                                ttft = time.monotonic() - t0
                        if choice.get("finish_reason"):
                            finish = choice["finish_reason"]
                if outcome == "no_done" and done:
                    outcome = "completed" if finish else "no_finish"
    except (aiohttp.ClientPayloadError, aiohttp.ServerDisconnectedError, aiohttp.ClientOSError):
        outcome = "cut"
    except TimeoutError:
        outcome = "timeout"
    stats = results.setdefault(cohort, LlmCohort())
    stats.requests += 1
    stats.outcomes[outcome] += 1
    if ttft is not None:
        stats.ttft.append(ttft)
    if outcome in ("completed", "no_finish", "no_done"):
        stats.tokens.append(tokens)
        stats.finish[finish or "none"] += 1


async def chat_load(url: str, *, duration: float, concurrency: int = 16, seed: int = 0,
                    max_requests: int | None = None) -> dict[str, LlmCohort]:
    """Chat clients streaming answers from ``url`` for ``duration`` seconds (or ``max_requests``)."""
    results: dict[str, LlmCohort] = {}
    rng = random.Random(seed)
    deadline = time.monotonic() + duration
    counter = itertools.count()
    timeout = aiohttp.ClientTimeout(total=10.0)
    async with aiohttp.ClientSession(timeout=timeout) as session:
        async def worker() -> None:
            while time.monotonic() < deadline:
                n = next(counter)
                if max_requests is not None and n >= max_requests:
                    return
                await _one_chat(session, url, rng.randrange(USERS), rng, results)

        await asyncio.gather(*(worker() for _ in range(concurrency)))
    return results


def _ms(value: float) -> str:
    return "-" if value != value else f"{value * 1000:.0f} ms"


def format_llm_table(results: dict[str, LlmCohort]) -> str:
    head = (f"{'cohort':<8} {'streams':>7} {'TTFT p50':>9} {'TTFT p99':>9} {'completed':>9} {'looks done':>10} "
            f"{'err event':>9} {'cut':>5} {'429':>5} {'tokens':>6}  finish_reason")
    lines = [head, "-" * len(head)]
    for name in ("chaos", "control", "none"):
        c = results.get(name, LlmCohort())
        mean_tokens = sum(c.tokens) / len(c.tokens) if c.tokens else float("nan")
        finish = " ".join(f"{k}={v}" for k, v in c.finish.most_common()) or "-"
        completed = f"{100 * c.completed:.1f}%" if c.requests else "-"
        lines.append(
            f"{name:<8} {c.requests:>7} {_ms(c.quantile(c.ttft, 0.5)):>9} {_ms(c.quantile(c.ttft, 0.99)):>9} "
            f"{completed:>9} {c.outcomes['no_finish']:>10} {c.outcomes['error_event']:>9} "
            f"{c.outcomes['cut'] + c.outcomes['no_done']:>5} {c.outcomes['http_429']:>5} "
            f"{mean_tokens:>6.1f}  {finish}")
    return "\n".join(lines)


def llm_reading(results: dict[str, LlmCohort], sidecar_report: dict[str, Any] | None) -> str:
    chaos, control = results.get("chaos", LlmCohort()), results.get("control", LlmCohort())
    if not chaos.requests:
        return "No stream landed in the chaos cohort: did the run last long enough?"
    parts = [f"chaos streams waited {_ms(chaos.quantile(chaos.ttft, 0.5))} for their first token at the median "
             f"against control's {_ms(control.quantile(control.ttft, 0.5))}",
             f"{100 * chaos.completed:.0f}% of chaos streams ended properly against "
             f"{100 * control.completed:.0f}% of control's"]
    if chaos.outcomes["no_finish"]:
        parts.append(f"{chaos.outcomes['no_finish']} chaos streams ended with [DONE] and no finish_reason: a "
                     "client that only waits for [DONE] took them as complete answers")
    drift = ((sidecar_report or {}).get("llm") or {}).get("drift") or {}
    tokens = drift.get("answer_tokens")
    if tokens is not None and tokens.get("ks_p") is not None:
        parts.append(f"the sidecar's drift check on answer length: KS p = {tokens['ks_p']:.2g}"
                     + (" (alarm)" if tokens.get("alarms") else ""))
    return "; ".join(parts) + "."


async def run_llm_demo(*, duration: float = 20.0, policy_path: str | None = None, out: TextIO = sys.stdout,
                       concurrency: int = 16, seed: int = 0) -> int:
    """Run the LLM demo end to end; 0 on success, 1 when the policy or the sidecar fails."""
    path = Path(policy_path) if policy_path else default_llm_policy_path()
    try:
        policy = load_policy_file(path)
    except Exception as exc:  # PolicyError lists every problem in its message
        print(f"mlchaos demo --llm: cannot load {path}: {exc}", file=out)
        return 1
    model = LlmServer(token_seconds=TOKEN_SECONDS, prefill_seconds=PREFILL_SECONDS)
    runner, model_port = await start_llm(model)
    try:
        policy = retarget(policy, model_port)
        sidecar = Sidecar(policy)
        try:
            await sidecar.start()
        except Exception as exc:
            print(f"mlchaos demo --llm: the sidecar failed to start: {type(exc).__name__}: {exc}", file=out)
            await sidecar.stop(drain=0)
            return 1
        try:
            print(f"mlchaos demo --llm: policy {path}", file=out)
            print(f"  model    http://{HOST}:{model_port}/v1  (OpenAI-compatible, streams like vLLM: "
                  f"{PREFILL_SECONDS * 1000:.0f} ms to the first token, {TOKEN_SECONDS * 1000:.0f} ms a token)",
                  file=out)
            print(f"  sidecar  http://{HOST}:{sidecar.proxy_port}/v1  (admin http://{HOST}:{sidecar.admin_port})",
                  file=out)
            for exp in policy.experiments:
                faults = ", ".join(f"{f.type} p={f.probability:g}" for f in exp.faults) or "no faults"
                print(f"  experiment {exp.name}: chaos {exp.chaos_percent:g}%, control {exp.control_percent:g}%; "
                      f"{faults}", file=out)
            print(f"{concurrency} chat clients streaming for {duration:g} s ...", file=out)
            out.flush()
            results = await chat_load(f"http://{HOST}:{sidecar.proxy_port}", duration=duration,
                                      concurrency=concurrency, seed=seed)
            names = [exp.name for exp in policy.experiments]
            report = sidecar.report(names[0]) if names else None
            trips = {name: st.tripped for name, st in sidecar.experiments.states.items() if st.tripped}
        finally:
            await sidecar.stop()
    finally:
        await runner.cleanup()
    print(file=out)
    print(format_llm_table(results), file=out)
    print(file=out)
    print(llm_reading(results, report), file=out)
    for name, trip in trips.items():
        print(f"The kill switch stopped {name} (guard: {trip.get('guard')}: {trip.get('reason')}); from then on "
              "every stream was left alone.", file=out)
    return 0
