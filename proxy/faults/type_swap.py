"""``type_swap``: Numbers sent as strings (3.5 becomes '3.5') in a fraction of the cells."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from ..declare.fields import Field
from ..payload import FeatureTable, Mutation, mutate
from .base import FaultContext
from .feature_base import FEATURE_FIELDS, RNG, FeatureFault


@dataclass(frozen=True, slots=True, kw_only=True)
class TypeSwap(FeatureFault):
    type: ClassVar[str] = "type_swap"
    IN_PLACE: ClassVar[bool] = True  # only cells of its features change, where they are
    HELP: ClassVar[str] = "Numbers sent as strings (3.5 becomes '3.5') in a fraction of the cells."
    FIELDS: ClassVar[tuple[Field, ...]] = FEATURE_FIELDS

    def mutate(self, table: FeatureTable, ctx: FaultContext) -> Mutation:
        return mutate.type_swap(table, features=self.features, fraction=self.fraction, rng=RNG)
