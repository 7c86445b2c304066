"""proxy/payload/adapters/_cells.c, the byte loops of the CSV faults that do not read the table: the same
results as numpy's way and Python's joins (delimited_bytes.py's fallback when the module is not built), on any
bytes, and a clear error for what it cannot take."""

from __future__ import annotations

import importlib.util
import os
import shlex
import shutil
import subprocess
import sysconfig
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from proxy.dataplane import build
from proxy.payload.adapters import delimited_bytes

NATIVE = delimited_bytes._NATIVE
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
@settings(max_examples=600, deadline=None)
@given(_BODIES, st.integers(0, 3), st.sampled_from([ord(c) for c in ",;\t|"] + [0, 255]), st.integers(1, 5),
       st.booleans(), st.data())
def test_cells_are_numpy_s(body: bytes, start: int, delimiter: int, width: int, crlf: bool,
                           data: st.DataObject) -> None:
    start = min(start, len(body))
    columns = sorted(data.draw(st.sets(st.integers(0, width - 1))))
    want = delimited_bytes._columns(body, start, delimiter, width, crlf, columns, None)
    got = delimited_bytes._columns(body, start, delimiter, width, crlf, columns, NATIVE)
    assert (got is None) == (want is None)
    if got is not None and want is not None:
        assert got.lines == want.lines
        assert got.lo.dtype == np.intp and got.lo.tolist() == want.lo.tolist() and got.hi.tolist() == want.hi.tolist()


@pytest.mark.parametrize("native", [NATIVE, None] if NATIVE is not None else [None])
def test_cells_of_a_regular_body(native: object) -> None:
    body = b"\xef\xbb\xbfid;x\r\n1;\r\n22;333"  # a BOM, CRLF, an empty cell, no final line break
    got = delimited_bytes._columns(body, 3, ord(";"), 2, True, [0, 1], native)
    assert got is not None and got.lines == 3
    assert [[body[a:b] for a, b in zip(lo, hi, strict=True)] for lo, hi in zip(got.lo, got.hi, strict=True)] == \
        [[b"id", b"1", b"22"], [b"x", b"", b"333"]]
    for ragged in (b"a;b\r\n1;2;3\r\n", b"a;b\r\n1\r\n", b"a;b\r\n1;2\n", b"a;b\r\n1;\r2\r\n"):
        assert delimited_bytes._columns(ragged, 0, ord(";"), 2, True, [1], native) is None, ragged


@needs_native
@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=500), st.data(), st.sampled_from([b"", b'""', b"NA"]))
def test_cut_is_the_join_of_slices(body: bytes, data: st.DataObject, blank: bytes) -> None:
    bounds = sorted(data.draw(st.lists(st.integers(0, len(body)), max_size=40)))
    starts, stops = bounds[0::2], bounds[1::2]  # ascending and apart; a cell may be empty
    starts = starts[:len(stops)]
    want = delimited_bytes._cut(body, starts, stops, blank)
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
def test_cells_refuse_what_they_cannot_take() -> None:
    for start, delimiter, width, columns in ((-1, 44, 2, []), (9, 44, 2, []), (0, 10, 2, []), (0, 13, 2, []),
                                             (0, 256, 2, []), (0, 44, 0, []), (0, 44, 2, [1, 0]), (0, 44, 2, [2]),
                                             (0, 44, 2, [0, 0])):
        with pytest.raises(ValueError, match="cells"):
            NATIVE.cells(b"a,b\nc,d", start, delimiter, width, False, columns)
    with pytest.raises(TypeError):
        NATIVE.cells(b"a,b\nc,d", 0, 44, 2, False, 3)
    with pytest.raises(ValueError):  # a non-contiguous array is no buffer of bytes
        NATIVE.cut(b"abcdef", np.arange(6)[::2], np.arange(6)[::2], b"")


