"""``drop_feature``: schema drift: the features disappear from the payload, as if a pipeline stopped writing them."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from ..declare.fields import Field
from ..payload import FeatureTable, Mutation, mutate
from .base import FaultContext
from .feature_base import FEATURE_FIELDS, RNG, FeatureFault


@dataclass(frozen=True, slots=True, kw_only=True)
class DropFeature(FeatureFault):
    type: ClassVar[str] = "drop_feature"
    STRUCTURAL: ClassVar[bool] = True  # rows and columns moved, never a value read
    HELP: ClassVar[str] = ("Schema drift: the features disappear from the payload, as if a pipeline stopped "
                           "writing them.")
    FIELDS: ClassVar[tuple[Field, ...]] = FEATURE_FIELDS

    def mutate(self, table: FeatureTable, ctx: FaultContext) -> Mutation:
        return mutate.drop_feature(table, features=self.features, fraction=self.fraction, rng=RNG)
