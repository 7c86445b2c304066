"""The policy loader: real YAML text in, frozen objects or every problem with its path out."""

from __future__ import annotations

import dataclasses
import re
import subprocess
import sys
import textwrap
from datetime import UTC, datetime, time
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from proxy.declare.fields import REQUIRED, Field, fields_of
from proxy.faults import FAULTS
from proxy.faults.base import COMMON_FIELDS
from proxy.faults.delay import Delay
from proxy.faults.fallback import Fallback
from proxy.faults.throttle import Throttle
from proxy.policy import (
    BUCKETS,
    Address,
    Policy,
    PolicyError,
    StickyKey,
    compile_glob,
    compile_policy,
    load_policy_file,
    load_policy_text,
)
from proxy.policy.model import (
    AdminSettings,
    CohortOverride,
    DailyWindow,
    Experiment,
    Limits,
    Match,
    Reveal,
    Schedule,
    Timeouts,
)

# The field tables, as the model's declarations give them.
POLICY_FIELDS = fields_of(Policy)
ADMIN_FIELDS = fields_of(AdminSettings)
COHORT_OVERRIDE_FIELDS = fields_of(CohortOverride)
EXPERIMENT_FIELDS = fields_of(Experiment)
LIMITS_FIELDS = fields_of(Limits)
MATCH_FIELDS = fields_of(Match)
REVEAL_FIELDS = fields_of(Reveal)
SCHEDULE_FIELDS = fields_of(Schedule)
TIMEOUTS_FIELDS = fields_of(Timeouts)
WINDOW_FIELDS = fields_of(DailyWindow)

REPO = Path(__file__).resolve().parents[2]
EXAMPLE = REPO / "policies" / "example.yaml"

MINIMAL = "upstream: http://127.0.0.1:8080\n"

# Every setting with a value other than its default, so a field that is read but dropped shows.
FULL = """\
listen: 0.0.0.0:8100
upstream: http://model.internal:8081/
upstreams:
  fallback: http://127.0.0.1:8090
  shadow_2: http://[::1]
admin:
  listen: "[::1]:9100"
  token_env: MY_ADMIN_TOKEN
max_blast_radius: 7.5
timeouts: {connect: 500ms, response: 2m, idle: 1h, drain: 3}
limits: {max_header_bytes: 16KiB, max_body_bytes: 10MB, inspect_body_bytes: 512k, upstream_pool: 8,
         pipeline_depth: 4}
preserve_host: false
halted: true
cohort_override: {enabled: true, token_env: OVERRIDE}
experiments:
  - name: slow-model
    chaos: 2.5
    control: "1.25%"
    enabled: true
    sticky_key: header:X-User-Id
    match:
      method: [post, PUT]
      path: /v2/models/*/infer
      headers: {X-Tenant: "acme*"}
    faults:
      - {type: delay, probability: 0.5, distribution: lognormal, median: 200ms, sigma: 0.5}
      - {type: throttle, rate: 16KiB}
    schedule:
      start: "2026-11-22T10:00:00+02:00"
      end: "2026-11-23T10:00:00"
      max_duration: 30m
      windows:
        - {start: "09:00", end: "17:30", days: [mon, tue, 2]}
        - {start: "22:00", end: "02:00"}
    reveal: {fault: true, cohort: true}
  - name: fallback.v2
    chaos: 5
    control: 0
    enabled: false
    sticky_key: client_ip
    faults:
      - {type: fallback, upstream: fallback}
"""

MULTI = """\
upstream: http://127.0.0.1:8080
max_blast_radius: 5
experiments:
  - {name: a, chaos: 2, sticky_key: "query:UserId"}
  - {name: b, chaos: 3, sticky_key: "cookie:sid", match: {path: "/**/infer"}}
  - {name: c, chaos: 5, enabled: false}
"""

# Valid policies the schema tests reuse: each must load here and validate there.
VALID_POLICIES: dict[str, str] = {"minimal": MINIMAL, "full": FULL, "multi": MULTI}


def load(text: str) -> Policy:
    return load_policy_text(textwrap.dedent(text))


def problems(text: str) -> list[tuple[str, str]]:
    with pytest.raises(PolicyError) as info:
        load(text)
    return info.value.problems


# --- Valid policies ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("name", sorted(VALID_POLICIES))
def test_valid_policies_load(name: str) -> None:
    assert isinstance(load(VALID_POLICIES[name]), Policy)


