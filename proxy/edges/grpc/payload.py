"""The payloads of a gRPC exchange: ModelInferRequest/ModelInferResponse messages in protobuf, read and written
by the ``v2_grpc`` adapter, where ``ExchangePayload`` reads JSON bodies. Faults see the same tables and
predictions either way; only the decoding and encoding differ. Parsed only for a call a fault or the
observer reads."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ...payload.adapters import BaseAdapter, Parsed, Predictions, get_adapter
from ...payload.adapters.base import REQUEST, RESPONSE
from ...payload.adapters.v2_grpc import GrpcDoc
from ...payload.bodies import ExchangePayload
from ...payload.table import FeatureTable

if TYPE_CHECKING:
    from ...exchange import Exchange
    from ...payload.adapters import AdapterOptions
    from ...policy.model import PayloadSpec

__all__ = ["GrpcPayload"]

# The payload formats a gRPC call is read as: the protobuf one (auto, or v2 for the same protocol).
_FORMATS = frozenset({"auto", "v2", "v2_grpc"})


class GrpcPayload(ExchangePayload):
    def __init__(self, ex: Exchange, spec: PayloadSpec, options: AdapterOptions) -> None:
        super().__init__(ex, spec, options)

    def _grpc_adapter(self) -> BaseAdapter | None:
        return get_adapter("v2_grpc") if self.spec.format in _FORMATS else None

    def _parse(self) -> Parsed | None:
        body = self.ex.request_body()
        adapter = self._grpc_adapter()
        if not body or adapter is None:
            return None
        doc = GrpcDoc.of(body, REQUEST)
        if doc is None:
            return None
        self.adapter = adapter
        return adapter.read(doc, self.options)

    def commit(self, table: FeatureTable) -> None:
        assert self.parsed is not None and self.adapter is not None
        doc: Any = self.adapter.write(self.parsed, table, self.options)
        self.ex.replace_request_body(doc.encode())
        self.tried, self.parsed = False, None

    def read_response(self, body: bytes) -> tuple[BaseAdapter, Any, Predictions] | None:
        adapter = self._grpc_adapter()
        doc = GrpcDoc.of(body, RESPONSE) if adapter is not None else None
        preds = adapter.predictions(doc, self.options) if adapter is not None and doc is not None else None
        if adapter is None or preds is None:
            self.ex.count_unparsed("response")
            return None
        return adapter, doc, preds

    def write_response(self, adapter: BaseAdapter, doc: Any, preds: Predictions) -> bytes | None:
        out = adapter.write_predictions(doc, preds, self.options)
        return None if out is None else out.encode()

    def response_table(self, body: bytes, headers: list[tuple[bytes, bytes]] | None = None) -> Parsed | None:
        adapter = self._grpc_adapter()  # a ModelInferResponse: no file format to detect from headers
        doc = GrpcDoc.of(body, RESPONSE) if adapter is not None else None
        parsed = adapter.read(doc, self.options, direction=RESPONSE) if adapter is not None and doc is not None \
            else None
        if parsed is None:
            self.ex.count_unparsed("response")
            return None
        self.response_adapter = adapter
        return parsed

    def response_file(self, body: bytes, headers: list[tuple[bytes, bytes]] | None = None) -> BaseAdapter | None:
        return None  # a ModelInferResponse is never a file

    def write_response_table(self, parsed: Parsed, table: FeatureTable) -> bytes:
        assert self.response_adapter is not None
        doc: Any = self.response_adapter.write(parsed, table, self.options)
        return bytes(doc.encode())
