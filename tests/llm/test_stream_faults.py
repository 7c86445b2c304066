"""The stream faults through a real sidecar in front of the embedded vLLM-like server: what reaches a client,
event by event, and when. (tests/llm/test_clients.py runs the same faults under the official SDK.)"""

from __future__ import annotations

import itertools
import time
from typing import Any

import orjson
import pytest

from proxy.faults import FAULTS
from proxy.faults.base import Cut, Hold, ResponseView
from proxy.faults.llm_base import EventHook
from tests.llm.conftest import FORCE_CHAOS, FORCE_CONTROL, FORCE_NONE, chat, llm_sidecar

BODY: dict[str, Any] = {"model": "m", "messages": [{"role": "user", "content": "Tell me a story"}],
                        "max_tokens": 12, "stream": True}


async def test_control_and_unassigned_streams_are_byte_identical_to_direct(llm, start_sidecar):
    _, url = llm
    sc = await llm_sidecar(start_sidecar, url, [{"type": "stream_truncate", "after": 2}])
    direct = await chat(int(url.rsplit(":", 1)[1]), BODY)
    for force in (FORCE_CONTROL, FORCE_NONE):
        through = await chat(sc.proxy_port, BODY, force)
        # Ids and timestamps differ per answer: everything else, byte for byte.
        assert _normal(through.raw) == _normal(direct.raw)
        assert len(through.events) == len(direct.events) == 12 + 3 and through.done
    chaos = await chat(sc.proxy_port, BODY, FORCE_CHAOS)
    assert _normal(chaos.raw) != _normal(direct.raw)


def _normal(raw: bytes) -> bytes:
    out = []
    for line in raw.split(b"\n\n"):
        if line.startswith(b"data: {"):
            doc = orjson.loads(line[6:])
            doc.pop("id", None)
            doc.pop("created", None)
            line = b"data: " + orjson.dumps(doc)
        out.append(line)
    return b"\n\n".join(out)


async def test_first_token_delay_holds_the_first_content_chunk_only(llm, start_sidecar):
    _, url = llm
    sc = await llm_sidecar(start_sidecar, url, [{"type": "first_token_delay", "duration": "300ms"}])
    a = await chat(sc.proxy_port, BODY, FORCE_CHAOS)
    arrivals = [t for t, _ in a.events]
    assert a.done and a.finish_reasons() == ["length"]
    assert arrivals[0] - a.t0 < 0.2  # the role chunk is not held
    assert arrivals[1] - a.t0 >= 0.3  # the first token is
    gaps = [b - a_ for a_, b in itertools.pairwise(arrivals[1:])]
    assert max(gaps) < 0.15, gaps  # the tokens after it flow at the model's pace again
    control = await chat(sc.proxy_port, BODY, FORCE_CONTROL)
    assert control.events[1][0] - control.t0 < 0.2


async def test_first_token_delay_holds_a_whole_answer(llm, start_sidecar):
    _, url = llm
    sc = await llm_sidecar(start_sidecar, url, [{"type": "first_token_delay", "duration": "250ms"}])
    a = await chat(sc.proxy_port, {**BODY, "stream": False}, FORCE_CHAOS)
    assert a.status == 200 and a.json()["choices"][0]["finish_reason"] == "length"
    assert time.monotonic() - a.t0 >= 0.25


