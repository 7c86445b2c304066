"""proxy/payload/adapters/_cells.c, the byte loops of ``nan`` on a CSV body: the same results as numpy's way
(delimited.py's fallback when the module is not built), on any bytes, and a clear error for what it cannot take."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from proxy.dataplane import build
from proxy.payload.adapters import delimited

NATIVE = delimited._NATIVE
needs_native = pytest.mark.skipif(NATIVE is None, reason="built without the C module (plain Python)")


def test_a_compiled_build_has_the_c_module() -> None:
    # A compiled data plane without it would still be right, only slower: a build that lost it must not pass.
    if build() == "compiled":
        assert NATIVE is not None


# Bytes that are mostly separators and line breaks, so every way they can sit together (at a 64-byte block's
# edge, runs of them, none at all) comes up, with a start past a byte order mark's worth.
_BODIES = st.binary(max_size=700) | st.lists(st.sampled_from([b",", b"\n", b";", b"\t", b"ab", b"\r\n", b"x" * 63]),
                                             max_size=120).map(b"".join)


@needs_native
@settings(max_examples=300, deadline=None)
@given(_BODIES, st.integers(0, 5), st.sampled_from([ord(c) for c in ",;\t|"] + [0, 255, ord("\r")]))
def test_separators_are_numpy_s(body: bytes, start: int, delimiter: int) -> None:
    start = min(start, len(body))
    arr = np.frombuffer(body, dtype=np.uint8, offset=start)
    want, want_lf = delimited._offsets(body, arr, start, delimiter, None)
    got, got_lf = delimited._offsets(body, arr, start, delimiter, NATIVE)
    assert got.dtype == np.intp and got.tolist() == want.tolist() and got_lf == want_lf


@needs_native
@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=500), st.data(), st.sampled_from([b"", b'""', b"NA"]))
def test_cut_is_the_join_of_slices(body: bytes, data: st.DataObject, blank: bytes) -> None:
    bounds = sorted(data.draw(st.lists(st.integers(0, len(body)), max_size=40)))
    starts, stops = bounds[0::2], bounds[1::2]  # ascending and apart; a cell may be empty
    starts = starts[:len(stops)]
    want = delimited._cut(body, starts, stops, blank)
    assert NATIVE.cut(body, np.array(starts, dtype=np.intp), np.array(stops, dtype=np.intp), blank) == want


@needs_native
@pytest.mark.parametrize(("starts", "stops", "message"), [
    (np.array([3, 1]), np.array([4, 2]), "not ascending"),
    (np.array([1]), np.array([99]), "not ascending within the body"),
    (np.array([2]), np.array([1]), "not ascending"),
    (np.array([1, 2]), np.array([3]), "as many starts as stops"),
    (np.array([1], dtype=np.int32), np.array([2], dtype=np.int32), "native integers"),
    (np.array([1.0]), np.array([2.0]), "native integers"),
])
def test_cut_refuses_what_it_cannot_take(starts: np.ndarray, stops: np.ndarray, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        NATIVE.cut(b"abcdef", starts, stops, b"")


@needs_native
def test_separators_refuse_a_start_outside_the_body_or_a_line_break_as_delimiter() -> None:
    for start, delimiter in ((-1, 44), (8, 44), (0, 10), (0, 256)):
        with pytest.raises(ValueError, match="separators"):
            NATIVE.separators(b"a,b\nc,d", start, delimiter)
    with pytest.raises(ValueError):  # a non-contiguous array is no buffer of bytes
        NATIVE.cut(b"abcdef", np.arange(6)[::2], np.arange(6)[::2], b"")
