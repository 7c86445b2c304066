"""The compiled policy: immutable objects built once at load; the hot path only reads them.

Each policy field is declared once, here, on the frozen dataclass that holds it: ``spec(kind, default,
help=..., bounds)`` or ``section(Class)`` for a nested mapping. The field tables, the loader's checks and
defaults and the JSON Schema are derived from these declarations (``fields.fields_of``); rules that span
fields (shares, blast radius, upstream references, end after start) stay in the loader.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime, time
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, Literal

from ..declare.fields import Field, section, spec
from ..declare.units import Address, parse_address
from ..declare.values import (
    BUCKETS,
    ENV_NAME_RE,
    EXPERIMENT_NAME_RE,
    STICKY_KEY_RE,
    TOKEN_RE,
    UPSTREAM_NAME_RE,
    buckets,
    clock,
    compile_glob,
    env_name,
    experiment_name,
    show,
    upstream_parts,
    utc_datetime,
)
from ..hypothesis import registry as _checks
from ..killswitch import registry as _registry
from ..payload.adapters import ADAPTERS, formats

if TYPE_CHECKING:
    from ..faults.base import Fault

__all__ = [
    "BUCKETS", "PAYLOAD_FORMATS", "PRIMARY_UPSTREAM", "AdminSettings", "CohortOverride", "DailyWindow",
    "Experiment", "GrpcSettings", "GrpcTls", "HypothesisSpec", "KillSwitch", "Limits", "Match", "ObserveSpec",
    "PayloadSpec", "Policy", "Reveal", "SamplesSpec", "Schedule", "ShadowSpec", "StickyKey", "Timeouts", "Upstream",
    "Webhook",
]

StickyKind = Literal["header", "query", "cookie", "client_ip", "entity"]

PRIMARY_UPSTREAM = "primary"
# max_blast_radius itself is capped: above half the traffic it no longer bounds anything useful. A staging
# policy (environment: staging) may put all traffic in chaos: the loader enforces the lower cap otherwise.
MAX_BLAST_RADIUS_PERCENT = 50.0
STAGING_BLAST_RADIUS_PERCENT = 100.0
ENVIRONMENTS = ("production", "staging")
# The formats an experiment's payload may name; "auto" detects one from the path and the body.
# The payload formats are the adapters' own declarations (proxy/payload/adapters/__init__.py is the registry).
PAYLOAD_FORMATS = formats()
_FORMATS_HELP = "auto detects from the path, the headers and the body; or one of: " + "; ".join(
    f"{name} ({adapter.HELP.rstrip('.')})" for name, adapter in ADAPTERS.items())


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/$defs/{name}"}


def _pattern(regex: re.Pattern[str]) -> dict[str, str]:
    return {"type": "string", "pattern": f"^(?:{regex.pattern})$"}


_ADDRESS_SCHEMA: dict[str, Any] = {
    "oneOf": [
        {"type": "string", "pattern": r"^(\[[^\]]+\]|[^\[\]]*):[0-9]{1,5}$"},
        {"type": "integer", "minimum": 0, "maximum": 65535},
    ],
}
_URL_SCHEMA: dict[str, Any] = {"type": "string", "pattern": r"^http://[^/?#]+/?$"}
_CLOCK_SCHEMA: dict[str, Any] = {"type": "string", "pattern": r"^([01]?[0-9]|2[0-3]):[0-5][0-9]$"}
# Not "format": "date-time": the loader also takes a bare date and a time without seconds or zone.
_DATETIME_SCHEMA: dict[str, Any] = {"type": "string", "pattern": r"^[0-9]{4}-[0-9]{2}-[0-9]{2}"}
_POINTER_SCHEMA: dict[str, Any] = {"type": "string", "pattern": "^(/.*)?$"}


def _duration(default: float | None, help: str) -> Any:
    # Every duration the policy itself declares is > 0: a zero timeout or duration means nothing.
    return spec("duration", default, exclusive_minimum=0, help=help)


@dataclass(frozen=True, slots=True)
class Upstream:
    name: str
    url: str
    host: str
    port: int
    # Value sent as Host when the client's Host is not preserved (and to HTTP/1.0 clients without one).
    authority: str


def parse_upstream_url(name: str, url: object) -> Upstream:
    """An upstream from ``http://host[:port][/]``; ``ValueError`` says what is wrong with the URL."""
    host, port, authority = upstream_parts(url)
    return Upstream(name=name, url=str(url), host=host, port=port, authority=authority)