async def test_token_delay_paces_each_chunk_after_the_first(llm, start_sidecar):
    _, url = llm
    sc = await llm_sidecar(start_sidecar, url, [{"type": "token_delay", "duration": "40ms"}])
    a = await chat(sc.proxy_port, BODY, FORCE_CHAOS)
    content = [t for (t, e) in a.events if b'"content":"' in e and b'"content":""' not in e]
    assert len(content) == 12
    assert content[0] - a.t0 < 0.1
    gaps = sorted(b - a_ for a_, b in itertools.pairwise(content))
    # Each chunk is scheduled 40 ms after the one before; a timer that fires late for one and on time for
    # the next (a loaded machine) shortens one gap, never their sum.
    assert content[-1] - content[0] >= 11 * 0.040 * 0.98 and gaps[len(gaps) // 2] >= 0.035, gaps
    assert a.done and a.text() == (await chat(sc.proxy_port, BODY, FORCE_CONTROL)).text()


async def test_token_delay_paces_events_that_arrive_in_one_read(start_upstream, start_sidecar):
    from aiohttp import web

    events = b"".join(b'data: {"choices":[{"index":0,"delta":{"content":" w%d"}}]}\n\n' % i for i in range(5))

    async def burst(request: web.Request) -> web.StreamResponse:
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await resp.prepare(request)
        await resp.write(events + b"data: [DONE]\n\n")  # one write: one upstream read
        return resp

    up = await start_upstream({"/v1/chat/completions": burst})
    sc = await llm_sidecar(start_sidecar, up.url, [{"type": "token_delay", "duration": "50ms"}])
    a = await chat(sc.proxy_port, BODY, FORCE_CHAOS)
    assert a.raw == events + b"data: [DONE]\n\n"
    times = [t for t, _ in a.events][:5]
    assert times[-1] - times[0] >= 4 * 0.050 * 0.98, times


@pytest.mark.parametrize("then", ["continue", "close", "reset"])
async def test_stream_stall_stops_then_goes_on_or_ends(llm, start_sidecar, then):
    _, url = llm
    sc = await llm_sidecar(start_sidecar, url, [{"type": "stream_stall", "after": 3, "duration": "300ms",
                                                 "then": then}])
    a = await chat(sc.proxy_port, BODY, FORCE_CHAOS)
    content = [t for (t, e) in a.events if b'"content":"' in e and b'"content":""' not in e]
    if then == "continue":
        assert a.done and len(content) == 12
        assert content[3] - content[2] >= 0.29
        return
    assert len(content) == 3 and not a.done and a.error is not None
    assert time.monotonic() - content[2] >= 0.29


@pytest.mark.parametrize(("ending", "done", "finish"), [
    ("done", True, []), ("length", True, ["length"]), ("abort", True, ["abort"]), ("stop", True, ["stop"]),
    ("eof", False, []), ("close", False, []),
])
async def test_stream_truncate_ends_after_n_chunks_as_told(llm, start_sidecar, ending, done, finish):
    _, url = llm
    sc = await llm_sidecar(start_sidecar, url, [{"type": "stream_truncate", "after": 4, "ending": ending}])
    a = await chat(sc.proxy_port, BODY, FORCE_CHAOS)
    full = await chat(sc.proxy_port, BODY, FORCE_CONTROL)
    assert a.status == 200
    assert a.text() == "".join(" " + w for w in full.text().split()[:4])
    assert a.done is done and a.finish_reasons() == finish
    assert (a.error is not None) is (ending == "close")
    if finish:  # the made-up last chunk is the stream's own: same id and model
        last = a.chunks()[-1]
        assert last["id"] == a.chunks()[0]["id"] and last["object"] == "chat.completion.chunk"


async def test_stream_truncate_counts_tokens_from_streamed_usage(start_upstream, start_sidecar):
    from aiohttp import web

    async def usage(request: web.Request) -> web.StreamResponse:
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await resp.prepare(request)
        for i in range(6):  # three tokens a chunk, as vLLM's continuous usage stats report them
            await resp.write(b'data: {"choices":[{"index":0,"delta":{"content":" a b c"}}],'
                             b'"usage":{"completion_tokens":%d}}\n\n' % (3 * (i + 1)))
        await resp.write(b"data: [DONE]\n\n")
        return resp

    up = await start_upstream({"/v1/chat/completions": usage})
    sc = await llm_sidecar(start_sidecar, up.url, [{"type": "stream_truncate", "after": 7, "unit": "tokens",
                                                    "ending": "length"}])
    a = await chat(sc.proxy_port, BODY, FORCE_CHAOS)
    assert a.text() == " a b c" * 3 and a.finish_reasons() == ["length"] and a.done


@pytest.mark.parametrize("shape", ["vllm", "openai"])
async def test_stream_error_sends_the_servers_error_event_mid_stream(llm, start_sidecar, shape):
    _, url = llm
    sc = await llm_sidecar(start_sidecar, url, [{"type": "stream_error", "after": 2, "shape": shape}])
    a = await chat(sc.proxy_port, BODY, FORCE_CHAOS)
    datas = a.datas()
    errors = [orjson.loads(d) for d in datas if d.startswith(b'{"error"')]
    assert len(errors) == 1 and len(a.text().split()) == 2
    if shape == "vllm":
        assert errors[0]["error"]["code"] == 500 and errors[0]["error"]["object"] == "error" and a.done
    else:
        assert errors[0]["error"]["type"] == "server_error" and not a.done
    # The client got HTTP 200, yet the stream failed: counted as dropped, as the kill switch sees it.
    assert sc.metrics.registry.get_sample_value(
        "mlchaos_requests_total", {"experiment": "e1", "cohort": "chaos", "code": "dropped"}) == 1.0


@pytest.mark.parametrize("mode", ["truncated", "garbage"])
async def test_malformed_chunk_breaks_one_chunks_json_and_the_stream_goes_on(llm, start_sidecar, mode):
    _, url = llm
    sc = await llm_sidecar(start_sidecar, url, [{"type": "malformed_chunk", "after": 2, "mode": mode}])
    a = await chat(sc.proxy_port, BODY, FORCE_CHAOS)
    bad = []
    for d in a.datas():
        try:
            orjson.loads(d if d != b"[DONE]" else b"0")
        except orjson.JSONDecodeError:
            bad.append(d)
    assert len(bad) == 1 and a.done and len(a.events) == 12 + 3


class _Recorder(EventHook):
    """An EventHook that passes everything, for the framer's behaviour at read boundaries."""

    def __init__(self) -> None:
        super().__init__()
        self.seen: list[bytes] = []

    def event(self, ev: bytes, data: bytes | None, kind: int) -> Any:
        self.seen.append(ev)
        return ev


def test_an_event_hook_passes_whole_reads_as_the_same_object_and_waits_for_split_events():
    hook = _Recorder()
    hook.head(ResponseView(200, [(b"content-type", b"text/event-stream")], b""))
    read = b"data: {\"a\": 1}\n\ndata: {\"b\": 2}\n\n"
    assert hook.chunk(read) is read
    assert hook.chunk(b"data: {\"c\"") == b""  # half an event: held until its end arrives
    assert hook.chunk(b": 3}\n\ndata: [DO") == b"data: {\"c\": 3}\n\n"
    assert hook.end() == b"data: [DO"  # an unfinished last event goes out as it is
    assert hook.seen[-1] == b"data: [DO"


def test_a_hook_on_an_error_answer_or_a_plain_body_stays_out_of_the_way():
    hook = FAULTS["stream_truncate"](after=0)  # type: ignore[call-arg]
    from proxy.faults.stream_truncate import _Truncate

    h = _Truncate(hook)  # type: ignore[arg-type]
    h.head(ResponseView(429, [(b"content-type", b"application/json")], b""))
    body = b'{"error": {"message": "slow down"}}'
    assert h.chunk(body) is body and h.end() == b""


def test_pieces_carry_holds_and_cuts():
    from proxy.faults.stream_stall import StreamStall, _Stall

    h = _Stall(StreamStall(after=0, duration=2.0, then="reset"))
    h.head(ResponseView(200, [(b"content-type", b"text/event-stream")], b""))
    step = h.chunk(b'data: {"choices":[{"delta":{"content":" x"}}]}\n\n')
    assert step == (Hold(2.0, b""), Cut(b"", True))
    assert h.chunk(b"data: [DONE]\n\n") == b""
