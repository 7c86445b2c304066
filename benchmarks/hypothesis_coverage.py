"""Coverage of the hypothesis checks' confidence intervals, by seeded simulation.

For each interval (proxy/hypothesis/intervals.py) and a grid of true parameters, draw ``--runs`` seeded
samples, compute the interval at 95% as the check does, and count how often it holds the true value.
A check decides (held or deviated) only when its interval lies on one side of the tolerance, so an
interval's coverage bounds the chance of a wrong decision: below 1 - coverage on either side.

    python benchmarks/hypothesis_coverage.py --runs 2000 --out benchmarks/HYPOTHESIS_COVERAGE.json
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path
from statistics import NormalDist
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from proxy.hypothesis.intervals import dkw, newcombe, quantile_bounds, wilson
from proxy.metrics import LATENCY_BUCKETS

CONFIDENCE = 0.95


def _cell(name: str, params: dict[str, Any], hits: int, runs: int, widths: list[float]) -> dict[str, Any]:
    lo, hi = wilson(hits, runs, 0.99)  # the simulation's own uncertainty
    return {"interval": name, **params, "runs": runs, "coverage": hits / runs, "coverage_99ci": [lo, hi],
            "median_width": float(np.median(widths)) if widths else None}


def wilson_cells(rng: np.random.Generator, runs: int) -> list[dict[str, Any]]:
    out = []
    for n in (100, 1000):
        for p in (0.02, 0.1, 0.5, 0.95):
            ks = rng.binomial(n, p, size=runs)
            bounds = [wilson(int(k), n, CONFIDENCE) for k in ks]
            hits = sum(lo <= p <= hi for lo, hi in bounds)
            out.append(_cell("wilson", {"n": n, "p": p}, hits, runs, [hi - lo for lo, hi in bounds]))
    return out


def newcombe_cells(rng: np.random.Generator, runs: int) -> list[dict[str, Any]]:
    out = []
    for n in (200, 2000):
        for p1, p2 in ((0.01, 0.01), (0.05, 0.01), (0.3, 0.1)):
            k1, k2 = rng.binomial(n, p1, size=runs), rng.binomial(n, p2, size=runs)
            bounds = [newcombe(int(a), n, int(b), n, CONFIDENCE) for a, b in zip(k1, k2, strict=True)]
            d = p1 - p2
            hits = sum(lo <= d + 1e-12 and d - 1e-12 <= hi for lo, hi in bounds)
            out.append(_cell("newcombe", {"n": n, "p_chaos": p1, "p_control": p2}, hits, runs,
                             [hi - lo for lo, hi in bounds]))
    return out


def _counts(values: np.ndarray) -> list[int]:
    # bisect_left over the bounds, as metrics.Distribution.observe places a value
    idx = np.searchsorted(np.asarray(LATENCY_BUCKETS), values, side="left")
    return [int(c) for c in np.bincount(idx, minlength=len(LATENCY_BUCKETS) + 1)]


def latency_cells(rng: np.random.Generator, runs: int) -> list[dict[str, Any]]:
    """Quantile ratio chaos/control of lognormal latencies (median 18 ms), chaos scaled by ``ratio``: the
    true quantile ratio is exactly ``ratio``. The check's interval, Bonferroni-split across the cohorts."""
    out = []
    each = 1 - (1 - CONFIDENCE) / 2
    for n in (500, 5000):
        for q, ratio in ((0.5, 2.0), (0.99, 1.0), (0.99, 3.0)):
            hits, widths = 0, []
            for _ in range(runs):
                control = rng.lognormal(-4.0, 0.4, size=n)
                chaos = ratio * rng.lognormal(-4.0, 0.4, size=n)
                _, l1, h1 = quantile_bounds(LATENCY_BUCKETS, _counts(chaos), q, each)
                _, l2, h2 = quantile_bounds(LATENCY_BUCKETS, _counts(control), q, each)
                lo = l1 / h2 if h2 > 0 and not math.isinf(h2) else 0.0
                hi = h1 / l2 if l2 > 0 else math.inf
                hits += lo <= ratio <= hi
                widths.append(hi - lo)
            out.append(_cell("order-statistic", {"n": n, "quantile": q, "true_ratio": ratio}, hits, runs, widths))
    return out


def _ks(a: np.ndarray, b: np.ndarray) -> float:
    a, b = np.sort(a), np.sort(b)
    grid = np.concatenate([a, b])
    fa = np.searchsorted(a, grid, side="right") / len(a)
    fb = np.searchsorted(b, grid, side="right") / len(b)
    return float(np.max(np.abs(fa - fb)))


def dkw_cells(rng: np.random.Generator, runs: int) -> list[dict[str, Any]]:
    """KS distance between N(0, 1) and N(shift, 1): the true distance is 2 Phi(shift / 2) - 1."""
    out = []
    each = 1 - (1 - CONFIDENCE) / 2
    for n in (200, 2000):
        for shift in (0.0, 0.3, 1.0):
            true = 2 * NormalDist().cdf(shift / 2) - 1
            hits, widths = 0, []
            eps = dkw(n, each) * 2
            for _ in range(runs):
                d = _ks(rng.normal(shift, 1, n), rng.normal(0, 1, n))
                lo, hi = max(0.0, d - eps), min(1.0, d + eps)
                hits += lo <= true <= hi
                widths.append(hi - lo)
            out.append(_cell("dkw", {"n": n, "shift": shift, "true_ks": true}, hits, runs, widths))
    return out


def simulate(runs: int, seed: int) -> dict[str, Any]:
    t0 = time.perf_counter()
    rng = np.random.default_rng(seed)
    cells = [*wilson_cells(rng, runs), *newcombe_cells(rng, runs), *latency_cells(rng, runs), *dkw_cells(rng, runs)]
    return {"confidence": CONFIDENCE, "runs": runs, "seed": seed, "seconds": round(time.perf_counter() - t0, 1),
            "min_coverage": min(c["coverage"] for c in cells), "cells": cells}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=2000)
    ap.add_argument("--seed", type=int, default=18)
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args(argv)
    result = simulate(args.runs, args.seed)
    text = json.dumps(result, indent=2)
    if args.out is not None:
        args.out.write_text(text + "\n")
    for c in result["cells"]:
        params = {k: v for k, v in c.items() if k not in ("interval", "runs", "coverage", "coverage_99ci",
                                                          "median_width")}
        print(f"{c['interval']:16} {params}  coverage {c['coverage']:.3f}  width {c['median_width']:.4g}")
    print(f"min coverage {result['min_coverage']:.3f} over {len(result['cells'])} cells, {result['seconds']} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
