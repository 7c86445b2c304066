"""The hypothesis checks' intervals have their stated coverage: benchmarks/hypothesis_coverage.py, run here
with 1,000 seeded runs per cell (the committed benchmarks/HYPOTHESIS_COVERAGE.json has 2,000)."""

from __future__ import annotations

import json
from collections import defaultdict

from tests.benchmark_scripts import BENCHMARKS, load

sim = load("hypothesis_coverage")


def test_every_interval_covers_its_true_value_at_the_stated_confidence() -> None:
    result = sim.simulate(runs=1000, seed=1)
    nominal = result["confidence"]
    by_interval: dict[str, list[float]] = defaultdict(list)
    for cell in result["cells"]:
        assert cell["runs"] >= 1000
        # Wilson's coverage oscillates a point or two around the nominal with n; the simulation's own 99%
        # interval must reach within two points of it in every cell.
        assert cell["coverage_99ci"][1] >= nominal - 0.02, cell
        by_interval[cell["interval"]].append(cell["coverage"])
    assert set(by_interval) == {"wilson", "newcombe", "order-statistic", "dkw"}
    for name, coverages in by_interval.items():
        assert sum(coverages) / len(coverages) >= nominal - 0.01, (name, coverages)


def test_the_committed_result_is_the_scripts_output() -> None:
    committed = json.loads((BENCHMARKS / "HYPOTHESIS_COVERAGE.json").read_text())
    assert committed["runs"] >= 1000
    assert {c["interval"] for c in committed["cells"]} == {"wilson", "newcombe", "order-statistic", "dkw"}
    assert committed["min_coverage"] == min(c["coverage"] for c in committed["cells"])