def _primary(url: object) -> Upstream:
    return parse_upstream_url(PRIMARY_UPSTREAM, url)


@dataclass(frozen=True, slots=True)
class Timeouts:
    connect: float = _duration(2.0, "Connecting to an upstream.")
    response: float = _duration(60.0, "Until the upstream's response headers; then 504.")
    idle: float = _duration(75.0, "Silence allowed mid-body, and on an idle keep-alive.")
    # From a connection's first byte (or a kept-alive connection's next request's first byte) until the request
    # head is complete; past it the connection is closed (HAProxy's `timeout http-request`). Slowloris bound.
    header: float = _duration(10.0, "Until a request head is complete; then 408 and the connection closes.")
    # Below the upstream's own keep-alive (uvicorn: 5 s) the proxy closes an idle connection first, so a request
    # rarely races the upstream's close.
    upstream_idle: float = _duration(4.0, "An idle pooled upstream connection is closed after this; keep it below "
                                          "the upstream's keep-alive.")
    drain: float = _duration(10.0, "On SIGTERM, how long in-flight requests may finish.")


@dataclass(frozen=True, slots=True)
class Limits:
    max_header_bytes: int = spec("size", 64 * 1024, minimum=1, help="Largest request or response head.")
    max_body_bytes: int = spec("size", 64 * 1024 * 1024, minimum=1, help="Largest request body.")
    inspect_body_bytes: int = spec("size", 1024 * 1024, minimum=0,
                                   help="Bodies up to this size may be held for inspection; at most max_body_bytes.")
    upstream_pool: int = spec("integer", 256, minimum=1, help="Idle keep-alive connections kept per upstream.")
    pipeline_depth: int = spec("integer", 32, minimum=1,
                               help="Unanswered pipelined requests per client connection before reading pauses.")


@dataclass(frozen=True, slots=True)
class AdminSettings:
    listen: Address = spec("any", "127.0.0.1:9000", schema=_ADDRESS_SCHEMA, parse=parse_address,
                           help="Address of the admin API (kill switch, status).")
    # The bearer token itself never sits in the policy file: only the variable that holds it.
    token_env: str = spec("string", "MLCHAOS_ADMIN_TOKEN", schema=_pattern(ENV_NAME_RE), parse=env_name,
                          help="Environment variable that holds the admin bearer token.")


def _grpc_upstream(value: object) -> Upstream:
    # gRPC users write host:port; an http:// URL (h2c) is the same upstream.
    text = value.strip() if isinstance(value, str) else value
    if isinstance(text, str) and "://" not in text:
        text = f"http://{text}"
    return parse_upstream_url(PRIMARY_UPSTREAM, text)


@dataclass(frozen=True, slots=True)
class GrpcTls:
    cert: str = spec("string", help="PEM certificate chain the gRPC listener presents.")
    key: str = spec("string", help="PEM private key of that certificate.")


@dataclass(frozen=True, slots=True)
class GrpcSettings:
    """A gRPC listener beside the HTTP one (h2c or TLS; HTTP/2 of the sidecar's own). Calls reach
    the experiments as POSTs to their method path (/package.Service/Method) with their metadata as headers;
    faults name fallback upstreams from `upstreams` (dialled as h2c at their host:port)."""

    listen: Address = spec("any", schema=_ADDRESS_SCHEMA, parse=parse_address,
                           help="Address the gRPC listener serves on (h2c, or TLS with tls).")
    upstream: Upstream = spec("string", schema={"type": "string", "pattern": r"^(http://)?[^/?#]+:[0-9]+/?$"},
                              parse=_grpc_upstream, help="The model server's gRPC port: host:port (h2c).")
    tls: GrpcTls | None = section(GrpcTls, default=None, help="Serve TLS instead of h2c.")


@dataclass(frozen=True, slots=True)
class StickyKey:
    kind: StickyKind
    # Lower-cased header name, query parameter or cookie name; empty for client_ip.
    name: str = ""

    def __str__(self) -> str:
        return self.kind if self.kind == "client_ip" else f"{self.kind}:{self.name}"


