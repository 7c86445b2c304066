"""Policy loading: YAML text to the frozen ``Policy``, or a ``PolicyError`` that lists every problem.

The field tables below drive both the checks here and ``policy_schema()``; rules that span fields or
objects (shares, blast radius, upstream references) are checked after the tables have been read.
"""

from __future__ import annotations

import copy
import fnmatch
import itertools
import re
import reprlib
from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime, time
from os import PathLike
from pathlib import Path
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, NoReturn
from urllib.parse import urlsplit

import yaml

# A module import, not ``from ..faults import parse_fault``: proxy.faults imports proxy.policy, so
# whichever of the two is imported first finds the other half-initialised.
from .. import faults as _faults
from .errors import Errors, PolicyError
from .fields import Field, fields_schema, read_fields
from .model import (
    BUCKETS,
    AdminSettings,
    CohortOverride,
    DailyWindow,
    Experiment,
    KillSwitch,
    Limits,
    Match,
    ObserveSpec,
    PayloadSpec,
    Policy,
    Reveal,
    Schedule,
    StickyKey,
    StickyKind,
    Timeouts,
    Upstream,
    Webhook,
)
from .units import Address, parse_address

if TYPE_CHECKING:
    from ..faults.base import Fault

__all__ = [
    "ADMIN_FIELDS",
    "COHORT_OVERRIDE_FIELDS",
    "ERROR_GUARD_FIELDS",
    "EXPERIMENT_FIELDS",
    "KILL_SWITCH_FIELDS",
    "LATENCY_GUARD_FIELDS",
    "LIMITS_FIELDS",
    "MATCH_FIELDS",
    "POLICY_FIELDS",
    "REVEAL_FIELDS",
    "SCHEDULE_FIELDS",
    "SEATBELT_FIELDS",
    "TIMEOUTS_FIELDS",
    "WEBHOOK_FIELDS",
    "WINDOW_FIELDS",
    "compile_glob",
    "compile_policy",
    "load_policy_file",
    "load_policy_text",
    "parse_upstream_url",
]

# An experiment's chaos and control cohorts together stay a minority of the traffic it sees.
MAX_EXPERIMENT_SHARE_BUCKETS = BUCKETS // 2
# max_blast_radius itself is capped: above half the traffic it no longer bounds anything useful.
MAX_BLAST_RADIUS_PERCENT = 50.0
PRIMARY_UPSTREAM = "primary"

EXPERIMENT_NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,62}")
UPSTREAM_NAME_RE = re.compile(r"[a-z0-9_-]+")
ENV_NAME_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
# RFC 9110 token: header names and methods.
TOKEN_RE = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")
STICKY_KEY_RE = re.compile(r"(header|query|cookie):(.+)|client_ip")
CLOCK_RE = re.compile(r"(\d{1,2}):(\d{2})")
DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")

Upstreams = Mapping[str, Upstream]
HeaderGlobs = tuple[tuple[str, re.Pattern[str]], ...]

_REPR = reprlib.Repr()
_REPR.maxstring = 80
_REPR.maxother = 80


def _show(value: object) -> str:
    """A bounded repr: a policy value quoted in an error message may be arbitrarily large."""
    return _REPR.repr(value)


# --- Schema fragments for values the generic field kinds cannot describe -------------------------------

def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/$defs/{name}"}


def _kind_schema(kind: Any) -> dict[str, Any]:
    """The generic JSON Schema of a field kind, as ``fields_schema`` writes it (a private deep copy)."""
    return copy.deepcopy(fields_schema((Field("x", kind),))["properties"]["x"])


def _bounded(field: Field, *, exclusive_minimum: float | None = None) -> Field:
    """A unit-kind field (percent, size, duration) whose bounds also reach its schema's number branch;
    ``fields_schema`` only carries bounds for plain numbers. Unit strings are checked for syntax only."""
    schema = _kind_schema(field.kind)
    number = schema["oneOf"][0]
    if field.minimum is not None:
        number["minimum"] = field.minimum
    if exclusive_minimum is not None:
        number.pop("minimum", None)
        number["exclusiveMinimum"] = exclusive_minimum
    if field.maximum is not None:
        number["maximum"] = field.maximum
    return replace(field, schema=schema)


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


def _positive_duration(name: str, default: float | None, help: str) -> Field:
    # Every duration the policy itself declares is > 0: a zero timeout or duration means nothing.
    return _bounded(Field(name, "duration", default=default, help=help), exclusive_minimum=0)


# --- Field tables -------------------------------------------------------------------------------------

_TIMEOUTS = Timeouts()
_LIMITS = Limits()
_ADMIN = AdminSettings()
_OVERRIDE = CohortOverride()

TIMEOUTS_FIELDS: tuple[Field, ...] = (
    _positive_duration("connect", _TIMEOUTS.connect, "Connecting to an upstream."),
    _positive_duration("response", _TIMEOUTS.response, "Until the upstream's response headers; then 504."),
    _positive_duration("idle", _TIMEOUTS.idle, "Silence allowed mid-body, and on an idle keep-alive."),
    _positive_duration("drain", _TIMEOUTS.drain, "On SIGTERM, how long in-flight requests may finish."),
)