def test_the_build_without_simd_gives_the_same(tmp_path: Path) -> None:
    """_cells.c a byte at a time (CELLS_NO_SIMD), as on a machine without SSE2, against numpy's way."""
    cc = shlex.split(os.environ.get("CC") or sysconfig.get_config_var("CC") or "cc")
    if shutil.which(cc[0]) is None or not Path(sysconfig.get_paths()["include"], "Python.h").exists():
        pytest.skip("no C compiler or Python headers")
    source = Path(delimited_bytes.__file__).with_name("_cells.c")
    built = tmp_path / f"_cells{sysconfig.get_config_var('EXT_SUFFIX')}"
    subprocess.run([*cc, "-O2", "-shared", "-fPIC", "-DCELLS_NO_SIMD", f"-I{sysconfig.get_paths()['include']}",
                    str(source), "-o", str(built)], check=True, capture_output=True, timeout=120)
    spec = importlib.util.spec_from_file_location("_cells", built)
    assert spec is not None and spec.loader is not None
    scalar = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(scalar)
    rng = np.random.default_rng(5)
    bodies = [b"id,x\n" + b"".join(b"%d,%s\n" % (i, b"" if i % 7 == 0 else b"%d" % i) for i in range(300)),
              b"a;b\r\n1;2\r\n3;", b"a,b\n1,2,3\n", bytes(rng.choice(list(b",;\n\rab"), 2000).astype(np.uint8))]
    read = 0
    for body in bodies:
        for delimiter, width, crlf in ((44, 2, False), (59, 2, True), (44, 3, False)):
            want = delimited_bytes._columns(body, 0, delimiter, width, crlf, list(range(width)), None)
            got = delimited_bytes._columns(body, 0, delimiter, width, crlf, list(range(width)), scalar)
            assert (got is None) == (want is None), body[:40]
            if got is not None and want is not None:
                assert got.lo.tolist() == want.lo.tolist() and got.hi.tolist() == want.hi.tolist()
                read += 1
    assert read == 2  # the first two bodies read; the ragged one and the noise do not
    starts, stops = np.array([1, 5], dtype=np.intp), np.array([3, 5], dtype=np.intp)
    assert scalar.cut(b"abcdefgh", starts, stops, b"_") == delimited_bytes._cut(b"abcdefgh", [1, 5], [3, 5], b"_")


@needs_native
@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=300), st.data())
def test_gather_is_the_join_of_glued_slices(body: bytes, data: st.DataObject) -> None:
    seps = (b"", b",", b"\r\n", b'\r\n""')
    bound = st.integers(0, len(body))
    pieces = data.draw(st.lists(st.tuples(bound, bound, st.integers(0, len(seps) - 1)), max_size=30))
    starts = [min(a, b) for a, b, _ in pieces]
    stops = [max(a, b) for a, b, _ in pieces]
    glue = [g for _, _, g in pieces]
    want = delimited_bytes._gather(body, starts, stops, glue, seps, b"head", b"tail")
    got = NATIVE.gather(body, np.array(starts, dtype=np.intp), np.array(stops, dtype=np.intp),
                        np.array(glue, dtype=np.intp), seps, b"head", b"tail")
    assert got == want


@needs_native
def test_gather_refuses_what_it_cannot_take() -> None:
    one, two = np.array([0], dtype=np.intp), np.array([2], dtype=np.intp)
    for starts, stops, glue, seps in ((two, one, np.array([0]), (b"",)), (one, np.array([9]), np.array([0]), (b"",)),
                                      (one, two, np.array([1]), (b"",)), (one, two, np.array([-1]), (b"",))):
        with pytest.raises(ValueError, match="gather"):
            NATIVE.gather(b"abc", starts, stops, glue, seps, b"", b"")
    with pytest.raises(TypeError, match="tuple of bytes"):
        NATIVE.gather(b"abc", one, two, np.array([0]), ("x",), b"", b"")
    with pytest.raises(ValueError, match="as many"):
        NATIVE.gather(b"abc", one, two, np.array([0, 0]), (b"",), b"", b"")
