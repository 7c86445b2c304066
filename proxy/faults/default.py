"""``default``: the feature store is down and serving falls back to configured default values."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

from ..declare.fields import Field
from ..payload import FeatureTable, Mutation, mutate
from .base import FaultContext
from .feature_base import FEATURE_FIELDS, RNG, FeatureFault


@dataclass(frozen=True, slots=True, kw_only=True)
class Default(FeatureFault):
    type: ClassVar[str] = "default"
    IN_PLACE: ClassVar[bool] = True  # only cells of its features change, where they are
    HELP: ClassVar[str] = ("Feature store down: the features hold default values (`values`, else 0, 0.0, '' or "
                           "false by datatype) in a fraction of the rows.")
    FIELDS: ClassVar[tuple[Field, ...]] = FEATURE_FIELDS + (
        Field("values", "mapping", default=None, help="Feature name to the value served while the store is down."),
    )

    values: Mapping[str, Any] | None = None

    def mutate(self, table: FeatureTable, ctx: FaultContext) -> Mutation:
        return mutate.default(table, features=self.features, fraction=self.fraction, rng=RNG, values=self.values)
