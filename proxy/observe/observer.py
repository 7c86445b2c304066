"""Prediction bookkeeping of one experiment, off the request path.

The data plane hands over copies of chaos and control JSON responses (``submit``: an append to a bounded
queue); the sidecar's background task parses them (``process``), keeps per-cohort windows and histograms,
and computes drift (``compute``). Prometheus reads the result through ``families``.
"""

from __future__ import annotations

import time
from collections import deque
from datetime import UTC, datetime
from typing import Any

from ..cohort import COHORT_NAMES
from ..metrics import Distribution, Samples
from ..payload import AdapterOptions, BaseAdapter, detect, get_adapter, loads
from ..payload.adapters import RESPONSE
from ..payload.adapters.v2_grpc import GRPC_INFER_PATH, GrpcDoc
from ..payload.table import all_floats, number_rows
from ..policy.model import ObserveSpec, PayloadSpec
from .drift import DriftReport, learn_edges
from .features import FeatureStats
from .outcomes import FaultOutcomes
from .srm import SrmResult, srm_check
from .window import DriftHistory, PredictionWindows

__all__ = ["CONFIDENCE_BUCKETS", "PredictionObserver"]

CONFIDENCE_BUCKETS = (0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 0.99, 1.0)
# Control predictions learned from before a numeric output's histogram edges freeze.
LEARN_FROM = 200
# Responses waiting to be parsed; past this, copies are dropped (and counted) rather than queued.
MAX_QUEUE = 10_000
# Absolute differences between a chaos prediction and the unchanged request's.
SHADOW_BUCKETS = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.2, 0.3, 0.5, 0.75, 1.0, 2.0, 5.0)


class _Output:
    __slots__ = ("classes", "confidence", "edges", "kind", "pending", "values")

    def __init__(self, kind: str, edges: tuple[float, ...]) -> None:
        self.kind = kind
        self.edges = edges
        self.values: dict[str, Distribution] = {}
        self.pending: dict[str, list[float]] = {c: [] for c in COHORT_NAMES}
        self.confidence = {c: Distribution(CONFIDENCE_BUCKETS) for c in COHORT_NAMES}
        self.classes: dict[tuple[str, str], int] = {}


