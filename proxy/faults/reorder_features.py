"""``reorder_features``: the same features in another order, which positional models misread."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, Literal

from ..declare.fields import Field
from ..payload import FeatureTable, Mutation, mutate
from .base import FaultContext
from .feature_base import FEATURE_FIELDS, RNG, FeatureFault


@dataclass(frozen=True, slots=True, kw_only=True)
class ReorderFeatures(FeatureFault):
    type: ClassVar[str] = "reorder_features"
    STRUCTURAL: ClassVar[bool] = True  # rows and columns moved, never a value read
    HELP: ClassVar[str] = "The features in another order: reversed, shuffled, or the given `order`."
    FIELDS: ClassVar[tuple[Field, ...]] = FEATURE_FIELDS + (
        Field("order", "string_list", default=None, help="The new order of the named features."),
        Field("mode", "choice", default="reverse", choices=("reverse", "shuffle"), help="Without `order`."),
    )

    order: tuple[str, ...] | None = None
    mode: Literal["reverse", "shuffle"] = "reverse"

    def mutate(self, table: FeatureTable, ctx: FaultContext) -> Mutation:
        return mutate.reorder_features(table, features=self.features, fraction=self.fraction, rng=RNG,
                                       order=self.order, mode=self.mode)
