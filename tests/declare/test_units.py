"""Unit parsers: round trips, bounds, and garbage that fails with ValueError and nothing else."""

from __future__ import annotations

import math
from collections.abc import Callable

import pytest
from hypothesis import given
from hypothesis import strategies as st

from proxy.declare.units import Address, parse_address, parse_duration, parse_percent, parse_size

DURATION_UNITS = {"": 1.0, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
SIZE_UNITS = {
    "": 1, "b": 1, "k": 1024, "kb": 1000, "kib": 1024, "m": 1024**2, "mb": 1000**2, "mib": 1024**2,
    "g": 1024**3, "gb": 1000**3, "gib": 1024**3,
}
# Within 2**53 so that every one is exact as a float.
whole = st.integers(0, 10**6)
fraction = st.integers(0, 999)
garbage = st.none() | st.booleans() | st.lists(st.integers(), max_size=2) | st.dictionaries(st.text(), st.text(),
                                                                                          max_size=2)


def decimal(n: int, frac: int | None) -> str:
    return str(n) if frac is None else f"{n}.{frac:03d}"


@given(whole, st.none() | fraction, st.sampled_from(sorted(DURATION_UNITS)), st.sampled_from(["", " "]))
def test_duration_text_round_trip(n: int, frac: int | None, unit: str, space: str) -> None:
    text = decimal(n, frac) + space + unit
    assert parse_duration(text) == pytest.approx(float(decimal(n, frac)) * DURATION_UNITS[unit])


@given(st.floats(min_value=0, max_value=1e12) | st.integers(0, 2**53))
def test_duration_numbers_are_seconds(value: float) -> None:
    assert parse_duration(value) == float(value)


@pytest.mark.parametrize("value", [-1, -0.001, "-1s", "1 s s", "1sec", "1e3", "s", "", float("nan"), float("inf"),
                                   True])
def test_duration_rejects(value: object) -> None:
    with pytest.raises(ValueError):
        parse_duration(value)


@given(st.floats(min_value=0, max_value=100) | st.integers(0, 100))
def test_percent_numbers_round_trip(value: float) -> None:
    assert parse_percent(value) == float(value)


@given(st.integers(0, 99), st.none() | fraction, st.sampled_from(["", "%", " %", "% "]))
def test_percent_text_round_trip(n: int, frac: int | None, suffix: str) -> None:
    assert parse_percent(decimal(n, frac) + suffix) == float(decimal(n, frac))


@given(st.floats().filter(lambda v: not 0 <= v <= 100) | st.integers().filter(lambda v: not 0 <= v <= 100))
def test_percent_out_of_range(value: float) -> None:
    with pytest.raises(ValueError):
        parse_percent(value)
    if math.isfinite(value) and abs(value) < 1e15:
        with pytest.raises(ValueError):
            parse_percent(f"{value}%")


@given(st.integers(0, 2**53))
def test_size_integers_are_bytes(value: int) -> None:
    assert parse_size(value) == value


@given(whole, st.sampled_from(sorted(SIZE_UNITS)), st.booleans(), st.sampled_from(["", " "]))
def test_size_text_round_trip(n: int, unit: str, upper: bool, space: str) -> None:
    text = f"{n}{space}{unit.upper() if upper else unit}"
    assert parse_size(text) == n * SIZE_UNITS[unit]


@pytest.mark.parametrize("value", [-1, 1.5, "-1k", "1 kibibyte", "k", "", "1e3", True, None])
def test_size_rejects(value: object) -> None:
    with pytest.raises(ValueError):
        parse_size(value)


@given(st.sampled_from(["127.0.0.1", "localhost", "::1", "0.0.0.0", "model.internal", "fe80::1"]),
       st.integers(0, 65535))
def test_address_round_trip(host: str, port: int) -> None:
    address = Address(host, port)
    assert parse_address(str(address)) == address
    assert parse_address(f" {address} ") == address


@given(st.integers(0, 65535))
def test_address_port_alone_is_loopback(port: int) -> None:
    assert parse_address(port) == parse_address(f":{port}") == Address("127.0.0.1", port)
    assert parse_address(port).is_loopback


@pytest.mark.parametrize("value", ["8000", "host", "host:", "host:65536", "host:-1", "[::1]8000", "[::1", 70000, True,
                                   1.5, None])
def test_address_rejects(value: object) -> None:
    with pytest.raises(ValueError):
        parse_address(value)


PARSERS: list[Callable[[object], object]] = [parse_duration, parse_percent, parse_size, parse_address]


@pytest.mark.parametrize("parse", PARSERS, ids=lambda f: f.__name__)
@given(value=st.text(max_size=30) | garbage | st.floats() | st.integers() | st.integers(10**300, 10**400))
def test_garbage_fails_only_with_value_error(parse: Callable[[object], object], value: object) -> None:
    try:
        parse(value)
    except ValueError as exc:
        assert str(exc)


@pytest.mark.parametrize("parse", PARSERS, ids=lambda f: f.__name__)
@given(text=st.text(alphabet="0123456789.:%[] kmgibusdh-", max_size=12))
def test_unit_like_text_fails_only_with_value_error(parse: Callable[[object], object], text: str) -> None:
    try:
        parse(text)
    except ValueError as exc:
        assert str(exc)


# Past 1e308 a float() conversion overflows; that must still read as a bad value, not a crash.
@pytest.mark.parametrize(("parse", "value"), [
    (parse_percent, 10**400), (parse_duration, 10**400), (parse_size, "9" * 400), (parse_size, "1" * 310 + "k"),
], ids=["percent-int", "duration-int", "size-digits", "size-kib"])
def test_huge_numbers_are_value_errors(parse: Callable[[object], object], value: object) -> None:
    with pytest.raises(ValueError):
        parse(value)
