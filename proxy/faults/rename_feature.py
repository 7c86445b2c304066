"""``rename_feature``: schema drift: features arrive under other names, as after a pipeline change."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar, Self

from ..declare.errors import Errors
from ..declare.fields import Field
from ..payload import FeatureTable, Mutation, mutate
from .base import FaultContext
from .feature_base import FEATURE_FIELDS, RNG, FeatureFault


@dataclass(frozen=True, slots=True, kw_only=True)
class RenameFeature(FeatureFault):
    type: ClassVar[str] = "rename_feature"
    STRUCTURAL: ClassVar[bool] = True  # rows and columns moved, never a value read
    HELP: ClassVar[str] = ("Schema drift: features are sent under other names (`mapping`, or their name plus "
                           "`suffix`). Layouts without names (a V2 matrix, V1 list rows) cannot carry it.")
    FIELDS: ClassVar[tuple[Field, ...]] = FEATURE_FIELDS + (
        Field("mapping", "mapping", default=None, help="Old name to new name.",
              schema={"type": "object", "additionalProperties": {"type": "string"}}),
        Field("suffix", "string", default="_renamed", help="Appended to each selected name without a mapping."),
    )

    mapping: Mapping[str, str] | None = None
    suffix: str = "_renamed"

    @classmethod
    def from_values(cls, values: dict[str, Any], path: str, errors: Errors) -> Self | None:
        mapping = values["mapping"]
        if mapping is not None and not all(isinstance(k, str) and isinstance(v, str) and v for k, v in mapping.items()):
            errors.add(f"{path}.mapping", "must map feature names to non-empty new names")
            return None
        return cls(**values)

    def mutate(self, table: FeatureTable, ctx: FaultContext) -> Mutation:
        return mutate.rename_feature(table, features=self.features, fraction=self.fraction, rng=RNG,
                                     mapping=self.mapping, suffix=self.suffix)