# metadata:NAME is header:NAME: a gRPC call's metadata are its HTTP/2 headers.
_STICKY_KINDS: dict[str, StickyKind] = {"header": "header", "query": "query", "cookie": "cookie", "entity": "entity",
                                        "metadata": "header"}


def parse_sticky_key(value: str) -> StickyKey:
    m = STICKY_KEY_RE.fullmatch(value.strip())
    if m is None:
        raise ValueError(f"expected header:NAME, metadata:NAME, query:NAME, cookie:NAME, entity:NAME or client_ip, "
                         f"got {show(value)}")
    if m.group(1) is None:
        return StickyKey("client_ip")
    kind, name = _STICKY_KINDS[m.group(1)], m.group(2).strip()
    if not TOKEN_RE.fullmatch(name):
        raise ValueError(f"{show(name)} is not a valid {kind} name")
    # Header (and metadata) names are case-insensitive; query parameters and cookies are not.
    return StickyKey(kind, name.lower() if kind == "header" else name)


@dataclass(frozen=True, slots=True)
class Match:
    methods: frozenset[str] | None = spec("string_list", None, key="method", help="A method or a list of them; or gRPC "
                                                                             "methods (/package.Service/Method).")
    path: re.Pattern[str] | None = spec(
        "string", None, schema={"type": "string", "pattern": "^/"}, parse=compile_glob,
        help="Glob over the path without the query: * within a segment, ** across, ? one character.")
    # (lower-cased header name, compiled glob of its value)
    headers: tuple[tuple[str, re.Pattern[str]], ...] = spec(
        "mapping", None, model_default=(), schema={"type": "object", "additionalProperties": {"type": "string"}},
        help="Header name to a glob of its value (case-sensitive); all must match.")
    # The policy's text, for GET /experiments and error messages.
    source: Mapping[str, object] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class DailyWindow:
    start: time = spec("any", schema=_CLOCK_SCHEMA, parse=clock, help="HH:MM, UTC.")
    # may be earlier than start: the window then spans midnight
    end: time = spec("any", schema=_CLOCK_SCHEMA, parse=clock, help="HH:MM, UTC; earlier than start spans midnight.")
    days: frozenset[int] = spec(  # Monday = 0, UTC
        "any", None, model_default=frozenset(range(7)),
        schema={"type": "array", "minItems": 1, "items": {
            "oneOf": [{"enum": ["mon", "tue", "wed", "thu", "fri", "sat", "sun"]},
                      {"type": "integer", "minimum": 0, "maximum": 6}]}},
        help="mon..sun or 0-6 (Monday = 0); default every day.")


@dataclass(frozen=True, slots=True)
class Schedule:
    start: datetime | None = spec("any", None, schema=_DATETIME_SCHEMA, parse=utc_datetime,
                                  help="ISO-8601; naive means UTC.")
    end: datetime | None = spec("any", None, schema=_DATETIME_SCHEMA, parse=utc_datetime,
                                help="ISO-8601; after start.")
    max_duration: float | None = _duration(None, "Stop this long after the experiment is first enabled.")
    windows: tuple[DailyWindow, ...] = spec("any", None, model_default=(),
                                            schema={"type": "array", "items": _ref("window")},
                                            help="Daily windows (UTC) outside which the experiment stays off.")


@dataclass(frozen=True, slots=True)
class Reveal:
    fault: bool = spec("bool", False, help="Add x-mlchaos-fault to responses a fault acted on.")
    cohort: bool = spec("bool", False, help="Add x-mlchaos-cohort to every response of the experiment.")


@dataclass(frozen=True, slots=True)
class PayloadSpec:
    """How to read an experiment's inference payloads (for feature and prediction faults and metrics)."""

    format: str = spec("choice", "auto", choices=PAYLOAD_FORMATS, help=_FORMATS_HELP)
    features: tuple[str, ...] = spec("string_list", (), help="Feature names for layouts that carry none (V2 matrix, "
                                                             "V1 list rows, MLflow instances).")
    features_pointer: str | None = spec("string", None, schema=_POINTER_SCHEMA,
                                        help="generic: RFC 6901 pointer to the rows or columns of features.")
    predictions_pointer: str | None = spec("string", None, schema=_POINTER_SCHEMA,
                                           help="generic: RFC 6901 pointer to the predictions.")
    output: str | None = spec("string", None, help="The output that holds the predictions when there are several.")
    nan_token: bool = spec("bool", False, help="Write missing values as the bare NaN token instead of null "
                                               "(MLServer and KServe V1 reject it).")
    null_status: str = spec("choice", "NULL_VALUE", choices=("NULL_VALUE", "NOT_FOUND"),
                            help="feast: the status of a value a fault made null.")