LIMITS_FIELDS: tuple[Field, ...] = (
    _bounded(Field("max_header_bytes", "size", default=_LIMITS.max_header_bytes, minimum=1,
                   help="Largest request or response head.")),
    _bounded(Field("max_body_bytes", "size", default=_LIMITS.max_body_bytes, minimum=1,
                   help="Largest request body.")),
    _bounded(Field("inspect_body_bytes", "size", default=_LIMITS.inspect_body_bytes, minimum=0,
                   help="Bodies up to this size may be held for inspection; at most max_body_bytes.")),
    Field("upstream_pool", "integer", default=_LIMITS.upstream_pool, minimum=1,
          help="Idle keep-alive connections kept per upstream."),
    Field("pipeline_depth", "integer", default=_LIMITS.pipeline_depth, minimum=1,
          help="Unanswered pipelined requests per client connection before reading pauses."),
)

ADMIN_FIELDS: tuple[Field, ...] = (
    Field("listen", "any", default=str(_ADMIN.listen), schema=_ADDRESS_SCHEMA,
          help="Address of the admin API (kill switch, status)."),
    Field("token_env", "string", default=_ADMIN.token_env, schema=_pattern(ENV_NAME_RE),
          help="Environment variable that holds the admin bearer token."),
)

COHORT_OVERRIDE_FIELDS: tuple[Field, ...] = (
    Field("enabled", "bool", default=_OVERRIDE.enabled,
          help="Let clients that send the shared token in x-mlchaos-token force their cohort."),
    Field("token_env", "string", default=_OVERRIDE.token_env, schema=_pattern(ENV_NAME_RE),
          help="Environment variable that holds the override token."),
)

MATCH_FIELDS: tuple[Field, ...] = (
    Field("method", "string_list", default=None, help="A method or a list of them."),
    Field("path", "string", default=None, schema={"type": "string", "pattern": "^/"},
          help="Glob over the path without the query: * within a segment, ** across, ? one character."),
    Field("headers", "mapping", default=None,
          schema={"type": "object", "additionalProperties": {"type": "string"}},
          help="Header name to a glob of its value (case-sensitive); all must match."),
)

WINDOW_FIELDS: tuple[Field, ...] = (
    Field("start", "any", schema=_CLOCK_SCHEMA, help="HH:MM, UTC."),
    Field("end", "any", schema=_CLOCK_SCHEMA, help="HH:MM, UTC; earlier than start spans midnight."),
    Field("days", "any", default=None,
          schema={"type": "array", "minItems": 1, "items": {
              "oneOf": [{"enum": list(DAYS)}, {"type": "integer", "minimum": 0, "maximum": 6}]}},
          help="mon..sun or 0-6 (Monday = 0); default every day."),
)

SCHEDULE_FIELDS: tuple[Field, ...] = (
    Field("start", "any", default=None, schema=_DATETIME_SCHEMA, help="ISO-8601; naive means UTC."),
    Field("end", "any", default=None, schema=_DATETIME_SCHEMA, help="ISO-8601; after start."),
    _positive_duration("max_duration", None, "Stop this long after the experiment is first enabled."),
    Field("windows", "any", default=None, schema={"type": "array", "items": _ref("window")},
          help="Daily windows (UTC) outside which the experiment stays off."),
)

REVEAL_FIELDS: tuple[Field, ...] = (
    Field("fault", "bool", default=False, help="Add x-mlchaos-fault to responses a fault acted on."),
    Field("cohort", "bool", default=False, help="Add x-mlchaos-cohort to every response of the experiment."),
)

_KILL = KillSwitch()

ERROR_GUARD_FIELDS: tuple[Field, ...] = (
    Field("enabled", "bool", default=_KILL.errors, help="Trip when chaos has more errors than the untouched traffic."),
    Field("include_4xx", "bool", default=_KILL.include_4xx, help="Count 4xx answers as errors too."),
)

LATENCY_GUARD_FIELDS: tuple[Field, ...] = (
    _positive_duration("slo", None, "A request slower than this is a bad event; trip when chaos has more."),
)

SEATBELT_FIELDS: tuple[Field, ...] = (
    Field("enabled", "bool", default=_KILL.seatbelt, help="An absolute limit beside the statistical guards."),
    Field("max_error_rate", "probability", default=_KILL.seatbelt_max_error_rate,
          help="Trip when the chaos cohort's error rate is above this ..."),
    Field("min_requests", "integer", default=_KILL.seatbelt_min_requests, minimum=1,
          help="... after at least this many chaos requests."),
)

KILL_SWITCH_FIELDS: tuple[Field, ...] = (
    Field("enabled", "bool", default=_KILL.enabled,
          help="false turns every guard off; an experiment that says nothing keeps the defaults on."),
    Field("alpha", "probability", default=_KILL.alpha, minimum=1e-9, maximum=0.5,
          help="Chance that a guard trips on an unharmed experiment, over its whole run."),
    Field("errors", "mapping", default=None, schema=_ref("error_guard")),
    Field("latency", "mapping", default=None, schema=_ref("latency_guard")),
    # Same fields as latency (slo): a streamed LLM answer whose first token comes later is a bad event.
    Field("ttft", "mapping", default=None, schema=_ref("latency_guard")),
    Field("seatbelt", "mapping", default=None, schema=_ref("seatbelt")),
    Field("min_requests", "integer", default=_KILL.min_requests, minimum=1,
          help="The gate says inconclusive until the chaos cohort has this many requests."),
)

WEBHOOK_FIELDS: tuple[Field, ...] = (
    Field("url", "string", schema={"type": "string", "pattern": "^https?://[^/]+"},
          help="POSTed when a kill switch trips: http(s)://host[:port]/path."),
    _positive_duration("timeout", 2.0, "Give up on the webhook after this long."),
)

PAYLOAD_FORMATS = ("auto", "v2", "v1", "mlflow", "openai", "generic")

