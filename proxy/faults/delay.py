"""``delay``: wait before calling the model, drawn from a latency distribution with a long tail if asked."""

from __future__ import annotations

import math
import random
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar, Self

from ..declare.errors import Errors
from ..declare.fields import Field
from .base import Fault, FaultContext, Outcome, Wait

# Which fields each distribution needs; the rest must be absent so a typo cannot go unnoticed.
_PARAMS: dict[str, tuple[str, ...]] = {
    "fixed": ("duration",),
    "uniform": ("min", "max"),
    "normal": ("mean", "stddev"),
    "lognormal": ("median", "sigma"),
    "pareto": ("scale", "alpha"),
}


@dataclass(frozen=True, slots=True, kw_only=True)
class Delay(Fault):
    type: ClassVar[str] = "delay"
    HELP: ClassVar[str] = "Wait before calling the model: fixed, uniform, normal, lognormal or pareto."
    FIELDS: ClassVar[tuple[Field, ...]] = (
        Field("distribution", "choice", default="fixed", choices=tuple(_PARAMS)),
        Field("duration", "duration", default=None, help="fixed: the delay."),
        Field("min", "duration", default=None, help="uniform: lower bound."),
        Field("max", "duration", default=None, help="uniform: upper bound."),
        Field("mean", "duration", default=None, help="normal: mean (draws below 0 count as 0)."),
        Field("stddev", "duration", default=None, help="normal: standard deviation."),
        Field("median", "duration", default=None, help="lognormal: median."),
        Field("sigma", "number", default=None, minimum=0, help="lognormal: sigma of the log."),
        Field("scale", "duration", default=None, help="pareto: minimum delay (x_m)."),
        Field("alpha", "number", default=None, minimum=0.1, help="pareto: shape; smaller is a heavier tail."),
        Field("cap", "duration", default=60.0, help="No single delay is longer than this."),
    )

    distribution: str = "fixed"
    params: tuple[float, ...] = (0.0,)
    cap: float = 60.0

    @classmethod
    def from_values(cls, values: dict[str, Any], path: str, errors: Errors) -> Self | None:
        dist: str = values["distribution"]
        needed = _PARAMS[dist]
        ok = True
        for name in needed:
            if values[name] is None:
                errors.add(f"{path}.{name}", f"required for distribution {dist}")
                ok = False
        for name in sorted({n for names in _PARAMS.values() for n in names} - set(needed)):
            if values[name] is not None:
                errors.add(f"{path}.{name}", f"not used by distribution {dist} (it takes {', '.join(needed)})")
                ok = False
        if ok and dist == "uniform" and values["min"] > values["max"]:
            errors.add(f"{path}.max", "must be >= min")
            ok = False
        if not ok:
            return None
        return cls(probability=values["probability"], distribution=dist,
                   params=tuple(float(values[n]) for n in needed), cap=values["cap"])

    def sample(self, rng: random.Random | None = None) -> float:
        """One delay in seconds, within [0, cap]."""
        draw = _SAMPLERS[self.distribution]
        return min(self.cap, max(0.0, draw(rng or _RNG, self.params)))

    def apply(self, ctx: FaultContext) -> Outcome:
        return Wait(self.sample())


_RNG = random.Random()
_SAMPLERS: dict[str, Callable[[random.Random, tuple[float, ...]], float]] = {
    "fixed": lambda r, p: p[0],
    "uniform": lambda r, p: r.uniform(p[0], p[1]),
    "normal": lambda r, p: r.gauss(p[0], p[1]),
    "lognormal": lambda r, p: r.lognormvariate(math.log(p[0]), p[1]) if p[0] > 0 else 0.0,
    "pareto": lambda r, p: p[0] * r.paretovariate(p[1]),
}
