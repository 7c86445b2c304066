"""An anytime-valid test that bad events are not more frequent in the chaos cohort than in control.

``CountGuard`` may be checked after every request: under "no harm" the probability that it *ever* trips,
over an experiment of any length, is at most ``alpha`` (Ville's inequality). It is exact for counts: no
normal approximation, no plug-in variance, no plug-in null. A normal-approximation mSPRT on the same rare
error streams false-tripped on 37-83% of A/A runs (shared/research/anchors-killswitch-canary.md).

The test
--------
Condition on the outcomes (bad or good) and test the cohort labels. Under H0 ("the fault harms no one")
a request's outcome does not depend on its cohort, so every label is chaos with the same probability q
(the chaos share of exposure) whether the request turned out bad or good; q is unknown. Under an effect
r, bad events are r times likelier, in the odds, to be chaos than good events are.

The requests are cut into *blocks* by their outcomes only: a block closes at a bad event once it holds at
least one good request; bad events that arrive before any good one wait in the block. For each block,
with ``nb`` bad and ``ng`` good requests, of which ``xb`` and ``xg`` are chaos, and for each effect r:

* ``s`` (``theta_b``): the exposure share, the chaos share of the good requests of *earlier* blocks with
  a ``prior`` pseudo-count for each cohort: predictable, fixed before the block's labels are seen;
* ``theta_a = r*s / (r*s + 1 - s)``: the chaos probability of a bad event under effect r;
* ``theta_0 = (nb*theta_a + ng*s) / (nb + ng)``: the null probability, the block's weighted average;
* the block's factor ``theta_a^xb (1-theta_a)^(nb-xb) s^xg (1-s)^(ng-xg) /
  theta_0^(xb+xg) (1-theta_0)^(nb+ng-xb-xg)``.

Validity, for *every* q: under H0 the block's labels are independent Bernoulli(q) whatever the outcomes,
so the factor's expectation is ``A^nb * B^ng`` with ``nb*A + ng*B = nb + ng`` (substitute theta_0), and
by the weighted AM-GM inequality ``A^nb * B^ng <= 1``. This is the 2x2-table e-value of Turner, Ly and
Grünwald (2021, "Generic E-variables for exact sequential k-sample tests that allow for optional
stopping"), with outcomes as the groups. The product over blocks is a nonnegative supermartingale for each
r; so is the mixture ``E = sum_k w_k prod(factors_k)`` (weights sum to 1); Ville's inequality gives
``P(sup_t E_t >= 1/alpha) <= alpha``. Validity holds conditionally on any sequence of outcomes, so bursts of
errors hitting both cohorts, and any base rate, keep it; the one-sided null (chaos *better* than control)
keeps it too, since the factor's expectation decreases when bad events are less often chaos.

Why ``s`` may be an estimate here: the exposure share enters only the alternative (``theta_a``) and the
weighting of ``theta_0``; a wrong ``s`` costs power, never validity. Plugging the estimated share directly
into the null ("a bad event is chaos with probability s_t") is exact only when s_t equals the true share:
E[factor] = (q*r + 1 - q) / (s_t*r + 1 - s_t) is convex in s_t, so an unbiased but noisy s_t makes it
exceed 1 on average. In simulation (alpha = 1%, 50k chaos requests) s_t from all requests gave 0.95% A/A
trips at a 10% base rate (no proof behind it), and s_t from good requests 1.8%, 5.3% and 9.1% at 10%, 30%
and 50%. ``theta_0`` is the correction that makes the plug-in exact; when bad events are rare
(``ng >> nb``) ``theta_0 ~ s`` and the factor is the familiar ``r/(r*s + 1 - s)`` for a chaos bad event and
``1/(r*s + 1 - s)`` for a control one.

The share ``s`` is learnt from good requests only: under a hard fault the chaos cohort stops producing
good requests, ``s`` falls and each chaos bad event weighs more (r/(r*s + 1 - s) grows towards 1/s).

Assumption: under H0 the cohort labels, in the order the guard sees them, are independent draws with a
common chaos probability within a block (per-request random assignment gives that). Sticky keys cluster
a user's requests, and often their failures, in one cohort; no per-request count test is exact then.

Cost: a good request is two integer increments (~0.15 us). A bad request that closes a block (one preceded
by a good request) computes 3 logarithms per effect, and a log-sum-exp if the block holds a chaos bad
event (~5 us for the 7 default effects); other bad requests are increments.
"""

