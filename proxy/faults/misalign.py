"""``misalign``: a Feast answer whose ``feature_names`` no longer match its ``results`` (a feature-view version
mismatch between the server and what wrote the online store)."""

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
class Misalign(FeatureFault):
    type: ClassVar[str] = "misalign"
    HELP: ClassVar[str] = (
        "Feast: metadata.feature_names no longer match results. rotate: a fraction of the selected features "
        "(at least two) each carry the next one's name; drop_name: the first selected name is missing, so the "
        "later names slide onto the wrong values. Values, statuses and timestamps stay put.")
    FIELDS: ClassVar[tuple[Field, ...]] = _FIELDS + (
        Field("mode", "choice", default="rotate", choices=("rotate", "drop_name"),
              help="rotate: names trade places; drop_name: one name is missing."),
    )

    mode: Literal["rotate", "drop_name"] = "rotate"

    @classmethod
    def from_values(cls, values: dict[str, Any], path: str, errors: Errors) -> Self | None:
        return cls(**values, target="response")

    def mutate(self, table: FeatureTable, ctx: FaultContext) -> Mutation:
        return Mutation(table, 0, False, "misalign acts on a Feast answer")

    def change(self, parsed: Parsed, ctx: FaultContext) -> tuple[Parsed, FeatureTable] | None:
        got = feast.misalign(parsed, rng=RNG, features=self.features, fraction=self.fraction, mode=self.mode)
        return (got.parsed, got.table) if got is not None and got.changed else None
