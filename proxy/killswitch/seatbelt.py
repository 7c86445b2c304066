"""An absolute limit on the chaos cohort's bad rate: no comparison with control, no statistics.

``Seatbelt(max_rate=0.5, min_requests=20)`` trips, for good, when more than half of the chaos cohort's
requests have been bad, checked from its 20th request on. It needs no control traffic, so it still works
when control gets nothing, and it bounds the damage a guard that needs evidence cannot: with equal cohorts
the count test needs 7 chaos requests for a hard fault at the median but 11-16 at p95, as it waits for
enough control requests (benchmarks/KILLSWITCH.md); ``min_requests=10`` caps that at 10.

With ``window=N`` the rate is over the last N chaos requests instead of all of them: a fault that starts
late in a long experiment then trips it within about N * max_rate requests, where the cumulative rate
would take as many requests as the experiment has already had.

Under "no harm" it can still trip by chance when the base rate is high: with a 10% base rate and
``min_requests=10`` the chance is ~2e-4 per experiment (6 or more bad of the first 10), with 20% it is
~0.6%, so keep ``max_rate`` well above any rate the service may have on its own.
"""

from __future__ import annotations

from .sequential import check_counts

__all__ = ["Seatbelt"]


class Seatbelt:
    """Trips when the chaos cohort's bad rate exceeds ``max_rate`` after ``min_requests`` chaos requests."""

    __slots__ = (
        "_pos",
        "_ring",
        "_window_bad",
        "bad_chaos",
        "bad_control",
        "max_rate",
        "min_requests",
        "n_chaos",
        "n_control",
        "tripped",
        "window",
    )

    def __init__(self, max_rate: float = 0.5, min_requests: int = 20, *, window: int | None = None) -> None:
        if not 0.0 <= max_rate < 1.0:
            raise ValueError(f"max_rate must be in [0, 1), got {max_rate!r}")
        if isinstance(min_requests, bool) or not isinstance(min_requests, int):
            raise TypeError(f"min_requests must be an int, got {min_requests!r}")
        if min_requests < 1:
            raise ValueError(f"min_requests must be >= 1, got {min_requests!r}")
        if window is not None and (isinstance(window, bool) or not isinstance(window, int)):
            raise TypeError(f"window must be None or an int, got {window!r}")
        if window is not None and window < 1:
            raise ValueError(f"window must be None or >= 1, got {window!r}")
        self.max_rate = float(max_rate)
        self.min_requests = min_requests
        self.window = window
        self.tripped = False
        self.n_chaos = 0
        self.n_control = 0
        self.bad_chaos = 0
        self.bad_control = 0
        # Outcomes of the last ``window`` chaos requests (1 = bad), a ring buffer.
        self._ring = bytearray(window) if window is not None else bytearray()
        self._pos = 0
        self._window_bad = 0

    def observe(self, chaos: bool, bad: bool) -> bool:
        """One request of a cohort; control requests are only counted. True once tripped."""
        if not chaos:
            self.n_control += 1
            if bad:
                self.bad_control += 1
            return self.tripped
        self.n_chaos += 1
        if bad:
            self.bad_chaos += 1
        if self.window is not None:
            ring = self._ring
            pos = self._pos
            self._window_bad += bad - ring[pos]
            ring[pos] = bad
            self._pos = pos + 1 if pos + 1 < self.window else 0
        # The rate only rises on a bad request; the check starts at the min_requests-th request.
        if (bad or self.n_chaos == self.min_requests) and not self.tripped:
            self._check()
        return self.tripped

    def observe_many(self, chaos_n: object, chaos_bad: object, control_n: object, control_bad: object) -> bool:
        """Counts per cohort since the last call: the same as ``observe`` calls with the good chaos
        requests first, then the bad ones (the order that trips soonest within the batch)."""
        chaos_n, chaos_bad, control_n, control_bad = check_counts(chaos_n, chaos_bad, control_n, control_bad)
        self.n_control += control_n
        self.bad_control += control_bad
        good = chaos_n - chaos_bad
        m0 = self.min_requests
        if self.window is None:
            # Good requests only check at the min_requests-th one; during the bad ones the rate rises,
            # so among their checks the last is the highest.
            before = self.n_chaos
            self.n_chaos += good
            if before < m0 <= self.n_chaos and self.bad_chaos > self.max_rate * m0:
                self.tripped = True
            self.n_chaos += chaos_bad
            self.bad_chaos += chaos_bad
            if chaos_bad and not self.tripped:
                self._check()
            return self.tripped
        window = self.window
        for i in range(good):
            if self._window_bad == 0 and self.n_chaos >= m0:
                # The ring holds only good requests and the first check is behind us: the remaining
                # good requests change nothing but the count.
                self.n_chaos += good - i
                break
            self.observe(True, False)
        if chaos_bad >= window:
            # The window rate only rises during the bad requests; after `window` of them it is 1.
            self._ring[:] = b"\x01" * window
            self._window_bad = window
            self.n_chaos += chaos_bad
            self.bad_chaos += chaos_bad
            if not self.tripped:
                self._check()
        else:
            for _ in range(chaos_bad):
                self.observe(True, True)
        return self.tripped

    def _check(self) -> None:
        if self.n_chaos < self.min_requests:
            return
        if self.window is None:
            bad, n = self.bad_chaos, self.n_chaos
        else:
            bad, n = self._window_bad, min(self.n_chaos, self.window)
        if bad > self.max_rate * n:
            self.tripped = True

    @property
    def rate(self) -> float:
        """The chaos bad rate the seatbelt judges (over the window when there is one)."""
        if self.window is None:
            return self.bad_chaos / self.n_chaos if self.n_chaos else 0.0
        n = min(self.n_chaos, self.window)
        return self._window_bad / n if n else 0.0

    def snapshot(self) -> dict[str, float | int | bool]:
        return {
            "tripped": self.tripped,
            "rate": self.rate,
            "max_rate": self.max_rate,
            "min_requests": self.min_requests,
            "window": self.window or 0,
            "n_chaos": self.n_chaos,
            "n_control": self.n_control,
            "bad_chaos": self.bad_chaos,
            "bad_control": self.bad_control,
        }

    def __repr__(self) -> str:
        return (
            f"Seatbelt(max_rate={self.max_rate}, min_requests={self.min_requests}, window={self.window}, "
            f"rate={self.rate:.3g}, tripped={self.tripped})"
        )
