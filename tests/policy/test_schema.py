"""policy_schema(): a JSON Schema that accepts the policies the loader accepts and rejects what it must."""

from __future__ import annotations

import json
import textwrap
from datetime import date
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import given

from proxy.faults import FAULTS
from proxy.policy import PolicyError, compile_policy, load_policy_text, policy_schema

from .test_loader import MINIMAL, VALID_POLICIES, compiles_or_explains, documents, exp, policies

REPO = Path(__file__).resolve().parents[2]
POLICY_FILES = sorted((REPO / "policies").glob("*.yaml"))


def as_json(text: str) -> Any:
    """The document an editor sees: YAML's timestamps are plain strings in JSON."""
    def default(value: object) -> str:
        if isinstance(value, date):
            return value.isoformat()
        raise TypeError(value)

    return json.loads(json.dumps(yaml.safe_load(textwrap.dedent(text)), default=default))


@pytest.fixture(scope="module")
def validator(jsonschema: Any) -> Any:
    schema = policy_schema()
    jsonschema.Draft202012Validator.check_schema(schema)
    return jsonschema.Draft202012Validator(schema)


def test_schema_header() -> None:
    schema = policy_schema()
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    assert schema["title"] == "mlchaos policy"
    assert schema["required"] == ["upstream"]
    assert schema["additionalProperties"] is False
    json.dumps(schema)  # plain JSON all the way down


def test_schema_is_fresh_each_time() -> None:
    first = policy_schema()
    first["$defs"]["experiment"]["properties"].clear()
    first["properties"]["listen"]["anyOf"].clear()
    assert policy_schema()["$defs"]["experiment"]["properties"]
    assert policy_schema()["properties"]["listen"]["anyOf"]


def test_every_ref_resolves() -> None:
    schema = policy_schema()
    refs: list[str] = []

    def walk(node: object) -> None:
        if isinstance(node, dict):
            if isinstance(node.get("$ref"), str):
                refs.append(node["$ref"])
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(schema)
    assert refs
    for ref in refs:
        assert ref.startswith("#/$defs/") and ref.removeprefix("#/$defs/") in schema["$defs"], ref


def test_one_schema_per_fault_type() -> None:
    faults = policy_schema()["$defs"]["fault"]["oneOf"]
    assert sorted(f["properties"]["type"]["const"] for f in faults) == sorted(FAULTS)


@pytest.mark.parametrize("path", POLICY_FILES, ids=lambda p: p.name)
def test_policy_files_validate(validator: Any, path: Path) -> None:
    text = path.read_text()
    load_policy_text(text)
    validator.validate(as_json(text))


@pytest.mark.parametrize("name", sorted(VALID_POLICIES))
def test_valid_test_policies_validate(validator: Any, name: str) -> None:
    validator.validate(as_json(VALID_POLICIES[name]))


# Documents that both the loader and the schema refuse.
BAD = [
    "listen: 127.0.0.1:8000\n",
    MINIMAL + "colour: red\n",
    "upstream: https://127.0.0.1:8443\n",
    "upstream: http://model/v2\n",
    MINIMAL + "listen: nowhere\n",
    MINIMAL + "upstreams: {Fallback: 'http://127.0.0.1:8090'}\n",
    MINIMAL + "upstreams: {primary: 'http://127.0.0.1:8090'}\n",
    MINIMAL + "admin: {token: secret}\n",
    MINIMAL + "admin: {token_env: 'MY-TOKEN'}\n",
    MINIMAL + "max_blast_radius: 60\n",
    MINIMAL + "timeouts: {connect: 0}\n",
    MINIMAL + "limits: {upstream_pool: 0}\n",
    MINIMAL + "limits: {max_body_bytes: 0}\n",
    MINIMAL + "preserve_host: 'yes'\n",
    MINIMAL + "experiments: {a: 1}\n",
    MINIMAL + "experiments: [{chaos: 1}]\n",
    MINIMAL + "experiments: [{name: -x, chaos: 1}]\n",
    exp("chaos: 0"),
    exp("chaos: 101"),
    exp("chaos: 1, sticky_key: 'body:x'"),
    exp("chaos: 1, match: {path: 'v2/*'}"),
    exp("chaos: 1, match: {paths: /x}"),
    exp("chaos: 1, match: {headers: {x-n: 2}}"),
    exp("chaos: 1, faults: [{type: explode}]"),
    exp("chaos: 1, faults: [{type: abort, probability: 1.5}]"),
    exp("chaos: 1, faults: [{type: abort, status: 200, colour: red}]"),
    exp("chaos: 1, faults: [{probability: 1}]"),
    exp("chaos: 1, schedule: {max_duration: 0}"),
    exp("chaos: 1, schedule: {windows: [{start: '09:00', end: 17:00}]}"),
    exp("chaos: 1, schedule: {windows: [{start: '25:00', end: '10:00'}]}"),
    exp("chaos: 1, schedule: {windows: [{start: '09:00', end: '10:00', days: [funday]}]}"),
    exp("chaos: 1, schedule: {windows: [{start: '09:00', end: '10:00', days: []}]}"),
    exp("chaos: 1, reveal: {fault: 'yes'}"),
]


@pytest.mark.parametrize("text", BAD)
def test_schema_rejects_what_the_loader_rejects(validator: Any, text: str) -> None:
    with pytest.raises(PolicyError):
        load_policy_text(text)
    assert list(validator.iter_errors(as_json(text))), "the schema accepted it"


@given(policies | documents)
def test_schema_accepts_whatever_the_loader_accepts(validator: Any, raw: dict[str, Any]) -> None:
    if compiles_or_explains(raw) is not None:
        validator.validate(raw)


def test_null_means_default_to_both(validator: Any) -> None:
    text = MINIMAL + "admin:\nlisten:\nexperiments:\n  - {name: a, chaos: 1, control: null, match: {path: null}}\n"
    load_policy_text(text)
    validator.validate(as_json(text))
    assert list(validator.iter_errors(as_json("upstream: null\n")))


def test_cross_field_rules_are_the_loaders_alone(validator: Any) -> None:
    """What a schema cannot express: shares that add up, upstream references, end after start."""
    text = MINIMAL + "experiments: [{name: a, chaos: 3}, {name: b, chaos: 3, faults: [{type: fallback, upstream: x}]}]"
    validator.validate(as_json(text))
    with pytest.raises(PolicyError):
        compile_policy(as_json(text))
