"""``not_found``: a Feast answer whose features come back null with NOT_FOUND (a materialization that never ran)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar, Literal, Self

from ..declare.errors import Errors
from ..declare.fields import Field
from ..payload import FeatureTable, Mutation, Parsed, feast
from .base import FaultContext
from .feature_base import FEATURE_FIELDS, RNG, FeatureFault

_FIELDS = tuple(f for f in FEATURE_FIELDS if f.name != "target")


@dataclass(frozen=True, slots=True, kw_only=True)
class NotFound(FeatureFault):
    type: ClassVar[str] = "not_found"
    HELP: ClassVar[str] = (
        "Feast: features come back null with status NOT_FOUND and the epoch as timestamp, as when a "
        "materialization never ran: every selected feature of a fraction of the entity rows (by: rows), or every "
        "row of a fraction of the features (by: features). Acts on the answer; other formats pass through.")
    FIELDS: ClassVar[tuple[Field, ...]] = _FIELDS + (
        Field("by", "choice", default="rows", choices=("rows", "features"),
              help="rows: whole entity rows go missing; features: whole features do."),
    )

    by: Literal["rows", "features"] = "rows"

    @classmethod
    def from_values(cls, values: dict[str, Any], path: str, errors: Errors) -> Self | None:
        return cls(**values, target="response")

    def mutate(self, table: FeatureTable, ctx: FaultContext) -> Mutation:
        return Mutation(table, 0, False, "not_found acts on a Feast answer")

    def change(self, parsed: Parsed, ctx: FaultContext) -> tuple[Parsed, FeatureTable] | None:
        got = feast.not_found(parsed, rng=RNG, features=self.features, fraction=self.fraction, by=self.by)
        return (got.parsed, got.table) if got is not None and got.changed else None