def test_full_policy_round_trips_to_objects() -> None:
    policy = load(FULL)
    assert policy.source == FULL
    assert policy.listen == Address("0.0.0.0", 8100)
    assert (policy.upstream.name, policy.upstream.host, policy.upstream.port) == ("primary", "model.internal", 8081)
    assert policy.upstream.authority == "model.internal:8081"
    assert policy.upstream.url == "http://model.internal:8081/"
    assert sorted(policy.upstreams) == ["fallback", "shadow_2"]
    assert policy.upstreams["fallback"].authority == "127.0.0.1:8090"
    shadow = policy.upstreams["shadow_2"]
    assert (shadow.name, shadow.host, shadow.port, shadow.authority) == ("shadow_2", "::1", 80, "[::1]")
    assert policy.admin == AdminSettings(Address("::1", 9100), "MY_ADMIN_TOKEN")
    assert policy.max_blast_radius_buckets == 750
    assert policy.timeouts == Timeouts(connect=0.5, response=120.0, idle=3600.0, drain=3.0)
    assert policy.limits == Limits(16 * 1024, 10_000_000, 512 * 1024, 8, 4)
    assert policy.preserve_host is False
    assert policy.halted is True
    assert policy.cohort_override == CohortOverride(True, "OVERRIDE")

    slow, fallback = policy.experiments
    assert (slow.name, slow.chaos_buckets, slow.control_buckets, slow.enabled) == ("slow-model", 250, 125, True)
    assert (slow.chaos_percent, slow.control_percent) == (2.5, 1.25)
    assert slow.sticky_key == StickyKey("header", "x-user-id")
    assert slow.match.methods == frozenset({"POST", "PUT"})
    assert slow.match.path is not None and slow.match.path.pattern == r"\A/v2/models/[^/]*/infer\Z"
    assert [(name, glob.match("acme-eu") is not None) for name, glob in slow.match.headers] == [("x-tenant", True)]
    assert slow.match.source == {"method": ["post", "PUT"], "path": "/v2/models/*/infer",
                                 "headers": {"X-Tenant": "acme*"}}
    delay, throttle = slow.faults
    assert isinstance(delay, Delay) and (delay.probability, delay.distribution) == (0.5, "lognormal")
    assert delay.params == (0.2, 0.5)
    assert isinstance(throttle, Throttle) and throttle.rate == 16 * 1024 and throttle.probability == 1.0
    assert slow.schedule.start == datetime(2026, 11, 22, 8, 0, tzinfo=UTC)
    assert slow.schedule.end == datetime(2026, 11, 23, 10, 0, tzinfo=UTC)
    assert slow.schedule.max_duration == 1800.0
    office, night = slow.schedule.windows
    assert (office.start, office.end, office.days) == (time(9, 0), time(17, 30), frozenset({0, 1, 2}))
    assert (night.start, night.end, night.days) == (time(22, 0), time(2, 0), frozenset(range(7)))
    assert (slow.reveal.fault, slow.reveal.cohort) == (True, True)

    assert (fallback.name, fallback.enabled, fallback.chaos_buckets, fallback.control_buckets) == (
        "fallback.v2", False, 500, 0)
    assert fallback.sticky_key == StickyKey("client_ip")
    assert fallback.faults == (Fallback(upstream="fallback"),)
    assert policy.experiment("fallback.v2") is fallback


def test_minimal_policy_takes_every_default() -> None:
    policy = load(MINIMAL)
    assert policy.listen == Address("127.0.0.1", 8000)
    assert policy.upstream.authority == "127.0.0.1:8080"
    assert dict(policy.upstreams) == {}
    assert policy.admin == AdminSettings()
    assert policy.max_blast_radius_buckets == 5 * BUCKETS // 100
    assert policy.timeouts == Timeouts()
    assert policy.limits == Limits()
    assert policy.cohort_override == CohortOverride()
    assert (policy.preserve_host, policy.halted, policy.experiments) == (True, False, ())


def test_experiment_defaults() -> None:
    exp = load(MINIMAL + "experiments: [{name: e, chaos: 1}]").experiments[0]
    assert (exp.chaos_buckets, exp.control_buckets, exp.enabled, exp.sticky_key, exp.faults) == (
        100, 100, True, None, ())
    assert (exp.match.methods, exp.match.path, exp.match.headers, exp.match.source) == (None, None, (), {})
    assert (exp.schedule.start, exp.schedule.end, exp.schedule.max_duration, exp.schedule.windows) == (
        None, None, None, ())
    assert (exp.reveal.fault, exp.reveal.cohort) == (False, False)


def test_example_policy_loads() -> None:
    policy = load_policy_file(EXAMPLE)
    assert policy.source == EXAMPLE.read_text()
    assert [exp.name for exp in policy.experiments] == [
        "slow-model", "flaky-upstream", "feature-store-down", "fallback-model", "registry", "llm-answers",
        "data-feeds"]
    # It is the reference: every fault type appears in it.
    assert {fault.type for exp in policy.experiments for fault in exp.faults} == set(FAULTS)


def test_example_policy_sets_every_field() -> None:
    """The reference policy mentions every key of every table, so it documents them all."""
    import yaml

    doc = yaml.safe_load(EXAMPLE.read_text())
    exps = doc["experiments"]
    seen = [
        (POLICY_FIELDS, [doc]), (ADMIN_FIELDS, [doc["admin"]]), (TIMEOUTS_FIELDS, [doc["timeouts"]]),
        (LIMITS_FIELDS, [doc["limits"]]), (COHORT_OVERRIDE_FIELDS, [doc["cohort_override"]]),
        (EXPERIMENT_FIELDS, exps), (MATCH_FIELDS, [e["match"] for e in exps if "match" in e]),
        (SCHEDULE_FIELDS, [e["schedule"] for e in exps if "schedule" in e]),
        (WINDOW_FIELDS, [w for e in exps if "schedule" in e for w in e["schedule"]["windows"]]),
        (REVEAL_FIELDS, [e["reveal"] for e in exps if "reveal" in e]),
    ]
    for table, mappings in seen:
        missing = {f.name for f in table} - {key for m in mappings for key in m}
        assert not missing, missing


def test_compile_policy_takes_parsed_data_and_source() -> None:
    raw: dict[str, Any] = {"upstream": "http://127.0.0.1:8080", "experiments": [{"name": "x", "chaos": "2%"}]}
    policy = compile_policy(raw, source="text")
    assert policy.source == "text"
    assert policy.experiments[0].chaos_buckets == 200
    assert compile_policy(raw).source == ""


def test_policy_is_frozen() -> None:
    policy = load(FULL)
    with pytest.raises(dataclasses.FrozenInstanceError):
        policy.halted = False  # type: ignore[misc]
    with pytest.raises(TypeError):
        policy.upstreams["x"] = policy.upstream  # type: ignore[index]


