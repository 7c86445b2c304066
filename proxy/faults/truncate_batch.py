"""``truncate_batch``: partial data: a fraction of the rows of a batch are dropped."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, Literal

from ..declare.fields import Field
from ..payload import FeatureTable, Mutation, mutate
from .base import FaultContext
from .feature_base import FEATURE_FIELDS, RNG, FeatureFault


@dataclass(frozen=True, slots=True, kw_only=True)
class TruncateBatch(FeatureFault):
    type: ClassVar[str] = "truncate_batch"
    STRUCTURAL: ClassVar[bool] = True  # rows and columns moved, never a value read
    HELP: ClassVar[str] = "Partial data: a fraction of the rows of a batch are dropped."
    FIELDS: ClassVar[tuple[Field, ...]] = FEATURE_FIELDS + (
        Field("keep_min", "integer", default=0, minimum=0, help="Never keep fewer rows than this."),
        Field("where", "choice", default="random", choices=("random", "tail"), help="Which rows go."),
    )

    keep_min: int = 0
    where: Literal["random", "tail"] = "random"

    def mutate(self, table: FeatureTable, ctx: FaultContext) -> Mutation:
        return mutate.truncate_batch(table, features=self.features, fraction=self.fraction, rng=RNG,
                                     keep_min=self.keep_min, where=self.where)
