"""Input generators for fuzz.py: JSON inference payloads and HTTP/1.1 requests, from one ``random.Random``.

Everything is drawn from the generator passed in, so a seed and a position give the same input every time.
Standard library only (fuzz.py's payload part then hands the documents to ``proxy.payload``).

- ``Docs``: valid payloads of each format the adapters read (KServe V1 and V2, MLflow, a generic layout under a
  pointer, and the responses they answer with), the same with one to three nodes corrupted, and arbitrary
  JSON (NaN and ±Infinity included: ``proxy.payload.loads`` accepts those tokens);
- ``Requests``: a grammar of request lines, headers, framings and bodies (clean requests, requests with edges
  in every part, smuggling-shaped framings), and byte-level mutations of clean requests.
"""

from __future__ import annotations

import json
import math
import random
from dataclasses import dataclass
from typing import Any

# ------------------------------------------------------------------------------------------------ JSON docs

V2_DATATYPES = ("FP32", "FP64", "FP16", "INT8", "INT32", "INT64", "UINT8", "UINT64", "BOOL", "BYTES", "BF16")
_ODD_STRINGS = ("", "NaN", "1e309", "-0", "\u00e9", "\ud7ff", "a" * 40, "0x10", "\x00", "null", "[1]", "~1/0")
_KEYS = ("inputs", "instances", "data", "shape", "name", "datatype", "outputs", "predictions", "parameters",
         "dataframe_split", "dataframe_records", "columns", "index", "x", "y", "binary_data_size", "content_type")
_BIG_INTS = (2**63 - 1, -(2**63), 2**63, 2**64, -(2**64) - 1, 10**30)


