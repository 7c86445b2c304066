"""LLM answers per cohort: a meter on each chaos and control exchange of an OpenAI-compatible path, and the
experiment's bookkeeping behind it.

``StreamMeter`` sees the bytes the client gets, when it gets them (the edge calls ``sent`` as it writes,
after every fault's hook, holds included), and frames them into events: per event a classification by byte
patterns (``openai.classify``) and a histogram observation, nothing parsed. It gives the time to the first
content chunk, the time between chunks, chunks and tokens per answer, the finish_reason, and how the stream
ended; an answer that failed in-stream (an error event, or no ``[DONE]``) is reported back to the exchange,
which records it as dropped, the way the kill switch counts a cut. A whole (``stream: false``) answer is kept
by reference, at most ``MAX_BODY`` bytes, and parsed later.

``LlmObserver`` (one per experiment) holds the metric children, and, off the request path (the sidecar's
background task calls ``process`` and ``compute``), parses the whole answers and compares chaos with control:
answer length (completion tokens) with the numeric drift statistics, finish_reason with the categorical ones.
"""

from __future__ import annotations

from collections import deque
from typing import Any

from ..metrics import FINISH_REASONS, LlmCohortMetrics, LlmMetrics
from ..payload.adapters.openai import CONTENT, DONE, ERROR, FINISH, OTHER, classify, completion_tokens, endpoint
from ..payload.adapters.openai import finish_reason as finish_of
from ..payload.codec import loads
from ..payload.sse import SseFramer, data_of
from .drift import DriftReport, compare_classes, compare_numeric

__all__ = ["MAX_ANSWERS", "MAX_BODY", "LlmObserver", "StreamMeter"]

# Whole answers kept for parsing off the path (by reference, not copied): each at most this many bytes.
MAX_BODY = 65536
# Whole answers waiting to be parsed; past this, new ones are skipped (and counted).
MAX_PENDING = 2000
# Answers per cohort in the drift comparison: the most recent ones.
MAX_ANSWERS = 5000
_SUFFIXES = ("/completions", "/embeddings", "/completions/", "/embeddings/")
_KNOWN = frozenset(FINISH_REASONS)


class StreamMeter:
    """One chaos or control answer of an OpenAI-compatible path, measured as it leaves the proxy."""

    __slots__ = ("body", "chunks", "cohort", "done", "error", "finish", "first", "framer", "last", "m", "obs",
                 "size", "sse", "t0", "tokens")

    def __init__(self, obs: LlmObserver, cohort: int, t0: float, sse: bool) -> None:
        self.obs = obs
        self.m: LlmCohortMetrics = obs.children()[cohort]
        self.cohort = cohort
        self.t0 = t0
        self.sse = sse
        self.framer = SseFramer()
        self.first = -1.0
        self.last = 0.0
        self.chunks = 0
        self.tokens = -1
        self.finish: str | None = None
        self.done = False
        self.error = False
        self.body: list[bytes] | None = None if sse else []
        self.size = 0

    def sent(self, data: bytes, now: float) -> None:
        """Bytes of the answer, written to the client at ``now``."""
        if not self.sse:
            body = self.body
            if body is not None:
                self.size += len(data)
                if self.size > MAX_BODY:
                    self.body = None
                else:
                    body.append(data)
            return
        for ev in self.framer.feed(data):
            d = data_of(ev)
            kind = classify(d)
            if d is None:
                continue
            if kind == CONTENT:
                if self.first < 0.0:
                    self.first = now
                    self.m.ttft.observe(now - self.t0)
                else:
                    self.m.gap.observe(now - self.last)
                self.last = now
                self.chunks += 1
            elif kind == DONE:
                self.done = True
                continue
            elif kind == ERROR:
                self.error = True
                continue
            if kind == CONTENT or kind == FINISH:
                reason = finish_of(d)
                if reason is not None:
                    self.finish = reason
            if (kind == CONTENT or kind == FINISH or kind == OTHER) and d.find(b"completion_tokens") >= 0:
                used = completion_tokens(d)
                if used is not None:
                    self.tokens = used

    def ttft(self, now: float) -> float:
        """Seconds to the first content chunk; with none, the whole wait."""
        return (self.first if self.first >= 0.0 else now) - self.t0

    def close(self, status: int, abandoned: bool) -> bool:
        """The exchange is over (``status`` 0: the connection was cut). True when the stream failed where its
        HTTP status cannot say so: an error event, or no ``[DONE]``."""
        obs, m = self.obs, self.m
        if not self.sse:
            if self.body is not None and 200 <= status < 300 and not abandoned:
                obs.submit(self.cohort, self.body)
            self.body = None
            return False
        if abandoned:
            outcome = "abandoned"
        elif self.error:
            outcome = "error"
        elif status == 0:
            outcome = "cut"
        elif self.done:
            outcome = "completed" if self.finish is not None else "no_finish"
        else:
            outcome = "no_done"
        m.outcomes[outcome].value += 1
        reason = self.finish if self.finish is not None else "none"
        m.finish[reason if reason in _KNOWN else "other"].value += 1
        m.chunks.observe(self.chunks)
        tokens = self.tokens if self.tokens >= 0 else self.chunks
        m.tokens.observe(tokens)
        obs.answers[self.cohort].append((tokens, reason))
        return outcome == "error" or outcome == "no_done"


