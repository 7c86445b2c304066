"""The protocol-neutral exchange's stream hooks and response-side features, through a real sidecar.

A stream hook sees a streamed answer one upstream read at a time: these tests register a small fault that
rewrites, holds, cuts or ends a server-sent-event stream, and check what a real client receives and when.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from dataclasses import dataclass
from typing import Any, ClassVar

import aiohttp
import orjson
import pytest
from aiohttp import web

from proxy import faults
from proxy.declare.fields import Field
from proxy.faults.base import Cut, Fault, FaultContext, Hold, Outcome, ResponseView, StreamStep
from tests.conftest import policy_from
from tests.dataplane.conftest import FORCE_CHAOS, FORCE_CONTROL, OVERRIDE_ENV, RawClient, chaos_experiment, get

EVENTS = [b"data: {\"token\": \"%d\"}\n\n" % i for i in range(4)]
GAP = 0.15  # seconds between the upstream's events


class _Probe:
    """A stream hook doing what its fault's ``mode`` says, to one chunk index."""

    def __init__(self, mode: str, at: int, seconds: float) -> None:
        self.mode, self.at, self.seconds, self.n = mode, at, seconds, 0

    def head(self, view: ResponseView) -> None:
        view.set_header(b"x-stream-probe", self.mode.encode())

    def chunk(self, data: bytes) -> StreamStep:
        i, self.n = self.n, self.n + 1
        if self.mode in ("pass", "done") or (i != self.at and self.mode != "rewrite"):
            return data
        if self.mode == "rewrite":
            return data.upper()
        if self.mode == "hold":
            return Hold(self.seconds, data)
        if self.mode == "swallow":
            return b""
        return Cut(data, reset=self.mode == "reset")

    def end(self) -> StreamStep:
        return b"data: [DONE]\n\n" if self.mode == "done" else b""


@dataclass(frozen=True, slots=True, kw_only=True)
class StreamProbe(Fault):
    type: ClassVar[str] = "stream_probe"
    FIELDS: ClassVar[tuple[Field, ...]] = (
        Field("mode", "choice", choices=("rewrite", "hold", "cut", "reset", "swallow", "done", "pass")),
        Field("at", "integer", default=1),
        Field("seconds", "number", default=0.4),
    )

    mode: str
    at: int = 1
    seconds: float = 0.4

    def apply(self, ctx: FaultContext) -> Outcome:
        ctx.on_stream(_Probe(self.mode, self.at, self.seconds))
        return None


