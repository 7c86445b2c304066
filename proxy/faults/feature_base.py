"""What every feature fault shares: read a feature table, change it, send it on.

``target: request`` (the default) changes the features the client sends; ``target: response`` the features
the upstream answers with (a model's outputs, a feature store's or a data feed's answer), before the client
gets them. A payload that cannot be read passes through untouched (counted in
mlchaos_payload_unparsed_total); a mutation that does not apply to the layout (renaming features of a matrix
that carries no names) leaves the body as it was.
"""

from __future__ import annotations

from abc import abstractmethod
from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from ..declare.fields import Field
from ..payload import AdapterOptions, BaseAdapter, FeatureTable, Mutation, Parsed
from ..payload.tabular import fix_headers
from .base import Fault, FaultContext, Outcome, ResponseView

__all__ = ["FEATURE_FIELDS", "RNG", "FeatureFault", "rewrite"]

# Which rows and cells a fault picks is a fresh draw per request, not a function of the sticky key.
RNG = np.random.default_rng()

FEATURE_FIELDS: tuple[Field, ...] = (
    Field("features", "string_list", default=None, help="Feature names it acts on; all when absent."),
    Field("fraction", "probability", default=1.0, help="Share of the rows or cells it acts on."),
    Field("target", "choice", default="request", choices=("request", "response"),
          help="Whose features: the request's, or the response's (read after the upstream answers)."),
)


def rewrite(view: ResponseView, body: bytes) -> None:
    """Send ``body`` instead of the response's, its ETag, Content-MD5 and checksum headers fixed or dropped so
    that the client does not reject it for the wrong reason (``proxy.payload.tabular``, per header)."""
    view.headers = fix_headers(view.headers, body)
    view.body = body


@dataclass(frozen=True, slots=True, kw_only=True)
class FeatureFault(Fault):
    FIELDS: ClassVar[tuple[Field, ...]] = FEATURE_FIELDS
    # True for a fault whose mutation only moves, drops or repeats rows and columns or renames columns, never
    # reading or writing a value: on a file it then runs without the values being read (change_file).
    STRUCTURAL: ClassVar[bool] = False
    # True for a fault whose mutation reads and changes only cells of its selected features, in place: on a file
    # only those columns are then read as values (change_file).
    IN_PLACE: ClassVar[bool] = False

    features: tuple[str, ...] | None = None
    fraction: float = 1.0
    target: str = "request"

    @abstractmethod
    def mutate(self, table: FeatureTable, ctx: FaultContext) -> Mutation: ...

    def apply(self, ctx: FaultContext) -> Outcome:
        payload = ctx.payload()
        if self.target == "response":
            ctx.on_response(lambda view: self._change_response(view, ctx))
            return None
        table = payload.table()
        if table is None:
            return None
        mutation = self.mutate(table, ctx)
        if mutation.applicable and mutation.changed:
            payload.commit(mutation.table)
        return None

    def _change_response(self, view: ResponseView, ctx: FaultContext) -> None:
        if not 200 <= view.status < 300 or view.status == 206:
            return  # an error answer carries no features, a range (206) only part of a file: as they came
        payload = ctx.payload()
        adapter = payload.response_file(view.body, view.headers)
        if adapter is not None:
            done, body = self.change_file(adapter, view.body, payload.options, ctx)
            if done:
                if body is not None:
                    rewrite(view, body)
                return
        parsed = payload.response_table(view.body, view.headers)
        if parsed is None:
            return
        changed = self.change(parsed, ctx)
        if changed is not None:
            rewrite(view, payload.write_response_table(*changed))

    def change_file(self, adapter: BaseAdapter, body: bytes, options: AdapterOptions,
                    ctx: FaultContext) -> tuple[bool, bytes | None]:
        """A file's body changed without reading its whole table (``(True, None)``: left as it came), exactly as
        ``change`` would; ``(False, None)``: read the table. A STRUCTURAL fault's mutation never looks at a
        value, so it runs on the file's shape alone (``BaseAdapter.restructure``); an IN_PLACE one on its
        features' columns alone (``BaseAdapter.rewrite_values``); ``nan`` overrides this
        (``BaseAdapter.blank_cells``)."""
        if self.STRUCTURAL:
            return adapter.restructure(body, options, lambda table: self.mutate(table, ctx))
        if self.IN_PLACE:
            return adapter.rewrite_values(body, options, self.features, lambda table: self.mutate(table, ctx))
        return False, None

    def change(self, parsed: Parsed, ctx: FaultContext) -> tuple[Parsed, FeatureTable] | None:
        """What to write back for a response's features (None: leave the body as it came). Faults that change
        more than the table (a Feast answer's statuses) override this."""
        mutation = self.mutate(parsed.table, ctx)
        if mutation.applicable and mutation.changed:
            return parsed, mutation.table
        return None