PAYLOAD_FIELDS: tuple[Field, ...] = (
    Field("format", "choice", default="auto", choices=PAYLOAD_FORMATS,
          help="auto detects from path and body; v2 (Open Inference Protocol), v1 (KServe V1 / TF Serving), "
               "mlflow (/invocations), openai (OpenAI-compatible LLM APIs) or generic (JSON pointers below)."),
    Field("features", "string_list", default=None,
          help="Feature names for layouts that carry none (V2 matrix, V1 list rows, MLflow instances)."),
    Field("features_pointer", "string", default=None, schema={"type": "string", "pattern": "^(/.*)?$"},
          help="generic: RFC 6901 pointer to the rows or columns of features."),
    Field("predictions_pointer", "string", default=None, schema={"type": "string", "pattern": "^(/.*)?$"},
          help="generic: RFC 6901 pointer to the predictions."),
    Field("output", "string", default=None, help="The output that holds the predictions when there are several."),
    Field("nan_token", "bool", default=False,
          help="Write missing values as the bare NaN token instead of null (MLServer and KServe V1 reject it)."),
)

_OBS = ObserveSpec()

SHADOW_FIELDS: tuple[Field, ...] = (
    Field("enabled", "bool", default=_OBS.shadow,
          help="Also send the unchanged request of a chaos request whose features changed, off the client's path."),
    Field("max_concurrency", "integer", default=_OBS.shadow_concurrency, minimum=1, maximum=256,
          help="Shadow requests in flight at most; more are skipped (and counted)."),
)

OBSERVE_FIELDS: tuple[Field, ...] = (
    Field("predictions", "bool", default=_OBS.predictions,
          help="Read predictions from chaos and control responses (off the request path)."),
    Field("buckets", "number_list", default=None,
          help="Bucket edges of mlchaos_prediction_value; default: learned from the first control predictions."),
    Field("window", "integer", default=_OBS.window, minimum=50, maximum=1_000_000,
          help="Drift compares the last this many predictions of each cohort ..."),
    _positive_duration("window_seconds", _OBS.window_seconds, "... no older than this."),
    _positive_duration("drift_interval", _OBS.drift_interval, "How often drift statistics are computed."),
    Field("max_rate", "number", default=_OBS.max_rate, minimum=1,
          help="Responses read per second at most; the rest are skipped (counted), bounding the cost at any load."),
    Field("max_classes", "integer", default=_OBS.max_classes, minimum=1, maximum=1000,
          help="Distinct class labels per output; the rest count as __other__."),
    Field("max_outputs", "integer", default=_OBS.max_outputs, minimum=1, maximum=100,
          help="Distinct output names; the rest count as __other__."),
    Field("shadow", "mapping", default=None, schema=_ref("shadow")),
)

EXPERIMENT_FIELDS: tuple[Field, ...] = (
    Field("name", "string", schema=_pattern(EXPERIMENT_NAME_RE), help="Unique name."),
    _bounded(Field("chaos", "percent", minimum=0.01,
                   help="Share of matching traffic in the chaos cohort: 2, 2.5 or \"2%\" (0.01% steps).")),
    _bounded(Field("control", "percent", default=None,
                   help="Share in the control cohort (untouched, measured alike); default the chaos share.")),
    Field("enabled", "bool", default=True),
    Field("sticky_key", "string", default=None, schema=_pattern(STICKY_KEY_RE),
          help="header:NAME, query:NAME, cookie:NAME or client_ip; absent draws a cohort per request."),
    Field("match", "mapping", default=None, schema=_ref("match"), help="Which requests; default all."),
    Field("faults", "any", default=None, schema={"type": "array", "items": _ref("fault")},
          help="Applied in order to requests of the chaos cohort."),
    Field("schedule", "mapping", default=None, schema=_ref("schedule")),
    Field("reveal", "mapping", default=None, schema=_ref("reveal"),
          help="Tell clients about faults and cohorts in response headers."),
    Field("kill_switch", "mapping", default=None, schema=_ref("kill_switch"),
          help="Stop the experiment when chaos is measurably worse than control (on by default)."),
    Field("payload", "mapping", default=None, schema=_ref("payload"),
          help="How to read inference payloads: format and feature names."),
    Field("observe", "mapping", default=None, schema=_ref("observe"),
          help="Prediction metrics, drift and shadow comparison for this experiment."),
)

POLICY_FIELDS: tuple[Field, ...] = (
    Field("listen", "any", default="127.0.0.1:8000", schema=_ADDRESS_SCHEMA,
          help="Address the proxy serves on: host:port, [v6]:port or a port."),
    Field("upstream", "string", schema=_URL_SCHEMA, help="The model server: http://host[:port]."),
    Field("upstreams", "mapping", default=None,
          schema={"type": "object", "additionalProperties": _URL_SCHEMA,
                  "propertyNames": {**_pattern(UPSTREAM_NAME_RE), "not": {"const": PRIMARY_UPSTREAM}}},
          help="Named alternate upstreams that faults such as fallback send to."),
    Field("admin", "mapping", default=None, schema=_ref("admin")),
    _bounded(Field("max_blast_radius", "percent", default=5, maximum=MAX_BLAST_RADIUS_PERCENT,
                   help="Most traffic all enabled experiments together may put in chaos, in percent.")),
    Field("timeouts", "mapping", default=None, schema=_ref("timeouts")),
    Field("limits", "mapping", default=None, schema=_ref("limits")),
    Field("preserve_host", "bool", default=True,
          help="Forward the client's Host; false sends the upstream's host:port."),
    Field("halted", "bool", default=False, help="Keep every experiment off (the fleet-wide stop)."),
    Field("cohort_override", "mapping", default=None, schema=_ref("cohort_override")),
    Field("experiments", "any", default=None, schema={"type": "array", "items": _ref("experiment")}),
    Field("state_file", "string", default=None,
          help="File that remembers tripped kill switches across restarts."),
    Field("webhook", "mapping", default=None, schema=_ref("webhook")),
)


