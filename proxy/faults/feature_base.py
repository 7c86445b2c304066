"""What every feature fault shares: read the request's feature table, change it, send it back.

A payload that cannot be read passes through untouched (counted in mlchaos_payload_unparsed_total); a
mutation that does not apply to the layout (renaming features of a matrix that carries no names) leaves
the request as it was.
"""

from __future__ import annotations

from abc import abstractmethod
from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from ..payload import FeatureTable, Mutation
from ..policy.fields import Field
from .base import Fault, FaultContext, Outcome

__all__ = ["FEATURE_FIELDS", "RNG", "FeatureFault"]

# Which rows and cells a fault picks is a fresh draw per request, not a function of the sticky key.
RNG = np.random.default_rng()

FEATURE_FIELDS: tuple[Field, ...] = (
    Field("features", "string_list", default=None, help="Feature names it acts on; all when absent."),
    Field("fraction", "probability", default=1.0, help="Share of the rows or cells it acts on."),
)


@dataclass(frozen=True, slots=True, kw_only=True)
class FeatureFault(Fault):
    FIELDS: ClassVar[tuple[Field, ...]] = FEATURE_FIELDS

    features: tuple[str, ...] | None = None
    fraction: float = 1.0

    @abstractmethod
    def mutate(self, table: FeatureTable, ctx: FaultContext) -> Mutation: ...

    def apply(self, ctx: FaultContext) -> Outcome:
        payload = ctx.payload()
        table = payload.table()
        if table is None:
            return None
        mutation = self.mutate(table, ctx)
        if mutation.applicable and mutation.changed:
            payload.commit(mutation.table)
        return None
