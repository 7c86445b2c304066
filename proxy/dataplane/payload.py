"""Payloads of one exchange: parse the request's JSON once, let faults change its features, write it back.

Only chaos requests of an experiment with payload faults come here; what cannot be parsed passes through
untouched and is counted in ``mlchaos_payload_unparsed_total{experiment,cohort,direction}``. A request in
the V2 binary tensor extension (``Inference-Header-Content-Length``) is decoded, changed and encoded again,
with the header recomputed.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ..payload import (
    AdapterOptions,
    BaseAdapter,
    FeatureTable,
    Parsed,
    Predictions,
    detect,
    dumps,
    get_adapter,
    inline_binary,
    loads,
    pack_binary,
    split_binary,
)
from ..policy.model import PayloadSpec

if TYPE_CHECKING:
    from .server import Exchange

__all__ = ["RequestPayload", "adapter_options"]


def adapter_options(spec: PayloadSpec) -> AdapterOptions:
    return AdapterOptions(feature_names=spec.features, features_pointer=spec.features_pointer,
                          predictions_pointer=spec.predictions_pointer, output=spec.output)


class RequestPayload:
    __slots__ = ("adapter", "binary", "ex", "options", "original", "parsed", "spec", "tried")

    def __init__(self, ex: Exchange, spec: PayloadSpec, options: AdapterOptions) -> None:
        self.ex = ex
        self.spec = spec
        self.options = options
        self.adapter: BaseAdapter | None = None
        self.parsed: Parsed | None = None
        self.tried = False
        # The body came in the V2 binary tensor extension, and goes upstream in it again.
        self.binary = False
        # The body as the client sent it, kept from the first change on (for the shadow comparison).
        self.original: bytes | None = None

    def table(self) -> FeatureTable | None:
        """The request's feature table, or None (counted once) when the body is not a payload we read."""
        if not self.tried:
            self.tried = True
            self.parsed = self._parse()
            if self.parsed is None:
                self.ex.count_unparsed("request")
        return self.parsed.table if self.parsed is not None else None

    def _parse(self) -> Parsed | None:
        ex = self.ex
        body = ex.request_body()
        if not body:
            return None
        spec = self.spec
        head_length = ex.req.header(b"inference-header-content-length")
        if head_length is not None:
            # Only V2 has the binary extension; a body that does not decode passes through untouched.
            if spec.format not in ("auto", "v2") or not head_length.strip().isdigit():
                return None
            split = split_binary(body, int(head_length))
            doc = inline_binary(*split) if split is not None else None
            if doc is None:
                return None
            self.binary = True
            self.adapter = get_adapter("v2")
            return self.adapter.read(doc, self.options)
        try:
            doc = loads(body)
        except ValueError:
            return None
        adapter = detect(ex.req.path, doc, options=self.options) if spec.format == "auto" \
            else get_adapter(spec.format)
        if adapter is None:
            return None
        self.adapter = adapter
        return adapter.read(doc, self.options)

    def commit(self, table: FeatureTable) -> None:
        """Send ``table`` upstream in place of the request's features; every other field stays."""
        assert self.parsed is not None and self.adapter is not None
        if self.original is None and not self.binary:  # the shadow twin is sent as JSON only
            self.original = self.ex.request_body()
        doc: Any = self.adapter.write(self.parsed, table, self.options)
        if self.binary:
            body, head_length = pack_binary(doc, nan_token=self.spec.nan_token)
            self.ex.replace_request_body(body)
            self.ex.set_request_header(b"Inference-Header-Content-Length", b"%d" % head_length)
        else:
            self.ex.replace_request_body(dumps(doc, nan_token=self.spec.nan_token))
        # A further fault of the same request starts from what is now sent: re-read only if one asks.
        self.tried, self.parsed = False, None

    def read_response(self, body: bytes) -> tuple[BaseAdapter, Any, Predictions] | None:
        """The predictions in a response body, with what is needed to write them back; None (counted)
        when the body holds none we can read."""
        try:
            doc = loads(body)
        except ValueError:
            doc = None
        adapter = None
        if doc is not None:
            adapter = self.adapter or (detect(self.ex.req.path, doc, options=self.options)
                                       if self.spec.format == "auto" else get_adapter(self.spec.format))
        preds = adapter.predictions(doc, self.options) if adapter is not None else None
        if adapter is None or preds is None:
            self.ex.count_unparsed("response")
            return None
        return adapter, doc, preds

    def write_response(self, adapter: BaseAdapter, doc: Any, preds: Predictions) -> bytes | None:
        out = adapter.write_predictions(doc, preds, self.options)
        return None if out is None else dumps(out, nan_token=self.spec.nan_token)
