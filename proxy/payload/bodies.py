"""The payloads of one exchange: parse a body once, let faults change its features or predictions, write it back.

Direction-neutral: the request's features (``table``/``commit``), the response's features
(``response_table``/``write_response_table``: a feature store's or a data feed's answer, a model's outputs)
and the response's predictions. Only chaos requests of an experiment with payload faults come here; what
cannot be parsed passes through untouched and is counted in
``mlchaos_payload_unparsed_total{experiment,cohort,direction}``. A request in the V2 binary tensor extension
(``Inference-Header-Content-Length``) is decoded, changed and encoded again, with the header recomputed.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .adapters import AdapterOptions, BaseAdapter, Parsed, Predictions, detect, detect_response, get_adapter
from .adapters.v2 import inline_binary, pack_binary, split_binary
from .codec import dumps, loads
from .table import FeatureTable

if TYPE_CHECKING:
    from ..exchange import Exchange
    from ..policy.model import PayloadSpec

__all__ = ["ExchangePayload", "adapter_options"]


def adapter_options(spec: PayloadSpec) -> AdapterOptions:
    return AdapterOptions(feature_names=spec.features, features_pointer=spec.features_pointer,
                          predictions_pointer=spec.predictions_pointer, output=spec.output,
                          null_status=spec.null_status)


class ExchangePayload:
    __slots__ = ("adapter", "binary", "ex", "options", "original", "parsed", "response_adapter", "spec", "tried")

    def __init__(self, ex: Exchange, spec: PayloadSpec, options: AdapterOptions) -> None:
        self.ex = ex
        self.spec = spec
        self.options = options
        self.adapter: BaseAdapter | None = None
        self.response_adapter: BaseAdapter | None = None
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
        head_length = ex.header(b"inference-header-content-length")
        if head_length is not None:
            # Only V2 has the binary extension; a body that does not decode passes through untouched.
            if spec.format not in ("auto", "v2") or not head_length.strip().isdigit():
                return None
            split = split_binary(body, int(head_length))
            inlined = inline_binary(*split) if split is not None else None
            if inlined is None:
                return None
            self.binary = True
            self.adapter = get_adapter("v2")
            return self.adapter.read(inlined, self.options)
        # Any JSON value (a bare true, a number): compiled, a variable first given inline_binary's dict type
        # would refuse it at run time (found by benchmarks/fuzz.py).
        doc: Any
        try:
            doc = loads(body)
        except ValueError:
            return None
        adapter = self._adapter(doc)
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
        adapter = (self.adapter or self._adapter(doc)) if doc is not None else None
        preds = adapter.predictions(doc, self.options) if adapter is not None else None
        if adapter is None or preds is None:
            self.ex.count_unparsed("response")
            return None
        return adapter, doc, preds

    def write_response(self, adapter: BaseAdapter, doc: Any, preds: Predictions) -> bytes | None:
        out = adapter.write_predictions(doc, preds, self.options)
        return None if out is None else dumps(out, nan_token=self.spec.nan_token)

    def response_table(self, body: bytes, headers: list[tuple[bytes, bytes]] | None = None) -> Parsed | None:
        """The features in a response body (a model's outputs, a feature store's answer, a data feed's file),
        with what is needed to write them back; None (counted) when the body holds none we can read.

        A file format (CSV, JSON Lines, Parquet ...) is read when the policy's ``payload.format`` names it, or,
        with ``auto`` and ``headers`` given, when the response says it is one (``detect_response``) and the
        request was not read by another adapter. Anything else is read as a JSON document."""
        raw = self._raw_adapter(body, headers)
        if raw is not None:
            parsed = raw.read(body, self.options, direction="response")
            if parsed is None:
                self.ex.count_unparsed("response")
                return None
            self.response_adapter = raw
            return parsed
        try:
            doc = loads(body)
        except ValueError:
            doc = None
        adapter = (self.adapter or self._adapter(doc)) if doc is not None else None
        parsed = adapter.read(doc, self.options, direction="response") if adapter is not None else None
        if parsed is None:
            self.ex.count_unparsed("response")
            return None
        self.response_adapter = adapter
        return parsed

    def response_file(self, body: bytes, headers: list[tuple[bytes, bytes]] | None = None) -> BaseAdapter | None:
        """The file-format adapter (CSV, JSON Lines ...) ``response_table`` would read this response with, for
        a fault that can change such a body without reading the whole table (``BaseAdapter.blank_cells``);
        None for a JSON document."""
        return self._raw_adapter(body, headers)

    def write_response_table(self, parsed: Parsed, table: FeatureTable) -> bytes:
        """The response body with ``table`` in place of the features ``response_table`` read."""
        assert self.response_adapter is not None
        doc: Any = self.response_adapter.write(parsed, table, self.options)
        if self.response_adapter.RAW:
            out: bytes = doc
            return out
        return dumps(doc, nan_token=self.spec.nan_token)

    def _raw_adapter(self, body: bytes, headers: list[tuple[bytes, bytes]] | None) -> BaseAdapter | None:
        fmt = self.spec.format
        if fmt != "auto":
            chosen = get_adapter(fmt)
            return chosen if chosen.RAW else None
        if headers is None or self.adapter is not None:
            return None
        return detect_response(self.ex.path, headers, body)

    def _adapter(self, doc: Any) -> BaseAdapter | None:
        if self.spec.format == "auto":
            return detect(self.ex.path, doc, options=self.options)
        return get_adapter(self.spec.format)
