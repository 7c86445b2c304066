"""Policy loading: YAML text to the frozen ``Policy``, or a ``PolicyError`` that lists every problem.

The fields, their checks and defaults are declared once, on the model (model.py); this module reads each
object by its declaration and adds what spans fields or objects: shares and the blast radius, upstream
references, schedules, and the parts that report problems below a field (header globs, days, faults).
"""

from __future__ import annotations

import copy
import fnmatch
import itertools
import re
from collections.abc import Mapping
from dataclasses import dataclass
from os import PathLike
from pathlib import Path
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, NoReturn, TypeVar
from urllib.parse import urlsplit

import yaml

from .. import faults as _faults
from ..declare.errors import Errors, PolicyError
from ..declare.fields import build, fields_of, read_fields, read_object
from ..declare.units import Address
from ..declare.values import DAYS, TOKEN_RE, UPSTREAM_NAME_RE, compile_glob, percent, show
from .model import (
    BUCKETS,
    MAX_BLAST_RADIUS_PERCENT,
    PRIMARY_UPSTREAM,
    AdminSettings,
    CohortOverride,
    DailyWindow,
    Experiment,
    GrpcSettings,
    GrpcTls,
    HypothesisSpec,
    KillSwitch,
    Limits,
    Match,
    ObserveSpec,
    PayloadSpec,
    Policy,
    Reveal,
    SamplesSpec,
    Schedule,
    StickyKey,
    Timeouts,
    Upstream,
    Webhook,
    parse_sticky_key,
    parse_upstream_url,
)

if TYPE_CHECKING:
    from ..faults.base import Fault

__all__ = ["compile_glob", "compile_policy", "load_policy_file", "load_policy_text", "parse_upstream_url"]

# An experiment's chaos and control cohorts together stay a minority of the traffic it sees.
MAX_EXPERIMENT_SHARE_BUCKETS = BUCKETS // 2

Upstreams = Mapping[str, Upstream]
HeaderGlobs = tuple[tuple[str, re.Pattern[str]], ...]
T = TypeVar("T")


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
    values = read_fields(fields_of(Policy), raw, "", errors)
    if values is None:
        errors.raise_if_any()
        _unreachable()
    upstreams = _upstreams(values.get("upstreams"), errors)
    admin = build(AdminSettings, values.get("admin"), "admin", errors)
    listen = values.get("listen")
    if listen is not None and _same_socket(listen, admin.listen):
        errors.add("admin.listen", f"must differ from listen ({listen})")
    timeouts = build(Timeouts, values.get("timeouts"), "timeouts", errors)
    limits = _limits(values.get("limits"), errors)
    override = build(CohortOverride, values.get("cohort_override"), "cohort_override", errors)
    staging = values.get("environment") == "staging"
    experiments, shares = _experiments(values.get("experiments"), upstreams, errors, staging)
    webhook = _webhook(values.get("webhook"), errors)
    grpc = _grpc(values.get("grpc"), listen, admin.listen, errors)
    blast_radius = values.get("max_blast_radius")
    if blast_radius is not None and not staging and blast_radius > MAX_BLAST_RADIUS_PERCENT * BUCKETS / 100:
        errors.add("max_blast_radius", f"must be <= {MAX_BLAST_RADIUS_PERCENT:g} (100 with environment: staging), "
                                       f"got {percent(blast_radius)}")
    elif blast_radius is not None:
        _check_blast_radius(shares, blast_radius, errors)
    _check_total_share(shares, errors)
    errors.raise_if_any()
    return _assemble(Policy, values, upstreams=upstreams, admin=admin, timeouts=timeouts, limits=limits,
                     cohort_override=override, experiments=tuple(experiments), webhook=webhook, grpc=grpc,
                     source=source)


def _unreachable() -> NoReturn:
    raise AssertionError("a part of the policy failed without reporting a problem")


def _read(cls: type, raw: object, path: str, errors: Errors) -> dict[str, Any]:
    """The values of a hand-built object by YAML key: an absent section is all defaults, a non-mapping ``{}``."""
    values = read_fields(fields_of(cls), {} if raw is None else raw, path, errors)
    return {} if values is None else values