@pytest.mark.parametrize(
    ("share", "buckets"),
    [("1", 100), ("2.5", 250), ('"2%"', 200), ('" 0.5 % "', 50), ("0.01", 1), ("0.07", 7), ("4.99", 499)],
)
def test_share_to_buckets(share: str, buckets: int) -> None:
    exp = load(MINIMAL + f"experiments: [{{name: e, chaos: {share}}}]").experiments[0]
    assert exp.chaos_buckets == exp.control_buckets == buckets


@pytest.mark.parametrize(
    ("key", "expected"),
    [
        ("header:X-User-Id", StickyKey("header", "x-user-id")),
        ("query:UserId", StickyKey("query", "UserId")),
        ("cookie:SessionID", StickyKey("cookie", "SessionID")),
        ("client_ip", StickyKey("client_ip")),
        ("entity:driver_id", StickyKey("entity", "driver_id")),
    ],
)
def test_sticky_keys(key: str, expected: StickyKey) -> None:
    exp = load(MINIMAL + f"experiments: [{{name: e, chaos: 1, sticky_key: '{key}'}}]").experiments[0]
    assert exp.sticky_key == expected


@pytest.mark.parametrize(
    ("url", "host", "port", "authority"),
    [
        ("http://model", "model", 80, "model"),
        ("http://Model.Example:80/", "model.example", 80, "model.example"),
        ("http://10.0.0.7:8080", "10.0.0.7", 8080, "10.0.0.7:8080"),
        ("http://[::1]:8081", "::1", 8081, "[::1]:8081"),
        ("HTTP://model:", "model", 80, "model"),
    ],
)
def test_upstream_urls(url: str, host: str, port: int, authority: str) -> None:
    up = load(f"upstream: '{url}'").upstream
    assert (up.host, up.port, up.authority, up.url) == (host, port, authority, url)


@pytest.mark.parametrize(
    "value",
    ["2026-11-22T10:00:00Z", "'2026-11-22T10:00:00Z'", "'2026-11-22T10:00:00'", "'2026-11-22T11:00:00+01:00'",
     "2026-11-22 10:00:00", "'2026-11-22T10:00'"],
)
def test_schedule_times_are_utc(value: str) -> None:
    exp = load(MINIMAL + f"experiments: [{{name: e, chaos: 1, schedule: {{start: {value}}}}}]").experiments[0]
    assert exp.schedule.start == datetime(2026, 11, 22, 10, 0, tzinfo=UTC)
    assert exp.schedule.start is not None and exp.schedule.start.tzinfo is UTC


def test_schedule_date_means_midnight_utc() -> None:
    exp = load(MINIMAL + "experiments: [{name: e, chaos: 1, schedule: {end: 2026-12-01}}]").experiments[0]
    assert exp.schedule.end == datetime(2026, 12, 1, tzinfo=UTC)


# --- Matching -------------------------------------------------------------------------------------------

@pytest.mark.parametrize(
    ("glob", "path", "matches"),
    [
        ("/v2/models/*/infer", "/v2/models/iris/infer", True),
        ("/v2/models/*/infer", "/v2/models/iris/v1/infer", False),
        ("/v2/models/*/infer", "/v2/models//infer", True),
        ("/v2/models/*/infer", "/v2/models/iris/infer/", False),
        ("/v2/**", "/v2/models/iris/infer", True),
        ("/v2/**", "/v2/", True),
        ("/v2/**", "/v2", False),
        ("/**/infer", "/infer", True),
        ("/**/infer", "/a/b/c/infer", True),
        ("/**/infer", "/a/b/c/infer2", False),
        ("/v?/predict", "/v1/predict", True),
        ("/v?/predict", "/v10/predict", False),
        ("/v?/predict", "//predict", False),
        ("/a.b+(c)[d]", "/a.b+(c)[d]", True),
        ("/a.b", "/axb", False),
        ("/exact", "/Exact", False),
        ("/x/*", "/x/a\nb", True),
    ],
)
def test_glob_table(glob: str, path: str, matches: bool) -> None:
    assert (compile_glob(glob).match(path) is not None) is matches


# At least one segment: "/" is the path of one empty segment, and of none.
segments = st.lists(st.text(st.characters(exclude_characters="/*?", codec="utf-8"), max_size=6), min_size=1, max_size=5)


@given(path=segments, data=st.data())
def test_star_glob_matches_iff_every_literal_segment_does(path: list[str], data: st.DataObject) -> None:
    glob = data.draw(st.lists(st.sampled_from(path) | st.just("*") | st.text("ab.", max_size=2), min_size=1,
                              max_size=6))
    should = len(glob) == len(path) and all(g in ("*", p) for g, p in zip(glob, path, strict=True))
    compiled = compile_glob("/" + "/".join(glob))
    assert (compiled.match("/" + "/".join(path)) is not None) is should


@given(prefix=segments, rest=segments)
def test_double_star_matches_everything_below(prefix: list[str], rest: list[str]) -> None:
    base = "/" + "/".join(prefix)
    glob = compile_glob(base + "/**")
    assert glob.match(base + "/" + "/".join(rest))
    assert not glob.match(base)


def test_header_globs_are_case_sensitive_but_names_are_not() -> None:
    exp = load(MINIMAL + "experiments: [{name: e, chaos: 1, match: {headers: {X-Model: 'iris-*'}}}]").experiments[0]
    ((name, glob),) = exp.match.headers
    assert name == "x-model"
    assert glob.match("iris-v2") and not glob.match("IRIS-v2") and not glob.match("an-iris-v2")


# --- Problems, each with its path -----------------------------------------------------------------------

def exp(body: str, *, extra: str = "") -> str:
    """A policy with one experiment whose mapping (inside the braces) is ``body``."""
    return MINIMAL + extra + f"experiments: [{{name: e, {body}}}]\n"


