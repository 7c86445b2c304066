"""The compiled policy: immutable objects built once at load; the hot path only reads them."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, time
from typing import TYPE_CHECKING, Literal

from .units import Address

if TYPE_CHECKING:
    from ..faults.base import Fault

__all__ = [
    "BUCKETS", "AdminSettings", "CohortOverride", "DailyWindow", "Experiment", "KillSwitch", "Limits", "Match",
    "ObserveSpec", "PayloadSpec", "Policy", "Reveal", "Schedule", "StickyKey", "Timeouts", "Upstream", "Webhook",
]

# Cohorts are assigned by hashing into this many buckets: one bucket is 0.01% of traffic.
BUCKETS = 10_000

StickyKind = Literal["header", "query", "cookie", "client_ip"]


@dataclass(frozen=True, slots=True)
class Upstream:
    name: str
    url: str
    host: str
    port: int
    # Value sent as Host when the client's Host is not preserved (and to HTTP/1.0 clients without one).
    authority: str


@dataclass(frozen=True, slots=True)
class Timeouts:
    connect: float = 2.0
    # Until the upstream's response headers arrive; past it the client gets a 504.
    response: float = 60.0
    # Silence allowed between body chunks in either direction, and on an idle client keep-alive.
    idle: float = 75.0
    # SIGTERM: how long in-flight requests may take to finish before the process exits anyway.
    drain: float = 10.0


@dataclass(frozen=True, slots=True)
class Limits:
    max_header_bytes: int = 64 * 1024
    max_body_bytes: int = 64 * 1024 * 1024
    # Bodies up to this size may be held in memory for inspection; larger ones stream through untouched.
    inspect_body_bytes: int = 1024 * 1024
    # Idle keep-alive connections kept per upstream.
    upstream_pool: int = 256
    # Parsed but unanswered pipelined requests per client connection before reading pauses.
    pipeline_depth: int = 32


@dataclass(frozen=True, slots=True)
class AdminSettings:
    listen: Address = field(default_factory=lambda: Address("127.0.0.1", 9000))
    # The bearer token itself never sits in the policy file: only the variable that holds it.
    token_env: str = "MLCHAOS_ADMIN_TOKEN"


@dataclass(frozen=True, slots=True)
class StickyKey:
    kind: StickyKind
    # Lower-cased header name, query parameter or cookie name; empty for client_ip.
    name: str = ""

    def __str__(self) -> str:
        return self.kind if self.kind == "client_ip" else f"{self.kind}:{self.name}"


@dataclass(frozen=True, slots=True)
class Match:
    methods: frozenset[str] | None = None
    path: re.Pattern[str] | None = None
    # (lower-cased header name, compiled glob of its value)
    headers: tuple[tuple[str, re.Pattern[str]], ...] = ()
    # The policy's text, for GET /experiments and error messages.
    source: Mapping[str, object] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class DailyWindow:
    start: time
    end: time  # may be earlier than start: the window then spans midnight
    days: frozenset[int] = frozenset(range(7))  # Monday = 0, UTC


@dataclass(frozen=True, slots=True)
class Schedule:
    start: datetime | None = None
    end: datetime | None = None
    max_duration: float | None = None
    windows: tuple[DailyWindow, ...] = ()


@dataclass(frozen=True, slots=True)
class Reveal:
    fault: bool = False
    cohort: bool = False


@dataclass(frozen=True, slots=True)
class PayloadSpec:
    """How to read an experiment's inference payloads (for feature and prediction faults and metrics)."""

    # auto detects from the path and body; or one of the adapters: v2, v1, mlflow, generic.
    format: str = "auto"
    # Feature names for layouts that carry none (V2 matrix, V1 list rows, MLflow instances).
    features: tuple[str, ...] = ()
    # generic: RFC 6901 pointers to the features and the predictions.
    features_pointer: str | None = None
    predictions_pointer: str | None = None
    # Which output holds the predictions when there are several.
    output: str | None = None
    # Write NaN as the bare NaN token instead of null (MLServer and KServe V1 reject the token).
    nan_token: bool = False