@dataclass(frozen=True, slots=True)
class ShadowSpec:
    """Paired shadow comparison: for a chaos request whose features were changed, also send the unchanged
    request to the same model (off the client's path) and record the damage per request."""

    enabled: bool = spec("bool", False, help="Also send the unchanged request of a chaos request whose features "
                                             "changed, off the client's path (in an experiment with no faults of "
                                             "its own, of every chaos request: its faults act at a dependency's "
                                             "sidecar, which leaves the twin alone).")
    max_concurrency: int = spec("integer", 4, minimum=1, maximum=256,
                                help="Shadow requests in flight at most; more are skipped (and counted).")


@dataclass(frozen=True, slots=True)
class ObserveSpec:
    """Prediction bookkeeping for the chaos and control cohorts (off the request path)."""

    predictions: bool = spec("bool", True,
                             help="Read predictions from chaos and control responses (off the request path).")
    # Empty: learned from the first control predictions, then frozen.
    buckets: tuple[float, ...] = spec("number_list", (), help="Bucket edges of mlchaos_prediction_value; "
                                                              "default: learned from the first control predictions.")
    window: int = spec("integer", 2000, minimum=50, maximum=1_000_000,
                       help="Drift compares the last this many predictions of each cohort ...")
    window_seconds: float = _duration(600.0, "... no older than this.")
    drift_interval: float = _duration(5.0, "How often drift statistics are computed.")
    # Past it responses are not copied (a uniform sample of the rest is read); the counts say how many were
    # read and how many skipped.
    max_rate: float = spec("number", 500.0, minimum=1, help="Responses read per second at most; the rest are "
                                                            "skipped (counted), bounding the cost at any load.")
    max_classes: int = spec("integer", 20, minimum=1, maximum=1000,
                            help="Distinct class labels per output; the rest count as __other__.")
    max_outputs: int = spec("integer", 8, minimum=1, maximum=100,
                            help="Distinct output names; the rest count as __other__.")
    shadow: ShadowSpec = section(ShadowSpec)


def _guards() -> Any:
    # The guard registry declares the kill switch's sections; it imports only proxy.declare (no cycle).
    return _registry


@dataclass(frozen=True, slots=True)
class SamplesSpec:
    """Bounded samples of the response tables each cohort was served, written off the request path for
    ``mlchaos expectations`` (a Great Expectations suite run over them). Off unless ``dir`` is set."""

    dir: str | None = spec("string", None, help="Directory the samples go to (DIR/EXPERIMENT/control/ and "
                                                "DIR/EXPERIMENT/chaos/FAULT/); absent writes none.")
    max_rows: int = spec("integer", 1000, minimum=1, maximum=1_000_000,
                         help="Rows kept per cohort and fault, over all its files; the rest are not written.")
    max_files: int = spec("integer", 20, minimum=1, maximum=10_000,
                          help="Responses kept per cohort and fault, one file each.")
    format: str = spec("choice", "jsonl", choices=("jsonl", "csv"),
                       help="jsonl keeps types and nulls; csv is what most tools open.")