# --- Entry points ---------------------------------------------------------------------------------------

def load_policy_file(path: str | PathLike[str]) -> Policy:
    """The policy in a UTF-8 YAML file; an unreadable file is a ``PolicyError`` like any other problem."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise PolicyError([("", f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start})")]) from None
    except OSError as exc:
        raise PolicyError([("", f"{path}: cannot read the policy file: {exc.strerror or exc}")]) from None
    return load_policy_text(text)


def load_policy_text(text: str) -> Policy:
    """The policy in YAML text; ``Policy.source`` keeps the text."""
    try:
        raw = yaml.load(text, Loader=_StrictLoader)  # a SafeLoader subclass
    except yaml.MarkedYAMLError as exc:
        raise PolicyError([("", _yaml_message(exc))]) from None
    # PyYAML lets some value errors through unwrapped, e.g. a timestamp with month 13.
    except (yaml.YAMLError, ValueError) as exc:
        raise PolicyError([("", f"invalid YAML: {exc}")]) from None
    if raw is None:
        raise PolicyError([("", "the policy is empty")])
    return compile_policy(raw, source=text)


class _StrictLoader(yaml.SafeLoader):
    """SafeLoader that refuses duplicate keys, which PyYAML would otherwise settle silently for the last."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: set[tuple[str, str]] = set()
        for key_node, _ in node.value:
            # Merge keys (<<) may repeat and be overridden; that is what they are for.
            if isinstance(key_node, yaml.ScalarNode) and key_node.tag != "tag:yaml.org,2002:merge":
                key = (key_node.tag, key_node.value)
                if key in seen:
                    raise yaml.constructor.ConstructorError(
                        "while reading a mapping", node.start_mark,
                        f"found duplicate key {key_node.value!r}", key_node.start_mark,
                    )
                seen.add(key)
        return super().construct_mapping(node, deep=deep)


def _yaml_message(exc: yaml.MarkedYAMLError) -> str:
    mark = exc.problem_mark or exc.context_mark
    where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
    what = ": ".join(part for part in (exc.context, exc.problem) if part)
    return f"invalid YAML{where}: {what or 'syntax error'}"


def compile_policy(raw: object, source: str = "") -> Policy:
    """The frozen policy for a parsed YAML document; ``PolicyError`` lists every problem found."""
    errors = Errors()
    values = read_fields(POLICY_FIELDS, raw, "", errors)
    if values is None:
        errors.raise_if_any()
        _unreachable()
    listen = _address(values.get("listen"), "listen", errors)
    url = values.get("upstream")
    upstream = None if url is None else _upstream(PRIMARY_UPSTREAM, url, "upstream", errors)
    upstreams = _upstreams(values.get("upstreams"), errors)
    admin = _admin(values.get("admin"), errors)
    if listen is not None and _same_socket(listen, admin.listen):
        errors.add("admin.listen", f"must differ from listen ({listen})")
    blast_radius = _buckets(values.get("max_blast_radius"), "max_blast_radius", errors)
    timeouts = Timeouts(**_read(TIMEOUTS_FIELDS, values.get("timeouts"), "timeouts", errors))
    limits = _limits(values.get("limits"), errors)
    override = _cohort_override(values.get("cohort_override"), errors)
    experiments, shares = _experiments(values.get("experiments"), upstreams, errors)
    webhook = _webhook(values.get("webhook"), errors)
    if blast_radius is not None:
        _check_blast_radius(shares, blast_radius, errors)
    _check_total_share(shares, errors)
    errors.raise_if_any()
    if listen is None or upstream is None or blast_radius is None:
        _unreachable()
    return Policy(
        listen=listen,
        upstream=upstream,
        upstreams=upstreams,
        admin=admin,
        max_blast_radius_buckets=blast_radius,
        timeouts=timeouts,
        limits=limits,
        experiments=tuple(experiments),
        cohort_override=override,
        preserve_host=values["preserve_host"],
        halted=values["halted"],
        state_file=values["state_file"],
        webhook=webhook,
        source=source,
    )


def _unreachable() -> NoReturn:
    raise AssertionError("a part of the policy failed without reporting a problem")


def _read(fields: tuple[Field, ...], raw: object, path: str, errors: Errors) -> dict[str, Any]:
    """``read_fields`` for a nested section: an absent section is all defaults, a non-mapping is ``{}``."""
    raw = {} if raw is None else raw
    values = read_fields(fields, raw, path, errors)
    if values is None or not isinstance(raw, dict):
        return {}
    for field in fields:
        value = values.get(field.name)
        if field.kind == "duration" and value is not None and value <= 0:
            errors.add(f"{path}.{field.name}", f"must be > 0, got {_show(raw[field.name])}")
            del values[field.name]
    return values


# --- Listeners and upstreams ----------------------------------------------------------------------------

_WILDCARD_HOSTS = frozenset({"0.0.0.0", "::", ""})
_HOSTNAME_RE = re.compile(r"[A-Za-z0-9._-]+")