@dataclass(frozen=True, slots=True)
class ObserveSpec:
    """Prediction bookkeeping for the chaos and control cohorts (off the request path)."""

    predictions: bool = True
    # Bucket edges of mlchaos_prediction_value; empty: learned from the first control predictions, then frozen.
    buckets: tuple[float, ...] = ()
    # Drift compares the last `window` predictions of each cohort, no older than `window_seconds`.
    window: int = 2000
    window_seconds: float = 600.0
    # How often drift statistics are computed.
    drift_interval: float = 5.0
    # Responses read per second at most; past it they are not copied (a uniform sample of the rest is
    # read), which bounds the cost at any load. The counts say how many were read and how many skipped.
    max_rate: float = 500.0
    # Label cardinality bounds: the rest count as __other__.
    max_classes: int = 20
    max_outputs: int = 8
    # Paired shadow comparison: for a chaos request whose features were changed, also send the unchanged
    # request to the same model (off the client's path) and record the damage per request.
    shadow: bool = False
    shadow_concurrency: int = 4


@dataclass(frozen=True, slots=True)
class KillSwitch:
    """Guards comparing chaos against control; on by default, off only when the policy says so."""

    enabled: bool = True
    # Each guard's chance of tripping on an unharmed experiment, over its whole run (anytime-valid).
    alpha: float = 0.01
    errors: bool = True
    include_4xx: bool = False
    # Latency guard: a request slower than this is a bad event; None leaves the guard off.
    latency_slo: float | None = None
    # Time-to-first-token guard (streamed LLM answers): a first token later than this is a bad event.
    ttft_slo: float | None = None
    seatbelt: bool = True
    seatbelt_max_error_rate: float = 0.5
    seatbelt_min_requests: int = 20
    # The gate answers "inconclusive" until the chaos cohort has this many requests.
    min_requests: int = 100


@dataclass(frozen=True, slots=True)
class Webhook:
    url: str
    timeout: float = 2.0


@dataclass(frozen=True, slots=True)
class Experiment:
    name: str
    chaos_buckets: int
    control_buckets: int
    sticky_key: StickyKey | None  # None: a fresh random draw per request
    match: Match
    faults: tuple[Fault, ...]
    schedule: Schedule
    enabled: bool = True
    reveal: Reveal = Reveal()
    kill_switch: KillSwitch = KillSwitch()
    payload: PayloadSpec = PayloadSpec()
    observe: ObserveSpec = ObserveSpec()

    @property
    def chaos_percent(self) -> float:
        return self.chaos_buckets * 100 / BUCKETS

    @property
    def control_percent(self) -> float:
        return self.control_buckets * 100 / BUCKETS


@dataclass(frozen=True, slots=True)
class CohortOverride:
    enabled: bool = False
    # Variable holding the shared token a client must send in x-mlchaos-token to force its cohort.
    token_env: str = "MLCHAOS_OVERRIDE_TOKEN"


@dataclass(frozen=True, slots=True)
class Policy:
    listen: Address
    upstream: Upstream
    upstreams: Mapping[str, Upstream]
    admin: AdminSettings
    max_blast_radius_buckets: int
    timeouts: Timeouts
    limits: Limits
    experiments: tuple[Experiment, ...]
    cohort_override: CohortOverride = CohortOverride()
    # Keep the client's Host header (a sidecar is transparent); false sends the upstream's authority.
    preserve_host: bool = True
    # Fleet-wide stop: every experiment stays off while the policy says so.
    halted: bool = False
    # Where tripped kill switches are remembered across restarts; None keeps them in memory only.
    state_file: str | None = None
    # POSTed (Slack- and Alertmanager-compatible JSON) when a kill switch trips.
    webhook: Webhook | None = None
    # The YAML text this was compiled from, served by GET /policy.
    source: str = ""

    def experiment(self, name: str) -> Experiment | None:
        for exp in self.experiments:
            if exp.name == name:
                return exp
        return None