@dataclass(frozen=True, slots=True)
class KillSwitch:
    """Guards comparing chaos against control; on by default, off only when the policy says so. Each guard of
    the registry (proxy/killswitch/registry.py) adds its own section, ``kill_switch.<guard name>``."""

    enabled: bool = spec("bool", True,
                         help="false turns every guard off; an experiment that says nothing keeps the defaults on.")
    # Each guard's chance of tripping on an unharmed experiment, over its whole run (anytime-valid).
    alpha: float = spec("probability", 0.01, minimum=1e-9, maximum=0.5,
                        help="Chance that a guard trips on an unharmed experiment, over its whole run.")
    min_requests: int = spec("integer", 100, minimum=1,
                             help="The gate says inconclusive until the chaos cohort has this many requests.")
    # One config per registered guard, in registry order.
    guards: tuple[Any, ...] = field(default_factory=lambda: tuple(g.Config() for g in _guards().GUARDS))

    @staticmethod
    def _extra_fields() -> list[Field]:
        return [Field(g.name, "mapping", None, g.HELP, section=g.Config, ref=f"{g.name}_guard", attr="guards",
                      many=True) for g in _guards().GUARDS]

    def config(self, guard: str) -> Any:
        """The config of the guard named ``guard``."""
        return self.guards[_guards().GUARD_NAMES.index(guard)]

    @classmethod
    def of(cls, **values: Any) -> KillSwitch:
        """Defaults but for ``values``: settings by name, and a guard's config by the guard's name."""
        defaults = cls()
        guards = tuple(values.pop(g.name, config) for g, config in zip(_guards().GUARDS, defaults.guards, strict=True))
        return replace(defaults, guards=guards, **values)


@dataclass(frozen=True, slots=True)
class HypothesisSpec:
    """The experiment's steady-state hypothesis: the checks it declares, each of the check registry
    (proxy/hypothesis/registry.py) under its own section, ``hypothesis.<check name>``; a check whose
    tolerance is not set is not asked."""

    confidence: float = spec("probability", 0.95, minimum=0.5, maximum=0.9999,
                             help="Confidence of every check's interval.")
    # One config per registered check, in registry order.
    checks: tuple[Any, ...] = field(default_factory=lambda: tuple(c.Config() for c in _checks.CHECKS))

    @staticmethod
    def _extra_fields() -> list[Field]:
        return [Field(c.name, "mapping", None, c.HELP, section=c.Config, ref=f"{c.name}_check", attr="checks",
                      many=True) for c in _checks.CHECKS]

    def config(self, check: str) -> Any:
        """The config of the check named ``check``."""
        return self.checks[_checks.CHECK_NAMES.index(check)]

    def asked(self) -> list[tuple[Any, Any]]:
        """(check class, config) of every check the experiment declared, in registry order."""
        return [(c, config) for c, config in zip(_checks.CHECKS, self.checks, strict=True) if c.asked(config)]


@dataclass(frozen=True, slots=True)
class Webhook:
    url: str = spec("string", schema={"type": "string", "pattern": "^https?://[^/]+"},
                    help="POSTed when a kill switch trips: http(s)://host[:port]/path.")
    timeout: float = _duration(2.0, "Give up on the webhook after this long.")


@dataclass(frozen=True, slots=True, kw_only=True)
class Experiment:
    name: str = spec("string", schema=_pattern(EXPERIMENT_NAME_RE), parse=experiment_name, help="Unique name.")
    chaos_buckets: int = spec(
        "percent", key="chaos", minimum=0.01, parse=buckets,
        help="Share of matching traffic in the chaos cohort: 2, 2.5 or \"2%\" (0.01% steps).")
    # None only while loading: the default is a control cohort as large as the chaos one.
    control_buckets: int = spec(
        "percent", None, key="control", parse=buckets,
        help="Share in the control cohort (untouched, measured alike); default the chaos share (0 in staging).")
    enabled: bool = spec("bool", True)
    sticky_key: StickyKey | None = spec(  # None: a fresh random draw per request
        "string", None, schema=_pattern(STICKY_KEY_RE),
        help="header:NAME, metadata:NAME (a gRPC call's; the same as header:NAME), query:NAME, cookie:NAME, client_ip, "
             "or entity:NAME (a Feast request's first entity key "
             "value); absent draws a cohort per request.")
    match: Match = section(Match, help="Which requests; default all.")
    faults: tuple[Fault, ...] = spec("any", None, model_default=(), schema={"type": "array", "items": _ref("fault")},
                                     help="Applied in order to requests of the chaos cohort.")
    schedule: Schedule = section(Schedule)
    reveal: Reveal = section(Reveal, help="Tell clients about faults and cohorts in response headers.")
    kill_switch: KillSwitch = section(
        KillSwitch, help="Stop the experiment when chaos is measurably worse than control (on by default).")
    payload: PayloadSpec = section(PayloadSpec, help="How to read inference payloads: format and feature names.")
    observe: ObserveSpec = section(ObserveSpec, help="Prediction metrics, drift and shadow comparison for this "
                                                     "experiment.")
    hypothesis: HypothesisSpec = section(HypothesisSpec, help="The steady state to check: named checks, each "
                                                              "with a tolerance and a minimum sample.")
    samples: SamplesSpec = section(SamplesSpec, help="Samples of the tables each cohort was served, per fault, "
                                                     "for a data validation suite (mlchaos expectations).")

    @property
    def chaos_percent(self) -> float:
        return self.chaos_buckets * 100 / BUCKETS

    @property
    def control_percent(self) -> float:
        return self.control_buckets * 100 / BUCKETS