class Docs:
    """JSON documents: valid payloads, corrupted ones and arbitrary values."""

    def __init__(self, rng: random.Random) -> None:
        self.rng = rng

    # -- values
    def number(self) -> int | float:
        r = self.rng
        k = r.random()
        if k < 0.45:
            return round(r.uniform(-10, 10), 3)
        if k < 0.8:
            return r.randint(-100, 100)
        if k < 0.9:
            return r.choice((0.0, -0.0, 1e308, -1e308, 5e-324, 3.4028235e38, 65504.0, 1e-45))
        if k < 0.95:
            return r.choice(_BIG_INTS)
        return r.choice((math.nan, math.inf, -math.inf))

    def scalar(self) -> Any:
        r = self.rng
        k = r.random()
        if k < 0.55:
            return self.number()
        if k < 0.7:
            return r.choice((True, False))
        if k < 0.8:
            return None
        if r.random() < 0.5:
            return r.choice(_ODD_STRINGS)
        return "".join(r.choice("abc_ ") for _ in range(r.randint(1, 5)))

    def value(self, depth: int = 0) -> Any:
        r = self.rng
        k = r.random()
        if depth >= 4 or k < 0.5:
            return self.scalar()
        if k < 0.75:
            return [self.value(depth + 1) for _ in range(r.randint(0, 4))]
        return {r.choice(_KEYS) if r.random() < 0.6 else self.name(): self.value(depth + 1)
                for _ in range(r.randint(0, 4))}

    def name(self) -> str:
        return "".join(self.rng.choice("abcxyz_~/ ") for _ in range(self.rng.randint(1, 4)))

    def names(self, n: int) -> list[str]:
        out: list[str] = []
        while len(out) < n:
            name = self.name()
            if name not in out:
                out.append(name)
        return out

    def cell(self) -> Any:
        return self.number() if self.rng.random() < 0.85 else self.scalar()

    def rows_value(self) -> Any:
        """One of the shared shapes: rows, scalars, records or columns."""
        r = self.rng
        n = r.randint(1, 5)
        kind = r.choice(("rows", "rows", "scalars", "records", "columns"))
        if kind == "rows":
            f = r.randint(1, 5)
            return [[self.cell() for _ in range(f)] for _ in range(n)]
        if kind == "scalars":
            return [self.cell() for _ in range(n)]
        keys = self.names(r.randint(1, 4))
        if kind == "records":
            return [{k: self.cell() for k in keys if r.random() < 0.9} or {keys[0]: 1} for _ in range(n)]
        return {k: [self.cell() for _ in range(n)] for k in keys}

    # -- payloads
    def v1(self) -> dict[str, Any]:
        doc: dict[str, Any] = {self.rng.choice(("instances", "inputs")): self.rows_value()}
        if self.rng.random() < 0.2:
            doc["signature_name"] = "serving_default"
        return doc

    def v2_tensor(self, n: int, matrix: bool) -> dict[str, Any]:
        r = self.rng
        dt = r.choice(V2_DATATYPES)
        tail = [r.randint(1, 4)] if matrix else r.choice(([], [1], [2], [2, 2]))
        shape = [n, *tail]
        size = math.prod(shape)
        if dt == "BOOL":
            flat: list[Any] = [r.random() < 0.5 for _ in range(size)]
        elif dt == "BYTES":
            flat = [self.name() for _ in range(size)]
        elif dt.startswith(("INT", "UINT")):
            flat = [r.randint(-5, 200) for _ in range(size)]
        else:
            flat = [self.cell() for _ in range(size)]
        data: Any = flat
        if len(shape) >= 2 and r.random() < 0.4:
            step = math.prod(shape[1:])
            data = [flat[i * step:(i + 1) * step] for i in range(shape[0])]
        tensor: dict[str, Any] = {"name": self.name(), "shape": shape, "datatype": dt, "data": data}
        if r.random() < 0.15:
            tensor["parameters"] = {"content_type": r.choice(("np", "pd", "str"))}
        return tensor

    def v2(self) -> dict[str, Any]:
        r = self.rng
        n = r.randint(0, 4)
        matrix = r.random() < 0.5
        doc: dict[str, Any] = {"inputs": [self.v2_tensor(n, matrix) for _ in range(1 if matrix else r.randint(1, 3))]}
        if r.random() < 0.2:
            doc["parameters"] = {"content_type": "pd"}
        if r.random() < 0.2:
            doc["outputs"] = [{"name": "out"}]
        return doc

    def mlflow(self) -> dict[str, Any]:
        r = self.rng
        key = r.choice(("dataframe_split", "dataframe_records", "instances", "inputs"))
        if key == "dataframe_split":
            cols = self.names(r.randint(1, 4))
            n = r.randint(0, 4)
            split: dict[str, Any] = {"columns": cols, "data": [[self.cell() for _ in cols] for _ in range(n)]}
            if r.random() < 0.3:
                split["index"] = list(range(n))
            return {key: split}
        if key == "dataframe_records":
            keys = self.names(r.randint(1, 4))
            return {key: [{k: self.cell() for k in keys} for _ in range(r.randint(1, 4))]}
        return {key: self.rows_value()}

    def generic(self) -> dict[str, Any]:
        return {"keep": self.value(), "x": self.rows_value(), "predictions": self.predictions_items()}

    def predictions_items(self) -> list[Any]:
        r = self.rng
        n = r.randint(1, 5)
        k = r.random()
        if k < 0.3:
            return [self.number() for _ in range(n)]
        if k < 0.55:
            width = r.randint(2, 4)
            return [[round(r.random(), 3) for _ in range(width)] for _ in range(n)]
        if k < 0.75:
            return [r.randint(0, 3) for _ in range(n)]
        if k < 0.9:
            return [{"label": r.choice(("a", "b", "c")), "score": round(r.random(), 3)} for _ in range(n)]
        return [[self.number()] for _ in range(n)]

    def response(self) -> dict[str, Any]:
        """A model's answer: V1/MLflow ``predictions``, V2 ``outputs``."""
        r = self.rng
        if r.random() < 0.6:
            doc: dict[str, Any] = {"predictions": self.predictions_items()}
            if r.random() < 0.3:
                doc["model_name"], doc["model_version"] = "m", "1"
            return doc
        n = r.randint(1, 4)
        return {"model_name": "m", "outputs": [self.v2_tensor(n, r.random() < 0.5) for _ in range(r.randint(1, 2))]}

    def feast(self) -> Any:
        """A Feast feature server's request or answer (column-oriented, full feature names or not)."""
        r = self.rng
        n = r.randint(1, 4)
        keys = [r.randint(1000, 1010) for _ in range(n)]
        full = r.random() < 0.5
        names = [f"driver_hourly_stats{'__' if full else ':'}f{j}" if full else f"f{j}" for j in range(r.randint(1, 3))]
        if r.random() < 0.3:
            return {"features": [f"driver_hourly_stats:{x.split('__')[-1]}" for x in names],
                    "entities": {"driver_id": keys}, "full_feature_names": full}
        epoch, ts = "1970-01-01T00:00:00Z", "2026-12-01T10:00:00Z"
        results = [{"values": keys, "statuses": ["PRESENT"] * n, "event_timestamps": [epoch] * n}]
        for _ in names:
            results.append({"values": [self.value() if r.random() < 0.1 else r.uniform(-5, 5) for _ in range(n)],
                            "statuses": [r.choice(("PRESENT", "NULL_VALUE", "NOT_FOUND", "OUTSIDE_MAX_AGE"))
                                         for _ in range(n)], "event_timestamps": [ts] * n})
        return {"metadata": {"feature_names": ["driver_id", *names]}, "results": results}

    def openai(self) -> Any:
        """An OpenAI-compatible chat request, completion answer or embeddings answer."""
        r = self.rng
        k = r.random()
        if k < 0.4:
            msgs = [{"role": r.choice(("system", "user", "assistant")), "content": self.value() if r.random() < 0.1
                     else "hello there general kenobi"} for _ in range(r.randint(1, 4))]
            return {"model": "m", "messages": msgs, "max_tokens": r.randint(1, 64), "stream": r.random() < 0.5}
        if k < 0.7:
            return {"object": "list", "model": "m", "data": [
                {"object": "embedding", "index": i, "embedding": [r.uniform(-1, 1) for _ in range(r.randint(1, 8))]}
                for i in range(r.randint(1, 3))], "usage": {"prompt_tokens": 3, "total_tokens": 3}}
        return {"id": "c1", "object": "chat.completion", "model": "m", "choices": [
            {"index": 0, "finish_reason": r.choice(("stop", "length", None)),
             "message": {"role": "assistant", "content": "hi", "tool_calls": [
                 {"id": "t", "type": "function", "function": {"name": "f", "arguments": '{"a": 1}'}}]}}],
            "usage": {"prompt_tokens": 3, "completion_tokens": 1, "total_tokens": 4}}

    def valid(self) -> tuple[str, Any]:
        """(the format it was made as, the doc)."""
        kind = self.rng.choice(("v1", "v2", "mlflow", "generic", "response", "feast", "openai"))
        maker = {"v1": self.v1, "v2": self.v2, "mlflow": self.mlflow, "generic": self.generic,
                 "response": self.response, "feast": self.feast, "openai": self.openai}[kind]
        return kind, maker()

    # -- corruption
    def _slots(self, doc: Any, out: list[tuple[Any, Any]]) -> None:
        """Every (container, key or index) in ``doc``."""
        if isinstance(doc, dict):
            for k, v in doc.items():
                out.append((doc, k))
                self._slots(v, out)
        elif isinstance(doc, list):
            for i, v in enumerate(doc):
                out.append((doc, i))
                self._slots(v, out)

    def corrupt(self, doc: Any) -> Any:
        """``doc`` with one to three nodes replaced, removed, duplicated or retyped (changed in place)."""
        r = self.rng
        for _ in range(r.randint(1, 3)):
            slots: list[tuple[Any, Any]] = []
            self._slots(doc, slots)
            if not slots:
                return self.value()
            parent, key = r.choice(slots)
            old = parent[key]
            k = r.random()
            if k < 0.35:
                parent[key] = self.value()
            elif k < 0.5:
                del parent[key]
            elif k < 0.6 and isinstance(parent, list):
                parent.insert(key, old)
            elif k < 0.7:
                parent[key] = json.dumps(old, allow_nan=True) if not isinstance(old, str) else [old]
            elif k < 0.8 and isinstance(old, list):
                parent[key] = old[: r.randint(0, len(old))] + [self.value() for _ in range(r.randint(0, 2))]
            elif k < 0.9 and isinstance(old, dict):
                old[r.choice(_KEYS)] = self.value()
            else:
                parent[key] = [old] if r.random() < 0.5 else {"x": old}
        return doc

    def doc(self) -> tuple[str, Any]:
        """(how it was made: a format, "corrupted" or "random", the doc)."""
        k = self.rng.random()
        if k < 0.35:
            return self.valid()
        if k < 0.85:
            return "corrupted", self.corrupt(self.valid()[1])
        return "random", self.value()