def _assemble(cls: type[T], values: dict[str, Any], **built: Any) -> T:
    """``cls`` from the values read for it (by YAML key) and the attributes built by hand; a value that
    failed its check is absent and leaves the attribute's default."""
    plain = {f.attr: values[f.name] for f in fields_of(cls) if f.attr not in built and f.name in values}
    return cls(**plain, **built)


# --- Listeners and upstreams ----------------------------------------------------------------------------

_WILDCARD_HOSTS = frozenset({"0.0.0.0", "::", ""})


def _same_socket(a: Address, b: Address) -> bool:
    if a.port != b.port or a.port == 0:
        return False
    return a.host == b.host or a.host in _WILDCARD_HOSTS or b.host in _WILDCARD_HOSTS


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
        else:
            try:
                out[name] = parse_upstream_url(name, url)
            except ValueError as exc:
                errors.add(path, str(exc))
    return MappingProxyType(out)


def _limits(raw: object, errors: Errors) -> Limits:
    values = read_object(Limits, raw, "limits", errors)
    inspect, body = values.get("inspect_body_bytes"), values.get("max_body_bytes")
    if inspect is not None and body is not None and inspect > body:
        errors.add("limits.inspect_body_bytes", f"must be <= max_body_bytes ({body}), got {inspect}")
    return Limits(**values)


def _grpc(raw: object, listen: Address | None, admin: Address, errors: Errors) -> GrpcSettings | None:
    """The gRPC listener's settings."""
    if raw is None:
        return None
    values = read_fields(fields_of(GrpcSettings), raw, "grpc", errors)
    if values is None:
        return None
    # An absent tls section is h2c, not a TLS section missing its files.
    tls = values.get("tls")
    values["tls"] = None if tls is None else build(GrpcTls, tls, "grpc.tls", errors)
    address = values.get("listen")
    if address is not None:
        for other, name in ((listen or Address("127.0.0.1", 8000), "listen"), (admin, "admin.listen")):
            if _same_socket(address, other):
                errors.add("grpc.listen", f"must differ from {name} ({other})")
    if "listen" not in values or "upstream" not in values:
        return None
    return GrpcSettings(**values)


def _webhook(raw: object, errors: Errors) -> Webhook | None:
    if raw is None:
        return None
    values = read_object(Webhook, raw, "webhook", errors)
    url = values.get("url")
    if url is None:
        return None
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        errors.add("webhook.url", f"expected http(s)://host[:port]/path, got {show(url)}")
        return None
    return Webhook(**values)


# --- Shares -----------------------------------------------------------------------------------------------

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
            errors.add(f"{share.path}.chaos", f"{percent(share.chaos)} is above max_blast_radius ({percent(limit)})")
    enabled = [share for share in shares if share.enabled]
    total = sum(share.chaos for share in enabled)
    # One enabled experiment over the limit was reported above; the sum adds nothing to that.
    if len(enabled) > 1 and total > limit:
        listed = ", ".join(f"{share.name} {percent(share.chaos)}" for share in enabled)
        errors.add("max_blast_radius", f"enabled experiments put {percent(total)} of traffic in chaos "
                                       f"({listed}), above max_blast_radius {percent(limit)}")


def _check_total_share(shares: list[_Share], errors: Errors) -> None:
    total = sum(share.chaos + share.control for share in shares if share.enabled)
    if total > BUCKETS:
        errors.add("experiments", f"enabled experiments take {percent(total)} of traffic in chaos and "
                                  "control cohorts together, above 100%")


# --- Experiments ----------------------------------------------------------------------------------------

_Compiled = tuple[_Share | None, Experiment | None]


def _experiments(raw: object, upstreams: Upstreams, errors: Errors,
                 staging: bool = False) -> tuple[list[Experiment], list[_Share]]:
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
        share, exp = _experiment(item, path, upstreams, errors, staging)
        shares.extend([share] if share is not None else [])
        experiments.extend([exp] if exp is not None else [])
    return experiments, shares