BAD: list[tuple[str, str, str]] = [
    # (policy text, expected path, message substring)
    ("listen: 127.0.0.1:8000\n", "upstream", "required"),
    ("upstream: https://127.0.0.1:8443\n", "upstream", "https upstreams are not supported yet"),
    ("upstream: ftp://model\n", "upstream", "expected an http:// URL"),
    ("upstream: model:8080\n", "upstream", "expected an http:// URL"),
    ("upstream: http://model/v2\n", "upstream", "must not have a path"),
    ("upstream: http://model:99999\n", "upstream", "out of range"),
    ("upstream: http://model:0\n", "upstream", "port must be 1-65535"),
    ("upstream: http://user:pw@model\n", "upstream", "credentials"),
    ("upstream: http://model/?x=1\n", "upstream", "query"),
    ("upstream: http://\n", "upstream", "no valid host"),
    ("upstream: 'http://mo del'\n", "upstream", "no valid host"),
    ("upstream: [http://model]\n", "upstream", "expected a non-empty string"),
    (MINIMAL + "listen: nowhere\n", "listen", "expected host:port"),
    (MINIMAL + "listen: 127.0.0.1:70000\n", "listen", "port must be 0-65535"),
    (MINIMAL + "colour: red\n", "colour",
     "unknown field (expected one of: admin, cohort_override, environment, experiments"),
    (MINIMAL + "upstreams: {Fallback: 'http://127.0.0.1:8090'}\n", "upstreams.Fallback", "lower-case"),
    (MINIMAL + "upstreams: {primary: 'http://127.0.0.1:8090'}\n", "upstreams.primary", "reserved"),
    (MINIMAL + "upstreams: {fb: 'https://127.0.0.1:8090'}\n", "upstreams.fb", "https upstreams are not supported"),
    (MINIMAL + "upstreams: {fb: }\n", "upstreams.fb", "expected an http:// URL"),
    (MINIMAL + "upstreams: [http://127.0.0.1:8090]\n", "upstreams", "expected a mapping"),
    (MINIMAL + "admin: {listen: '127.0.0.1:8000'}\n", "admin.listen", "must differ from listen"),
    (MINIMAL + "listen: 0.0.0.0:9000\n", "admin.listen", "must differ from listen"),
    (MINIMAL + "admin: {listen: 'x'}\n", "admin.listen", "expected host:port"),
    (MINIMAL + "admin: {token_env: 'MY-TOKEN'}\n", "admin.token_env", "environment variable name"),
    (MINIMAL + "admin: {token: secret}\n", "admin.token", "unknown field (expected one of: listen, token_env)"),
    (MINIMAL + "admin: 9000\n", "admin", "expected a mapping"),
    (MINIMAL + "max_blast_radius: 60\n", "max_blast_radius", "must be <= 50"),
    (MINIMAL + "max_blast_radius: 2.005\n", "max_blast_radius", "multiple of 0.01%"),
    (MINIMAL + "max_blast_radius: -1\n", "max_blast_radius", "between 0 and 100"),
    (MINIMAL + "timeouts: {connect: 0}\n", "timeouts.connect", "must be > 0"),
    (MINIMAL + "timeouts: {drain: 0ms}\n", "timeouts.drain", "must be > 0, got '0ms'"),
    (MINIMAL + "timeouts: {response: soon}\n", "timeouts.response", "expected a duration"),
    (MINIMAL + "timeouts: {read: 1s}\n", "timeouts.read", "unknown field"),
    (MINIMAL + "limits: {inspect_body_bytes: 2MiB, max_body_bytes: 1MiB}\n", "limits.inspect_body_bytes",
     "must be <= max_body_bytes (1048576)"),
    (MINIMAL + "limits: {upstream_pool: 0}\n", "limits.upstream_pool", "must be >= 1"),
    (MINIMAL + "limits: {pipeline_depth: 2.5}\n", "limits.pipeline_depth", "expected an integer"),
    (MINIMAL + "limits: {max_body_bytes: lots}\n", "limits.max_body_bytes", "expected a size"),
    (MINIMAL + "limits: {max_header_bytes: 0}\n", "limits.max_header_bytes", "must be >= 1"),
    (MINIMAL + "preserve_host: 'yes'\n", "preserve_host", "expected true or false"),
    (MINIMAL + "halted: 1\n", "halted", "expected true or false"),
    (MINIMAL + "cohort_override: {enabled: on_demand}\n", "cohort_override.enabled", "expected true or false"),
    (MINIMAL + "cohort_override: {token_env: '1X'}\n", "cohort_override.token_env", "environment variable"),
    (MINIMAL + "experiments: {a: 1}\n", "experiments", "expected a list of experiments"),
    (MINIMAL + "experiments: [3]\n", "experiments[0]", "expected a mapping"),
    (MINIMAL + "experiments: [{chaos: 1}]\n", "experiments[0].name", "required"),
    (MINIMAL + "experiments: [{name: -x, chaos: 1}]\n", "experiments[0].name", "starting with a letter or digit"),
    (MINIMAL + "experiments: [{name: 'a b', chaos: 1}]\n", "experiments[0].name", "1-63 letters"),
    (MINIMAL + f"experiments: [{{name: {'x' * 64}, chaos: 1}}]\n", "experiments[0].name", "1-63 letters"),
    (MINIMAL + "experiments: [{name: a, chaos: 1}, {name: a, chaos: 1}]\n", "experiments[1].name",
     "duplicate name 'a' (also experiments[0])"),
    (MINIMAL + "experiments: [{name: e}]\n", "experiments[0].chaos", "required"),
    (exp("chaos: 0"), "experiments[0].chaos", "must be >= 0.01"),
    (exp("chaos: 101"), "experiments[0].chaos", "between 0 and 100"),
    (exp("chaos: 2.005"), "experiments[0].chaos", "multiple of 0.01%"),
    (exp("chaos: lots"), "experiments[0].chaos", "expected a percentage"),
    (exp("chaos: true"), "experiments[0].chaos", "expected a percentage"),
    (exp("chaos: 1, control: 0.001"), "experiments[0].control", "multiple of 0.01%"),
    (exp("chaos: 5, control: 46", extra="max_blast_radius: 5\n"), "experiments[0]", "above the 50%"),
    (exp("chaos: 6"), "experiments[0].chaos", "6% is above max_blast_radius (5%)"),
    (exp("chaos: 6, enabled: false"), "experiments[0].chaos", "above max_blast_radius"),
    (exp("chaos: 1, enabled: 'no'"), "experiments[0].enabled", "expected true or false"),
    (exp("chaos: 1, sticky_key: 'body:x'"), "experiments[0].sticky_key", "expected header:NAME"),
    (exp("chaos: 1, sticky_key: 'header:'"), "experiments[0].sticky_key", "expected header:NAME"),
    (exp("chaos: 1, sticky_key: 'header:x y'"), "experiments[0].sticky_key", "not a valid header name"),
    (exp("chaos: 1, sticky_key: 'client_ip:x'"), "experiments[0].sticky_key", "expected header:NAME"),
    (exp("chaos: 1, match: {method: []}"), "experiments[0].match.method", "at least one method"),
    (exp("chaos: 1, match: {method: 'GE T'}"), "experiments[0].match.method", "not a valid HTTP method"),
    (exp("chaos: 1, match: {path: 'v2/*'}"), "experiments[0].match.path", "must start with /"),
    (exp("chaos: 1, match: {headers: {x-n: 2}}"), "experiments[0].match.headers.x-n", "expected a glob string"),
    (exp("chaos: 1, match: {headers: {'a b': x}}"), "experiments[0].match.headers.a b", "not a valid header"),
    (exp("chaos: 1, match: {headers: {X-A: x, x-a: y}}"), "experiments[0].match.headers.x-a", "listed twice"),
    (exp("chaos: 1, match: {paths: /x}"), "experiments[0].match.paths", "unknown field"),
    (exp("chaos: 1, match: /x"), "experiments[0].match", "expected a mapping"),
    (exp("chaos: 1, faults: {type: abort}"), "experiments[0].faults", "expected a list of faults"),
    (exp("chaos: 1, faults: [{type: abort, probability: 1.5}]"), "experiments[0].faults[0].probability",
     "must be between 0 and 1"),
    (exp("chaos: 1, faults: [{type: explode}]"), "experiments[0].faults[0].type", "unknown fault type 'explode'"),
    (exp("chaos: 1, faults: [{type: fallback, upstream: nope}]"), "experiments[0].faults[0].upstream",
     "unknown upstream 'nope' (upstreams: none are defined)"),
    (exp("chaos: 1, faults: [{type: fallback, upstream: nope}]", extra="upstreams: {fb: 'http://h'}\n"),
     "experiments[0].faults[0].upstream", "unknown upstream 'nope' (upstreams: fb)"),
    (exp("chaos: 1, schedule: {start: '2026-11-22T10:00:00Z', end: '2026-11-22T10:00:00Z'}"),
     "experiments[0].schedule.end", "must be after start"),
    (exp("chaos: 1, schedule: {start: tomorrow}"), "experiments[0].schedule.start", "ISO-8601"),
    (exp("chaos: 1, schedule: {start: 5}"), "experiments[0].schedule.start", "ISO-8601"),
    (exp("chaos: 1, schedule: {max_duration: 0}"), "experiments[0].schedule.max_duration", "must be > 0"),
    (exp("chaos: 1, schedule: {windows: {start: '09:00'}}"), "experiments[0].schedule.windows", "list of windows"),
    (exp("chaos: 1, schedule: {windows: [{start: '09:00', end: 17:00}]}"),
     "experiments[0].schedule.windows[0].end", 'quote times of day: YAML reads an unquoted 17:00 as the number'),
    (exp("chaos: 1, schedule: {windows: [{start: '25:00', end: '10:00'}]}"),
     "experiments[0].schedule.windows[0].start", "HH:MM"),
    (exp("chaos: 1, schedule: {windows: [{start: '9', end: '10:00'}]}"),
     "experiments[0].schedule.windows[0].start", "HH:MM"),
    (exp("chaos: 1, schedule: {windows: [{start: '09:00'}]}"), "experiments[0].schedule.windows[0].end", "required"),
    (exp("chaos: 1, schedule: {windows: [{start: '09:00', end: '09:00'}]}"),
     "experiments[0].schedule.windows[0].end", "equals start"),
    (exp("chaos: 1, schedule: {windows: [{start: '09:00', end: '10:00', days: [mon, funday]}]}"),
     "experiments[0].schedule.windows[0].days[1]", "expected mon..sun or 0-6"),
    (exp("chaos: 1, schedule: {windows: [{start: '09:00', end: '10:00', days: [Mon]}]}"),
     "experiments[0].schedule.windows[0].days[0]", "expected mon..sun or 0-6"),
    (exp("chaos: 1, schedule: {windows: [{start: '09:00', end: '10:00', days: [7]}]}"),
     "experiments[0].schedule.windows[0].days[0]", "expected mon..sun or 0-6"),
    (exp("chaos: 1, schedule: {windows: [{start: '09:00', end: '10:00', days: []}]}"),
     "experiments[0].schedule.windows[0].days", "non-empty list of days"),
    (exp("chaos: 1, schedule: {windows: [{start: '09:00', end: '10:00', days: mon}]}"),
     "experiments[0].schedule.windows[0].days", "non-empty list of days"),
    (exp("chaos: 1, reveal: {fault: 'yes'}"), "experiments[0].reveal.fault", "expected true or false"),
    (exp("chaos: 1, reveal: {headers: true}"), "experiments[0].reveal.headers", "unknown field"),
    (exp("chaos: 1, description: x"), "experiments[0].description", "unknown field"),
    (MINIMAL + "experiments: [{name: a, chaos: 3}, {name: b, chaos: 3}]\n", "max_blast_radius",
     "enabled experiments put 6% of traffic in chaos (a 3%, b 3%), above max_blast_radius 5%"),
    (MINIMAL + "max_blast_radius: 50\nexperiments: [{name: a, chaos: 1, control: 49}, "
     "{name: b, chaos: 1, control: 49}, {name: c, chaos: 1, control: 49}]\n",
     "experiments", "enabled experiments take 150% of traffic in chaos and control cohorts together, above 100%"),
    # Whole-document problems have no path.
    ("- upstream: http://127.0.0.1:8080\n", "", "expected a mapping, got list"),
    ("just text\n", "", "expected a mapping, got str"),
    ("", "", "the policy is empty"),
    ("# only a comment\n", "", "the policy is empty"),
    ("upstream: http://x\n  listen: 1\n", "", "invalid YAML at line 2, column 9"),
    ("upstream: [http://x\n", "", "invalid YAML at line 2"),
    ("upstream: http://x\nupstream: http://y\n", "", "line 2, column 1: while reading a mapping: found duplicate key"),
    ("upstream: http://x\nexperiments: [{name: e, chaos: 1, schedule: {start: 2026-13-45}}]\n", "",
     "invalid YAML: month must be in 1..12"),
    ("upstream: !!python/object:os.system x\n", "", "could not determine a constructor"),
    ("upstream: \"\\x\"\n", "", "invalid YAML at line 1"),
]


