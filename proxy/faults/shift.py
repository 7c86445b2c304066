"""``shift``: training/serving skew: ``x * scale + offset``, or Gaussian noise, on the rows it picks."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar, Self

from ..declare.errors import Errors
from ..declare.fields import Field
from ..payload import FeatureTable, Mutation, mutate
from .base import FaultContext
from .feature_base import FEATURE_FIELDS, RNG, FeatureFault


@dataclass(frozen=True, slots=True, kw_only=True)
class Shift(FeatureFault):
    type: ClassVar[str] = "shift"
    IN_PLACE: ClassVar[bool] = True  # only cells of its features change, where they are
    HELP: ClassVar[str] = ("Training/serving skew: numeric features become x * scale + offset, plus Gaussian "
                           "noise of std noise_std; integer datatypes stay integers within range.")
    FIELDS: ClassVar[tuple[Field, ...]] = FEATURE_FIELDS + (
        Field("scale", "number", default=1.0),
        Field("offset", "number", default=0.0),
        Field("noise_std", "number", default=0.0, minimum=0),
    )

    scale: float = 1.0
    offset: float = 0.0
    noise_std: float = 0.0

    @classmethod
    def from_values(cls, values: dict[str, Any], path: str, errors: Errors) -> Self | None:
        if values["scale"] == 1.0 and values["offset"] == 0.0 and values["noise_std"] == 0.0:
            errors.add(path, "shift needs scale, offset or noise_std: as given it changes nothing")
            return None
        return cls(**values)

    def mutate(self, table: FeatureTable, ctx: FaultContext) -> Mutation:
        return mutate.shift(table, features=self.features, fraction=self.fraction, rng=RNG, scale=self.scale,
                            offset=self.offset, noise_std=self.noise_std)