class LlmObserver:
    """The LLM bookkeeping of one experiment."""

    def __init__(self, experiment: str, metrics: LlmMetrics) -> None:
        self.experiment = experiment
        self.metrics = metrics
        self._children: tuple[LlmCohortMetrics, LlmCohortMetrics] | None = None
        self.pending: deque[tuple[int, list[bytes]]] = deque()
        self.skipped = 0
        self.answers: tuple[deque[tuple[int, str]], deque[tuple[int, str]]] = (
            deque(maxlen=MAX_ANSWERS), deque(maxlen=MAX_ANSWERS))
        self.drift: dict[str, DriftReport] = {}
        self.last_compute = float("-inf")

    def children(self) -> tuple[LlmCohortMetrics, LlmCohortMetrics]:
        """The metric children, made on the first LLM answer: an experiment that sees none shows no series."""
        if self._children is None:
            self._children = self.metrics.cohorts(self.experiment)
        return self._children

    # -- the request path: O(1)
    def meter(self, cohort: int, path: str, t0: float, head: bytes) -> StreamMeter | None:
        """A meter for a 2xx answer of a chaos or control exchange (``head``: its header block, for the
        content type), or None when the path is not an LLM API's: one ``endswith`` for other traffic."""
        if not path.endswith(_SUFFIXES) or endpoint(path) is None:
            return None
        return StreamMeter(self, cohort, t0, head.lower().find(b"event-stream") >= 0)

    def submit(self, cohort: int, body: list[bytes]) -> None:
        if len(self.pending) >= MAX_PENDING:
            self.skipped += 1
            return
        self.pending.append((cohort, body))

    # -- off the path: the sidecar's background task
    def process(self, limit: int | None = None) -> int:
        """Parse waiting whole answers: finish_reason and completion tokens, into the metrics and windows."""
        n = 0
        while self.pending and (limit is None or n < limit):
            cohort, parts = self.pending.popleft()
            n += 1
            try:
                doc = loads(b"".join(parts))
            except ValueError:
                continue
            if not isinstance(doc, dict) or not isinstance(doc.get("choices"), list):
                continue  # embeddings, or something else: no answer to measure
            m = self.children()[cohort]
            reasons = [c.get("finish_reason") for c in doc["choices"] if isinstance(c, dict)]
            reason = next((r for r in reasons if isinstance(r, str)), "none")
            m.finish[reason if reason in _KNOWN else "other"].value += 1
            usage = doc.get("usage")
            tokens = usage.get("completion_tokens") if isinstance(usage, dict) else None
            if isinstance(tokens, int):
                m.tokens.observe(tokens)
                self.answers[cohort].append((tokens, reason))
        return n

    def compute(self, now: float) -> dict[str, DriftReport]:
        """Chaos against control: answer length and finish_reason, over the most recent answers."""
        self.last_compute = now
        control, chaos = list(self.answers[1]), list(self.answers[0])
        out: dict[str, DriftReport] = {}
        if len(control) >= 2 and len(chaos) >= 2:
            out["answer_tokens"] = compare_numeric([float(t) for t, _ in control], [float(t) for t, _ in chaos])
            out["finish_reason"] = compare_classes(_counts(control), _counts(chaos))
        self.drift = out
        return out

    def rows(self) -> list[tuple[str, str, str, float]]:
        """(experiment, measure, statistic, value) for ``mlchaos_llm_drift``."""
        return [(self.experiment, measure, stat, value)
                for measure, report in self.drift.items() for stat, value in report.statistics().items()]

    def report(self) -> dict[str, Any]:
        """Per cohort: streams by outcome, finish_reasons, time to first token and between chunks; drift."""
        cohorts: dict[str, Any] = {}
        if self._children is not None:
            for name, m in zip(("chaos", "control"), self._children, strict=True):
                cohorts[name] = {
                    "streams": {k: int(c.value) for k, c in m.outcomes.items() if c.value},
                    "finish_reasons": {k: int(c.value) for k, c in m.finish.items() if c.value},
                    "ttft_seconds": _quantiles(m.ttft.bounds, m.ttft.counts),
                    "chunk_gap_seconds": _quantiles(m.gap.bounds, m.gap.counts),
                    "answers": sum(m.tokens.counts), "tokens_sum": m.tokens.sum,
                }
        return {"cohorts": cohorts, "drift": {k: v.to_dict() for k, v in self.drift.items()},
                "skipped": self.skipped}


def _counts(answers: list[tuple[int, str]]) -> dict[str, float]:
    out: dict[str, float] = {}
    for _, reason in answers:
        out[reason] = out.get(reason, 0.0) + 1.0
    return out


def _quantiles(bounds: tuple[float, ...], counts: list[int]) -> dict[str, float | None]:
    """p50 and p99 as the upper bound of the histogram bucket they fall in (None: no data, or past the last)."""
    total = sum(counts)
    out: dict[str, float | None] = {"count": float(total)}
    for name, q in (("p50", 0.5), ("p99", 0.99)):
        if not total:
            out[name] = None
            continue
        running = 0
        value: float | None = None
        for bound, n in zip((*bounds, float("inf")), counts, strict=True):
            running += n
            if running >= q * total:
                value = bound if bound != float("inf") else None
                break
        out[name] = value
    return out
