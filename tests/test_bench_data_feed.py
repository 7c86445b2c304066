"""What benchmarks/data_feed.py computes: the files it reads, and the bars its summary judges (loaded from its
file, as a script)."""

from __future__ import annotations

import argparse
import csv
from pathlib import Path

from tests.benchmark_scripts import load

data_feed = load("data_feed")


def test_the_csv_is_the_size_asked_for_and_the_row_count_is_right(tmp_path: Path) -> None:
    path = tmp_path / "feeds" / "f.csv"
    rows = data_feed.write_csv(path, 200_000, seed=3)
    size = path.stat().st_size
    assert 200_000 <= size < 200_000 + 64  # past the size by at most one line
    with path.open() as f:
        records = list(csv.DictReader(f))
    assert len(records) == rows and list(records[0]) == ["id", "amount", "city", "qty"]
    data_feed.write_csv(tmp_path / "g.csv", 200_000, seed=3)
    assert path.read_bytes() == (tmp_path / "g.csv").read_bytes()  # the same bytes for the same seed


def _figures(through: float, chaos_ratio: float) -> tuple[dict[str, list[float]], dict[str, list[float]]]:
    a = {"pandas_direct": [1.0] * 4, "pandas_through": [through] * 4, "raw_direct": [0.1] * 4,
         "raw_through": [0.15] * 4}
    b = {"plain": [100.0] * 4, "chaos": [100.0 * chaos_ratio] * 4, "ratio": [chaos_ratio] * 4}
    return a, b


def test_the_summary_judges_both_bars() -> None:
    args = argparse.Namespace(rounds=4, duration=1)
    text, ok = data_feed.summary(args, "now", *_figures(1.1, 0.9), "compiled", 1000)
    assert ok and text.count(": met |") == 2
    text, ok = data_feed.summary(args, "now", *_figures(1.3, 0.9), "compiled", 1000)
    assert not ok and "≤ 1.2: NOT met" in text and "≥ 0.85: met" in text
    text, ok = data_feed.summary(args, "now", *_figures(1.0, 0.5), "interpreted", 1000)
    assert not ok and "≥ 0.85: NOT met" in text and "data plane interpreted" in text
    assert "| (a) raw transfer of the same 50 MB, s | 0.100 | 0.150 | 1.500 [1.500, 1.500] | — |" in text


def test_median_of_even_and_odd_counts() -> None:
    assert data_feed.median([3.0, 1.0, 2.0]) == 2.0
    assert data_feed.median([4.0, 1.0, 2.0, 3.0]) == 2.5


def test_b_is_judged_on_pairs_of_rounds_in_which_going_second_cancels() -> None:
    # Going second costs 10% whichever side it is: 0.9 x 0.81 in one order, 0.9 / 0.9 in the other.
    ratios = [0.9 * 0.9, 0.9 / 0.9] * 3
    assert [round(r, 6) for r in data_feed.balanced(ratios)] == [0.9] * 3
    a, b = _figures(1.0, 0.9)
    b["ratio"] = [0.80, 0.95, 0.80, 0.95]  # per round the median is 0.875; each pair's is sqrt(0.76) = 0.872
    text, ok = data_feed.summary(argparse.Namespace(rounds=4, duration=1), "now", a, b, "compiled", 1000)
    assert ok and "| 0.872 [0.872, 0.872] | ≥ 0.85: met |" in text
    assert "pass-through first 0.800, the fault first 0.950" in text
    b["ratio"] = [0.70, 0.99, 0.70, 0.99]  # sqrt(0.693) = 0.832: not met, though a round was at 0.99
    assert not data_feed.summary(argparse.Namespace(rounds=4, duration=1), "now", a, b, "compiled", 1000)[1]