# ------------------------------------------------------------------------------------------------ requests

MODEL_PATHS = (b"/v1/models/m:predict", b"/v2/models/m/infer", b"/invocations", b"/v2/models/m/versions/2/infer",
               b"/v1/models/m:explain", b"/predict")
ODD_PATHS = (b"*", b"http://127.0.0.1/v1/models/m:predict", b"//v2/models/m/infer", b"/../../etc/passwd",
             b"/%00", b"/%zz", b"/v2/models/m/infer?x=1&x=2", b"/a b", b"/\x7f", b"/\xc3\xa9", b"",
             b"/" + b"a" * 3000, b"/v1/models/m:predict#frag", b"/?" + b"q=" * 200, b"https://x/invocations")
ODD_METHODS = (b"post", b"CONNECT", b"TRACE", b"FOO", b"G\x00ET", b"", b"PRI", b"POST\t", b"\xffPOST", b"M" * 300,
               b"DELETE", b"OPTIONS", b"PATCH")
ODD_VERSIONS = (b"HTTP/0.9", b"HTTP/2.0", b"HTTP/1.2", b"http/1.1", b"HTTP/1", b"HTTP/1.10", b"HTTP/01.1", b"",
                b"HTTP/1.1 x", b"HTTP /1.1", b"HTTP/3")