def _address(value: object, path: str, errors: Errors) -> Address | None:
    if value is None:
        return None
    try:
        return parse_address(value)
    except ValueError as exc:
        errors.add(path, str(exc))
        return None


def _same_socket(a: Address, b: Address) -> bool:
    if a.port != b.port or a.port == 0:
        return False
    return a.host == b.host or a.host in _WILDCARD_HOSTS or b.host in _WILDCARD_HOSTS


def _upstream(name: str, url: object, path: str, errors: Errors) -> Upstream | None:
    try:
        return parse_upstream_url(name, url)
    except ValueError as exc:
        errors.add(path, str(exc))
        return None


def parse_upstream_url(name: str, url: object) -> Upstream:
    """An upstream from ``http://host[:port][/]``; ``ValueError`` says what is wrong with the URL."""
    if not isinstance(url, str):
        raise ValueError(f"expected an http:// URL, got {_show(url)}")
    scheme = url.strip().partition("://")[0].lower() if "://" in url else ""
    if scheme == "https":
        raise ValueError("https upstreams are not supported yet")
    if scheme != "http":
        raise ValueError(f"expected an http:// URL such as http://127.0.0.1:8080, got {_show(url)}")
    parts = urlsplit(url.strip())  # raises ValueError for a bad port or unbalanced [v6] brackets
    port = parts.port
    host = parts.hostname or ""
    if parts.username is not None or parts.password is not None:
        raise ValueError("credentials in an upstream URL are not supported")
    if parts.path not in ("", "/"):
        raise ValueError(f"must not have a path (got {parts.path!r}): the client's path is forwarded as is")
    if parts.query or parts.fragment:
        raise ValueError("must not have a query or a fragment")
    if not (_HOSTNAME_RE.fullmatch(host) or ":" in host):
        raise ValueError(f"has no valid host: {_show(url)}")
    if port == 0:
        raise ValueError("port must be 1-65535")
    port = 80 if port is None else port
    bracketed = f"[{host}]" if ":" in host else host
    authority = bracketed if port == 80 else f"{bracketed}:{port}"
    return Upstream(name=name, url=url, host=host, port=port, authority=authority)


def _upstreams(raw: object, errors: Errors) -> Mapping[str, Upstream]:
    if not isinstance(raw, dict):
        return MappingProxyType({})  # absent, or reported by the field reader
    out: dict[str, Upstream] = {}
    for name, url in raw.items():
        path = f"upstreams.{name}"
        if not isinstance(name, str) or not UPSTREAM_NAME_RE.fullmatch(name):
            errors.add(path, "upstream names are lower-case letters, digits, _ and -")
        elif name == PRIMARY_UPSTREAM:
            errors.add(path, f"{PRIMARY_UPSTREAM!r} is reserved for the `upstream:` setting")
        elif (upstream := _upstream(name, url, path, errors)) is not None:
            out[name] = upstream
    return MappingProxyType(out)


def _admin(raw: object, errors: Errors) -> AdminSettings:
    values = _read(ADMIN_FIELDS, raw, "admin", errors)
    _check_env_name(values, "admin", errors)
    listen = _address(values.get("listen"), "admin.listen", errors)
    return AdminSettings(listen=listen or _ADMIN.listen, token_env=values.get("token_env", _ADMIN.token_env))


def _cohort_override(raw: object, errors: Errors) -> CohortOverride:
    values = _read(COHORT_OVERRIDE_FIELDS, raw, "cohort_override", errors)
    _check_env_name(values, "cohort_override", errors)
    return CohortOverride(**values)


def _check_env_name(values: dict[str, Any], path: str, errors: Errors) -> None:
    name = values.get("token_env")
    if name is not None and not ENV_NAME_RE.fullmatch(name):
        errors.add(f"{path}.token_env", f"must be an environment variable name, got {_show(name)}")
        del values["token_env"]


def _limits(raw: object, errors: Errors) -> Limits:
    values = _read(LIMITS_FIELDS, raw, "limits", errors)
    inspect, body = values.get("inspect_body_bytes"), values.get("max_body_bytes")
    if inspect is not None and body is not None and inspect > body:
        errors.add("limits.inspect_body_bytes", f"must be <= max_body_bytes ({body}), got {inspect}")
    return Limits(**values)


# --- Shares -----------------------------------------------------------------------------------------------

def _buckets(percent: float | None, path: str, errors: Errors) -> int | None:
    """Buckets for a share in percent; a share between two buckets would be silently rounded, so refuse it."""
    if percent is None:
        return None
    scaled = percent * BUCKETS / 100
    whole = round(scaled)
    if abs(scaled - whole) > 1e-6:
        errors.add(path, f"must be a multiple of 0.01% (the cohort resolution), got {percent:g}")
        return None
    return whole


def _percent(buckets: int) -> str:
    return f"{buckets * 100 / BUCKETS:g}%"


@dataclass(frozen=True, slots=True)
class _Share:
    """An experiment's traffic shares, known even when another of its fields is wrong, so that the limits
    below are checked (and reported) in the same pass."""

    path: str
    name: str
    chaos: int
    control: int
    enabled: bool


def _check_blast_radius(shares: list[_Share], limit: int, errors: Errors) -> None:
    # Disabled experiments too: enabling one later must not be what first reveals the problem.
    for share in shares:
        if share.chaos > limit:
            errors.add(f"{share.path}.chaos", f"{_percent(share.chaos)} is above max_blast_radius ({_percent(limit)})")
    enabled = [share for share in shares if share.enabled]
    total = sum(share.chaos for share in enabled)
    # One enabled experiment over the limit was reported above; the sum adds nothing to that.
    if len(enabled) > 1 and total > limit:
        listed = ", ".join(f"{share.name} {_percent(share.chaos)}" for share in enabled)
        errors.add("max_blast_radius", f"enabled experiments put {_percent(total)} of traffic in chaos "
                                       f"({listed}), above max_blast_radius {_percent(limit)}")