def _experiment(raw: object, path: str, upstreams: Upstreams, errors: Errors, staging: bool = False) -> _Compiled:
    before = len(errors.problems)
    values = _read(Experiment, raw, path, errors)
    name, chaos = values.get("name"), values.get("chaos")
    # Absent from the values: reported; None: the default, a control cohort as large as the chaos one.
    # In staging the default is no control cohort: the experiment may take all matching traffic.
    default_control = 0 if staging else chaos
    control = values["control"] if values.get("control") is not None else default_control if "control" in values \
        else None
    limit = BUCKETS if staging else MAX_EXPERIMENT_SHARE_BUCKETS
    if chaos is not None and control is not None and chaos + control > limit:
        errors.add(path, f"chaos ({percent(chaos)}) + control ({percent(control)}) is "
                         f"{percent(chaos + control)}, above the {percent(limit)} one experiment may take"
                         + ("" if staging else " (100% with environment: staging)"))
    share = None
    if chaos is not None and control is not None and "enabled" in values:
        share = _Share(path, name or path, chaos, control, values["enabled"])
    sticky_key = _sticky_key(values.get("sticky_key"), f"{path}.sticky_key", errors)
    built = {
        "sticky_key": sticky_key,
        "match": _match(values.get("match"), f"{path}.match", errors),
        "faults": _fault_list(values.get("faults"), f"{path}.faults", upstreams, errors),
        "schedule": _schedule(values.get("schedule"), f"{path}.schedule", errors),
        "reveal": build(Reveal, values.get("reveal"), f"{path}.reveal", errors),
        "kill_switch": build(KillSwitch, values.get("kill_switch"), f"{path}.kill_switch", errors),
        "payload": _payload(values.get("payload"), f"{path}.payload", errors),
        "observe": _observe(values.get("observe"), f"{path}.observe", errors),
        "hypothesis": build(HypothesisSpec, values.get("hypothesis"), f"{path}.hypothesis", errors),
        "samples": build(SamplesSpec, values.get("samples"), f"{path}.samples", errors),
    }
    if len(errors.problems) > before or name is None or chaos is None or control is None:
        return share, None
    return share, _assemble(Experiment, values, control_buckets=control, **built)


def _sticky_key(value: str | None, path: str, errors: Errors) -> StickyKey | None:
    # Read after the shares (not as the field's parse step), so their problems come first, as they always have.
    try:
        return None if value is None else parse_sticky_key(value)
    except ValueError as exc:
        errors.add(path, str(exc))
        return None


def _observe(raw: object, path: str, errors: Errors) -> ObserveSpec:
    values = read_object(ObserveSpec, raw, path, errors)
    if any(a >= b for a, b in itertools.pairwise(values.get("buckets", ()))):
        errors.add(f"{path}.buckets", "bucket edges must increase strictly")
    return ObserveSpec(**values)


def _payload(raw: object, path: str, errors: Errors) -> PayloadSpec:
    values = read_object(PayloadSpec, raw, path, errors)
    if values.get("format") == "generic" and not values.get("features_pointer") \
            and not values.get("predictions_pointer"):
        errors.add(f"{path}.format", "generic needs features_pointer or predictions_pointer")
    for key in ("features_pointer", "predictions_pointer"):
        pointer = values.get(key)
        if pointer is not None and pointer != "" and not pointer.startswith("/"):
            errors.add(f"{path}.{key}", f"a JSON pointer starts with '/': {show(pointer)}")
    names = values.get("features", ())
    if len(set(names)) != len(names):
        errors.add(f"{path}.features", "feature names must be unique")
    return PayloadSpec(**values)


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

def _match(raw: object, path: str, errors: Errors) -> Match:
    if raw is None:
        return Match()
    values = _read(Match, raw, path, errors)
    grpc = _grpc_methods(values, path, errors)
    methods = grpc.pop("methods") if grpc else _methods(values.get("method"), f"{path}.method", errors)
    headers = _header_globs(values.get("headers"), f"{path}.headers", errors)
    # A copy, so nothing that later edits the parsed document reaches the frozen policy.
    source = copy.deepcopy(raw) if isinstance(raw, dict) else {}
    return _assemble(Match, values, methods=methods, headers=headers, source=source, **grpc)


