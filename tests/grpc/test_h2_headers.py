"""HPACK of the gRPC edge (proxy/edges/grpc/h2/headers.py) against the hpack package's encoder and decoder:
whatever a peer's encoder sends decodes to the same fields, in order, across a connection's blocks; what the
edge encodes, any decoder reads; bytes that are not HPACK raise HeaderError, never anything else."""

from __future__ import annotations

import hpack
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from proxy.edges.grpc.h2.headers import Decoder, HeaderError, encode

NAMES = st.sampled_from([b"content-type", b"te", b"grpc-timeout", b"user-agent", b"x-user-id", b"x-blob-bin",
                         b":path", b":status", b"grpc-status", b"grpc-message"]) | \
    st.binary(min_size=1, max_size=20).map(lambda b: bytes(97 + x % 26 for x in b))
VALUES = st.binary(max_size=80).map(lambda b: bytes(32 + x % 95 for x in b))
FIELDS = st.lists(st.tuples(NAMES, VALUES), max_size=12)


@settings(max_examples=300, deadline=None)
@given(blocks=st.lists(FIELDS, min_size=1, max_size=6), huffman=st.booleans(), table=st.sampled_from([0, 256, 4096]))
def test_decodes_what_a_peer_encoder_sends_across_blocks(blocks: list[list[tuple[bytes, bytes]]], huffman: bool,
                                                         table: int) -> None:
    encoder, decoder = hpack.Encoder(), Decoder()
    encoder.header_table_size = table  # emits a table size update, then evicts as the table fills
    for fields in blocks:
        assert decoder.decode(encoder.encode(fields, huffman=huffman)) == fields


@settings(max_examples=200, deadline=None)
@given(fields=FIELDS)
def test_what_the_edge_encodes_decodes_anywhere_and_indexes_nothing(fields: list[tuple[bytes, bytes]]) -> None:
    theirs = hpack.Decoder()
    block = encode(fields)
    assert [(bytes(n), bytes(v)) for n, v in theirs.decode(block, raw=True)] == fields
    assert len(theirs.header_table.dynamic_entries) == 0  # stateless: any order of blocks decodes


@settings(max_examples=500, deadline=None)
@given(data=st.binary(max_size=64))
def test_garbage_raises_header_error_only(data: bytes) -> None:
    try:
        fields = Decoder().decode(data)
    except HeaderError:
        return
    assert all(isinstance(n, bytes) and isinstance(v, bytes) for n, v in fields)


@pytest.mark.parametrize(("block", "words"), [
    (b"\xbf", "not in the table"),                          # dynamic index 62 on an empty table
    (b"\x3f\xe2\x1f", "over the 4096 advertised"),          # a table size update to 4097
    (b"\xff\xff\xff\xff\xff\xff\x01", "too large"),         # an index integer past 2^28
    (b"\x40\x85abc", "runs past its block"),                # a 5-byte name with 3 bytes left
    (b"\x40", "ends inside a field"),
])
def test_named_errors(block: bytes, words: str) -> None:
    with pytest.raises(HeaderError, match=words):
        Decoder().decode(block)


def test_header_list_size_is_bounded() -> None:
    big = hpack.Encoder().encode([(b"x-big", b"v" * 5000)], huffman=False)
    assert Decoder(max_list=65536).decode(big)[0][1] == b"v" * 5000
    with pytest.raises(HeaderError, match="over 4000 bytes"):
        Decoder(max_list=4000).decode(big)