def _check_total_share(shares: list[_Share], errors: Errors) -> None:
    total = sum(share.chaos + share.control for share in shares if share.enabled)
    if total > BUCKETS:
        errors.add("experiments", f"enabled experiments take {_percent(total)} of traffic in chaos and "
                                  "control cohorts together, above 100%")


# --- Experiments ----------------------------------------------------------------------------------------

_Compiled = tuple[_Share | None, Experiment | None]


def _experiments(raw: object, upstreams: Upstreams, errors: Errors) -> tuple[list[Experiment], list[_Share]]:
    """The experiments that compiled, and the shares of all whose shares could be read."""
    experiments: list[Experiment] = []
    shares: list[_Share] = []
    if raw is None:
        return experiments, shares
    if not isinstance(raw, list):
        errors.add("experiments", f"expected a list of experiments, got {type(raw).__name__}")
        return experiments, shares
    first_index: dict[str, int] = {}
    for i, item in enumerate(raw):
        path = f"experiments[{i}]"
        name = item.get("name") if isinstance(item, dict) else None
        if isinstance(name, str):
            if name in first_index:
                errors.add(f"{path}.name", f"duplicate name {name!r} (also experiments[{first_index[name]}])")
            first_index.setdefault(name, i)
        share, exp = _experiment(item, path, upstreams, errors)
        shares.extend([share] if share is not None else [])
        experiments.extend([exp] if exp is not None else [])
    return experiments, shares


def _experiment(raw: object, path: str, upstreams: Upstreams, errors: Errors) -> _Compiled:
    before = len(errors.problems)
    values = _read(EXPERIMENT_FIELDS, raw, path, errors)
    name = values.get("name")
    if name is not None and not EXPERIMENT_NAME_RE.fullmatch(name):
        errors.add(f"{path}.name", "must be 1-63 letters, digits, '_', '.' or '-', starting with a letter or "
                                   f"digit; got {_show(name)}")
    chaos = _buckets(values.get("chaos"), f"{path}.chaos", errors)
    control = chaos  # the default: a control cohort as large as the chaos one
    if values.get("control") is not None:
        control = _buckets(values["control"], f"{path}.control", errors)
    if chaos is not None and control is not None and chaos + control > MAX_EXPERIMENT_SHARE_BUCKETS:
        errors.add(path, f"chaos ({_percent(chaos)}) + control ({_percent(control)}) is "
                         f"{_percent(chaos + control)}, above the 50% one experiment may take")
    share = None
    if chaos is not None and control is not None and "enabled" in values:
        share = _Share(path, name or path, chaos, control, values["enabled"])
    sticky_key = _sticky_key(values.get("sticky_key"), f"{path}.sticky_key", errors)
    match = _match(values.get("match"), f"{path}.match", errors)
    faults = _fault_list(values.get("faults"), f"{path}.faults", upstreams, errors)
    schedule = _schedule(values.get("schedule"), f"{path}.schedule", errors)
    reveal = Reveal(**_read(REVEAL_FIELDS, values.get("reveal"), f"{path}.reveal", errors))
    kill_switch = _kill_switch(values.get("kill_switch"), f"{path}.kill_switch", errors)
    payload = _payload(values.get("payload"), f"{path}.payload", errors)
    observe = _observe(values.get("observe"), f"{path}.observe", errors)
    if len(errors.problems) > before or name is None or chaos is None or control is None:
        return share, None
    return share, Experiment(
        name=name, chaos_buckets=chaos, control_buckets=control, sticky_key=sticky_key, match=match,
        faults=faults, schedule=schedule, enabled=values["enabled"], reveal=reveal, kill_switch=kill_switch,
        payload=payload, observe=observe,
    )


def _observe(raw: object, path: str, errors: Errors) -> ObserveSpec:
    if raw is None:
        return ObserveSpec()
    values = _read(OBSERVE_FIELDS, raw, path, errors)
    shadow = _read(SHADOW_FIELDS, values.get("shadow"), f"{path}.shadow", errors)
    buckets = tuple(values.get("buckets") or ())
    if any(a >= b for a, b in itertools.pairwise(buckets)):
        errors.add(f"{path}.buckets", "bucket edges must increase strictly")
    return ObserveSpec(
        predictions=values.get("predictions", True), buckets=buckets,
        window=values.get("window", _OBS.window), window_seconds=values.get("window_seconds", _OBS.window_seconds),
        drift_interval=values.get("drift_interval", _OBS.drift_interval),
        max_rate=values.get("max_rate", _OBS.max_rate),
        max_classes=values.get("max_classes", _OBS.max_classes),
        max_outputs=values.get("max_outputs", _OBS.max_outputs),
        shadow=shadow.get("enabled", _OBS.shadow),
        shadow_concurrency=shadow.get("max_concurrency", _OBS.shadow_concurrency),
    )