def _grpc_methods(values: dict[str, Any], path: str, errors: Errors) -> dict[str, Any]:
    """``method: /package.Service/Method`` names gRPC methods: a gRPC call is a POST to its method's path, so
    they match as ``method: POST`` with a path that is one of them. Taken out of ``values``; the rest is HTTP's."""
    given = values.get("method")
    calls = [m for m in given or () if m.startswith("/")]
    if not calls:
        return {}
    if len(calls) != len(given or ()):
        errors.add(f"{path}.method", "list gRPC methods (/package.Service/Method) or HTTP methods, not both")
    elif values.get("path") is not None:
        errors.add(f"{path}.method", "a gRPC method is a path: give it in method or in path, not both")
    for call in calls:
        if not _GRPC_METHOD.fullmatch(call):
            errors.add(f"{path}.method", f"{show(call)} is not a gRPC method path (/package.Service/Method)")
    del values["method"]
    return {"methods": frozenset({"POST"}), "path": re.compile("|".join(re.escape(c) for c in calls))}


_GRPC_METHOD = re.compile(r"/[A-Za-z0-9_.]+/[A-Za-z0-9_]+")


def _methods(value: tuple[str, ...] | None, path: str, errors: Errors) -> frozenset[str] | None:
    if value is None:
        return None
    if not value:
        errors.add(path, "list at least one method, or leave method out to match any")
        return None
    for method in value:
        if not TOKEN_RE.fullmatch(method):
            errors.add(path, f"{show(method)} is not a valid HTTP method")
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
            errors.add(key, f"expected a glob string (quote numbers), got {show(glob)}")
        else:
            out[name.lower()] = re.compile(fnmatch.translate(glob))
    return tuple(out.items())


# --- Schedules ------------------------------------------------------------------------------------------

def _schedule(raw: object, path: str, errors: Errors) -> Schedule:
    values = _read(Schedule, raw, path, errors)
    start, end = values.get("start"), values.get("end")
    if start is not None and end is not None and end <= start:
        errors.add(f"{path}.end", f"must be after start ({start.isoformat()})")
    windows = _windows(values.get("windows"), f"{path}.windows", errors)
    return _assemble(Schedule, values, windows=windows)


def _windows(raw: object, path: str, errors: Errors) -> tuple[DailyWindow, ...]:
    if raw is None:
        return ()
    if not isinstance(raw, list):
        errors.add(path, f"expected a list of windows, got {type(raw).__name__}")
        return ()
    out = [_window(item, f"{path}[{k}]", errors) for k, item in enumerate(raw)]
    return tuple(w for w in out if w is not None)


def _window(raw: object, path: str, errors: Errors) -> DailyWindow | None:
    values = read_fields(fields_of(DailyWindow), raw, path, errors) or {}
    start, end = values.get("start"), values.get("end")
    days = _days(values.get("days"), f"{path}.days", errors)
    if start is not None and start == end:
        errors.add(f"{path}.end", "equals start; leave windows out to run all day")
        return None
    if start is None or end is None or days is None:
        return None
    return DailyWindow(start=start, end=end, days=days)


def _days(value: object, path: str, errors: Errors) -> frozenset[int] | None:
    if value is None:
        return frozenset(range(7))
    if not isinstance(value, list) or not value:
        errors.add(path, f"expected a non-empty list of days (mon..sun or 0-6), got {show(value)}")
        return None
    days: set[int] = set()
    ok = True
    for k, day in enumerate(value):
        if isinstance(day, int) and not isinstance(day, bool) and 0 <= day <= 6:
            days.add(day)
        elif isinstance(day, str) and day in DAYS:
            days.add(DAYS.index(day))
        else:
            errors.add(f"{path}[{k}]", f"expected mon..sun or 0-6 (Monday = 0), got {show(day)}")
            ok = False
    return frozenset(days) if ok else None