from __future__ import annotations

import math

from mypy_extensions import mypyc_attr

__all__ = ["DEFAULT_EFFECTS", "DEFAULT_PRIOR", "DEFAULT_WEIGHTS", "CountGuard"]

# Effects r (odds ratios of "bad" between chaos and control) and their prior weights. Measured trade-off
# (benchmarks/KILLSWITCH.md): the time to detect a small effect is the most sensitive to its weight
# (halving the weight near r = 2 costs log 2 / 0.057 nats ~ 12 more bad events, ~400 chaos requests at
# a 1% base rate), a hard fault the least (halving the weight of r = 10^4 costs ~ half a chaos
# request), so r = 2 and 3 get double weight. r = 1.5 keeps long runs at high base rates (latency over
# an SLO) sensitive; 10, 100 and 10^4 cover large effects and hard faults, 10^4 standing for "chaos
# always fails" (an infinite r would die on the first control bad event).
DEFAULT_EFFECTS: tuple[float, ...] = (1.5, 2.0, 3.0, 5.0, 10.0, 100.0, 10_000.0)
DEFAULT_WEIGHTS: tuple[float, ...] = (1.0, 2.0, 2.0, 1.0, 1.0, 1.0, 1.0)
# Krichevsky-Trofimov pseudo-count for each cohort in the exposure share.
DEFAULT_PRIOR = 0.5

_MAX_LOG = 709.0  # math.exp overflows just above this