@dataclass(frozen=True, slots=True)
class CohortOverride:
    enabled: bool = spec("bool", False,
                         help="Let clients that send the shared token in x-mlchaos-token force their cohort.")
    # Variable holding the shared token a client must send in x-mlchaos-token to force its cohort.
    token_env: str = spec("string", "MLCHAOS_OVERRIDE_TOKEN", schema=_pattern(ENV_NAME_RE), parse=env_name,
                          help="Environment variable that holds the override token.")


@dataclass(frozen=True, slots=True, kw_only=True)
class Policy:
    listen: Address = spec("any", "127.0.0.1:8000", schema=_ADDRESS_SCHEMA, parse=parse_address,
                           help="Address the proxy serves on: host:port, [v6]:port or a port.")
    upstream: Upstream = spec("string", schema=_URL_SCHEMA, parse=_primary,
                              help="The model server: http://host[:port].")
    upstreams: Mapping[str, Upstream] = spec(
        "mapping", None, model_default=MappingProxyType({}),
        schema={"type": "object", "additionalProperties": _URL_SCHEMA,
                "propertyNames": {**_pattern(UPSTREAM_NAME_RE), "not": {"const": PRIMARY_UPSTREAM}}},
        help="Named alternate upstreams that faults such as fallback send to.")
    admin: AdminSettings = section(AdminSettings)
    max_blast_radius_buckets: int = spec(
        "percent", 5, key="max_blast_radius", maximum=STAGING_BLAST_RADIUS_PERCENT, parse=buckets,
        help="Most traffic all enabled experiments together may put in chaos, in percent: at most 50, or 100 "
             "with environment: staging.")
    # staging: no real users behind the traffic, so experiments may take all of it (no control cohort by
    # default); the seatbelt and the hypothesis's absolute checks judge them.
    environment: str = spec("choice", "production", choices=ENVIRONMENTS,
                            help="staging lets experiments take up to 100% of matching traffic (control 0 by "
                                 "default); production caps an experiment at 50% and the blast radius at 50%.")
    timeouts: Timeouts = section(Timeouts)
    limits: Limits = section(Limits)
    # Keep the client's Host header (a sidecar is transparent); false sends the upstream's authority.
    preserve_host: bool = spec("bool", True, help="Forward the client's Host; false sends the upstream's host:port.")
    # Inference usually is idempotent. False: a request whose reused upstream connection closed unanswered is
    # sent again only when its method is (GET, HEAD, OPTIONS, TRACE, PUT, DELETE) or it provably never left
    # (RFC 9110 9.2.2).
    upstream_idempotent: bool = spec("bool", False, help="The model's endpoints are idempotent: a POST whose pooled "
                                                         "connection closed unanswered is resent once.")
    # Fleet-wide stop: every experiment stays off while the policy says so.
    halted: bool = spec("bool", False, help="Keep every experiment off (the fleet-wide stop).")
    cohort_override: CohortOverride = section(CohortOverride)
    experiments: tuple[Experiment, ...] = spec("any", None, model_default=(),
                                               schema={"type": "array", "items": _ref("experiment")})
    # Where tripped kill switches are remembered across restarts; None keeps them in memory only.
    state_file: str | None = spec("string", None, help="File that remembers tripped kill switches across restarts.")
    grpc: GrpcSettings | None = section(GrpcSettings, default=None,
                                        help="A gRPC listener forwarding to the model server's gRPC port.")
    # POSTed (Slack- and Alertmanager-compatible JSON) when a kill switch trips.
    webhook: Webhook | None = section(Webhook, default=None)
    # The YAML text this was compiled from, served by GET /policy.
    source: str = ""

    def experiment(self, name: str) -> Experiment | None:
        for exp in self.experiments:
            if exp.name == name:
                return exp
        return None
