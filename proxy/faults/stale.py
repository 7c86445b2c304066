"""``stale``: feature store lag: the values this same sticky key sent some requests or seconds ago; on a Feast
answer (``target: response``), what an earlier answer gave the same entity, with aged event timestamps."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar, Self

from ..declare.errors import Errors
from ..declare.fields import Field
from ..payload import FeatureTable, Mutation, Parsed, StaleCache, feast, mutate
from .base import FaultContext
from .feature_base import FEATURE_FIELDS, RNG, FeatureFault


@dataclass(frozen=True, slots=True, kw_only=True)
class Stale(FeatureFault):
    type: ClassVar[str] = "stale"
    HELP: ClassVar[str] = (
        "Feature store lag: features take the values the same sticky key sent `age_requests` requests or "
        "`age_seconds` ago, from an in-memory cache bounded by `memory`; needs the experiment's sticky_key. On a "
        "Feast answer (target: response) the memory is per entity row (no sticky key needed): values, statuses "
        "and timestamps of an earlier answer for the same entity, timestamps aged by `age`, and with "
        "`outside_max_age` the status OUTSIDE_MAX_AGE.")
    FIELDS: ClassVar[tuple[Field, ...]] = FEATURE_FIELDS + (
        Field("age_requests", "integer", default=None, minimum=1, help="How many requests back (1 = the last)."),
        Field("age_seconds", "duration", default=None, help="At least this old."),
        Field("memory", "size", default=8 * 1024 * 1024, minimum=1024,
              help="Most memory the cache of past values may take."),
        Field("age", "duration", default=None,
              help="Feast answers: how much older the event timestamps of the stale cells look."),
        Field("outside_max_age", "bool", default=False,
              help="Feast answers: stale cells holding a value get status OUTSIDE_MAX_AGE (past the view's TTL)."),
    )

    age_requests: int | None = None
    age_seconds: float | None = None
    memory: int = 8 * 1024 * 1024
    age: float | None = None
    outside_max_age: bool = False
    cache: StaleCache = field(default_factory=lambda: StaleCache(8 * 1024 * 1024), compare=False, repr=False)

    @classmethod
    def from_values(cls, values: dict[str, Any], path: str, errors: Errors) -> Self | None:
        if values["age_requests"] is None and values["age_seconds"] is None:
            values["age_requests"] = 1
        # Keep as many past requests as the lookup can reach back to, and nothing older than it needs.
        depth = values["age_requests"] if values["age_seconds"] is None else None
        return cls(**values, cache=StaleCache(values["memory"], depth=depth, max_age=values["age_seconds"]))

    def mutate(self, table: FeatureTable, ctx: FaultContext) -> Mutation:
        key = ctx.sticky_value()
        if key is None:
            return Mutation(table, 0, False, "stale needs a sticky key to know whose values are old")
        name = key.decode("latin-1")
        rows = self.cache.get(name, age_seconds=self.age_seconds, age_requests=self.age_requests)
        self.cache.put(name, table)  # what this key sends now is someone's stale value later
        return mutate.stale(table, features=self.features, fraction=self.fraction, rng=RNG, rows=rows)

    def change(self, parsed: Parsed, ctx: FaultContext) -> tuple[Parsed, FeatureTable] | None:
        if parsed.layout != "feast.response":
            return FeatureFault.change(self, parsed, ctx)
        got = feast.stale(parsed, rng=RNG, cache=self.cache, features=self.features, fraction=self.fraction,
                          age=self.age, age_requests=self.age_requests, age_seconds=self.age_seconds,
                          outside_max_age=self.outside_max_age)
        return (got.parsed, got.table) if got is not None and got.changed else None