# Header names that spell a framing header with another separator, or with whitespace (RFC 9112 §5.1: none
# allowed before the colon).
ODD_FRAMING_NAMES = (b"Transfer_Encoding", b"Content_Length", b"Transfer-Encoding ", b"Content-Length ",
                     b" Transfer-Encoding", b"Transfer--Encoding", b"content-length\t")
TE_VALUES = (b"chunked", b"Chunked", b"chunked, identity", b"gzip, chunked", b"identity", b" chunked",
             b"chunked\x0b", b"chunked,", b"xchunked", b"chunked\xc2\xa0", b"chunk", b"gzip", b"")
CL_VALUES = (b"-1", b"+5", b"0x10", b"1e3", b"99999999999999999999", b"5 5", b" 5", b"", b"abc", b"00005")
MAGIC = (b"\r\n", b"\n", b"\r", b"\r\n\r\n", b"\x00", b" ", b"\t", b":", b"Transfer-Encoding: chunked\r\n",
         b"Content-Length: 0\r\n", b"Content-Length: 99999\r\n", b"0\r\n\r\n", b"Connection: close\r\n",
         b"Expect: 100-continue\r\n", b"\xff", b"\x80", b"HTTP/1.1", b"POST / HTTP/1.1\r\n")


@dataclass
class Input:
    """One input: its bytes; ``final``: its framing may leave the sidecar waiting for more, so it ends its
    connection (sent last, then end-of-file); ``method``: for reading the answer (HEAD has no body)."""

    data: bytes
    final: bool
    method: bytes
    kind: str  # "clean", "edge" or "mutated"


def _chunked(body: bytes, rng: random.Random, *, ext: bool = False, trailer: bool = False) -> bytes:
    out = []
    pos = 0
    while pos < len(body):
        n = rng.randint(1, max(1, len(body) - pos))
        extension = b";x=y" if ext and rng.random() < 0.5 else b""
        out.append(b"%x%s\r\n%s\r\n" % (n, extension, body[pos:pos + n]))
        pos += n
    out.append(b"0\r\n" + (b"x-trailer: 1\r\n" if trailer else b"") + b"\r\n")
    return b"".join(out)