@pytest.mark.parametrize(("text", "path", "message"), BAD, ids=[f"{i}:{p or '-'}" for i, (_, p, _) in enumerate(BAD)])
def test_problem_has_its_path(text: str, path: str, message: str) -> None:
    found = problems(text)
    assert any(p == path and message in m for p, m in found), found


def test_every_problem_is_reported_at_once() -> None:
    found = problems("""
        listen: nowhere
        upstream: https://model
        colour: red
        timeouts: {connect: 0}
        experiments:
          - {name: a, chaos: 0}
          - name: b
            chaos: 1
            faults: [{type: abort, probability: 2}, {type: explode}, {type: fallback, upstream: x}]
            schedule: {windows: [{start: 9:00, end: 17:00}]}
    """)
    assert [p for p, _ in found] == [
        "colour", "listen", "upstream", "timeouts.connect", "experiments[0].chaos",
        "experiments[1].faults[0].probability", "experiments[1].faults[1].type", "experiments[1].faults[2].upstream",
        "experiments[1].schedule.windows[0].start", "experiments[1].schedule.windows[0].end",
    ]


def test_error_lines_name_their_paths() -> None:
    with pytest.raises(PolicyError) as info:
        load(exp("chaos: 1, faults: [{type: delay, probability: 1.5, duration: 1s}]"))
    assert info.value.lines() == ["experiments[0].faults[0].probability: must be between 0 and 1"]
    assert str(info.value) == "experiments[0].faults[0].probability: must be between 0 and 1"