class PredictionObserver:
    def __init__(self, experiment: str, spec: ObserveSpec, payload: PayloadSpec, options: AdapterOptions) -> None:
        self.experiment = experiment
        self.spec = spec
        self.payload = payload
        self.options = options
        self.queue: deque[tuple[int, str, list[bytes]]] = deque()
        self.windows = PredictionWindows(spec.window, spec.window_seconds, max_classes=spec.max_classes,
                                         max_outputs=spec.max_outputs)
        self.history = DriftHistory()
        self.outputs: dict[str, _Output] = {}
        self.drift: dict[str, DriftReport] = {}
        self.srm: SrmResult | None = None
        self.dropped = 0
        # Responses the data plane may still copy before the next refill (observe.max_rate per second).
        self.budget = spec.max_rate
        self.skipped = 0
        self.read_total = 0
        self.unparsed = [0, 0]
        self.last_compute = 0.0
        # Shadow comparison: (target, original body, chaos answer) waiting to be sent, and what was found.
        self.shadow_queue: deque[tuple[str, bytes, list[bytes], list[tuple[str, str]], list[str]]] = deque()
        self.shadow_in_flight = 0
        self.shadow_results = {"compared": 0, "failed": 0, "skipped": 0}
        self.shadow_delta: dict[str, Distribution] = {}
        self.shadow_flips: dict[str, int] = {}
        self.shadow_rows: dict[str, int] = {}
        # Rows whose prediction the fault left unchanged (label or argmax; an equal number): hypothesis agreement.
        self.shadow_same: dict[str, int] = {}
        # The experiment's fault outcome matrix (shared with its state; the twins settle answered requests).
        self.outcomes = FaultOutcomes()
        # A feature store's answers (no predictions in them): statuses, values and drift per feature, with
        # max_outputs bounding the feature names as it bounds the outputs.
        self.features = FeatureStats(spec.max_outputs, spec.window, spec.window_seconds, spec.max_classes)

    # -- the data plane's side: O(1)
    def wants(self) -> bool:
        """Whether the next response should be copied at all (the parse budget is not spent)."""
        if self.budget > 0:
            return True
        self.skipped += 1
        return False

    def refill(self, seconds: float) -> None:
        """Called by the background task every tick: the budget of the next ``seconds``."""
        self.budget = self.spec.max_rate * seconds

    def submit(self, cohort: int, path: str, chunks: list[bytes]) -> None:
        self.budget -= 1
        if len(self.queue) >= MAX_QUEUE:
            self.dropped += 1
            return
        self.queue.append((cohort, path, chunks))

    def submit_shadow(self, target: str, original: bytes, chaos_answer: list[bytes],
                      headers: list[tuple[str, str]], faults: list[str] | None = None) -> None:
        """A chaos request whose features changed: compare later with the model's answer to the original,
        asked with the client's own end-to-end ``headers`` (authorization, content type, tenant ids)."""
        if len(self.shadow_queue) + self.shadow_in_flight >= self.spec.shadow.max_concurrency:
            self.shadow_results["skipped"] += 1  # the cap bounds extra upstream load
            return
        self.shadow_queue.append((target, original, chaos_answer, headers, faults or []))

    def compare_shadow(self, target: str, chaos_body: bytes, shadow_body: bytes,
                       faults: list[str] | None = None) -> bool:
        """Record, row by row, how far the chaos answer is from the answer to the unchanged request; the
        request counts as changed or unchanged for each of its ``faults`` in the outcome matrix."""
        path = target.partition("?")[0]
        try:
            chaos_doc, shadow_doc = loads(chaos_body), loads(shadow_body)
        except ValueError:
            self.shadow_results["failed"] += 1
            return False
        adapter = self._adapter(path, shadow_doc)
        a = adapter.predictions(chaos_doc, self.options) if adapter is not None else None
        b = adapter.predictions(shadow_doc, self.options) if adapter is not None else None
        if not a or not b:
            self.shadow_results["failed"] += 1
            return False
        changed = False
        for name in list(b)[: self.spec.max_outputs]:
            if name not in a or len(a[name]) != len(b[name]):
                changed = True
                continue
            for x, y in zip(a[name], b[name], strict=True):
                changed = not self._shadow_pair(name, x, y) or changed
        self.shadow_results["compared"] += 1
        if faults:
            self.outcomes.settle(faults, changed)
        return True

    def _shadow_pair(self, output: str, chaos: Any, original: Any) -> bool:
        """Record one row; True when its prediction is unchanged."""
        if chaos is None or original is None:
            return chaos is original
        self.shadow_rows[output] = self.shadow_rows.get(output, 0) + 1
        if isinstance(original, list) and isinstance(chaos, list) and len(chaos) == len(original) and original:
            flipped = chaos.index(max(chaos)) != original.index(max(original))
            delta = max(abs(float(p) - float(q)) for p, q in zip(chaos, original, strict=True))
        elif isinstance(original, float) and isinstance(chaos, int | float):
            flipped, delta = False, abs(float(chaos) - original)
        else:
            flipped, delta = chaos != original, None
        same = not flipped and not (isinstance(original, float) and delta)
        if flipped:
            self.shadow_flips[output] = self.shadow_flips.get(output, 0) + 1
        elif same:
            self.shadow_same[output] = self.shadow_same.get(output, 0) + 1
        if delta is not None:
            dist = self.shadow_delta.get(output)
            if dist is None:
                dist = self.shadow_delta[output] = Distribution(SHADOW_BUCKETS)
            dist.observe(delta)
        return same

    # -- the background task's side
    def process(self, now: float | None = None, limit: int | None = None) -> int:
        """Parse what the data plane queued (at most ``limit`` responses); returns how many were taken."""
        t = time.monotonic() if now is None else now
        done = 0
        queue = self.queue
        # Predictions of the whole slice per (output, cohort): the windows take each batch in one numpy call.
        batch: dict[tuple[str, str], list[Any]] = {}
        while queue and (limit is None or done < limit):
            cohort, path, chunks = queue.popleft()
            done += 1
            if not self._read(COHORT_NAMES[cohort], path, b"".join(chunks), batch, t):
                self.unparsed[cohort] += 1
        for (name, cohort_name), values in batch.items():
            self._record(name, cohort_name, values, t)
        self.read_total += done
        return done

    def _adapter(self, path: str, doc: Any) -> BaseAdapter | None:
        if self.payload.format != "auto":
            return get_adapter(self.payload.format)
        return detect(path, doc, options=self.options)

    def _read(self, cohort: str, path: str, body: bytes, batch: dict[tuple[str, str], list[Any]],
              t: float) -> bool:
        doc: Any
        adapter: BaseAdapter | None
        if GRPC_INFER_PATH.search(path) is not None:  # a gRPC ModelInfer answer: protobuf (proxy/edges/grpc)
            doc, adapter = GrpcDoc.of(body, RESPONSE), get_adapter("v2_grpc")
            if doc is None:
                return False
        else:
            try:
                doc = loads(body)
            except ValueError:
                return False
            adapter = self._adapter(path, doc)
        if adapter is None:
            return False
        preds = adapter.predictions(doc, self.options)
        if not preds:
            # A feature store answers with features: what the application was fed, per cohort.
            parsed = adapter.read(doc, self.options, direction=RESPONSE) if RESPONSE in adapter.READS else None
            if parsed is None:
                return False
            table = parsed.table
            self.features.add(cohort, table.names, table.columns, adapter.cell_statuses(parsed), t)
            return True
        for name, values in preds.items():
            batch.setdefault((name, cohort), []).extend(values)
        return True

    def _record(self, name: str, cohort: str, values: list[Any], t: float) -> None:
        present = [v for v in values if v is not None]
        if not present:
            return
        # The common cases (vectors of JSON numbers, plain floats) are told apart by native passes.
        width = number_rows(present)
        if width > 0 or all(isinstance(v, list) for v in present):
            kind = "probability"
        elif all_floats(present):
            kind = "numeric"
        else:
            kind = "class"  # labels: strings, integers, booleans
        ow = self.windows.output(name, kind)
        if ow is None or ow.kind != kind:
            return  # past max_outputs, or an output that changed kind: not recorded
        out = self.outputs.get(name)
        if out is None:
            out = self.outputs[name] = _Output(kind, self.spec.buckets)
        if kind == "numeric":
            self.windows.add_numeric(name, cohort, present, t)
            self._histogram(out, cohort, present)
        elif kind == "probability":
            vectors = present if width > 0 else _vectors(present)
            recorded = self.windows.add_probabilities(name, cohort, vectors, t) if vectors else None
            if recorded is not None:
                confidence, classes = recorded
                out.confidence[cohort].observe_all(confidence)
                for i, n in classes:
                    self._count_class(out, ow.classes.label_at(i), cohort, n)
        else:
            self.windows.add_classes(name, cohort, present, t)
            for v in present:
                self._count_class(out, ow.classes.label_for(v), cohort)

    @staticmethod
    def _count_class(out: _Output, label: str, cohort: str, n: int = 1) -> None:
        key = (cohort, label)
        out.classes[key] = out.classes.get(key, 0) + n

    def _histogram(self, out: _Output, cohort: str, values: list[float]) -> None:
        if not out.edges:
            out.pending[cohort].extend(values)
            control = out.pending["control"]
            if len(control) < LEARN_FROM:
                if len(out.pending[cohort]) > 50 * LEARN_FROM:
                    del out.pending[cohort][:-LEARN_FROM]  # chaos alone never sets the edges; bound it
                return
            out.edges = learn_edges(control)
            backlog, out.pending = out.pending, {c: [] for c in COHORT_NAMES}
            for c, vs in backlog.items():
                self._histogram(out, c, vs)
            return
        dist = out.values.get(cohort)
        if dist is None:
            dist = out.values[cohort] = Distribution(out.edges)
        dist.observe_all(values)

    def compute(self, n_chaos: int, n_control: int, chaos_share: float, control_share: float,
                now: float | None = None) -> bool:
        """Drift per output and the sample-ratio check; True when the SRM verdict changed to a mismatch."""
        t = time.monotonic() if now is None else now
        stamp = datetime.now(UTC).isoformat(timespec="seconds")
        for name in list(self.windows.outputs):
            report = self.windows.drift(name, t)
            if report is None:
                continue
            self.drift[name] = report
            self.history.append(stamp, name, report)
        self.features.compute(t)
        self.last_compute = t
        before = self.srm.mismatch if self.srm is not None else False
        self.srm = srm_check(n_chaos, n_control, chaos_share, control_share) if n_chaos + n_control else None
        return self.srm is not None and self.srm.mismatch and not before

    # -- what Prometheus and the report read
    def families(self) -> Samples:
        """Samples per metric family, for ``metrics.prediction_families`` to merge across experiments."""
        exp = self.experiment
        value: list[tuple[list[str], Any]] = []
        confidence: list[tuple[list[str], Any]] = []
        classes: list[tuple[list[str], Any]] = []
        drift: list[tuple[list[str], Any]] = []
        for name, out in self.outputs.items():
            for cohort, dist in out.values.items():
                value.append(([exp, cohort, name], dist.exposition()))
            if out.kind == "probability":
                for cohort in COHORT_NAMES:
                    confidence.append(([exp, cohort, name], out.confidence[cohort].exposition()))
            for (cohort, label), n in out.classes.items():
                classes.append(([exp, cohort, name, label], float(n)))
        for name, report in self.drift.items():
            for stat, v in report.statistics().items():
                drift.append(([exp, name, stat], v))
        share: list[tuple[list[str], Any]] = []
        srm: list[tuple[list[str], Any]] = []
        if self.srm is not None:
            share = [([exp, c], self.srm.observed_share[c]) for c in COHORT_NAMES]
            srm = [([exp], 1.0 if self.srm.mismatch else 0.0)]
        delta = [([exp, name], dist.exposition()) for name, dist in self.shadow_delta.items()]
        flips = [([exp, name], float(self.shadow_flips.get(name, 0))) for name in self.shadow_rows]
        shadow = [([exp, result], float(n)) for result, n in self.shadow_results.items()]
        read = [([exp, "read"], float(self.read_total)), ([exp, "skipped"], float(self.skipped)),
                ([exp, "dropped"], float(self.dropped))]
        return {"value": value, "confidence": confidence, "classes": classes, "drift": drift, "share": share,
                "srm": srm, "shadow_delta": delta, "shadow_flips": flips, "shadow": shadow, "read": read,
                **self.features.families(exp)}

    def report(self, now: float | None = None) -> dict[str, Any]:
        t = time.monotonic() if now is None else now
        return {
            "outputs": self.windows.report_outputs(t),
            "drift_history": self.history.to_list(),
            "srm": self.srm.to_dict() if self.srm is not None else None,
            "window": {"predictions": self.spec.window, "seconds": self.spec.window_seconds},
            "dropped": self.dropped, "skipped": self.skipped, "read": self.read_total,
            "unparsed": dict(zip(COHORT_NAMES, self.unparsed, strict=True)),
            "shadow": {**self.shadow_results, "rows": self.shadow_rows, "flips": self.shadow_flips},
            "features": self.features.report(t),
        }


def _vectors(present: list[list[Any]]) -> list[list[Any]] | None:
    """The probability vectors of a batch of lists that are not all plain numbers: the non-empty vectors of
    numbers (bools count), when they all have one length; None otherwise."""
    vectors = [v for v in present if v and all(isinstance(x, (int, float)) for x in v)]
    return vectors if vectors and len({len(v) for v in vectors}) == 1 else None



