"""Drift statistics between the control cohort's predictions (the reference) and the chaos cohort's.

Pure numpy, vectorized, no scipy. Every function drops non-finite values (NaN, ±inf) first and raises
``ValueError`` when a sample is then empty. Conventions: ``expected``/``a`` is control, ``actual``/``b`` chaos.

Numeric samples
    ``psi``: Population Stability Index, ``Σ (q - p) ln(q / p)`` over bins whose edges are the quantiles of
        the *expected* sample (``bins`` equal-mass bins, fewer when ties merge edges; or explicit ``edges``).
        Bins are ``(e[i-1], e[i]]`` like Prometheus ``le`` buckets. Bin proportions are floored at
        ``eps = 1e-4`` (Evidently's choice) so an empty bin gives a large but finite term. PSI is biased
        upwards on small samples: under no drift ``E[PSI] ≈ (k - 1)(1/n + 1/m)`` for ``k`` bins (0.009 for
        10 bins and 2000 + 2000 predictions, 0.09 for 200 + 200), hence ``Thresholds.min_samples``.
    ``ks``: two-sample Kolmogorov–Smirnov statistic ``D = sup |F_a - F_b|`` (exact, ties handled) and its
        p-value ``P(D ≥ d)`` under the null (no ties): exact for equal sizes at any n (the
        Gnedenko–Korolyuk sum, which is the common case of two full windows), exact by lattice-path counting
        for unequal sizes with ``n·m ≤ EXACT_KS_MAX_PRODUCT`` (10⁶), and above that the asymptotic
        Kolmogorov distribution ``Q_KS(λ)``, ``λ = (√nₑ + 0.12 + 0.11/√nₑ) D``, ``nₑ = nm/(n+m)`` (Stephens'
        effective-n correction, Numerical Recipes' ``probks``), the series summed to double precision.
        Against scipy's exact p-values: within 1e-11 in the exact regimes; within 0.011 absolute in the
        asymptotic one (worst for nearly equal sizes such as 1999 + 2000, ~0.003 for 1500 + 2000).
        Conservative for discrete data with ties.
    ``js_distance``: Jensen–Shannon distance, base 2, in [0, 1], over ``bins`` quantile bins of the *pooled*
        sample (so it is symmetric in its arguments). Evidently's ``jensenshannon`` default is base e: its
        value is ours × √ln 2 ≈ 0.83 ×.
    ``wasserstein_normalized``: the 1-Wasserstein (earth mover's) distance of the two empirical
        distributions divided by the standard deviation of the pooled sample (0 when that is 0), so it is
        unit-free and symmetric. (Evidently divides by the reference's standard deviation instead.)

Categorical counts (label → count mappings; a missing label counts 0)
    ``psi_categorical``, ``js_categorical``: as above with one bin per label; ``chi_square``: Pearson's
    chi-square test of homogeneity on the 2 × k table, ``k - 1`` degrees of freedom, p from the exact
    closed form of the chi-square survival function (accurate to ~1e-12; the chi-square approximation
    itself wants expected counts ≥ 5 per cell).

``compare_numeric`` and ``compare_classes`` compute them all into a ``DriftReport`` with its alarms; the
alarm levels are ``Thresholds`` (defaults: PSI warn > 0.1, alarm > 0.2; KS p < 0.05; chi-square p < 0.05;
JS distance > 0.1; normalized Wasserstein > 0.1 — the usual Evidently / industry levels).

These are fixed-sample statistics: recomputed on a sliding window again and again, an A/A experiment will
cross a p < 0.05 line now and then over a long run (each look has ~5% chance). Read them as a dashboard,
and leave stopping decisions to the anytime-valid kill switch.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

# np.quantile imports numpy.ma on its first call (numpy 2): imported here, at start-up, the first drift
# computation does not hold the event loop for an import (measured: 12 ms idle, far more under load).
import numpy.ma
from numpy.typing import ArrayLike, NDArray

__all__ = [
    "EPS",
    "STATISTICS",
    "DriftReport",
    "Thresholds",
    "chi2_sf",
    "chi_square",
    "compare_classes",
    "compare_numeric",
    "js_categorical",
    "js_distance",
    "kolmogorov_sf",
    "ks",
    "learn_edges",
    "psi",
    "psi_categorical",
    "quantile_edges",
    "wasserstein_normalized",
]

FloatArray = NDArray[np.float64]

EPS = 1e-4
# ks(): the exact p-value by path counting when the two sizes differ and n·m is at most this (≤ 1000 numpy
# steps, a few milliseconds); the asymptotic distribution above.
EXACT_KS_MAX_PRODUCT = 1_000_000
# Values of the ``statistic`` label of mlchaos_prediction_drift (DriftReport.statistics() keys).
STATISTICS = ("psi", "ks", "ks_p", "js", "wasserstein", "chi2", "chi2_p")


def _clean(x: ArrayLike, name: str) -> FloatArray:
    arr = np.asarray(x, dtype=np.float64).ravel()
    arr = arr[np.isfinite(arr)]
    if arr.size == 0:
        raise ValueError(f"{name}: no finite values")
    return arr


# ------------------------------------------------------------------------------------------------ binning

def quantile_edges(sample: ArrayLike, bins: int = 10) -> FloatArray:
    """Interior bin edges at the ``1/bins .. (bins-1)/bins`` quantiles of ``sample``, duplicates merged.

    ``len(edges) + 1`` bins: ``(-inf, e0], (e0, e1], ..., (e_last, inf)``. A constant sample gives one edge.
    """
    if bins < 2:
        raise ValueError("bins must be at least 2")
    x = _clean(sample, "sample")
    edges = np.quantile(x, np.arange(1, bins) / bins)
    return np.unique(edges)


def _bin_counts(x: FloatArray, edges: FloatArray) -> NDArray[np.int64]:
    # side="left": a value equal to an edge belongs to the bin that edge closes (Prometheus "le").
    idx = np.searchsorted(edges, x, side="left")
    return np.bincount(idx, minlength=edges.size + 1).astype(np.int64)


def _psi_from_counts(p_counts: NDArray[Any], q_counts: NDArray[Any], eps: float) -> float:
    p = np.maximum(p_counts / p_counts.sum(), eps)
    q = np.maximum(q_counts / q_counts.sum(), eps)
    return float(np.sum((q - p) * np.log(q / p)))


def _js_from_counts(p_counts: NDArray[Any], q_counts: NDArray[Any]) -> float:
    p = p_counts / p_counts.sum()
    q = q_counts / q_counts.sum()
    m = 0.5 * (p + q)
    with np.errstate(divide="ignore", invalid="ignore"):
        kl_pm = np.where(p > 0, p * np.log2(p / m), 0.0)
        kl_qm = np.where(q > 0, q * np.log2(q / m), 0.0)
    div = 0.5 * float(kl_pm.sum() + kl_qm.sum())
    return math.sqrt(min(max(div, 0.0), 1.0))


# ------------------------------------------------------------------------------------------------ numeric

def psi(expected: ArrayLike, actual: ArrayLike, *, bins: int = 10, edges: ArrayLike | None = None,
        eps: float = EPS) -> float:
    """Population Stability Index of ``actual`` against ``expected`` (see the module docstring).

    ``edges``: interior bin edges to use instead of the quantiles of ``expected`` (e.g. the histogram's).
    """
    p_x = _clean(expected, "expected")
    q_x = _clean(actual, "actual")
    e = quantile_edges(p_x, bins) if edges is None else np.unique(_clean(edges, "edges"))
    return _psi_from_counts(_bin_counts(p_x, e), _bin_counts(q_x, e), eps)


def kolmogorov_sf(lam: ArrayLike) -> FloatArray:
    """``Q_KS(λ) = P(K > λ)`` for the Kolmogorov distribution, to double precision, vectorized over ``λ``.

    ``2 Σ (-1)^(j-1) exp(-2 j² λ²)`` for λ ≥ 1, and ``1 - √(2π)/λ Σ exp(-(2j-1)² π² / (8 λ²))`` below
    (both converge fast where they are used; 40 terms are far more than double precision needs).
    """
    lam_arr = np.atleast_1d(np.asarray(lam, dtype=np.float64))
    out = np.ones_like(lam_arr)
    j = np.arange(1, 41, dtype=np.float64)[:, None]
    big = lam_arr >= 1.0
    if big.any():
        lb = lam_arr[big][None, :]
        terms = np.where(j % 2 == 1, 1.0, -1.0) * np.exp(-2.0 * j * j * lb * lb)
        out[big] = np.clip(2.0 * terms.sum(axis=0), 0.0, 1.0)
    small = (lam_arr > 0.0) & ~big
    if small.any():
        ls = lam_arr[small][None, :]
        k = 2.0 * j - 1.0
        s = np.exp(-(k * k) * (math.pi**2) / (8.0 * ls * ls)).sum(axis=0)
        out[small] = np.clip(1.0 - math.sqrt(2.0 * math.pi) / ls[0] * s, 0.0, 1.0)
    return out


def _ks_equal_sf(h: int, n: int) -> float:
    """Exact ``P(D ≥ h/n)`` for two samples of ``n`` (Gnedenko–Korolyuk):
    ``2 Σ_{j ≥ 1} (-1)^(j-1) C(2n, n - jh) / C(2n, n)``."""
    if h <= 0:
        return 1.0
    log_fact = np.concatenate([[0.0], np.cumsum(np.log(np.arange(1, 2 * n + 1, dtype=np.float64)))])
    j = np.arange(1, n // h + 1)
    log_ratio = 2.0 * log_fact[n] - log_fact[n - j * h] - log_fact[n + j * h]
    terms = np.where(j % 2 == 1, 1.0, -1.0) * np.exp(log_ratio)
    return float(min(max(2.0 * terms.sum(), 0.0), 1.0))


def _ks_exact_sf(k: int, n: int, m: int) -> float:
    """Exact ``P(D ≥ k/(nm))`` under the null by counting the monotone lattice paths from (0, 0) to (n, m)
    that stay strictly inside ``|i m - j n| < k`` (every path equally likely). One vectorized cumulative
    sum per row, rows rescaled to stay in floating range: ``min(n, m)`` numpy steps."""
    if k <= 0:
        return 1.0
    if n > m:
        n, m = m, n
    i = np.arange(n + 1, dtype=np.int64)
    lo = np.clip((i * m - k) // n + 1, 0, m)
    hi = np.clip(-((-(i * m + k)) // n) - 1, 0, m)  # ceil((i m + k) / n) - 1
    row = np.zeros(m + 1, dtype=np.float64)
    row[: hi[0] + 1] = 1.0
    log_scale = 0.0
    for r in range(1, n + 1):
        a, b = int(lo[r]), int(hi[r])
        new = np.zeros(m + 1, dtype=np.float64)
        new[a : b + 1] = np.cumsum(row[a : b + 1])
        top = float(new[b])  # the largest: cumulative sums of non-negative terms
        if top <= 0.0:
            return 1.0
        row = new / top
        log_scale += math.log(top)
    log_total = math.lgamma(n + m + 1) - math.lgamma(n + 1) - math.lgamma(m + 1)
    inside = math.exp(math.log(row[m]) + log_scale - log_total) if row[m] > 0 else 0.0
    return float(min(max(1.0 - inside, 0.0), 1.0))


def ks(a: ArrayLike, b: ArrayLike) -> tuple[float, float]:
    """Two-sample Kolmogorov–Smirnov ``(statistic, p_value)``; symmetric in ``a`` and ``b``."""
    xa = np.sort(_clean(a, "a"))
    xb = np.sort(_clean(b, "b"))
    n, m = xa.size, xb.size
    pooled = np.concatenate([xa, xb])
    cdf_a = np.searchsorted(xa, pooled, side="right") / n
    cdf_b = np.searchsorted(xb, pooled, side="right") / m
    d = float(np.max(np.abs(cdf_a - cdf_b)))
    if n == m:
        return d, _ks_equal_sf(round(d * n), n)
    if n * m <= EXACT_KS_MAX_PRODUCT:
        return d, _ks_exact_sf(round(d * n * m), n, m)
    en = n * m / (n + m)
    sq = math.sqrt(en)
    lam = (sq + 0.12 + 0.11 / sq) * d
    return d, float(kolmogorov_sf(lam)[0])


def js_distance(a: ArrayLike, b: ArrayLike, *, bins: int = 10, edges: ArrayLike | None = None) -> float:
    """Jensen–Shannon distance (base 2, in [0, 1]) over quantile bins of the pooled sample, or ``edges``."""
    xa = _clean(a, "a")
    xb = _clean(b, "b")
    e = quantile_edges(np.concatenate([xa, xb]), bins) if edges is None else np.unique(_clean(edges, "edges"))
    return _js_from_counts(_bin_counts(xa, e), _bin_counts(xb, e))


def wasserstein_normalized(a: ArrayLike, b: ArrayLike) -> float:
    """1-Wasserstein distance of the empirical distributions over the pooled standard deviation."""
    xa = np.sort(_clean(a, "a"))
    xb = np.sort(_clean(b, "b"))
    pooled = np.sort(np.concatenate([xa, xb]))
    scale = float(np.std(pooled))
    if scale == 0.0 or not math.isfinite(scale):
        return 0.0
    # Between consecutive pooled values both CDFs are constant: W1 = Σ |F_a - F_b| Δx.
    cdf_a = np.searchsorted(xa, pooled[:-1], side="right") / xa.size
    cdf_b = np.searchsorted(xb, pooled[:-1], side="right") / xb.size
    w1 = float(np.sum(np.abs(cdf_a - cdf_b) * np.diff(pooled)))
    return w1 / scale


# -------------------------------------------------------------------------------------------- categorical

def _aligned(a: Mapping[str, float], b: Mapping[str, float]) -> tuple[FloatArray, FloatArray]:
    keys = sorted(set(a) | set(b))
    ca = np.array([float(a.get(k, 0)) for k in keys], dtype=np.float64)
    cb = np.array([float(b.get(k, 0)) for k in keys], dtype=np.float64)
    if ca.size == 0 or ca.sum() <= 0 or cb.sum() <= 0:
        raise ValueError("both samples need a positive total count")
    if (ca < 0).any() or (cb < 0).any() or not (np.isfinite(ca).all() and np.isfinite(cb).all()):
        raise ValueError("counts must be finite and non-negative")
    return ca, cb


def psi_categorical(expected: Mapping[str, float], actual: Mapping[str, float], *, eps: float = EPS) -> float:
    """PSI over label frequencies (one bin per label of either sample)."""
    p, q = _aligned(expected, actual)
    return _psi_from_counts(p, q, eps)


def js_categorical(a: Mapping[str, float], b: Mapping[str, float]) -> float:
    """Jensen–Shannon distance (base 2) over label frequencies."""
    p, q = _aligned(a, b)
    return _js_from_counts(p, q)


def chi2_sf(x: float, dof: int) -> float:
    """``P(χ²_dof > x)``: the regularized upper incomplete gamma ``Q(dof/2, x/2)`` in closed form."""
    if dof < 1:
        raise ValueError("dof must be at least 1")
    if not x > 0.0:
        return 1.0
    y = x / 2.0
    if dof % 2 == 0:
        # Q(k, y) = e^-y Σ_{i<k} y^i / i!
        i = np.arange(dof // 2, dtype=np.float64)
        log_fact = np.concatenate([[0.0], np.cumsum(np.log(np.arange(1, dof // 2, dtype=np.float64)))])
        terms = np.exp(i * math.log(y) - log_fact - y)
    else:
        # Q(k + 1/2, y) = erfc(√y) + e^-y Σ_{i<k} y^(i+1/2) / Γ(i + 3/2)
        i = np.arange(dof // 2, dtype=np.float64)
        log_gamma = math.lgamma(1.5) + np.concatenate(
            [[0.0], np.cumsum(np.log(np.arange(1, dof // 2, dtype=np.float64) + 0.5))])
        terms = np.exp((i + 0.5) * math.log(y) - log_gamma - y)
        terms = np.concatenate([[math.erfc(math.sqrt(y))], terms])
    return float(min(max(terms.sum(), 0.0), 1.0))


def chi_square(a: Mapping[str, float], b: Mapping[str, float]) -> tuple[float, float]:
    """Pearson's chi-square test of homogeneity of two label-count tables: ``(statistic, p_value)``.

    One label in all → ``(0.0, 1.0)``.
    """
    ca, cb = _aligned(a, b)
    used = (ca + cb) > 0
    ca, cb = ca[used], cb[used]
    if ca.size < 2:
        return 0.0, 1.0
    table = np.stack([ca, cb])
    expected = table.sum(axis=1, keepdims=True) * table.sum(axis=0, keepdims=True) / table.sum()
    stat = float(np.sum((table - expected) ** 2 / expected))
    return stat, chi2_sf(stat, ca.size - 1)


# ------------------------------------------------------------------------------------------ bucket edges

def learn_edges(values: ArrayLike, n: int = 12) -> tuple[float, ...]:
    """Histogram bucket edges (``le`` bounds, +Inf implied) learned from a sample, e.g. the first control
    predictions, to be frozen for ``mlchaos_prediction_value``.

    The ``1/(n+1) .. n/(n+1)`` quantiles (``n + 1`` buckets of about equal mass), rounded to 3 significant
    digits — more where 3 would merge distinct quantiles — then deduplicated: strictly increasing, at most
    ``n`` edges, at least one.
    """
    if n < 1:
        raise ValueError("n must be at least 1")
    x = _clean(values, "values")
    raw = np.unique(np.quantile(x, np.arange(1, n + 1) / (n + 1)))
    for digits in range(3, 18):
        rounded = sorted({float(f"{v:.{digits}g}") for v in raw.tolist()})
        if len(rounded) == raw.size:
            break
    return tuple(rounded)


# ---------------------------------------------------------------------------------------------- reports

@dataclass(frozen=True)
class Thresholds:
    """Alarm levels. A statistic beyond its level is an alarm; PSI between ``psi_warn`` and ``psi_alarm``
    is a warning. The distances (PSI, JS, Wasserstein) are biased upwards on small samples, so they raise
    nothing until both cohorts have ``min_samples`` values (Evidently, too, uses JS and Wasserstein only
    above 1000 rows). Measured on A/A normal samples, n = m, 300 runs: at 200 the JS level was crossed in
    77% of runs, Wasserstein 65%, PSI warn 34%; at 1000, Wasserstein 4%, the others 0; at 2000, none. The
    p-values are calibrated at any size (KS: ~5% at every n) but need ``min_samples_test`` values."""

    psi_warn: float = 0.1
    psi_alarm: float = 0.2
    ks_p: float = 0.05
    chi2_p: float = 0.05
    js: float = 0.1
    wasserstein: float = 0.1
    min_samples: int = 1000
    min_samples_test: int = 20


DEFAULT_THRESHOLDS = Thresholds()


@dataclass(frozen=True)
class DriftReport:
    """Chaos against control for one output. Statistics that do not apply to the kind are None:
    numeric has ``ks``, ``ks_p``, ``wasserstein``; class has ``chi2``, ``chi2_p``."""

    kind: str  # "numeric" | "class"
    n_control: int
    n_chaos: int
    psi: float
    js: float
    ks: float | None = None
    ks_p: float | None = None
    wasserstein: float | None = None
    chi2: float | None = None
    chi2_p: float | None = None
    alarms: tuple[str, ...] = ()
    warnings: tuple[str, ...] = field(default=())

    @property
    def alarmed(self) -> bool:
        return bool(self.alarms)

    def statistics(self) -> dict[str, float]:
        """``statistic`` label → value, for ``mlchaos_prediction_drift`` (the applicable ones only)."""
        return {k: v for k in STATISTICS if (v := getattr(self, k)) is not None}

    def to_dict(self) -> dict[str, Any]:
        """The report's ``drift`` object: every statistic (null where it does not apply), counts, alarms."""
        out: dict[str, Any] = {k: getattr(self, k) for k in STATISTICS}
        out.update(n_control=self.n_control, n_chaos=self.n_chaos, alarms=list(self.alarms),
                   warnings=list(self.warnings))
        return out


def _alarms(r: dict[str, Any], n: int, t: Thresholds) -> tuple[tuple[str, ...], tuple[str, ...]]:
    alarms: list[str] = []
    warnings: list[str] = []
    if n >= t.min_samples:
        if r["psi"] > t.psi_alarm:
            alarms.append("psi")
        elif r["psi"] > t.psi_warn:
            warnings.append("psi")
        if r["js"] > t.js:
            alarms.append("js")
        if r.get("wasserstein") is not None and r["wasserstein"] > t.wasserstein:
            alarms.append("wasserstein")
    if n >= t.min_samples_test:
        if r.get("ks_p") is not None and r["ks_p"] < t.ks_p:
            alarms.append("ks")
        if r.get("chi2_p") is not None and r["chi2_p"] < t.chi2_p:
            alarms.append("chi2")
    return tuple(alarms), tuple(warnings)


def compare_numeric(control: ArrayLike, chaos: ArrayLike, *, bins: int = 10,
                    thresholds: Thresholds = DEFAULT_THRESHOLDS) -> DriftReport:
    """Every numeric statistic of ``chaos`` against ``control`` (PSI bins from control, JS from both)."""
    c = _clean(control, "control")
    x = _clean(chaos, "chaos")
    d, p = ks(c, x)
    r: dict[str, Any] = {
        "psi": psi(c, x, bins=bins), "js": js_distance(c, x, bins=bins), "ks": d, "ks_p": p,
        "wasserstein": wasserstein_normalized(c, x),
    }
    alarms, warnings = _alarms(r, min(c.size, x.size), thresholds)
    return DriftReport(kind="numeric", n_control=int(c.size), n_chaos=int(x.size), alarms=alarms,
                       warnings=warnings, **r)


def compare_classes(control: Mapping[str, float], chaos: Mapping[str, float], *,
                    thresholds: Thresholds = DEFAULT_THRESHOLDS) -> DriftReport:
    """Every categorical statistic of ``chaos``'s label counts against ``control``'s."""
    stat, p = chi_square(control, chaos)
    r: dict[str, Any] = {"psi": psi_categorical(control, chaos), "js": js_categorical(control, chaos),
                         "chi2": stat, "chi2_p": p}
    n_c, n_x = int(sum(control.values())), int(sum(chaos.values()))
    alarms, warnings = _alarms(r, min(n_c, n_x), thresholds)
    return DriftReport(kind="class", n_control=n_c, n_chaos=n_x, alarms=alarms, warnings=warnings, **r)