# --- Blast radius ---------------------------------------------------------------------------------------

def blast(limit: float, *shares: tuple[str, float, bool]) -> str:
    items = ", ".join(f"{{name: {n}, chaos: {c}, control: 0, enabled: {str(e).lower()}}}" for n, c, e in shares)
    return MINIMAL + f"max_blast_radius: {limit}\nexperiments: [{items}]\n"


def test_blast_radius_may_be_reached_exactly() -> None:
    policy = load(blast(5, ("a", 2, True), ("b", 2.5, True), ("c", 0.5, True)))
    assert sum(e.chaos_buckets for e in policy.experiments) == policy.max_blast_radius_buckets == 500


def test_blast_radius_sum_names_the_sum_and_the_experiments() -> None:
    found = problems(blast(5, ("a", 2, True), ("b", 2.5, True), ("c", 0.51, True)))
    assert found == [("max_blast_radius", "enabled experiments put 5.01% of traffic in chaos "
                                          "(a 2%, b 2.5%, c 0.51%), above max_blast_radius 5%")]


def test_blast_radius_ignores_disabled_experiments() -> None:
    policy = load(blast(5, ("a", 4, True), ("b", 4, False), ("c", 1, True)))
    assert [e.enabled for e in policy.experiments] == [True, False, True]


def test_blast_radius_one_experiment_over_is_reported_once() -> None:
    assert problems(blast(2, ("a", 3, True))) == [("experiments[0].chaos", "3% is above max_blast_radius (2%)")]


def test_shares_are_checked_even_when_the_experiment_has_other_problems() -> None:
    found = problems(MINIMAL + "experiments: [{name: a, chaos: 9, faults: [{type: explode}]}, {name: b, chaos: 2},"
                               " {name: c, chaos: 30, control: 30, enabled: false, sticky_key: nope}]")
    assert [p for p, _ in found] == [
        "experiments[0].faults[0].type", "experiments[2]", "experiments[2].sticky_key", "experiments[0].chaos",
        "experiments[2].chaos", "max_blast_radius",
    ]
    assert found[-1][1].startswith("enabled experiments put 11% of traffic in chaos (a 9%, b 2%)")


def test_halted_policy_is_checked_all_the_same() -> None:
    assert problems(blast(5, ("a", 3, True), ("b", 3, True)).replace("max_blast", "halted: true\nmax_blast"))


