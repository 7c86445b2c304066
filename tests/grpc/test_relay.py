"""The relay's gRPC wire values: grpc-timeout both ways, and grpc-message's percent-encoding as grpc reads it."""

from __future__ import annotations

import urllib.parse

import pytest
from hypothesis import given
from hypothesis import strategies as st

from proxy.edges.grpc.relay import format_timeout, parse_timeout, percent_encode


@pytest.mark.parametrize(("value", "seconds"), [(b"1H", 3600.0), (b"2M", 120.0), (b"3S", 3.0), (b"250m", 0.25),
                                                 (b"1500u", 0.0015), (b"99999999n", 0.099999999)])
def test_parse_timeout_units(value: bytes, seconds: float) -> None:
    assert parse_timeout(value) == pytest.approx(seconds)


@pytest.mark.parametrize("value", [b"", b"S", b"10", b"10x", b"-1S", b"123456789S", b"1.5S"])
def test_parse_timeout_refuses_what_is_not_one(value: bytes) -> None:
    assert parse_timeout(value) is None


@given(st.floats(min_value=1e-6, max_value=1e7))
def test_format_timeout_never_shortens_and_reads_back(seconds: float) -> None:
    wire = format_timeout(seconds)
    back = parse_timeout(wire)
    assert back is not None and seconds <= back < seconds + 1.0 and len(wire) <= 9


@given(st.text(max_size=40))
def test_percent_encode_decodes_to_the_text(text: str) -> None:
    wire = percent_encode(text)
    assert all(0x20 <= b <= 0x7E for b in wire)
    assert urllib.parse.unquote(wire.decode("ascii"), errors="strict") == text
