"""Every Prometheus metric of the sidecar, on an injected registry.

Children are built when a policy loads; the hot path only calls ``inc``/``observe`` on them. The families
read from experiment state at scrape time (kill switches, prediction bookkeeping) are defined here too, in
``ExperimentFamilies``, which is given a function that reads that state.
Label values come from the policy (experiment and fault names) or fixed vocabularies, never from requests;
output names and class labels come from model responses, bounded by ``observe.max_outputs``/``max_classes``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, Generic, NamedTuple, TypeVar, cast

from prometheus_client import CollectorRegistry, Counter, Gauge, Info
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector
from prometheus_client.utils import floatToGoString

from . import __version__
from .cohort import COHORT_NAMES, COHORTS, NONE
from .edges.grpc.status import CODE_NAMES as GRPC_CODE_NAMES
from .errors import ERROR_KINDS
from .killswitch.registry import GUARD_NAMES

__all__ = ["CohortMetrics", "ExperimentFamilies", "ExperimentReading", "LlmCohortMetrics", "LlmMetrics", "Metrics",
           "llm_drift_family"]

# Seconds; fine where models answer (1-100 ms) and wide enough for injected multi-second delays.
LATENCY_BUCKETS = (
    0.0005, 0.001, 0.0025, 0.005, 0.0075, 0.01, 0.015, 0.025, 0.04, 0.05, 0.075, 0.1, 0.15, 0.25,
    0.4, 0.5, 0.75, 1.0, 1.5, 2.5, 5.0, 10.0, 30.0, 60.0,
)
# Status classes, and "dropped" for a connection a fault closed without an answer.
CODE_CLASSES = ("1xx", "2xx", "3xx", "4xx", "5xx", "dropped")


class Count:
    """A counter child: a plain float, no lock. The event loop is the only writer."""

    __slots__ = ("value",)

    def __init__(self) -> None:
        self.value = 0.0

    def inc(self, amount: float = 1.0) -> None:
        self.value += amount


class Distribution:
    """A histogram child: per-bucket counts found by bisection, cumulated only at scrape time."""

    __slots__ = ("bounds", "counts", "sum")

    def __init__(self, bounds: tuple[float, ...]) -> None:
        self.bounds = bounds
        self.counts = [0] * (len(bounds) + 1)
        self.sum = 0.0

    def observe(self, value: float) -> None:
        # bisect_left: a value equal to a bound belongs to that bucket (Prometheus buckets are "le"). Written
        # out: compiled, the loop is native, where a call to bisect goes through the module and the C API.
        bounds = self.bounds
        lo, hi = 0, len(bounds)
        while lo < hi:
            mid = (lo + hi) >> 1
            if bounds[mid] < value:
                lo = mid + 1
            else:
                hi = mid
        self.counts[lo] += 1
        self.sum += value

    def exposition(self) -> tuple[list[tuple[str, float]], float]:
        """The cumulative buckets ("le" label, count) and the sum, as a histogram family takes them."""
        running, out = 0, []
        for bound, n in zip((*self.bounds, float("inf")), self.counts, strict=True):
            running += n
            out.append((floatToGoString(bound), float(running)))
        return out, self.sum

    def observe_all(self, values: list[float]) -> None:
        """``observe`` each value: one native loop for a batch (the prediction bookkeeping's)."""
        for v in values:
            self.observe(v)


C = TypeVar("C", Count, Distribution)


class Family(Collector, Generic[C]):
    """Labelled children of one metric. prometheus_client's own children take a lock on every
    update; on the per-request path these are plain attribute updates, read when /metrics is scraped."""

    def __init__(self, name: str, doc: str, labels: Sequence[str], registry: CollectorRegistry,
                 buckets: tuple[float, ...] | None = None) -> None:
        self.name, self.doc, self.labelnames = name, doc, tuple(labels)
        self.buckets = buckets
        self.children: dict[tuple[str, ...], C] = {}
        registry.register(self)

    def labels(self, *values: str) -> C:
        child: C | None = self.children.get(values)
        if child is None:
            if len(values) != len(self.labelnames):
                raise ValueError(f"{self.name} takes labels {self.labelnames}, got {values}")
            child = cast(C, Count() if self.buckets is None else Distribution(self.buckets))
            self.children[values] = child
        return child

    def remove(self, *values: str) -> None:
        self.children.pop(values, None)

    def describe(self) -> Iterable[Metric]:
        return [self._family()]

    def _family(self) -> CounterMetricFamily | HistogramMetricFamily:
        if self.buckets is None:
            return CounterMetricFamily(self.name, self.doc, labels=self.labelnames)
        return HistogramMetricFamily(self.name, self.doc, labels=self.labelnames)

    def collect(self) -> Iterable[Metric]:
        family = self._family()
        children: list[tuple[tuple[str, ...], Count | Distribution]] = list(self.children.items())
        for values, child in children:
            if isinstance(child, Count):
                assert isinstance(family, CounterMetricFamily)
                family.add_metric(list(values), child.value)
            else:
                assert isinstance(family, HistogramMetricFamily)
                running, cumulative = 0, []
                dist: Distribution = child
                for bound, n in zip((*dist.bounds, float("inf")), dist.counts, strict=True):
                    running += n
                    cumulative.append((floatToGoString(bound), running))
                family.add_metric(list(values), cumulative, dist.sum)
        return [family]


class CohortMetrics:
    """Pre-built children for one (experiment, cohort)."""

    __slots__ = ("by_class", "by_grpc", "duration", "experiment", "cohort", "requests", "upstream")

    def __init__(self, m: Metrics, experiment: str, cohort: str) -> None:
        self.by_class = tuple(m.requests.labels(experiment, cohort, c) for c in CODE_CLASSES)
        self.requests = m.requests
        self.experiment, self.cohort = experiment, cohort
        # gRPC calls' children, labelled with the status code's name, built on a call's first use.
        self.by_grpc: dict[int, Count] = {}
        self.duration = m.request_duration.labels(experiment, cohort)
        self.upstream = m.upstream_duration.labels(experiment, cohort)

    def count(self, status: int, seconds: float) -> None:
        self.by_class[status // 100 - 1 if 100 <= status < 600 else 5].value += 1
        self.duration.observe(seconds)

    def count_grpc(self, code: int, seconds: float) -> None:
        """A gRPC call: ``code="<status name>"`` (UNAVAILABLE, OK ...), or "dropped" (``code`` -1)."""
        child = self.by_grpc.get(code)
        if child is None:
            label = GRPC_CODE_NAMES[code] if 0 <= code < len(GRPC_CODE_NAMES) else CODE_CLASSES[5]
            child = self.by_grpc[code] = self.requests.labels(self.experiment, self.cohort, label)
        child.value += 1
        self.duration.observe(seconds)


class Metrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        r = self.registry
        self.requests: Family[Count] = Family(
            "mlchaos_requests", "Requests answered, by experiment, cohort and status class.",
            ["experiment", "cohort", "code"], r)
        self.request_duration: Family[Distribution] = Family(
            "mlchaos_request_duration_seconds", "Time from the request's headers to the response's end, "
            "as the client sees it, injected delays included.", ["experiment", "cohort"], r, LATENCY_BUCKETS)
        self.upstream_duration: Family[Distribution] = Family(
            "mlchaos_upstream_duration_seconds", "Time from sending to the upstream to its response's "
            "headers.", ["experiment", "cohort"], r, LATENCY_BUCKETS)
        self.faults: Family[Count] = Family(
            "mlchaos_faults_injected", "Faults injected, by experiment and fault type.", ["experiment", "fault"], r)
        self.proxy_errors: Family[Count] = Family(
            "mlchaos_proxy_errors", "Failures of the proxy or of the upstream, by kind.", ["kind"], r)
        self.experiment_active = Gauge(
            "mlchaos_experiment_active", "1 while the experiment routes chaos and control traffic.",
            ["experiment"], registry=r)
        self.killswitch_trips: Family[Count] = Family(
            "mlchaos_killswitch_trips", "Kill switch trips, by experiment and the guard that tripped.",
            ["experiment", "guard"], r)
        self.payload_unparsed: Family[Count] = Family(
            "mlchaos_payload_unparsed", "Inference payloads mlchaos could not read and let through untouched, "
            "by experiment, cohort and direction (request, response).", ["experiment", "cohort", "direction"], r)
        self.reloads = Counter(
            "mlchaos_policy_reloads", "Policy loads, by result (ok, invalid).", ["result"], registry=r)
        self.connections = Gauge(
            "mlchaos_client_connections", "Open client connections.", registry=r)
        Info("mlchaos_build", "Version of the sidecar.", registry=r).info({"version": __version__})
        self.errors = {kind: self.proxy_errors.labels(kind) for kind in ERROR_KINDS}
        for result in ("ok", "invalid"):
            self.reloads.labels(result)
        self.untouched = CohortMetrics(self, "", COHORTS[NONE])
        self.llm = LlmMetrics(r)

    def cohorts(self, experiment: str) -> tuple[CohortMetrics, CohortMetrics]:
        chaos, control = COHORT_NAMES
        return CohortMetrics(self, experiment, chaos), CohortMetrics(self, experiment, control)

    def forget_experiment(self, experiment: str, faults: set[str]) -> None:
        """Drop the series of an experiment a reload removed, so dashboards stop showing it."""
        for cohort in COHORT_NAMES:
            for code in (*CODE_CLASSES, *GRPC_CODE_NAMES):
                _remove(self.requests, experiment, cohort, code)
            _remove(self.request_duration, experiment, cohort)
            _remove(self.upstream_duration, experiment, cohort)
        for fault in faults:
            _remove(self.faults, experiment, fault)
        self.llm.forget(experiment)
        for guard in GUARD_NAMES:
            _remove(self.killswitch_trips, experiment, guard)
        for cohort in COHORT_NAMES:
            for direction in ("request", "response"):
                _remove(self.payload_unparsed, experiment, cohort, direction)
        _remove(self.experiment_active, experiment)


def _remove(metric: Family[Count] | Family[Distribution] | Counter | Gauge, *labels: str) -> None:
    try:
        metric.remove(*labels)
    except KeyError:
        pass


# Labelled samples per family key (see ``prediction_families``); a histogram's value is (buckets, sum).
Samples = Mapping[str, list[tuple[list[str], Any]]]


class ExperimentReading(NamedTuple):
    """What /metrics reads of one experiment's run-time state."""

    name: str
    tripped: bool
    e_values: Mapping[str, float]  # per guard: the evidence against "no harm"
    predictions: Samples | None  # PredictionObserver.families(); None when predictions are not observed
    llm_drift: list[tuple[str, str, str, float]]  # LlmObserver.rows(): (experiment, measure, statistic, value)
    # Per hypothesis check, and "verdict" for the combination: 1 held, 0 inconclusive, -1 deviated.
    hypothesis: Mapping[str, float] = {}
    # Fault outcome matrix samples: ([experiment, fault, outcome], count).
    outcomes: Sequence[tuple[list[str], Any]] = ()


class ExperimentFamilies(Collector):
    """The families read from experiment state when /metrics is scraped, through ``read``."""

    def __init__(self, registry: CollectorRegistry, read: Callable[[], Iterable[ExperimentReading]]) -> None:
        self.read = read
        registry.register(self)

    def describe(self) -> Iterable[Metric]:
        return []

    def collect(self) -> Iterable[Metric]:
        readings = list(self.read())
        return [*killswitch_families(readings), llm_drift_family(row for r in readings for row in r.llm_drift),
                hypothesis_family(readings), outcome_family(readings),
                *prediction_families(r.predictions for r in readings if r.predictions is not None)]


def killswitch_families(readings: Iterable[ExperimentReading]) -> list[Metric]:
    tripped = GaugeMetricFamily("mlchaos_killswitch_tripped", "1 once the experiment's kill switch has "
                                "tripped, until it is re-armed.", labels=["experiment"])
    evalue = GaugeMetricFamily("mlchaos_killswitch_evalue", "Evidence against 'no harm' of each guard; "
                               "trips at 1/alpha.", labels=["experiment", "guard"])
    for r in readings:
        tripped.add_metric([r.name], 1.0 if r.tripped else 0.0)
        for guard, value in r.e_values.items():
            evalue.add_metric([r.name, guard], value)
    return [tripped, evalue]


def hypothesis_family(readings: Iterable[ExperimentReading]) -> Metric:
    family = GaugeMetricFamily("mlchaos_hypothesis", "The steady-state hypothesis per check (check=\"verdict\": "
                               "all combined): 1 held, 0 inconclusive, -1 deviated.", labels=["experiment", "check"])
    for r in readings:
        for check, value in r.hypothesis.items():
            family.add_metric([r.name, check], value)
    return family


def outcome_family(readings: Iterable[ExperimentReading]) -> Metric:
    family = CounterMetricFamily("mlchaos_fault_outcomes", "Requests a fault acted on, by how the system "
                                 "answered: rejected (4xx), failed (5xx, dropped), changed (the shadow twin's "
                                 "prediction differs: silent damage), unchanged (absorbed), answered (not "
                                 "compared with a twin).", labels=["experiment", "fault", "outcome"])
    for r in readings:
        for labels, value in r.outcomes:
            family.add_metric(labels, value)
    return family


def prediction_families(observed: Iterable[Samples]) -> list[Metric]:
    """One set of prediction families over every observed experiment's samples."""
    value = HistogramMetricFamily("mlchaos_prediction_value", "Numeric predictions per cohort and output "
                                  "(edges from the policy, or learned from control then frozen).",
                                  labels=["experiment", "cohort", "output"])
    confidence = HistogramMetricFamily("mlchaos_prediction_confidence", "Largest probability of each "
                                       "probability-vector prediction.", labels=["experiment", "cohort", "output"])
    classes = CounterMetricFamily("mlchaos_prediction_class", "Predicted classes per cohort and output (at most "
                                  "max_classes labels; the rest are __other__).",
                                  labels=["experiment", "cohort", "output", "class"])
    drift = GaugeMetricFamily("mlchaos_prediction_drift", "Chaos against control over the sliding window, by "
                              "statistic (psi, ks, ks_p, js, wasserstein, chi2, chi2_p).",
                              labels=["experiment", "output", "statistic"])
    share = GaugeMetricFamily("mlchaos_cohort_share", "Observed share of chaos and control among the two.",
                              labels=["experiment", "cohort"])
    srm = GaugeMetricFamily("mlchaos_sample_ratio_mismatch", "1 when the cohort split is off (chi-square "
                            "p < 0.001): every comparison of the experiment is then suspect.", labels=["experiment"])
    delta = HistogramMetricFamily("mlchaos_shadow_prediction_delta", "Per row, how far a chaos prediction is from "
                                  "the model's answer to the unchanged request.", labels=["experiment", "output"])
    flips = CounterMetricFamily("mlchaos_shadow_flips", "Rows whose predicted label the chaos fault changed.",
                                labels=["experiment", "output"])
    responses = CounterMetricFamily("mlchaos_prediction_responses", "Chaos and control responses for prediction "
                                    "bookkeeping: read, skipped (over observe.max_rate), dropped (queue full).",
                                    labels=["experiment", "result"])
    feature_status = CounterMetricFamily("mlchaos_feature_status", "Feature cells a feature store served per "
                                         "cohort, by Feast status (at most observe.max_outputs feature names; "
                                         "the rest are __other__).",
                                         labels=["experiment", "cohort", "feature", "status"])
    feature_value = HistogramMetricFamily("mlchaos_feature_value", "Numeric feature values served per cohort "
                                          "(edges learned from control, then frozen).",
                                          labels=["experiment", "cohort", "feature"])
    feature_drift = GaugeMetricFamily("mlchaos_feature_drift", "Served feature values, chaos against control "
                                      "over the sliding window, by statistic.",
                                      labels=["experiment", "feature", "statistic"])
    shadow = CounterMetricFamily("mlchaos_shadow_requests", "Shadow requests (the unchanged twin of a chaos "
                                 "request), by result: compared, failed, skipped (over the concurrency cap).",
                                 labels=["experiment", "result"])
    # The keys of PredictionObserver.families(), each to its family; histograms take (buckets, sum).
    targets: dict[str, HistogramMetricFamily | CounterMetricFamily | GaugeMetricFamily] = {
        "value": value, "confidence": confidence, "classes": classes, "drift": drift, "share": share, "srm": srm,
        "shadow_delta": delta, "shadow_flips": flips, "shadow": shadow, "read": responses,
        "feature_status": feature_status, "feature_value": feature_value, "feature_drift": feature_drift,
    }
    for samples in observed:
        for key, labelled in samples.items():
            family = targets[key]
            for labels, v in labelled:
                if isinstance(family, HistogramMetricFamily):
                    family.add_metric(labels, *v)
                else:
                    family.add_metric(labels, v)
    return [value, confidence, classes, drift, share, srm, delta, flips, shadow, responses, feature_status,
            feature_value, feature_drift]


# -- LLM answers (OpenAI-compatible APIs), per experiment and cohort --------------------------------------
# Kept together: proxy/observe/llm.py fills them (the stream meter on the request path, the drift off it).

# Seconds to the first token: from a few milliseconds (a warm small model) to a minute (a queue, a cold start).
TTFT_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.2, 0.3, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 5.0, 10.0, 20.0, 60.0)
# Seconds between content chunks: vLLM's inter-token latency is 5-100 ms; stalls go to tens of seconds.
CHUNK_GAP_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.02, 0.03, 0.05, 0.075, 0.1, 0.15, 0.25, 0.5, 1.0, 2.5, 5.0,
                     10.0, 30.0)
