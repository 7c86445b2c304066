"""``perturb_predictions``: the model answers, but its scores are noisy and some labels flipped."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar, Self

from ..declare.errors import Errors
from ..declare.fields import Field
from ..payload import perturb
from .base import Fault, FaultContext, Outcome, ResponseView
from .feature_base import RNG


@dataclass(frozen=True, slots=True, kw_only=True)
class PerturbPredictions(Fault):
    type: ClassVar[str] = "perturb_predictions"
    HELP: ClassVar[str] = ("Change the model's answer: Gaussian noise of `noise_std` on scores (probability "
                           "vectors stay normalised) and label flips in a `flip_rate` of the rows.")
    FIELDS: ClassVar[tuple[Field, ...]] = (
        Field("noise_std", "number", default=0.0, minimum=0),
        Field("flip_rate", "probability", default=0.0),
        Field("classes", "any", default=None, schema={"type": "array"},
              help="Labels a flip may pick; default the labels seen in the response."),
    )

    noise_std: float = 0.0
    flip_rate: float = 0.0
    classes: tuple[Any, ...] | None = None

    @classmethod
    def from_values(cls, values: dict[str, Any], path: str, errors: Errors) -> Self | None:
        if values["noise_std"] == 0 and values["flip_rate"] == 0:
            errors.add(path, "perturb_predictions needs noise_std or flip_rate: as given it changes nothing")
            return None
        classes = values["classes"]
        if classes is not None and (not isinstance(classes, list) or len(classes) < 2):
            errors.add(f"{path}.classes", "must list at least two labels")
            return None
        return cls(probability=values["probability"], noise_std=values["noise_std"], flip_rate=values["flip_rate"],
                   classes=tuple(classes) if classes is not None else None)

    def apply(self, ctx: FaultContext) -> Outcome:
        payload = ctx.payload()

        def change(view: ResponseView) -> None:
            if not 200 <= view.status < 300:
                return
            found = payload.read_response(view.body)
            if found is None:
                return
            adapter, doc, preds = found
            new = perturb(preds, noise_std=self.noise_std, flip_rate=self.flip_rate, classes=self.classes, rng=RNG)
            body = payload.write_response(adapter, doc, new)
            if body is not None:
                view.body = body

        ctx.on_response(change)
        return None
