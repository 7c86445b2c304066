"""Open Inference Protocol over gRPC: ``inference.GRPCInferenceService/ModelInfer`` (and ModelStreamInfer's
messages), ModelInferRequest and ModelInferResponse as protobuf.

The message is decoded by ``proxy.payload.wire`` (no protobuf runtime) into a ``GrpcDoc``: its fields as they
came, and a V2 JSON view of its tensors (``inputs`` or ``outputs``: name, shape, datatype, flat ``data``; the
message's ``parameters.content_type`` for MLServer's ``pd``). Tables, layouts (``v2.columnar``,
``v2.matrix``), write-back and predictions are the V2 adapter's own on that view; the changed view is written
back into the message, each tensor typed (``contents``) or raw (``raw_input_contents``/``raw_output_contents``)
as it came, every other field kept. A value its datatype cannot hold (NaN or None in an INT tensor, a string
in FP32) turns the tensor FP64 (numbers) or BYTES (the rest): the model server then refuses the datatype, as
it refuses a JSON null in an INT tensor. BF16 is not decoded (the message passes through untouched).
"""

from __future__ import annotations

import re
from typing import Any, ClassVar

from ..table import FeatureTable
from ..wire import LEN, Field, Tensor, decode, field_string, read_tensors, write_tensors
from .base import DEFAULT_OPTIONS, PREDICTIONS, REQUEST, RESPONSE, AdapterOptions, BaseAdapter, Parsed, Predictions
from .v2 import V2Adapter, leaves

__all__ = ["GRPC_INFER_PATH", "GrpcDoc", "V2GrpcAdapter"]

GRPC_INFER_PATH = re.compile(r"^/inference\.GRPCInferenceService/Model(?:Stream)?Infer$")
_V2 = V2Adapter()
# Marks each tensor of the JSON view with the index of the tensor it came from (kept through the V2 write).
_ORIGIN = "_tensor"


class GrpcDoc:
    """A decoded ModelInferRequest (``direction`` request) or ModelInferResponse, and its V2 JSON view."""

    __slots__ = ("direction", "fields", "json", "tensors")

    def __init__(self, fields: list[Field], direction: str, tensors: list[Tensor], json: dict[str, Any]) -> None:
        self.fields, self.direction, self.tensors, self.json = fields, direction, tensors, json

    @classmethod
    def of(cls, message: bytes, direction: str) -> GrpcDoc | None:
        """The message decoded, or None when it is not one (or holds a tensor that is not decoded)."""
        try:
            fields = decode(message)
            tensors = read_tensors(fields, direction)
            content_type = _content_type(fields)
        except (ValueError, UnicodeDecodeError):
            return None
        key = "outputs" if direction == RESPONSE else "inputs"
        json: dict[str, Any] = {key: [{"name": t.name, "shape": list(t.shape), "datatype": t.datatype,
                                       "data": t.values, _ORIGIN: i} for i, t in enumerate(tensors)]}
        if content_type is not None:
            json["parameters"] = {"content_type": content_type}
        return cls(fields, direction, tensors, json)

    def with_json(self, json: dict[str, Any]) -> GrpcDoc:
        return GrpcDoc(self.fields, self.direction, self.tensors, json)

    def encode(self) -> bytes:
        """The message with the view's tensors in place of its own."""
        key = "outputs" if self.direction == RESPONSE else "inputs"
        raw = any(t.raw for t in self.tensors)
        tensors: list[Tensor] = []
        for obj in self.json[key]:
            i = obj.get(_ORIGIN)
            fields = self.tensors[i].fields if isinstance(i, int) else []
            data = obj["data"]
            values = data if all(not isinstance(v, list) for v in data) else leaves(data)
            tensors.append(Tensor(fields, obj["name"], str(obj["datatype"]).upper(), list(obj["shape"]), values,
                                  raw))
        return write_tensors(self.fields, self.direction, tensors)



def _content_type(fields: list[Field]) -> str | None:
    """``parameters["content_type"]``'s string_param (map entry: key 1, value 2; InferParameter string 3)."""
    for number, wire, value in fields:
        if number != 4 or wire != LEN:
            continue
        entry = decode(value)
        if field_string(entry, 1) == "content_type":
            for num, w, v in entry:
                if num == 2 and w == LEN:
                    return field_string(decode(v), 3)
    return None


class V2GrpcAdapter(BaseAdapter):
    name: ClassVar[str] = "v2_grpc"
    HELP: ClassVar[str] = ("Open Inference Protocol over gRPC (ModelInfer of Triton, KServe, MLServer): tensors typed "
                           "or raw, read as v2 reads JSON.")
    PATH: ClassVar[re.Pattern[str] | None] = GRPC_INFER_PATH
    READS: ClassVar[frozenset[str]] = frozenset({REQUEST, RESPONSE, PREDICTIONS})

    def decode(self, message: bytes, direction: str) -> GrpcDoc | None:
        return GrpcDoc.of(message, direction)

    def read_strict(self, doc: Any, options: AdapterOptions) -> Parsed | None:
        return self._wrap(doc, _V2.read_strict(doc.json, options) if isinstance(doc, GrpcDoc) else None)

    def read_response_strict(self, doc: Any, options: AdapterOptions) -> Parsed | None:
        return self._wrap(doc, _V2.read_response_strict(doc.json, options) if isinstance(doc, GrpcDoc) else None)

    @staticmethod
    def _wrap(doc: Any, inner: Parsed | None) -> Parsed | None:
        if inner is None:
            return None
        return Parsed(doc=doc, table=inner.table, layout=inner.layout, detail=inner.detail,
                      direction=inner.direction)

    def write(self, parsed: Parsed, table: FeatureTable, options: AdapterOptions = DEFAULT_OPTIONS) -> Any:
        doc: GrpcDoc = parsed.doc
        inner = Parsed(doc=doc.json, table=parsed.table, layout=parsed.layout, detail=parsed.detail,
                       direction=parsed.direction)
        return doc.with_json(_V2.write(inner, table, options))

    def predictions_strict(self, doc: Any, options: AdapterOptions) -> Predictions | None:
        return _V2.predictions_strict(doc.json, options) if isinstance(doc, GrpcDoc) else None

    def write_predictions_strict(self, doc: Any, preds: Predictions, options: AdapterOptions) -> Any | None:
        if not isinstance(doc, GrpcDoc):
            return None
        out = _V2.write_predictions_strict(doc.json, preds, options)
        return None if out is None else doc.with_json(out)