def _payload(raw: object, path: str, errors: Errors) -> PayloadSpec:
    if raw is None:
        return PayloadSpec()
    values = _read(PAYLOAD_FIELDS, raw, path, errors)
    fmt = values.get("format", "auto")
    if fmt == "generic" and not values.get("features_pointer") and not values.get("predictions_pointer"):
        errors.add(f"{path}.format", "generic needs features_pointer or predictions_pointer")
    for key in ("features_pointer", "predictions_pointer"):
        pointer = values.get(key)
        if pointer is not None and pointer != "" and not pointer.startswith("/"):
            errors.add(f"{path}.{key}", f"a JSON pointer starts with '/': {_show(pointer)}")
    names = values.get("features") or ()
    if len(set(names)) != len(names):
        errors.add(f"{path}.features", "feature names must be unique")
    return PayloadSpec(format=fmt, features=tuple(names), features_pointer=values.get("features_pointer"),
                       predictions_pointer=values.get("predictions_pointer"), output=values.get("output"),
                       nan_token=values.get("nan_token", False))


def _kill_switch(raw: object, path: str, errors: Errors) -> KillSwitch:
    if raw is None:
        return KillSwitch()
    top = _read(KILL_SWITCH_FIELDS, raw, path, errors)
    err = _read(ERROR_GUARD_FIELDS, top.get("errors"), f"{path}.errors", errors)
    lat = _read(LATENCY_GUARD_FIELDS, top.get("latency"), f"{path}.latency", errors) \
        if top.get("latency") is not None else {"slo": None}
    ttft = _read(LATENCY_GUARD_FIELDS, top.get("ttft"), f"{path}.ttft", errors) \
        if top.get("ttft") is not None else {"slo": None}
    belt = _read(SEATBELT_FIELDS, top.get("seatbelt"), f"{path}.seatbelt", errors)
    defaults = KillSwitch()
    return KillSwitch(
        enabled=top.get("enabled", defaults.enabled), alpha=top.get("alpha", defaults.alpha),
        errors=err.get("enabled", defaults.errors), include_4xx=err.get("include_4xx", defaults.include_4xx),
        latency_slo=lat.get("slo"), ttft_slo=ttft.get("slo"), seatbelt=belt.get("enabled", defaults.seatbelt),
        seatbelt_max_error_rate=belt.get("max_error_rate", defaults.seatbelt_max_error_rate),
        seatbelt_min_requests=belt.get("min_requests", defaults.seatbelt_min_requests),
        min_requests=top.get("min_requests", defaults.min_requests),
    )


def _webhook(raw: object, errors: Errors) -> Webhook | None:
    if raw is None:
        return None
    values = _read(WEBHOOK_FIELDS, raw, "webhook", errors)
    url = values.get("url")
    if url is None:
        return None
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        errors.add("webhook.url", f"expected http(s)://host[:port]/path, got {_show(url)}")
        return None
    return Webhook(url=url, timeout=values.get("timeout", 2.0))


_STICKY_KINDS: dict[str, StickyKind] = {"header": "header", "query": "query", "cookie": "cookie"}


def _sticky_key(value: str | None, path: str, errors: Errors) -> StickyKey | None:
    if value is None:
        return None
    m = STICKY_KEY_RE.fullmatch(value.strip())
    if m is None:
        errors.add(path, f"expected header:NAME, query:NAME, cookie:NAME or client_ip, got {_show(value)}")
        return None
    if m.group(1) is None:
        return StickyKey("client_ip")
    kind, name = _STICKY_KINDS[m.group(1)], m.group(2).strip()
    if not TOKEN_RE.fullmatch(name):
        errors.add(path, f"{_show(name)} is not a valid {kind} name")
        return None
    # Header names are case-insensitive; query parameters and cookies are not.
    return StickyKey(kind, name.lower() if kind == "header" else name)


def _fault_list(raw: object, path: str, upstreams: Upstreams, errors: Errors) -> tuple[Fault, ...]:
    if raw is None:
        return ()
    if not isinstance(raw, list):
        errors.add(path, f"expected a list of faults, got {type(raw).__name__}")
        return ()
    out: list[Fault] = []
    for j, item in enumerate(raw):
        fault = _faults.parse_fault(item, f"{path}[{j}]", errors)
        if fault is None:
            continue
        for ref in fault.upstream_refs():
            if ref not in upstreams:
                known = ", ".join(sorted(upstreams)) or "none are defined"
                errors.add(f"{path}[{j}].upstream", f"unknown upstream {ref!r} (upstreams: {known})")
        out.append(fault)
    return tuple(out)


# --- Matching -------------------------------------------------------------------------------------------

def compile_glob(glob: str) -> re.Pattern[str]:
    """An anchored regex for a path glob: ``*`` stays within a segment, ``**`` crosses segments (``/**/``
    also matches a single ``/``), ``?`` is one character other than ``/``; all else is literal."""
    if not glob.startswith("/"):
        raise ValueError(f"must start with /, got {_show(glob)}")
    out: list[str] = []
    i = 0
    while i < len(glob):
        if glob.startswith("/**/", i):
            out.append("/(?:.*/)?")
            i += 4
        elif glob.startswith("**", i):
            out.append(".*")
            i += 2
        else:
            out.append(_GLOB_CHARS.get(glob[i]) or re.escape(glob[i]))
            i += 1
    return re.compile(r"\A" + "".join(out) + r"\Z", re.DOTALL)


_GLOB_CHARS = {"*": "[^/]*", "?": "[^/]"}


