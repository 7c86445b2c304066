"""HPACK (RFC 7541) for the gRPC edge: a decoder with the dynamic table each connection's peer encodes
against, and a stateless encoder.

The decoder is written for the calls the edge sees: after a connection's first call a gRPC client sends
nearly every header as a one-byte index into the dynamic table, so the loop below reads an indexed field in
a few bytecode steps; Huffman-coded strings (first sightings only) go to the ``hpack`` package's table-driven
decoder. The encoder never indexes: literals without indexing (RFC 7541 6.2.2) leave the peer's table as it
was, so a header block made here needs no state, can be made in any order, and is cached when it repeats.
"""

from __future__ import annotations

from typing import Final

from hpack.huffman_table import decode_huffman
from hpack.table import HeaderTable

__all__ = ["Decoder", "HeaderError", "Headers", "encode"]

Headers = list[tuple[bytes, bytes]]
_STATIC: Final[tuple[tuple[bytes, bytes], ...]] = HeaderTable.STATIC_TABLE
_STATIC_LEN: Final = len(_STATIC)  # 61
# The first static index of each name, and the index of each full (name, value) pair.
_NAME_INDEX: Final[dict[bytes, int]] = {}
_PAIR_INDEX: Final[dict[tuple[bytes, bytes], int]] = {}
for _i, (_name, _value) in enumerate(_STATIC, 1):
    _NAME_INDEX.setdefault(_name, _i)
    _PAIR_INDEX.setdefault((_name, _value), _i)
# An HPACK integer past this many continuation bytes is not a length or index any header could have.
_MAX_INT_SHIFT: Final = 28


class HeaderError(ValueError):
    """A header block that cannot be decoded (a COMPRESSION_ERROR for the connection)."""


class Decoder:
    """One direction of one connection: the peer's header blocks, decoded in the order they came."""

    __slots__ = ("dynamic", "max_list", "max_size", "size")

    def __init__(self, max_size: int = 4096, max_list: int = 65536) -> None:
        # Newest entry last: the dynamic index i (62 is the newest) is dynamic[61 - i].
        self.dynamic: list[tuple[bytes, bytes]] = []
        self.size = 0
        # The table size this side advertised (SETTINGS_HEADER_TABLE_SIZE); the peer may only lower it.
        self.max_size = max_size
        # Bytes of decoded names and values one block may hold (SETTINGS_MAX_HEADER_LIST_SIZE's measure).
        self.max_list = max_list

    def _entry(self, index: int) -> tuple[bytes, bytes]:
        if 0 < index <= _STATIC_LEN:
            return _STATIC[index - 1]
        dyn = self.dynamic
        at = len(dyn) - (index - _STATIC_LEN)
        if index <= 0 or at < 0:
            raise HeaderError(f"header index {index} is not in the table")
        return dyn[at]

    def _add(self, name: bytes, value: bytes) -> None:
        entry = len(name) + len(value) + 32
        dyn = self.dynamic
        if entry > self.max_size:  # RFC 7541 4.4: an entry larger than the table empties it
            dyn.clear()
            self.size = 0
            return
        self.size += entry
        while self.size > self.max_size:
            old_name, old_value = dyn.pop(0)
            self.size -= len(old_name) + len(old_value) + 32
        dyn.append((name, value))

    def _resize(self, size: int) -> None:
        if size > self.max_size:
            raise HeaderError(f"table size {size} is over the {self.max_size} advertised")
        self.max_size = size
        dyn = self.dynamic
        while self.size > size:
            old_name, old_value = dyn.pop(0)
            self.size -= len(old_name) + len(old_value) + 32

    def decode(self, data: bytes) -> Headers:
        out: Headers = []
        pos, end, total = 0, len(data), 0
        try:
            while pos < end:
                first = data[pos]
                if first & 0x80:  # indexed field
                    index = first & 0x7F
                    pos += 1
                    if index == 0x7F:
                        index, pos = _integer(data, pos, index)
                    pair = self._entry(index)
                elif first & 0x40 or not first & 0x20:  # a literal: incremental (0x40), without or never (0x0-)
                    incremental = bool(first & 0x40)
                    mask = 0x3F if incremental else 0x0F
                    index = first & mask
                    pos += 1
                    if index == mask:
                        index, pos = _integer(data, pos, index)
                    if index:
                        name = self._entry(index)[0]
                    else:
                        name, pos = _string(data, pos)
                    value, pos = _string(data, pos)
                    pair = (name, value)
                    if incremental:
                        self._add(name, value)
                else:  # a dynamic table size update (0x20)
                    size = first & 0x1F
                    pos += 1
                    if size == 0x1F:
                        size, pos = _integer(data, pos, size)
                    self._resize(size)
                    continue
                total += len(pair[0]) + len(pair[1]) + 32
                if total > self.max_list:
                    raise HeaderError(f"the header block decodes to over {self.max_list} bytes")
                out.append(pair)
        except IndexError:
            raise HeaderError("the header block ends inside a field") from None
        return out


def _integer(data: bytes, pos: int, value: int) -> tuple[int, int]:
    """An HPACK integer's continuation bytes from ``pos``, added to its full prefix ``value``."""
    shift = 0
    while True:
        byte = data[pos]
        pos += 1
        value += (byte & 0x7F) << shift
        if not byte & 0x80:
            return value, pos
        shift += 7
        if shift > _MAX_INT_SHIFT:
            raise HeaderError("an HPACK integer is too large")


def _string(data: bytes, pos: int) -> tuple[bytes, int]:
    first = data[pos]
    length = first & 0x7F
    pos += 1
    if length == 0x7F:
        length, pos = _integer(data, pos, length)
    stop = pos + length
    if stop > len(data):
        raise HeaderError("a header string runs past its block")
    raw = data[pos:stop]
    if first & 0x80:
        try:
            raw = decode_huffman(raw)
        except Exception as exc:  # hpack's HPACKDecodingError: a bad code or padding
            raise HeaderError(f"bad Huffman string: {exc}") from None
    return raw, stop


def _int_bytes(value: int, prefix_bits: int, flags: int) -> bytes:
    limit = (1 << prefix_bits) - 1
    if value < limit:
        return bytes((flags | value,))
    out = bytearray((flags | limit,))
    value -= limit
    while value >= 0x80:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def _literal(data: bytes) -> bytes:
    return _int_bytes(len(data), 7, 0) + data


def encode(headers: Headers) -> bytes:
    """A header block for ``headers``: static-table pairs as an index, every other field a literal without
    indexing (by the static index of its name where there is one); strings raw, not Huffman-coded."""
    out: list[bytes] = []
    for name, value in headers:
        pair = _PAIR_INDEX.get((name, value))
        if pair is not None:
            out.append(_int_bytes(pair, 7, 0x80))
            continue
        index = _NAME_INDEX.get(name)
        if index is not None:
            out.append(_int_bytes(index, 4, 0))
        else:
            out.append(b"\x00")
            out.append(_literal(name))
        out.append(_literal(value))
    return b"".join(out)