def check_counts(
    chaos_n: object, chaos_bad: object, control_n: object, control_bad: object,
) -> tuple[int, int, int, int]:
    """Batch counts as ``observe_many`` takes them: non-negative ints (not bools), bad events within the
    requests. Typed ``object`` on purpose: compiled, a parameter typed ``int`` turns True into 1 before any
    check could see it."""
    counts: list[int] = []
    for name, value in (("chaos_n", chaos_n), ("chaos_bad", chaos_bad), ("control_n", control_n),
                        ("control_bad", control_bad)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise ValueError(f"{name} must be an int >= 0, got {value!r}")
        counts.append(value)
    c_n, c_bad, k_n, k_bad = counts
    if c_bad > c_n or k_bad > k_n:
        raise ValueError("bad counts cannot exceed request counts")
    return c_n, c_bad, k_n, k_bad


# Compiled with the data plane (every request it matches feeds a guard); open to subclasses from Python so
# that a guard whose evaluation fails can stand in for it in tests (the kill switch must then fail closed).
@mypyc_attr(allow_interpreted_subclasses=True)
class CountGuard:
    """Anytime-valid guard on "bad events are not more frequent in chaos than in control".

    Feed it every request of both cohorts (``observe``) or counts (``observe_many``); it trips, for good,
    when the mixture e-value reaches ``1/alpha`` and the chaos cohort has had at least ``min_bad`` bad
    events. Under no harm the probability of ever tripping is at most ``alpha``.
    """

    __slots__ = (
        "_bc",
        "_bk",
        "_gc",
        "_gk",
        "_grid",
        "_log_e",
        "_log_threshold",
        "_log_w",
        "_llr",
        "_stale",
        "alpha",
        "bad_chaos",
        "bad_control",
        "blocks",
        "effects",
        "min_bad",
        "n_chaos",
        "n_control",
        "prior",
        "threshold",
        "tripped",
        "weights",
    )

    def __init__(
        self,
        alpha: float = 0.01,
        *,
        effects: tuple[float, ...] = DEFAULT_EFFECTS,
        weights: tuple[float, ...] | None = None,
        min_bad: int = 0,
        prior: float = DEFAULT_PRIOR,
    ) -> None:
        if not 0.0 < alpha < 1.0:
            raise ValueError(f"alpha must be in (0, 1), got {alpha!r}")
        effects = tuple(float(r) for r in effects)
        if not effects or not all(1.0 < r < math.inf for r in effects):
            raise ValueError(f"effects must be finite and > 1, got {effects!r}")
        if weights is None:
            weights = DEFAULT_WEIGHTS if effects == DEFAULT_EFFECTS else (1.0,) * len(effects)
        weights = tuple(float(w) for w in weights)
        if len(weights) != len(effects) or not all(0.0 < w < math.inf for w in weights):
            raise ValueError(f"weights must be positive, finite and one per effect, got {weights!r}")
        if isinstance(min_bad, bool) or not isinstance(min_bad, int):
            raise TypeError(f"min_bad must be an int, got {min_bad!r}")
        if min_bad < 0:
            raise ValueError(f"min_bad must be >= 0, got {min_bad!r}")
        if not 0.0 < prior < math.inf:
            raise ValueError(f"prior must be > 0, got {prior!r}")
        total = math.fsum(weights)
        self.alpha = alpha
        self.threshold = 1.0 / alpha
        self._log_threshold = -math.log(alpha)
        self.effects = effects
        self.weights = tuple(w / total for w in weights)
        self.min_bad = min_bad
        self.prior = prior
        self._log_w = tuple(math.log(w) for w in self.weights)
        self._grid = tuple(zip(effects, (math.log(r) for r in effects), strict=True))
        self._llr = [0.0] * len(effects)
        self._log_e = 0.0
        self._stale = False
        self.tripped = False
        self.n_chaos = 0
        self.n_control = 0
        self.bad_chaos = 0
        self.bad_control = 0
        self.blocks = 0
        # The open block: bad and good requests of each cohort.
        self._bc = 0
        self._bk = 0
        self._gc = 0
        self._gk = 0

    # -- observations -------------------------------------------------------------------------------

    def observe(self, chaos: bool, bad: bool) -> bool:
        """One request of a cohort (``chaos`` False: control). True once the guard has tripped."""
        if not bad:
            if chaos:
                self.n_chaos += 1
                self._gc += 1
            else:
                self.n_control += 1
                self._gk += 1
            return self.tripped
        return self._bad(chaos)

    def observe_many(self, chaos_n: object, chaos_bad: object, control_n: object, control_bad: object) -> bool:
        """Counts of requests and bad requests per cohort since the last call (e.g. from Prometheus).

        Exactly the same as ``observe`` calls in this order: the bad events except the last one (control
        ones first), then the good requests, then the last bad event (a chaos one if there is any). So a
        batch closes the block left open before it at its first bad event (if that block holds a good
        request) and closes one block of its own at its last bad event; the e-value only changes at those
        two points, and the guard trips if and only if the e-value reaches 1/alpha at one of them.
        """
        chaos_n, chaos_bad, control_n, control_bad = check_counts(chaos_n, chaos_bad, control_n, control_bad)
        bads = chaos_bad + control_bad
        good_c = chaos_n - chaos_bad
        good_k = control_n - control_bad
        if bads == 0:
            self.n_chaos += good_c
            self.n_control += good_k
            self._gc += good_c
            self._gk += good_k
            return self.tripped
        last_chaos = chaos_bad > 0
        if bads > 1:
            first_chaos = control_bad == 0
            self._bad(first_chaos)
            # The block is now free of good requests (closed, or it had none): the middle bad events
            # only wait in it.
            mid_c = chaos_bad - first_chaos - last_chaos
            mid_k = control_bad - (not first_chaos) - (not last_chaos)
            self.n_chaos += mid_c
            self.bad_chaos += mid_c
            self._bc += mid_c
            self.n_control += mid_k
            self.bad_control += mid_k
            self._bk += mid_k
        self.n_chaos += good_c
        self.n_control += good_k
        self._gc += good_c
        self._gk += good_k
        return self._bad(last_chaos)

    def _bad(self, chaos: bool) -> bool:
        if chaos:
            self.n_chaos += 1
            self.bad_chaos += 1
            self._bc += 1
        else:
            self.n_control += 1
            self.bad_control += 1
            self._bk += 1
        if self._gc or self._gk:
            if not self.tripped:
                self._close()
            self._bc = self._bk = self._gc = self._gk = 0
        return self.tripped

    def _close(self) -> None:
        """Multiply in the open block's factor; the block ends with the bad event just counted."""
        bc, bk, gc, gk = self._bc, self._bk, self._gc, self._gk
        nb = bc + bk
        ng = gc + gk
        # Exposure share s from the good requests of earlier blocks (predictable).
        prior = self.prior
        s_c = self.n_chaos - self.bad_chaos - gc + prior
        s_k = self.n_control - self.bad_control - gk + prior
        s = s_c / (s_c + s_k)
        u = s_k / (s_c + s_k)  # 1 - s, without cancellation
        # With d = r*s + 1 - s: theta_a = r*s/d, 1 - theta_a = u/d, theta_0 = s*(nb*r + ng*d)/(n*d) and
        # 1 - theta_0 = u*(nb + ng*d)/(n*d); the log factor reduces to
        #   n*log(n) + bc*log(r) + ng*log(d) - (bc + gc)*log(nb*r + ng*d) - (bk + gk)*log(nb + ng*d).
        n = nb + ng
        log = math.log
        base = n * log(n)
        xc = bc + gc
        xk = bk + gk
        llr = self._llr
        for k, (r, log_r) in enumerate(self._grid):
            d = r * s + u
            inc = base + ng * log(d)
            if bc:
                inc += bc * log_r
            if xc:
                inc -= xc * log(nb * r + ng * d)
            if xk:
                inc -= xk * log(nb + ng * d)
            llr[k] += inc
        self.blocks += 1
        if bc:
            self._log_e = self._mixture()
            self._stale = False
            if self._log_e >= self._log_threshold and self.bad_chaos >= self.min_bad:
                self.tripped = True
        else:
            # Without a chaos bad event every effect's factor is <= 1 (weighted AM-GM, and chaos good
            # requests only lower it): the e-value falls, no trip is possible; compute it when read.
            self._stale = True

    def _mixture(self) -> float:
        """log sum_k w_k exp(llr_k)."""
        terms = [lw + x for lw, x in zip(self._log_w, self._llr, strict=True)]
        top = max(terms)
        total = 0.0
        exp = math.exp
        for t in terms:
            total += exp(t - top)
        return top + math.log(total)

    # -- read-outs ----------------------------------------------------------------------------------

    @property
    def e_value(self) -> float:
        """The current mixture e-value (>= 0); the guard trips when it reaches 1/alpha."""
        return math.exp(min(self.log_e_value, _MAX_LOG))

    @property
    def log_e_value(self) -> float:
        if self._stale:
            self._log_e = self._mixture()
            self._stale = False
        return self._log_e

    @property
    def share(self) -> float:
        """The exposure share used for the next block: chaos share of good requests, with the prior."""
        s_c = self.n_chaos - self.bad_chaos + self.prior
        s_k = self.n_control - self.bad_control + self.prior
        return s_c / (s_c + s_k)

    @property
    def effect(self) -> float:
        """The effect (odds ratio) on the grid that the data support best so far; 1 while none beats
        "no effect"."""
        best = max(range(len(self.effects)), key=self._llr.__getitem__)
        return self.effects[best] if self._llr[best] > 0 else 1.0

    def snapshot(self) -> dict[str, float | int | bool]:
        """Numbers behind the verdict, for the gate JSON and metrics (all finite)."""
        return {
            "tripped": self.tripped,
            "e_value": self.e_value,
            "log_e_value": self.log_e_value,
            "threshold": self.threshold,
            "alpha": self.alpha,
            "effect": self.effect,
            "share": self.share,
            "n_chaos": self.n_chaos,
            "n_control": self.n_control,
            "bad_chaos": self.bad_chaos,
            "bad_control": self.bad_control,
            "chaos_rate": self.bad_chaos / self.n_chaos if self.n_chaos else 0.0,
            "control_rate": self.bad_control / self.n_control if self.n_control else 0.0,
            "blocks": self.blocks,
        }

    def __repr__(self) -> str:
        return (
            f"CountGuard(alpha={self.alpha}, e_value={self.e_value:.4g}, tripped={self.tripped}, "
            f"chaos={self.bad_chaos}/{self.n_chaos}, control={self.bad_control}/{self.n_control})"
        )
