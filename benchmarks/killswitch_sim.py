#!/usr/bin/env python3
"""Kill-switch simulation: A/A false-trip rate and detection delay of CountGuard (and the Seatbelt).

Every request of an experiment falls in the chaos cohort with probability ``split`` and in the control
cohort with the same probability; the rest of the traffic is ignored. A request is bad with probability
``base`` in control and ``min(1, base * multiplier)`` in chaos (multiplier 1: A/A; "hard": 100% bad).
An experiment lasts ``--horizon`` chaos requests (50,000). With equal cohorts the split cancels out: the
guard sees a sequence of cohort requests with chaos share 1/2 whatever the split, so the split only turns
"chaos requests" into seconds. A second set of tables compares the chaos cohort with *all* non-chaos
traffic (chaos share = split), which is what the guard gets when ``observe(chaos=False, ...)`` is called
for every request outside the chaos cohort.

The simulator draws only what the guard can see: the bad events, the number of good requests before
each (geometric) and how many of those were chaos (binomial), then the cohort of each bad event. That
is the same distribution as drawing every request. It applies CountGuard's update to whole arrays (the
same formula, in the same order of operations, as ``CountGuard.observe``; tests/killswitch/
test_simulation.py replays seeded runs through ``observe`` and checks the decisions agree).

    python benchmarks/killswitch_sim.py                       # full run, ~2-4 min on 2 cores
    python benchmarks/killswitch_sim.py --experiments 200 --detect-experiments 200   # quick look
    python benchmarks/killswitch_sim.py --out /tmp/killswitch.md --seed 7

The Markdown report goes to stdout (and to ``--out``); progress goes to stderr.
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from proxy.killswitch.sequential import DEFAULT_EFFECTS, DEFAULT_PRIOR, DEFAULT_WEIGHTS  # noqa: E402

SPLITS = (0.01, 0.02, 0.05)
BASES = (0.001, 0.01, 0.1)
# (name, multiplier; None = hard fault, chaos always bad)
SCENARIOS: tuple[tuple[str, float | None], ...] = (("hard fault", None), ("5x", 5.0), ("2x", 2.0))
STRESS: tuple[tuple[float, float], ...] = ((0.5, 0.3), (0.5, 0.5), (0.2, 0.01), (0.8, 0.01), (0.2, 0.1))
TARGET_P95 = {"hard fault": 10, "5x": 400, "2x": 4000}
MAX_ELEMENTS = 1 << 15  # rows x events per chunk: small enough for the arrays to stay in cache


@dataclass(frozen=True)
class GuardParams:
    alpha: float = 0.01
    effects: tuple[float, ...] = DEFAULT_EFFECTS
    weights: tuple[float, ...] = DEFAULT_WEIGHTS
    prior: float = DEFAULT_PRIOR


@dataclass(frozen=True)
class BeltParams:
    max_rate: float = 0.5
    min_requests: int = 10


@dataclass
class Result:
    guard: np.ndarray  # chaos requests until the guard trips; inf = not within the horizon
    belt: np.ndarray  # chaos requests until the seatbelt trips; inf = not within the horizon / not run
    oracle: np.ndarray  # chaos requests until the oracle SPRT trips (only when asked for)
    seconds: float = 0.0


@dataclass
class _State:
    """Per-experiment carry-over between chunks (rows = experiments still running)."""

    llr: np.ndarray  # (K, m) log likelihood ratio per effect
    good_c: np.ndarray  # cumulative good chaos / control requests
    good_k: np.ndarray
    bad_c: np.ndarray  # cumulative bad chaos / control requests
    bad_k: np.ndarray
    pend_c: np.ndarray  # bad events waiting in the open block (no good request in it yet)
    pend_k: np.ndarray
    oracle: np.ndarray  # oracle SPRT log likelihood ratio
    extra: dict[str, np.ndarray] = field(default_factory=dict)

    @classmethod
    def new(cls, k: int, m: int) -> _State:
        z = np.zeros(m, np.int64)
        return cls(np.zeros((k, m)), z.copy(), z.copy(), z.copy(), z.copy(), z.copy(), z.copy(), np.zeros(m))

    def take(self, keep: np.ndarray) -> _State:
        return _State(
            self.llr[:, keep],
            self.good_c[keep],
            self.good_k[keep],
            self.bad_c[keep],
            self.bad_k[keep],
            self.pend_c[keep],
            self.pend_k[keep],
            self.oracle[keep],
        )


def draw_events(
    rng: np.random.Generator, m: int, n: int, share: float, p_chaos: float, p_control: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """n bad events for each of m experiments: (good requests before each, chaos ones among them, is chaos).

    A cohort request is chaos with probability ``share``; bad with p_chaos / p_control by cohort.
    """
    p_bad = share * p_chaos + (1 - share) * p_control
    pi_bad = share * p_chaos / p_bad  # P(chaos | bad)
    pi_good = share * (1 - p_chaos) / (1 - p_bad) if p_bad < 1 else 0.0  # P(chaos | good)
    gaps = rng.geometric(p_bad, size=(m, n)) - 1
    chaos_goods = rng.binomial(gaps, pi_good)
    labels = rng.random((m, n)) < pi_bad
    return gaps, chaos_goods, labels


def guard_chunk(
    params: GuardParams,
    state: _State,
    gaps: np.ndarray,
    chaos_goods: np.ndarray,
    labels: np.ndarray,
    every_event: bool = False,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """CountGuard over a chunk of events, every row an experiment; updates ``state``.

    Returns (log e-value after each event, whether the guard checks its threshold there, chaos requests so
    far including the event, chaos bad events so far including the event). Like ``CountGuard``, the
    e-value is only computed where it can reach the threshold: at blocks that close with a chaos bad
    event in them (elsewhere it is -inf, unless ``every_event``).
    """
    m, n = gaps.shape
    log_r = np.log(np.asarray(params.effects))[:, None]
    r = np.asarray(params.effects)[:, None]
    log_w = np.log(np.asarray(params.weights) / math.fsum(params.weights))[:, None]
    ctrl_goods = gaps - chaos_goods
    good_c = state.good_c[:, None] + np.cumsum(chaos_goods, axis=1)  # including the gap before event j
    good_k = state.good_k[:, None] + np.cumsum(ctrl_goods, axis=1)
    cb = np.cumsum(labels, axis=1)  # chaos bads in the chunk, including event j
    kb = np.cumsum(~labels, axis=1)
    closes = gaps >= 1
    idx = np.arange(n)[None, :]
    last_close = np.maximum.accumulate(np.where(closes, idx, -1), axis=1)
    prev_close = np.concatenate([np.full((m, 1), -1), last_close[:, :-1]], axis=1)
    rows = np.arange(m)[:, None]
    pc = np.maximum(prev_close, 0)
    block_c = np.where(prev_close >= 0, cb - cb[rows, pc], cb + state.pend_c[:, None])
    block_k = np.where(prev_close >= 0, kb - kb[rows, pc], kb + state.pend_k[:, None])

    # Only the closing events change the e-value: gather them, compute their factors, scatter back.
    ci, cj = np.nonzero(closes)
    bc = block_c[ci, cj].astype(float)
    bk = block_k[ci, cj].astype(float)
    gc = chaos_goods[ci, cj].astype(float)
    gk = ctrl_goods[ci, cj].astype(float)
    s_c = (good_c[ci, cj] - chaos_goods[ci, cj]) + params.prior
    s_k = (good_k[ci, cj] - ctrl_goods[ci, cj]) + params.prior
    s = s_c / (s_c + s_k)
    u = s_k / (s_c + s_k)
    nb = bc + bk
    ng = gc + gk
    nn = nb + ng
    base = nn * np.log(nn)
    d = r * s[None, :] + u[None, :]  # (K, C)
    inc = base[None, :] + ng[None, :] * np.log(d)
    inc = inc + bc[None, :] * log_r
    inc = inc - (bc + gc)[None, :] * np.log(nb[None, :] * r + ng[None, :] * d)
    inc = inc - (bk + gk)[None, :] * np.log(nb[None, :] + ng[None, :] * d)
    full = np.zeros((len(params.effects), m, n))
    full[:, ci, cj] = inc
    llr = state.llr[:, :, None] + np.cumsum(full, axis=2)
    checks = np.zeros((m, n), bool)
    if every_event:
        checks[:] = True
    else:
        checks[ci, cj] = bc > 0
    ei, ej = np.nonzero(checks)
    terms = llr[:, ei, ej] + log_w
    top = terms.max(axis=0)
    log_e = np.full((m, n), -np.inf)
    log_e[ei, ej] = top + np.log(np.exp(terms - top).sum(axis=0))
    checks &= closes

    nchaos = good_c + state.bad_c[:, None] + cb
    chaos_bads = state.bad_c[:, None] + cb
    # carry over
    state.llr = llr[:, :, -1]
    state.good_c = good_c[:, -1]
    state.good_k = good_k[:, -1]
    last = last_close[:, -1]
    lc = np.maximum(last, 0)
    ar = np.arange(m)
    state.pend_c = np.where(last >= 0, cb[:, -1] - cb[ar, lc], state.pend_c + cb[:, -1])
    state.pend_k = np.where(last >= 0, kb[:, -1] - kb[ar, lc], state.pend_k + kb[:, -1])
    state.bad_c = state.bad_c + cb[:, -1]
    state.bad_k = state.bad_k + kb[:, -1]
    return log_e, checks, nchaos, chaos_bads


def simulate(
    rng: np.random.Generator,
    *,
    share: float,
    p_chaos: float,
    p_control: float,
    experiments: int,
    horizon: int,
    guard: GuardParams,
    belt: BeltParams | None = None,
    oracle_effect: float | None = None,
    first_chunk: int = 64,
) -> Result:
    """Chaos requests until trip for ``experiments`` runs of ``horizon`` chaos requests each."""
    t0 = time.perf_counter()
    thr = -math.log(guard.alpha)
    out_guard = np.full(experiments, np.inf)
    out_belt = np.full(experiments, np.inf)
    out_oracle = np.full(experiments, np.inf)
    alive = np.arange(experiments)
    state = _State.new(len(guard.effects), experiments)
    belt_m0_bads = np.zeros(experiments, np.int64)  # chaos bads among the first min_requests chaos requests
    n_events = first_chunk
    if oracle_effect is not None:
        o_chaos = math.log(oracle_effect) - math.log1p((oracle_effect - 1) * share)
        o_ctrl = -math.log1p((oracle_effect - 1) * share)
    while alive.size:
        m = alive.size
        n = int(min(n_events, max(16, MAX_ELEMENTS // m)))
        n_events *= 2
        prev_nchaos = state.good_c + state.bad_c
        gaps, cgoods, labels = draw_events(rng, m, n, share, p_chaos, p_control)
        log_e, checks, nchaos, chaos_bads = guard_chunk(guard, state, gaps, cgoods, labels)
        within = nchaos <= horizon
        rows = np.arange(m)

        hit = checks & within & (log_e >= thr)
        any_hit = hit.any(axis=1)
        first = hit.argmax(axis=1)
        got = any_hit & ~np.isfinite(out_guard[alive])
        out_guard[alive[got]] = nchaos[rows, first][got]

        if belt is not None:
            m0 = belt.min_requests
            # The experiment stops when the guard trips: the seatbelt counts only up to there.
            limit = out_guard[alive][:, None]
            # Rate over the chaos requests so far; it only rises at a chaos bad event, and the check
            # starts at the min_requests-th chaos request.
            belt_hit = labels & within & (nchaos <= limit) & (nchaos >= m0) & (chaos_bads > belt.max_rate * nchaos)
            bh_any = belt_hit.any(axis=1)
            bh_at = np.where(bh_any, nchaos[rows, belt_hit.argmax(axis=1)], np.inf)
            belt_m0_bads[alive] += (labels & (nchaos <= m0)).sum(axis=1) * (prev_nchaos < m0)
            end_nchaos = nchaos[:, -1]
            crosses = (prev_nchaos < m0) & (end_nchaos >= m0) & (m0 <= horizon)
            at_m0 = crosses & (belt_m0_bads[alive] > belt.max_rate * m0) & (m0 <= limit[:, 0])
            bh_at = np.where(at_m0, np.minimum(bh_at, m0), bh_at)
            cur = out_belt[alive]
            out_belt[alive] = np.minimum(cur, bh_at)

        if oracle_effect is not None:
            inc = np.where(labels, o_chaos, o_ctrl)
            o_llr = state.oracle[:, None] + np.cumsum(inc, axis=1)
            ohit = labels & within & (o_llr >= thr)
            oh_any = ohit.any(axis=1)
            oh_at = nchaos[rows, ohit.argmax(axis=1)]
            new = oh_any & ~np.isfinite(out_oracle[alive])
            out_oracle[alive[new]] = oh_at[new]
            state.oracle = o_llr[:, -1]

        done_guard = np.isfinite(out_guard[alive])
        done_oracle = np.isfinite(out_oracle[alive]) if oracle_effect is not None else True
        past = ~within[:, -1]
        keep = ~((done_guard & done_oracle) | past)
        alive = alive[keep]
        state = state.take(keep)
    return Result(out_guard, out_belt, out_oracle, time.perf_counter() - t0)


# -- statistics -------------------------------------------------------------------------------------


def wilson(k: int, n: int, z: float = 1.959964) -> tuple[float, float]:
    """95% Wilson score interval for k successes out of n."""
    if n == 0:
        return (0.0, 1.0)
    p = k / n
    den = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / den
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / den
    return (max(0.0, centre - half), min(1.0, centre + half))


def quantile(d: np.ndarray, q: float) -> float:
    """The q-quantile of delays with inf for "never": inf when more than (1-q) never tripped."""
    return float(np.quantile(d, q, method="inverted_cdf"))


def fmt_delay(x: float, horizon: int) -> str:
    return f">{horizon:,}" if not math.isfinite(x) else f"{int(x):,}"


# -- the benchmark ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Cell:
    kind: str  # "aa" or "detect"
    comparator: str  # "control" (equal cohort), "all" (all non-chaos traffic) or "stress" (A/A extras)
    split: float
    base: float
    scenario: str
    multiplier: float | None
    experiments: int
    seed: tuple[int, ...]
    share: float  # chaos share of the requests the guard sees


def run_cell(cell: Cell, horizon: int, guard: GuardParams, belt: BeltParams) -> tuple[Cell, Result]:
    rng = np.random.default_rng(np.random.SeedSequence(list(cell.seed)))
    share = cell.share
    p_chaos = 1.0 if cell.multiplier is None else min(1.0, cell.base * cell.multiplier)
    # The reference SPRT knows the share and the true relative risk; it tests the bad events' cohorts.
    oracle = p_chaos / cell.base if cell.kind == "detect" and cell.comparator == "control" else None
    res = simulate(
        rng,
        share=share,
        p_chaos=p_chaos,
        p_control=cell.base,
        experiments=cell.experiments,
        horizon=horizon,
        guard=guard,
        belt=belt,
        oracle_effect=oracle,
    )
    return cell, res


def build_cells(args: argparse.Namespace) -> list[Cell]:
    cells: list[Cell] = []
    for ci, comparator in enumerate(("control", "all")):
        aa_n = args.experiments if comparator == "control" else args.all_aa_experiments
        for si, split in enumerate(SPLITS):
            for bi, base in enumerate(BASES):
                if comparator == "all" and aa_n and base * horizon_requests(args.horizon, split) > 2.5e5:
                    n_aa = max(1, aa_n // 4)  # the costly cells (~10^5+ bad events each): fewer runs
                else:
                    n_aa = aa_n
                share = 0.5 if comparator == "control" else split
                if n_aa:
                    seed = (args.seed, ci, si, bi, 0)
                    cells.append(Cell("aa", comparator, split, base, "A/A", 1.0, n_aa, seed, share))
                for k, (name, mult) in enumerate(SCENARIOS, start=1):
                    seed = (args.seed, ci, si, bi, k)
                    n_det = args.detect_experiments
                    cells.append(Cell("detect", comparator, split, base, name, mult, n_det, seed, share))
    if args.stress_experiments:
        # A/A where plug-in shares fail: high base rates (latency over an SLO near its median), and
        # unequal cohorts (chaos 1/5 or 4/5 of the requests the guard sees).
        for i, (share, base) in enumerate(STRESS):
            cells.append(Cell("aa", "stress", 0.0, base, "A/A", 1.0, args.stress_experiments, (args.seed, 9, i), share))
    return cells


def cost(c: Cell) -> float:
    """Rough work of a cell (bad events simulated), to start the longest first."""
    return c.experiments * (c.base if c.kind == "aa" else 0.01) / c.share


def horizon_requests(horizon: int, split: float) -> float:
    """Requests the guard sees in an experiment when the comparator is all non-chaos traffic."""
    return horizon / split


def aa_table(rows: Sequence[tuple[Cell, Result]], first: str, label: Callable[[Cell], str]) -> list[str]:
    lines = [
        f"| {first} | base | experiments | guard trips | rate | 95% Wilson | guard or seatbelt | rate | 95% Wilson |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    tot_n = tot_g = tot_b = 0
    for c, r in rows:
        g = int(np.isfinite(r.guard).sum())
        b = int((np.isfinite(r.guard) | np.isfinite(r.belt)).sum())
        n = c.experiments
        tot_n += n
        tot_g += g
        tot_b += b
        lo, hi = wilson(g, n)
        lo2, hi2 = wilson(b, n)
        lines.append(
            f"| {label(c)} | {c.base:.1%} | {n:,} | {g} | {g / n:.2%} | {lo:.2%}-{hi:.2%} "
            f"| {b} | {b / n:.2%} | {lo2:.2%}-{hi2:.2%} |"
        )
    lo, hi = wilson(tot_g, tot_n)
    lo2, hi2 = wilson(tot_b, tot_n)
    lines.append(
        f"| all | all | {tot_n:,} | {tot_g} | {tot_g / tot_n:.2%} | {lo:.2%}-{hi:.2%} "
        f"| {tot_b} | {tot_b / tot_n:.2%} | {lo2:.2%}-{hi2:.2%} |"
    )
    lines.append("")
    return lines


def report(
    results: Sequence[tuple[Cell, Result]], args: argparse.Namespace, guard: GuardParams, belt: BeltParams,
    elapsed: float,
) -> str:
    lines: list[str] = []
    w = np.asarray(guard.weights) / math.fsum(guard.weights)
    lines.append("# Kill switch: CountGuard simulation")
    lines.append("")
    lines.append(
        f"alpha = {guard.alpha}; effects (odds ratios) {', '.join(f'{r:g}' for r in guard.effects)}; "
        f"weights {', '.join(f'{x:.3f}' for x in w)}; share prior {guard.prior} per cohort; "
        f"horizon {args.horizon:,} chaos requests per experiment; seed {args.seed}. "
        f"Seatbelt: chaos bad rate > {belt.max_rate:g} after >= {belt.min_requests} chaos requests."
    )
    lines.append("")
    for comparator, title in (
        ("control", "chaos vs an equal control cohort (chaos share 1/2; the split cancels out)"),
        ("all", "chaos vs all non-chaos traffic (chaos share = split)"),
    ):
        aa = [(c, r) for c, r in results if c.kind == "aa" and c.comparator == comparator]
        if aa:
            lines.append(f"## A/A false trips, {title}")
            lines.append("")
            lines += aa_table(aa, "split", lambda c: f"{c.split:.0%}")
        det = [(c, r) for c, r in results if c.kind == "detect" and c.comparator == comparator]
        if det:
            lines.append(f"## Detection delay (chaos requests until trip), {title}")
            lines.append("")
            oracle_col = comparator == "control"
            head = (
                "| split | base | scenario | chaos bad rate | guard p50 | guard p95 | detected "
                "| with seatbelt p50 | p95 |"
            )
            sep = "|---|---|---|---|---|---|---|---|---|"
            if oracle_col:
                head += " reference SPRT p95 |"
                sep += "---|"
            head += " target p95 | met (guard / with seatbelt) |"
            sep += "---|---|"
            lines.append(head)
            lines.append(sep)
            for c, r in det:
                both = np.minimum(r.guard, r.belt)
                p_chaos = 1.0 if c.multiplier is None else min(1.0, c.base * c.multiplier)
                g50, g95 = quantile(r.guard, 0.5), quantile(r.guard, 0.95)
                b50, b95 = quantile(both, 0.5), quantile(both, 0.95)
                target = TARGET_P95[c.scenario]
                row = (
                    f"| {c.split:.0%} | {c.base:.1%} | {c.scenario} | {p_chaos:.1%} | {fmt_delay(g50, args.horizon)} "
                    f"| {fmt_delay(g95, args.horizon)} | {np.isfinite(r.guard).mean():.1%} "
                    f"| {fmt_delay(b50, args.horizon)} | {fmt_delay(b95, args.horizon)} |"
                )
                if oracle_col:
                    row += f" {fmt_delay(quantile(r.oracle, 0.95), args.horizon)} |"
                met = f"{'yes' if g95 <= target else 'no'} / {'yes' if b95 <= target else 'no'}"
                row += f" {target:,} | {met} |"
                lines.append(row)
            lines.append("")
    stress = [(c, r) for c, r in results if c.comparator == "stress"]
    if stress:
        lines.append("## A/A stress: high base rates, unequal cohorts")
        lines.append("")
        lines += aa_table(stress, "chaos share", lambda c: f"{c.share:g}")
    lines.append(
        f"{len(results)} cells; {args.experiments:,} A/A experiments per equal-cohort cell, "
        f"{args.detect_experiments:,} per detection cell; wall time {elapsed:.0f} s on {args.workers} "
        f"worker process(es); numpy {np.__version__}."
    )
    lines.append("")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--experiments", type=int, default=2000, help="A/A experiments per equal-cohort cell")
    ap.add_argument("--detect-experiments", type=int, default=1000, help="experiments per detection cell")
    ap.add_argument(
        "--all-aa-experiments", type=int, default=400,
        help="A/A experiments per cell with all non-chaos traffic as comparator (0: skip)",
    )
    ap.add_argument(
        "--stress-experiments", type=int, default=500,
        help="A/A experiments per stress cell: base 30%% and 50%%, unequal cohorts (0: skip)",
    )
    ap.add_argument("--horizon", type=int, default=50_000, help="chaos requests per experiment")
    ap.add_argument("--alpha", type=float, default=0.01)
    ap.add_argument("--seed", type=int, default=20240601)
    ap.add_argument("--belt-rate", type=float, default=0.5)
    ap.add_argument("--belt-min", type=int, default=10)
    ap.add_argument("--workers", type=int, default=min(2, os.cpu_count() or 1))
    ap.add_argument("--out", type=Path, help="also write the Markdown report here")
    args = ap.parse_args(argv)

    guard = GuardParams(alpha=args.alpha)
    belt = BeltParams(args.belt_rate, args.belt_min)
    cells = build_cells(args)
    # Longest first, so that the two workers finish together.
    cells.sort(key=cost, reverse=True)
    t0 = time.perf_counter()
    results: list[tuple[Cell, Result]] = []
    if args.workers > 1:
        with ProcessPoolExecutor(args.workers) as pool:
            futures = [pool.submit(run_cell, c, args.horizon, guard, belt) for c in cells]
            for i, f in enumerate(futures, 1):
                results.append(f.result())
                print(f"[{i}/{len(cells)}] {time.perf_counter() - t0:.0f}s", file=sys.stderr, flush=True)
    else:
        for i, c in enumerate(cells, 1):
            results.append(run_cell(c, args.horizon, guard, belt))
            print(f"[{i}/{len(cells)}] {time.perf_counter() - t0:.0f}s", file=sys.stderr, flush=True)
    order = {("aa", "control"): 0, ("detect", "control"): 1, ("aa", "all"): 2, ("detect", "all"): 3}
    scen = {name: i for i, (name, _) in enumerate((("A/A", 1.0), *SCENARIOS))}

    def key(cr: tuple[Cell, Result]) -> tuple[float, ...]:
        c = cr[0]
        return (order.get((c.kind, c.comparator), 4), c.split, c.share, c.base, scen[c.scenario])

    results.sort(key=key)
    text = report(results, args, guard, belt, time.perf_counter() - t0)
    sys.stdout.write(text)
    if args.out:
        args.out.write_text(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