# Chunks or tokens per answer.
LENGTH_BUCKETS = (1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 512.0, 1024.0, 2048.0, 4096.0, 8192.0)
# How a streamed answer ended: a finish_reason then [DONE]; [DONE] with no finish_reason (looks complete,
# was truncated); no [DONE] at all; an error event; the connection cut; the client gone first.
STREAM_OUTCOMES = ("completed", "no_finish", "no_done", "error", "cut", "abandoned")
# finish_reason values counted by name; anything else is "other", an answer without one "none".
FINISH_REASONS = ("stop", "length", "tool_calls", "content_filter", "function_call", "abort", "error", "other",
                  "none")
LLM_DRIFT_MEASURES = ("answer_tokens", "finish_reason")


class LlmCohortMetrics:
    """Pre-built children for one (experiment, cohort): nothing is looked up per chunk."""

    __slots__ = ("chunks", "finish", "gap", "outcomes", "tokens", "ttft")

    def __init__(self, m: LlmMetrics, experiment: str, cohort: str) -> None:
        self.ttft = m.ttft.labels(experiment, cohort)
        self.gap = m.chunk_gap.labels(experiment, cohort)
        self.chunks = m.chunks.labels(experiment, cohort)
        self.tokens = m.tokens.labels(experiment, cohort)
        self.outcomes = {o: m.streams.labels(experiment, cohort, o) for o in STREAM_OUTCOMES}
        self.finish = {r: m.finish.labels(experiment, cohort, r) for r in FINISH_REASONS}


