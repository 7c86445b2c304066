"""``duplicate_rows``: duplicated records: a fraction of the rows of a table appear twice."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from ..declare.fields import Field
from ..payload import FeatureTable, Mutation, mutate
from .base import FaultContext
from .feature_base import FEATURE_FIELDS, RNG, FeatureFault


@dataclass(frozen=True, slots=True, kw_only=True)
class DuplicateRows(FeatureFault):
    type: ClassVar[str] = "duplicate_rows"
    STRUCTURAL: ClassVar[bool] = True  # rows and columns moved, never a value read
    HELP: ClassVar[str] = "Duplicated records: a fraction of the rows appear twice, the copy right after the row."
    FIELDS: ClassVar[tuple[Field, ...]] = FEATURE_FIELDS

    def mutate(self, table: FeatureTable, ctx: FaultContext) -> Mutation:
        return mutate.duplicate_rows(table, features=self.features, fraction=self.fraction, rng=RNG)