def _match(raw: object, path: str, errors: Errors) -> Match:
    if raw is None:
        return Match()
    values = _read(MATCH_FIELDS, raw, path, errors)
    methods = _methods(values.get("method"), f"{path}.method", errors)
    pattern = None
    if values.get("path") is not None:
        try:
            pattern = compile_glob(values["path"])
        except ValueError as exc:
            errors.add(f"{path}.path", str(exc))
    headers = _header_globs(values.get("headers"), f"{path}.headers", errors)
    # A copy, so nothing that later edits the parsed document reaches the frozen policy.
    source = copy.deepcopy(raw) if isinstance(raw, dict) else {}
    return Match(methods=methods, path=pattern, headers=headers, source=source)


def _methods(value: tuple[str, ...] | None, path: str, errors: Errors) -> frozenset[str] | None:
    if value is None:
        return None
    if not value:
        errors.add(path, "list at least one method, or leave method out to match any")
        return None
    for method in value:
        if not TOKEN_RE.fullmatch(method):
            errors.add(path, f"{_show(method)} is not a valid HTTP method")
    return frozenset(method.upper() for method in value)


def _header_globs(raw: Mapping[str, Any] | None, path: str, errors: Errors) -> HeaderGlobs:
    if raw is None:
        return ()
    out: dict[str, re.Pattern[str]] = {}
    for name, glob in raw.items():
        key = f"{path}.{name}"
        if not isinstance(name, str) or not TOKEN_RE.fullmatch(name):
            errors.add(key, "not a valid header name")
        elif name.lower() in out:
            errors.add(key, f"header {name.lower()!r} is listed twice (names are case-insensitive)")
        elif not isinstance(glob, str):
            errors.add(key, f"expected a glob string (quote numbers), got {_show(glob)}")
        else:
            out[name.lower()] = re.compile(fnmatch.translate(glob))
    return tuple(out.items())


# --- Schedules ------------------------------------------------------------------------------------------

def _schedule(raw: object, path: str, errors: Errors) -> Schedule:
    if raw is None:
        return Schedule()
    values = _read(SCHEDULE_FIELDS, raw, path, errors)
    start = _datetime(values.get("start"), f"{path}.start", errors)
    end = _datetime(values.get("end"), f"{path}.end", errors)
    if start is not None and end is not None and end <= start:
        errors.add(f"{path}.end", f"must be after start ({start.isoformat()})")
    windows = _windows(values.get("windows"), f"{path}.windows", errors)
    return Schedule(start=start, end=end, max_duration=values.get("max_duration"), windows=windows)


_DATETIME_HINT = "expected an ISO-8601 date-time such as 2026-11-22T10:00:00Z"


def _datetime(value: object, path: str, errors: Errors) -> datetime | None:
    """A UTC datetime from an ISO-8601 string or what YAML makes of an unquoted timestamp or date."""
    if value is None:
        return None
    if isinstance(value, str):
        try:
            value = datetime.fromisoformat(value.strip())
        except ValueError:
            errors.add(path, f"{_DATETIME_HINT}, got {_show(value)}")
            return None
    if isinstance(value, datetime):
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
    if isinstance(value, date):
        return datetime.combine(value, time(), tzinfo=UTC)
    errors.add(path, f"{_DATETIME_HINT}, got {_show(value)}")
    return None


def _windows(raw: object, path: str, errors: Errors) -> tuple[DailyWindow, ...]:
    if raw is None:
        return ()
    if not isinstance(raw, list):
        errors.add(path, f"expected a list of windows, got {type(raw).__name__}")
        return ()
    out = [_window(item, f"{path}[{k}]", errors) for k, item in enumerate(raw)]
    return tuple(w for w in out if w is not None)


def _window(raw: object, path: str, errors: Errors) -> DailyWindow | None:
    values = _read(WINDOW_FIELDS, raw, path, errors)
    start = _clock(values.get("start"), f"{path}.start", errors)
    end = _clock(values.get("end"), f"{path}.end", errors)
    days = _days(values.get("days"), f"{path}.days", errors)
    if start is not None and start == end:
        errors.add(f"{path}.end", "equals start; leave windows out to run all day")
        return None
    if start is None or end is None or days is None:
        return None
    return DailyWindow(start=start, end=end, days=days)


def _clock(value: object, path: str, errors: Errors) -> time | None:
    if value is None:
        return None
    if isinstance(value, int) and not isinstance(value, bool) and 0 <= value < 24 * 60:
        # YAML 1.1 reads an unquoted 17:00 as the base-60 integer 1020.
        errors.add(path, f"quote times of day: YAML reads an unquoted {value // 60}:{value % 60:02d} as the "
                         f"number {value}; write \"{value // 60:02d}:{value % 60:02d}\"")
        return None
    m = CLOCK_RE.fullmatch(value.strip()) if isinstance(value, str) else None
    if m is None or int(m.group(1)) > 23 or int(m.group(2)) > 59:
        errors.add(path, f"expected a time of day HH:MM (UTC) such as \"09:30\", got {_show(value)}")
        return None
    return time(int(m.group(1)), int(m.group(2)))


def _days(value: object, path: str, errors: Errors) -> frozenset[int] | None:
    if value is None:
        return frozenset(range(7))
    if not isinstance(value, list) or not value:
        errors.add(path, f"expected a non-empty list of days (mon..sun or 0-6), got {_show(value)}")
        return None
    days: set[int] = set()
    ok = True
    for k, day in enumerate(value):
        if isinstance(day, int) and not isinstance(day, bool) and 0 <= day <= 6:
            days.add(day)
        elif isinstance(day, str) and day in DAYS:
            days.add(DAYS.index(day))
        else:
            errors.add(f"{path}[{k}]", f"expected mon..sun or 0-6 (Monday = 0), got {_show(day)}")
            ok = False
    return frozenset(days) if ok else None
