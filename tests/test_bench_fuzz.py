"""A short seeded run of benchmarks/fuzz.py: generated HTTP inputs against a running sidecar, payload mutations
against every adapter. The long runs (1M inputs each) are the lead's, on the final code (benchmarks/RESULTS.md)."""

from __future__ import annotations

import shlex
import sys

from proxy.payload import ADAPTERS, MUTATIONS
from tests.benchmark_scripts import load

fuzz = load("fuzz")


def test_inputs_are_reproducible_from_the_seed() -> None:
    assert fuzz.plan(5, 123) == fuzz.plan(5, 123)
    assert fuzz.plan(5, 123) != fuzz.plan(6, 123)
    kinds = {inp.kind for cid in range(200) for inp in fuzz.plan(5, cid)[1]}
    assert kinds == {"clean", "edge", "mutated"}


def test_payload_mutations_against_every_adapter_do_not_crash() -> None:
    stats = fuzz.PayloadStats()
    for chunk in range(4):
        stats.merge(fuzz.payload_chunk(11, chunk, 500))
    assert stats.total == 2000
    assert not stats.crashes, stats.examples
    for name in ("v2", "v1", "mlflow", "generic"):
        assert stats.steps[f"{name} read"] == 2000
        assert stats.steps[f"{name} mutate+write"] > 0, name
    # File formats: the fuzzer writes the tables the JSON adapters read as CSV, JSON Lines and JSON records.
    for name in ("csv", "jsonl", "json_records"):
        assert ADAPTERS[name].RAW and stats.steps[f"{name} response mutate+write"] > 0, name
    assert len(stats.mutations) == len(MUTATIONS) + 1  # the table mutations and perturb
    again = fuzz.payload_chunk(11, 2, 500)
    assert again.steps == fuzz.payload_chunk(11, 2, 500).steps


def test_a_short_http_fuzz_leaves_the_sidecar_serving() -> None:
    args = fuzz.parse_args(["http", "--seed", "3", "--count", "2000", "--seconds", "90", "--concurrency", "32",
                            "--check-every", "1", "--mlchaos", shlex.join([sys.executable, "-m", "proxy"])])
    stats, _ = fuzz.http_main(args, shlex.split(args.mlchaos))
    assert stats.total >= 2000
    assert sum(stats.outcomes.values()) == stats.total  # one outcome per input sent
    assert stats.crashes == 0, stats.crash_lines
    assert stats.outcomes["hung"] == 0 and stats.outcomes["bad answer"] == 0
    assert stats.health_ok >= 1 and not stats.health_failed
    assert stats.final_check == "served"
    assert stats.outcomes["2xx"] > 0 and stats.outcomes["4xx"] > 0  # valid inputs served, invalid refused
    text = fuzz.markdown_http(stats, args, "test", shlex.split(args.mlchaos))
    assert f"| {stats.total:,} |" in text