@pytest.fixture
def probe(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(faults.FAULTS, StreamProbe.type, StreamProbe)


@pytest.fixture
async def sse(start_upstream: Any) -> Any:
    sent: list[float] = []

    async def handler(request: web.Request) -> web.StreamResponse:
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await resp.prepare(request)
        for i, event in enumerate(EVENTS):
            if i:
                await asyncio.sleep(GAP)
            sent.append(time.monotonic())
            await resp.write(event)
        await resp.write_eof()
        return resp

    up = await start_upstream({"/v1/chat/completions": handler})
    up.sent = sent
    return up


async def _sidecar(start_sidecar: Any, url: str, mode: str, **extra: Any) -> Any:
    policy = policy_from(url, chaos_experiment([{"type": "stream_probe", "mode": mode, **extra}]))
    return await start_sidecar(policy, env=OVERRIDE_ENV)


async def _read_events(port: int, headers: dict[str, str]) -> tuple[int, dict[str, str], list[tuple[float, bytes]]]:
    """Each event as the client reads it, with its arrival time."""
    got: list[tuple[float, bytes]] = []
    async with aiohttp.ClientSession() as s, \
            s.post(f"http://127.0.0.1:{port}/v1/chat/completions", json={"stream": True}, headers=headers) as r:
        while True:
            try:
                event = await r.content.readuntil(b"\n\n")
            except ValueError:
                break
            if not event:
                break
            got.append((time.monotonic(), event))
        return r.status, dict(r.headers), got


@pytest.mark.usefixtures("probe")
async def test_a_rewriting_hook_changes_each_chunk_and_control_gets_the_stream_as_sent(sse, start_sidecar):
    sc = await _sidecar(start_sidecar, sse.url, "rewrite")
    status, headers, events = await _read_events(sc.proxy_port, FORCE_CHAOS)
    assert status == 200 and headers["x-stream-probe"] == "rewrite" and "content-length" not in headers
    assert [e for _, e in events] == [e.upper() for e in EVENTS]
    status, headers, events = await _read_events(sc.proxy_port, FORCE_CONTROL)
    assert status == 200 and "x-stream-probe" not in headers
    assert [e for _, e in events] == EVENTS


@pytest.mark.usefixtures("probe")
async def test_a_pass_through_hook_adds_no_buffering(sse, start_sidecar):
    sc = await _sidecar(start_sidecar, sse.url, "pass")
    sse.sent.clear()
    _, _, events = await _read_events(sc.proxy_port, FORCE_CHAOS)
    assert [e for _, e in events] == EVENTS
    # Each event reaches the client long before the next one is even sent (GAP apart).
    lags = [at - sent for (at, _), sent in zip(events, sse.sent, strict=True)]
    assert max(lags) < GAP / 2, lags


@pytest.mark.usefixtures("probe")
async def test_a_held_chunk_delays_it_and_everything_after_it_in_order(sse, start_sidecar):
    sc = await _sidecar(start_sidecar, sse.url, "hold", at=1, seconds=0.4)
    sse.sent.clear()
    _, _, events = await _read_events(sc.proxy_port, FORCE_CHAOS)
    assert [e for _, e in events] == EVENTS
    first, second = events[0][0], events[1][0]
    assert second - first >= 0.38  # held 0.4 s from when it arrived (GAP after the first)
    assert second - sse.sent[1] >= 0.38
    assert all(b[0] >= a[0] for a, b in itertools.pairwise(events))


@pytest.mark.usefixtures("probe")
@pytest.mark.parametrize("mode", ["cut", "reset"])
async def test_a_cut_ends_the_answer_after_that_chunk_without_its_proper_end(sse, start_sidecar, mode):
    sc = await _sidecar(start_sidecar, sse.url, mode, at=1)
    async with await RawClient.connect(sc.proxy_port) as c:
        hdrs = {**FORCE_CHAOS, "content-type": "application/json"}
        await c.send(get("/v1/chat/completions", method="POST", headers=hdrs, body=b"{}"))
        if mode == "reset":
            # An RST may discard what the client had not read yet: the client sees the reset, never an end.
            with pytest.raises(ConnectionResetError):
                await c.read_to_eof()
            raw = b""
        else:
            raw = await c.read_to_eof()
    if mode == "cut":
        head, _, body = raw.partition(b"\r\n\r\n")
        assert b"transfer-encoding: chunked" in head.lower()
        assert EVENTS[0] in body and EVENTS[1] in body and EVENTS[2] not in body
        assert not body.endswith(b"0\r\n\r\n")  # no last chunk: a client can tell the answer was cut
    metrics = sc.metrics.registry.get_sample_value(
        "mlchaos_requests_total", {"experiment": "e1", "cohort": "chaos", "code": "dropped"})
    assert metrics == 1.0


@pytest.mark.usefixtures("probe")
async def test_end_adds_bytes_after_the_last_chunk_and_swallowed_chunks_vanish(sse, start_sidecar):
    sc = await _sidecar(start_sidecar, sse.url, "done")
    _, _, events = await _read_events(sc.proxy_port, FORCE_CHAOS)
    assert [e for _, e in events] == [*EVENTS, b"data: [DONE]\n\n"]
    sc2 = await _sidecar(start_sidecar, sse.url, "swallow", at=2)
    _, _, events = await _read_events(sc2.proxy_port, FORCE_CHAOS)
    assert [e for _, e in events] == [EVENTS[0], EVENTS[1], EVENTS[3]]


# --- response-side features -----------------------------------------------------------------------------

V2_ANSWER: dict[str, Any] = {
    "model_name": "m", "id": "r1",
    "outputs": [{"name": "score", "shape": [3], "datatype": "FP64", "data": [0.1, 0.2, 0.3]},
                {"name": "label", "shape": [3], "datatype": "INT64", "data": [0, 1, 0]}],
}


async def test_a_feature_fault_with_target_response_changes_the_answers_table(start_upstream, start_sidecar):
    async def infer(request: web.Request) -> web.Response:
        await request.read()
        return web.json_response(V2_ANSWER)

    up = await start_upstream({"/v2/models/m/infer": infer})
    fault = {"type": "nan", "features": ["score"], "target": "response"}
    sc = await start_sidecar(policy_from(up.url, chaos_experiment([fault])), env=OVERRIDE_ENV)
    body = {"inputs": [{"name": "x", "shape": [3], "datatype": "FP64", "data": [1, 2, 3]}]}
    url = f"http://127.0.0.1:{sc.proxy_port}/v2/models/m/infer"
    async with aiohttp.ClientSession() as s:
        async with s.post(url, json=body, headers=FORCE_CHAOS) as r:
            chaos = orjson.loads(await r.read())
        async with s.post(url, json=body, headers=FORCE_CONTROL) as r:
            control = orjson.loads(await r.read())
    assert control == V2_ANSWER
    assert chaos["outputs"][0] == {**V2_ANSWER["outputs"][0], "data": [None, None, None]}
    assert chaos["outputs"][1] == V2_ANSWER["outputs"][1] and chaos["id"] == "r1"


async def test_held_answers_pipelined_on_one_connection_arrive_whole_and_in_order(start_upstream, start_sidecar):
    """A held answer (a response-side fault on a CSV file) goes out as one write of its head and its body: behind
    another on the same connection, each arrives whole, framed by its own length, in the order asked."""
    files = {f"/feeds/{name}.csv": ("id,amount\n" + "".join(f"{i},{i * k}.25\n" for i in range(1, 3001))).encode()
             for name, k in (("a", 3), ("b", 7))}

    async def serve(request: web.Request) -> web.Response:
        return web.Response(body=files[request.path], content_type="text/csv")

    up = await start_upstream(dict.fromkeys(files, serve))
    fault = {"type": "nan", "features": ["amount"], "fraction": 0.5, "target": "response"}
    sc = await start_sidecar(policy_from(up.url, chaos_experiment([fault])), env=OVERRIDE_ENV)
    order = ["/feeds/a.csv", "/feeds/b.csv", "/feeds/a.csv"]
    force = "".join(f"{k}: {v}\r\n" for k, v in FORCE_CHAOS.items())
    client = await RawClient.connect(sc.proxy_port)
    try:
        await client.send("".join(f"GET {p} HTTP/1.1\r\nhost: feeds\r\n{force}\r\n" for p in order).encode())
        answers = await client.responses(len(order))
    finally:
        await client.close()
    for path, r in zip(order, answers, strict=True):
        assert r.status == 200 and r.header("x-mlchaos-fault") == "nan"
        assert int(r.header("content-length") or -1) == len(r.body) < len(files[path])
        was, got = files[path].split(b"\n"), r.body.split(b"\n")
        assert got[0] == was[0] and len(got) == len(was)
        changed = [(g, w) for g, w in zip(got[1:-1], was[1:-1], strict=True) if g != w]
        assert len(changed) == 1500  # half of the 3,000 amounts, exactly
        assert all(g == w.split(b",")[0] + b"," for g, w in changed)  # the amount emptied, the id kept


async def test_a_response_that_is_not_a_table_passes_untouched_and_is_counted(start_upstream, start_sidecar):
    async def infer(request: web.Request) -> web.Response:
        return web.json_response({"predictions": [1, 2]})

    up = await start_upstream({"/v2/models/m/infer": infer})
    sc = await start_sidecar(policy_from(up.url, chaos_experiment([{"type": "nan", "target": "response"}])),
                             env=OVERRIDE_ENV)
    async with aiohttp.ClientSession() as s, \
            s.post(f"http://127.0.0.1:{sc.proxy_port}/v2/models/m/infer", json={}, headers=FORCE_CHAOS) as r:
        assert r.status == 200 and await r.json() == {"predictions": [1, 2]}
    assert sc.metrics.registry.get_sample_value(
        "mlchaos_payload_unparsed_total", {"experiment": "e1", "cohort": "chaos", "direction": "response"}) == 1.0


@pytest.mark.parametrize("body", [b"true", b"17", b'"text"', b"null", b"[1, 2]"])
async def test_a_request_body_that_is_json_but_no_table_passes_untouched(start_upstream, start_sidecar, body):
    """A bare JSON value where an inference payload was expected (found by benchmarks/fuzz.py on the compiled
    build, where it once raised inside the payload path): untouched, counted, no internal error."""
    seen: list[bytes] = []

    async def infer(request: web.Request) -> web.Response:
        seen.append(await request.read())
        return web.json_response({"ok": True})

    up = await start_upstream({"/v1/models/m:predict": infer})
    sc = await start_sidecar(policy_from(up.url, chaos_experiment([{"type": "out_of_range"}])), env=OVERRIDE_ENV)
    async with aiohttp.ClientSession() as s, s.post(f"http://127.0.0.1:{sc.proxy_port}/v1/models/m:predict",
                                                    data=body, headers=FORCE_CHAOS) as r:
        assert r.status == 200
    assert seen == [body]
    assert sc.metrics.registry.get_sample_value("mlchaos_proxy_errors_total", {"kind": "internal"}) == 0.0
    assert sc.metrics.registry.get_sample_value(
        "mlchaos_payload_unparsed_total", {"experiment": "e1", "cohort": "chaos", "direction": "request"}) == 1.0
