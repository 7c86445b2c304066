"""The confidence interval benchmarks/paired.py gives for a median (loaded from its file, as a script)."""

from __future__ import annotations

import dataclasses
import json
import math
import statistics
import sys
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tests.benchmark_scripts import load

paired = load("paired")
bench = sys.modules["run"]  # the harness paired.py imports


def below(n: int, k: int) -> float:
    """P(Binomial(n, 1/2) < k), exactly."""
    return sum(math.comb(n, i) for i in range(k)) / 2**n


def test_the_ranks_are_the_narrowest_with_95_percent_coverage() -> None:
    for n in range(6, 201):
        lo, hi = paired.median_interval([float(i) for i in range(n)])
        k = int(lo) + 1  # the k-th smallest of 0..n-1 is k - 1
        assert hi == n - k, n  # symmetric: the k-th largest
        # [x_(k), x_(n-k+1)] misses the median with probability 2 P(B < k): at most 5%, and one rank
        # narrower would miss it more often than that.
        assert 2 * below(n, k) <= 0.05, n
        assert 2 * below(n, k + 1) > 0.05, n


def test_too_few_values_give_the_extremes() -> None:
    # Below 6 values even min..max covers the median less than 95% of the time: paired.py refuses them.
    assert paired.median_interval([3.0, 1.0, 2.0, 5.0, 4.0]) == (1.0, 5.0)
    assert 2 * below(5, 1) > 0.05


@given(st.lists(st.floats(min_value=0.1, max_value=10.0), min_size=6, max_size=80))
def test_the_interval_holds_the_median_and_is_made_of_the_values(values: list[float]) -> None:
    lo, hi = paired.median_interval(values)
    assert lo in values and hi in values
    assert lo <= statistics.median(values) <= hi


# ------------------------------------------------------------------------------------ two builds, one policy


def fake_mlchaos(folder: Path, name: str) -> Path:
    """An executable that writes the arguments it was started with to ``<name>.argv`` and exits."""
    script = folder / name
    script.write_text(f"#!{sys.executable}\nimport json, sys\n"
                      f"open({str(folder / (name + '.argv'))!r}, 'w').write(json.dumps(sys.argv[1:]))\n")
    script.chmod(0o755)
    return script


def test_each_side_defaults_to_the_current_build_and_takes_its_own() -> None:
    args = paired.parse_args(["--a", "shift", "--b", "shift", "--mlchaos", "/new/mlchaos",
                              "--mlchaos-a", "/old/bin/mlchaos --no-uvloop"])
    side = paired.sides(args)
    assert side["A"].mlchaos == ("/old/bin/mlchaos", "--no-uvloop") and side["A"].policy == "shift"
    assert side["B"].mlchaos == ("/new/mlchaos",) and side["B"].policy == "shift"
    plain = paired.sides(paired.parse_args(["--a", "passthrough", "--aa"]))
    assert plain["A"].mlchaos == plain["B"].mlchaos and plain["B"].policy == "passthrough"


def test_aa_refuses_two_builds() -> None:
    with pytest.raises(SystemExit):
        paired.parse_args(["--aa", "--mlchaos-b", "/old/mlchaos"])


def test_each_side_starts_its_own_command_with_its_policy(tmp_path: Path) -> None:
    args = paired.parse_args(["--a", "passthrough", "--b", "shift",
                              "--mlchaos-a", str(fake_mlchaos(tmp_path, "new")),
                              "--mlchaos-b", str(fake_mlchaos(tmp_path, "old"))])
    ctx = bench.Context(tmp_path, bench.Processes(), bench.Ports(), {}, ["unused"], "token")
    try:
        for label, name in (("A", "new"), ("B", "old")):
            side = paired.sides(args)[label]
            server = paired.launch(ctx, side, upstream_port=1)
            assert server.proc.wait(timeout=30) == 0
            argv = json.loads((tmp_path / f"{name}.argv").read_text())
            assert argv[:3] == ["run", "--config", str(bench.POLICIES[side.policy])]
            assert argv[argv.index("--upstream") + 1] == "http://127.0.0.1:1"
            assert f"{label}-{side.policy}.log" in server.log_file.name
    finally:
        ctx.procs.stop_all()


def test_the_summary_says_which_build_each_side_was() -> None:
    args = paired.parse_args(["--a", "shift", "--b", "shift", "--mlchaos-a", "/old/mlchaos", "--rounds", "6"])
    side = {label: dataclasses.replace(s, build=f"0.{n} (data plane: compiled)")
            for n, (label, s) in enumerate(paired.sides(args).items())}
    figs = paired.Figures(ratios=[1.0] * 6, rps={"A": [100.0] * 6, "B": [100.0] * 6},
                          cpu={"A": [50.0] * 6, "B": [50.0] * 6}, cpu_ratios=[1.0] * 6)
    text, ok = paired.summary(args, side, "2026-01-01 00:00 UTC", figs)
    assert ok
    assert "A = shift on mlchaos 0.0 (data plane: compiled) (`/old/mlchaos`)" in text
    assert f"B = shift on mlchaos 0.1 (data plane: compiled) (`{args.mlchaos}`)" in text