class Requests:
    """HTTP/1.1 inputs: clean requests, requests with an edge in one or more parts, byte-mutated requests."""

    def __init__(self, rng: random.Random) -> None:
        self.rng = rng
        self.docs = Docs(rng)

    def body(self) -> bytes:
        r = self.rng
        k = r.random()
        if k < 0.75:
            _kind, doc = self.docs.doc()
            return json.dumps(doc, allow_nan=True).encode()
        if k < 0.85:
            return b""
        if k < 0.9:
            return b"[" * r.choice((100, 1500, 5000)) + b"]" * r.choice((0, 100))
        return bytes(r.getrandbits(8) for _ in range(r.randint(1, 64)))

    def clean(self) -> Input:
        """A request every HTTP/1.1 server accepts: a model path, a JSON body, consistent framing."""
        r = self.rng
        body = json.dumps(self.docs.valid()[1], allow_nan=True).encode() if r.random() < 0.95 else b""
        path = r.choice(MODEL_PATHS)
        headers = [b"Host: 127.0.0.1", b"Content-Type: application/json"]
        if r.random() < 0.3:
            headers.append(b"x-user-id: user-%d" % r.randint(0, 9999))
        if r.random() < 0.2:
            headers.append(b"x-mlchaos-shadow: 1")
        if r.random() < 0.75:
            headers.append(b"Content-Length: %d" % len(body))
            payload = body
        else:
            headers.append(b"Transfer-Encoding: chunked")
            payload = _chunked(body, r, ext=r.random() < 0.1, trailer=r.random() < 0.1)
        r.shuffle(headers)
        return Input(b"POST " + path + b" HTTP/1.1\r\n" + b"\r\n".join(headers) + b"\r\n\r\n" + payload,
                     False, b"POST", "clean")

    def edge(self) -> Input:
        """A request with edges in its request line, headers, framing or body (each part drawn alone)."""
        r = self.rng
        final = False
        method = r.choice((b"POST", b"POST", b"GET", b"PUT", b"HEAD")) if r.random() < 0.8 else r.choice(ODD_METHODS)
        path = r.choice(MODEL_PATHS) if r.random() < 0.8 else r.choice(ODD_PATHS)
        version = b"HTTP/1.1" if r.random() < 0.75 else (b"HTTP/1.0" if r.random() < 0.5 else r.choice(ODD_VERSIONS))
        sep = b" " if r.random() < 0.9 else r.choice((b"  ", b"\t", b""))
        eol = b"\r\n" if r.random() < 0.9 else r.choice((b"\n", b"\r", b"\r\r\n"))
        if version not in (b"HTTP/1.1", b"HTTP/1.0") or method in ODD_METHODS or path in ODD_PATHS or eol != b"\r\n":
            final = True  # the sidecar may read these in a way this client cannot foresee
        line = method + sep + path + (sep + version if version else b"") + eol
        body = self.body()
        headers: list[bytes] = []
        if r.random() < 0.9:
            headers.append(b"Host: " + r.choice((b"127.0.0.1", b"", b"a b", b"x" * 200)))
        if r.random() < 0.1:
            headers.append(b"Host: other")
        for _ in range(r.choice((0, 0, 1, 2, 5, 40))):
            headers.append(self.header())
        if r.random() < 0.1:
            headers.append(b"x-long: " + b"v" * r.choice((1000, 9000, 70000)))
        if r.random() < 0.1:
            headers.append(r.choice((b"Expect: 100-continue", b"Connection: close", b"Connection: upgrade",
                                     b"Upgrade: h2c", b"Connection: keep-alive")))
        if r.random() < 0.05:
            headers.append(b"Inference-Header-Content-Length: " + r.choice((b"0", b"5", b"-1", b"x", b"99999")))
        # Framing: one consistent way, or an ambiguous one (then the input ends its connection).
        k = r.random()
        if k < 0.45:
            headers.append(b"Content-Length: %d" % len(body))
            payload = body
        elif k < 0.65:
            headers.append(b"Transfer-Encoding: chunked")
            payload = _chunked(body, r, ext=r.random() < 0.2, trailer=r.random() < 0.2)
        elif k < 0.7:
            payload = b""
        else:
            final = True
            payload = self.ambiguous(headers, body)
        if any(h.startswith((b" ", b"\t")) for h in headers):
            final = True
        r.shuffle(headers)
        # Obsolete line folding: a continuation line glued to the header before it.
        if headers and r.random() < 0.03:
            j = r.randrange(len(headers))
            headers[j] += eol + r.choice((b" ", b"\t")) + b"folded"
            final = True
        data = line + eol.join(headers) + (eol if headers else b"") + eol + payload
        return Input(data, final, method, "edge")

    def header(self) -> bytes:
        r = self.rng
        k = r.random()
        if k < 0.5:
            return b"x-h%d: %s" % (r.randint(0, 99), r.choice((b"v", b"", b" spaced ", b"\xc3\xa9", b"a\x00b")))
        if k < 0.7:
            return r.choice((b"Accept: */*", b"User-Agent: fuzz", b"Cookie: session=abc", b"x-user-id: u1",
                             b"x-mlchaos-token: nope", b"traceparent: 00-0-0-00", b"Accept-Encoding: gzip"))
        if k < 0.85:
            return r.choice((b"no-colon", b": empty-name", b"bad name: v", b"x\x7f: v", b"x-\xff: v", b"x:v"))
        return r.choice((b" leading-space: v", b"\tleading-tab: v"))

    def ambiguous(self, headers: list[bytes], body: bytes) -> bytes:
        """Framing headers that disagree or are malformed; returns what is sent after the head."""
        r = self.rng
        chunked = _chunked(body, r)
        k = r.random()
        if k < 0.2:  # CL.TE / TE.CL: both, CL matching the chunked bytes so either reading ends there
            headers += [b"Content-Length: %d" % len(chunked), b"Transfer-Encoding: chunked"]
            return chunked
        if k < 0.4:
            headers.append(b"Transfer-Encoding: " + r.choice(TE_VALUES))
            if r.random() < 0.3:
                headers.append(b"Transfer-Encoding: " + r.choice(TE_VALUES))
            return chunked
        if k < 0.55:
            headers.append(r.choice(ODD_FRAMING_NAMES) + b": " + r.choice((b"chunked", b"%d" % len(body))))
            return chunked if r.random() < 0.5 else body
        if k < 0.7:
            n = len(body)
            headers += [b"Content-Length: %d" % n, b"Content-Length: %d" % r.choice((n, n + 1, 0))]
            return body
        if k < 0.85:
            headers.append(b"Content-Length: " + r.choice(CL_VALUES))
            return body
        if k < 0.93:  # a body longer or shorter than declared
            headers.append(b"Content-Length: %d" % max(0, len(body) + r.choice((-5, -1, 1, 50))))
            return body
        headers.append(b"Transfer-Encoding: chunked")  # broken chunk sizes and endings
        return r.choice((b"ffffffffffffffffff\r\n", b"-1\r\n", b"5\r\nabc\r\n0\r\n\r\n", b"0\r\n", b"5\nhello\n0\n\n",
                         b"3;" + b"e" * 5000 + b"\r\nabc\r\n0\r\n\r\n", b"0x5\r\nhello\r\n0\r\n\r\n"))

    def mutated(self) -> Input:
        """A clean request with one to four byte-level changes."""
        r = self.rng
        data = bytearray(self.clean().data)
        for _ in range(r.randint(1, 4)):
            if not data:
                break
            i = r.randrange(len(data))
            k = r.random()
            if k < 0.2:
                data[i] ^= 1 << r.randrange(8)
            elif k < 0.35:
                data[i] = r.getrandbits(8)
            elif k < 0.55:
                data[i:i] = r.choice(MAGIC)
            elif k < 0.7:
                del data[i:i + r.randint(1, 16)]
            elif k < 0.8:
                j = r.randrange(len(data))
                lo, hi = min(i, j), max(i, j)
                data[hi:hi] = data[lo:hi][:256]
            elif k < 0.9:
                del data[i:]
            else:
                data[i:i] = bytes(r.getrandbits(8) for _ in range(r.randint(1, 8)))
        return Input(bytes(data), True, b"", "mutated")

    def one(self) -> Input:
        k = self.rng.random()
        if k < 0.4:
            return self.clean()
        if k < 0.75:
            return self.edge()
        return self.mutated()
