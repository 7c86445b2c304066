"""Staging mode: ``environment: staging`` lets an experiment take up to 100% of matching traffic, with no
control cohort by default; production refuses it as before."""

from __future__ import annotations

from typing import Any

import pytest

from proxy.declare.errors import PolicyError
from proxy.policy import compile_policy
from proxy.policy.model import BUCKETS

BASE = {"upstream": "http://127.0.0.1:8080"}


def test_staging_takes_all_traffic_without_a_control_cohort() -> None:
    policy = compile_policy({**BASE, "environment": "staging", "max_blast_radius": 100,
                             "experiments": [{"name": "all", "chaos": 100}]})
    exp = policy.experiments[0]
    assert (exp.chaos_buckets, exp.control_buckets) == (BUCKETS, 0)
    assert policy.environment == "staging"


def test_staging_keeps_an_explicit_control_within_100_percent() -> None:
    policy = compile_policy({**BASE, "environment": "staging", "max_blast_radius": 80,
                             "experiments": [{"name": "e", "chaos": 80, "control": 20}]})
    assert policy.experiments[0].control_percent == 20
    with pytest.raises(PolicyError, match="above the 100% one experiment may take"):
        compile_policy({**BASE, "environment": "staging", "max_blast_radius": 80,
                        "experiments": [{"name": "e", "chaos": 80, "control": 30}]})


@pytest.mark.parametrize(("raw", "where", "message"), [
    ({"max_blast_radius": 100}, "max_blast_radius", "must be <= 50 (100 with environment: staging)"),
    ({"max_blast_radius": 50, "experiments": [{"name": "e", "chaos": 40}]}, "experiments[0]",
     "above the 50% one experiment may take (100% with environment: staging)"),
    ({"environment": "prod"}, "environment", "must be one of production, staging"),
])
def test_production_refuses_what_staging_allows(raw: dict[str, object], where: str, message: str) -> None:
    with pytest.raises(PolicyError) as info:
        compile_policy({**BASE, **raw})
    assert any(path == where and message in text for path, text in info.value.problems), info.value.problems


def test_production_default_control_is_still_the_chaos_share() -> None:
    exp = compile_policy({**BASE, "experiments": [{"name": "e", "chaos": 2}]}).experiments[0]
    assert exp.control_buckets == exp.chaos_buckets


def test_the_schema_allows_a_blast_radius_above_50_only_in_staging() -> None:
    from proxy.policy.schema import policy_schema

    jsonschema: Any = pytest.importorskip("jsonschema")
    validator = jsonschema.Draft202012Validator(policy_schema())
    assert list(validator.iter_errors({**BASE, "max_blast_radius": 60}))
    assert not list(validator.iter_errors({**BASE, "environment": "staging", "max_blast_radius": 100}))
    assert not list(validator.iter_errors({**BASE, "max_blast_radius": 50}))
