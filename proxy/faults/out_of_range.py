"""``out_of_range``: values far outside the training range that still fit the declared datatype."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, Literal

from ..declare.fields import Field
from ..payload import FeatureTable, Mutation, mutate
from .base import FaultContext
from .feature_base import FEATURE_FIELDS, RNG, FeatureFault


@dataclass(frozen=True, slots=True, kw_only=True)
class OutOfRange(FeatureFault):
    type: ClassVar[str] = "out_of_range"
    IN_PLACE: ClassVar[bool] = True  # only cells of its features change, where they are
    HELP: ClassVar[str] = "Values far outside the training range that still fit the declared datatype."
    FIELDS: ClassVar[tuple[Field, ...]] = FEATURE_FIELDS + (
        Field("factor", "number", default=1e6, minimum=1, help="scaled: how many times the largest value."),
        Field("at", "choice", default="scaled", choices=("scaled", "extreme"),
              help="scaled: factor × the largest value seen; extreme: the datatype's own limits."),
        Field("sign", "choice", default="both", choices=("both", "+", "-")),
    )

    factor: float = 1e6
    at: Literal["scaled", "extreme"] = "scaled"
    sign: Literal["both", "+", "-"] = "both"

    def mutate(self, table: FeatureTable, ctx: FaultContext) -> Mutation:
        return mutate.out_of_range(table, features=self.features, fraction=self.fraction, rng=RNG,
                                   factor=self.factor, at=self.at, sign=self.sign)