def test_zero_blast_radius_allows_no_experiment_even_disabled() -> None:
    assert load(blast(0)).max_blast_radius_buckets == 0
    assert [p for p, _ in problems(blast(0, ("a", 1, False)))] == ["experiments[0].chaos"]


# --- Files --------------------------------------------------------------------------------------------------

def test_load_policy_file_reads_and_keeps_the_text(tmp_path: Path) -> None:
    path = tmp_path / "p.yaml"
    path.write_text(FULL, encoding="utf-8")
    assert load_policy_file(path).source == FULL
    assert load_policy_file(str(path)).experiments[0].name == "slow-model"


def test_missing_file_is_a_policy_error(tmp_path: Path) -> None:
    missing = tmp_path / "nope.yaml"
    with pytest.raises(PolicyError) as info:
        load_policy_file(missing)
    assert info.value.problems == [("", f"{missing}: cannot read the policy file: No such file or directory")]


def test_directory_is_a_policy_error(tmp_path: Path) -> None:
    with pytest.raises(PolicyError, match="cannot read the policy file"):
        load_policy_file(tmp_path)


def test_non_utf8_file_is_a_policy_error(tmp_path: Path) -> None:
    path = tmp_path / "latin1.yaml"
    path.write_bytes(b"upstream: http://caf\xe9\n")
    with pytest.raises(PolicyError, match="not UTF-8"):
        load_policy_file(path)