class LlmMetrics:
    def __init__(self, r: CollectorRegistry) -> None:
        self.ttft: Family[Distribution] = Family(
            "mlchaos_llm_time_to_first_token_seconds", "Time from the request's headers to the first content "
            "chunk of a streamed LLM answer, as the client gets it.", ["experiment", "cohort"], r, TTFT_BUCKETS)
        self.chunk_gap: Family[Distribution] = Family(
            "mlchaos_llm_time_between_chunks_seconds", "Time between consecutive content chunks of streamed LLM "
            "answers, as the client gets them.", ["experiment", "cohort"], r, CHUNK_GAP_BUCKETS)
        self.chunks: Family[Distribution] = Family(
            "mlchaos_llm_chunks_per_answer", "Content chunks per streamed LLM answer.", ["experiment", "cohort"], r,
            LENGTH_BUCKETS)
        self.tokens: Family[Distribution] = Family(
            "mlchaos_llm_completion_tokens_per_answer", "Completion tokens per LLM answer (usage when the server "
            "reports it, else one a content chunk).", ["experiment", "cohort"], r, LENGTH_BUCKETS)
        self.streams: Family[Count] = Family(
            "mlchaos_llm_streams", "Streamed LLM answers by how they ended: completed (a finish_reason, then "
            "[DONE]), no_finish, no_done, error, cut, abandoned.", ["experiment", "cohort", "outcome"], r)
        self.finish: Family[Count] = Family(
            "mlchaos_llm_finish_reasons", "LLM answers by finish_reason.", ["experiment", "cohort", "reason"], r)

    def cohorts(self, experiment: str) -> tuple[LlmCohortMetrics, LlmCohortMetrics]:
        return LlmCohortMetrics(self, experiment, COHORTS[0]), LlmCohortMetrics(self, experiment, COHORTS[1])

    def forget(self, experiment: str) -> None:
        for cohort in COHORTS[:2]:
            for family in (self.ttft, self.chunk_gap, self.chunks, self.tokens):
                family.remove(experiment, cohort)
            for outcome in STREAM_OUTCOMES:
                self.streams.remove(experiment, cohort, outcome)
            for reason in FINISH_REASONS:
                self.finish.remove(experiment, cohort, reason)


def llm_drift_family(rows: Iterable[tuple[str, str, str, float]]) -> GaugeMetricFamily:
    """``mlchaos_llm_drift{experiment,measure,statistic}`` from (experiment, measure, statistic, value) rows."""
    family = GaugeMetricFamily(
        "mlchaos_llm_drift", "Chaos against control on LLM answers: answer_tokens (KS, PSI, ...) and "
        "finish_reason (chi-square, PSI, ...).", labels=["experiment", "measure", "statistic"])
    for experiment, measure, statistic, value in rows:
        family.add_metric([experiment, measure, statistic], value)
    return family
