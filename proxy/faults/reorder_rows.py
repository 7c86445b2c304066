"""``reorder_rows``: data out of order: a fraction of the rows of a table trade places."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from ..declare.fields import Field
from ..payload import FeatureTable, Mutation, mutate
from .base import FaultContext
from .feature_base import FEATURE_FIELDS, RNG, FeatureFault


@dataclass(frozen=True, slots=True, kw_only=True)
class ReorderRows(FeatureFault):
    type: ClassVar[str] = "reorder_rows"
    STRUCTURAL: ClassVar[bool] = True  # rows and columns moved, never a value read
    HELP: ClassVar[str] = ("Data out of order: a fraction of the rows trade places (each chosen row moves); with "
                           "`seed`, the same order for the same table every time.")
    FIELDS: ClassVar[tuple[Field, ...]] = FEATURE_FIELDS + (
        Field("seed", "integer", default=None, minimum=0,
              help="Draw the rows and their new places from this seed (the same for every request)."),
    )

    seed: int | None = None

    def mutate(self, table: FeatureTable, ctx: FaultContext) -> Mutation:
        rng = RNG if self.seed is None else np.random.default_rng(self.seed)
        return mutate.reorder_rows(table, features=self.features, fraction=self.fraction, rng=rng)