def test_file_problems_keep_their_paths(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(exp("chaos: 9"))
    with pytest.raises(PolicyError) as info:
        load_policy_file(path)
    assert [p for p, _ in info.value.problems] == ["experiments[0].chaos"]


@pytest.mark.parametrize("module", ["proxy.faults", "proxy.policy", "proxy.faults.delay", "proxy.policy.schema"])
def test_either_package_may_be_imported_first(module: str) -> None:
    """proxy.faults and proxy.policy import each other; a fresh interpreter must manage from either end."""
    code = f"import {module}; from proxy.policy import load_policy_text, policy_schema; " \
           "load_policy_text('upstream: http://x'); policy_schema()"
    subprocess.run([sys.executable, "-c", code], check=True, cwd=REPO, timeout=60)


# --- Fuzzing ------------------------------------------------------------------------------------------------

ALL_TABLES = (POLICY_FIELDS, ADMIN_FIELDS, TIMEOUTS_FIELDS, LIMITS_FIELDS, COHORT_OVERRIDE_FIELDS, EXPERIMENT_FIELDS,
              MATCH_FIELDS, SCHEDULE_FIELDS, WINDOW_FIELDS, REVEAL_FIELDS)
KEYS = sorted({f.name for table in ALL_TABLES for f in table}
              | {f.name for cls in FAULTS.values() for f in cls.FIELDS} | {"type", "probability"})
PLAUSIBLE = [
    "http://127.0.0.1:8080", "https://127.0.0.1", "http://[::1]:81/", "127.0.0.1:8000", ":0", "2%", "0.5", "200ms",
    "1MiB", "header:x-user-id", "client_ip", "/v2/*/infer", "/**", "09:00", "24:00", "mon", "sun", "POST",
    "2026-11-22T10:00:00Z", "fallback", "primary", "lognormal", "reset", *FAULTS,
]
scalars = (st.none() | st.booleans() | st.integers() | st.integers(-(2**70), 2**70) | st.floats() | st.text(max_size=12)
           | st.sampled_from(PLAUSIBLE))
json_like = st.recursive(
    scalars,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=25,
)
near_miss = st.recursive(
    scalars,
    lambda children: (st.lists(children, max_size=3)
                      | st.dictionaries(st.sampled_from(KEYS) | st.text(max_size=6), children, max_size=6)),
    max_leaves=40,
)
experiments = st.lists(
    st.fixed_dictionaries(
        {"name": st.sampled_from(["a", "b", "c"]), "chaos": st.sampled_from([0.5, 1, "2%", 3])},
        optional={f.name: near_miss for f in EXPERIMENT_FIELDS if f.name not in ("name", "chaos")},
    ),
    max_size=3,
)
policies = st.fixed_dictionaries(
    {"upstream": st.sampled_from(["http://127.0.0.1:8080", "https://x", "http://x/y"])},
    optional={f.name: experiments if f.name == "experiments" else near_miss
              for f in POLICY_FIELDS if f.name != "upstream"},
)


# Documents built from the field tables themselves, with values near the edge of valid for each kind:
# a good share of them load, so the schema agreement test (test_schema.py) sees many accepted policies.
def mostly(valid: list[Any], invalid: list[Any]) -> st.SearchStrategy[Any]:
    """Mostly valid values, so that a document with a dozen fields still loads now and then. (Hypothesis
    favours the ends of a range, so the invalid branch sits in the middle of it.)"""
    return st.integers(0, 8).flatmap(lambda n: st.sampled_from(invalid if n == 4 else valid))


KIND_VALUES: dict[str, st.SearchStrategy[Any]] = {
    "bool": mostly([True, False], ["yes", 1]),
    "string": mostly(["x", "MY_TOKEN"], ["a b", "", 3]),
    "integer": mostly([1, 8, 256], [0, -1, 2.5]),
    "number": mostly([0, 0.5, 2], [-1, "1"]),
    "probability": mostly([0, 0.25, 1], [1.5, -0.1]),
    "duration": mostly([0.5, "200ms", "2m", "1 h"], [0, "0s", "soon", -1]),
    "percent": mostly([0.01, 0.5, 1, "1.5%"], [0, 2.005, 60, "x"]),
    "size": mostly([1, 512, "16KiB", "1MB", "64MiB"], [0, "big", -1]),
    "string_list": mostly(["GET", ["post", "PUT"]], ["x y", [], [""]]),
    "number_list": mostly([[0.5, 1]], [["x"]]),
    "mapping": mostly([{}], [[]]),
    "any": mostly(["x"], [1]),
}
ANY_VALUES: dict[str, st.SearchStrategy[Any]] = {
    "listen": mostly(["127.0.0.1:8100", ":0", 9100, "[::1]:9100"], ["nowhere", "0.0.0.0:9000", 70000]),
    "start": mostly(["2026-11-22T10:00:00Z", "2026-11-22"], ["x"]),
    "end": mostly(["2026-11-23T10:00:00+01:00"], ["2026-11-22T09:00:00Z"]),
    "days": mostly([["mon", "sun"], [0, 6]], [[7], ["Tue"], []]),
    "upstreams": mostly([{"fallback": "http://127.0.0.1:8090"}, {}], [{"Bad": "http://x"}, {"b": "https://x"}]),
    "body": mostly(["text", {"error": "x"}, [1, 2]], [{"a": {"b": None}}]),
    "headers": mostly([{"x-a": "v*"}, {"X-B": "1"}], [{"x-a": 2}, {"a b": "x"}]),
    "upstream": mostly(["fallback"], ["nope"]),  # the fallback fault's
    "sticky_key": mostly(["header:X-User", "query:u", "cookie:s", "client_ip"], ["body:x", "header:"]),
    "path": mostly(["/v2/*/infer", "/**"], ["v2"]),
    "name": mostly(["a", "b", "c.d"], ["-x"]),
    "token_env": mostly(["TOKEN"], ["MY-TOKEN"]),
}
SECTIONS = {
    "admin": ADMIN_FIELDS, "timeouts": TIMEOUTS_FIELDS, "limits": LIMITS_FIELDS,
    "cohort_override": COHORT_OVERRIDE_FIELDS, "match": MATCH_FIELDS, "schedule": SCHEDULE_FIELDS,
    "reveal": REVEAL_FIELDS,
}


CLOCK = mostly(["09:00", "22:30", "17:00", "02:00"], ["25:00", 540])


def field_values(field: Field) -> st.SearchStrategy[Any]:
    if field in WINDOW_FIELDS and field.name in ("start", "end"):
        return CLOCK
    if field.name in SECTIONS:
        return table(SECTIONS[field.name])
    if field.name == "windows":
        return st.lists(table(WINDOW_FIELDS), max_size=2)
    if field.name == "faults":
        return st.lists(st.sampled_from(sorted(FAULTS)).flatmap(fault_document), max_size=2)
    if field.name == "experiments":
        return st.lists(table(EXPERIMENT_FIELDS), max_size=3, unique_by=lambda e: e["name"])
    if field.name in ANY_VALUES and field.kind in ("any", "string", "mapping", "string_list"):
        return ANY_VALUES[field.name]
    if field.kind == "choice":
        return st.sampled_from([*field.choices, "other"])
    return KIND_VALUES[field.kind]


def table(fields: tuple[Field, ...], **fixed: st.SearchStrategy[Any]) -> st.SearchStrategy[dict[str, Any]]:
    required = {f.name: field_values(f) for f in fields if f.default is REQUIRED}
    return st.fixed_dictionaries({**required, **fixed},
                                 optional={f.name: field_values(f) for f in fields if f.name not in required})


def fault_document(kind: str) -> st.SearchStrategy[dict[str, Any]]:
    return table(COMMON_FIELDS + FAULTS[kind].FIELDS, type=st.just(kind))


documents = table(POLICY_FIELDS, upstream=mostly(["http://127.0.0.1:8080"], ["https://x", "http://x/y", "x"]))


def compiles_or_explains(raw: object) -> Policy | None:
    try:
        return compile_policy(raw)
    except PolicyError as exc:
        assert exc.problems
        assert all(isinstance(p, str) and isinstance(m, str) and m for p, m in exc.problems)
        return None


@given(json_like)
def test_arbitrary_data_is_a_policy_or_a_policy_error(raw: object) -> None:
    compiles_or_explains(raw)


@given(policies | documents)
def test_near_miss_policies_are_a_policy_or_a_policy_error(raw: dict[str, Any]) -> None:
    policy = compiles_or_explains(raw)
    if policy is not None:
        assert sum(e.chaos_buckets for e in policy.experiments if e.enabled) <= policy.max_blast_radius_buckets


@given(st.text(max_size=200))
def test_arbitrary_text_is_a_policy_or_a_policy_error(text: str) -> None:
    try:
        load_policy_text(text)
    except PolicyError as exc:
        assert exc.problems


# --- Values that once escaped as other exceptions -----------------------------------------------------------

@pytest.mark.parametrize(
    ("body", "path"),
    [
        (f"chaos: {10**400}", "experiments[0].chaos"),
        (f"chaos: 1, faults: [{{type: delay, duration: {10**400}}}]", "experiments[0].faults[0].duration"),
        ("chaos: 1, faults: [{type: abort, body: {1: one}}]", "experiments[0].faults[0].body"),
        (f"chaos: 1, faults: [{{type: abort, body: {2**64}}}]", "experiments[0].faults[0].body"),
    ],
    ids=["huge-share", "huge-duration", "body-int-key", "body-huge-int"],
)
def test_unrepresentable_values_are_policy_errors(body: str, path: str) -> None:
    assert [p for p, _ in problems(exp(body))] == [path]


def test_problem_paths_follow_the_documented_shape() -> None:
    path_re = re.compile(r"^$|^[a-z_]+(\[\d+\])?(\.[^.\[]+(\[\d+\])?)*$")
    for text, path, _ in BAD:
        assert path_re.match(path), path
        for found, _ in problems(text):
            assert path_re.match(found), (text, found)
