"""Chunked transfer decoding, byte by byte, against http.client as the reference."""
import http.client
import io

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fakegpt._chunked import ChunkedDecoder, ChunkedError


def encode(payloads, *, extension=b"", trailers=b"", newline=b"\r\n", upper=False):
    out = b""
    for payload in payloads:
        size = (b"%X" if upper else b"%x") % len(payload)
        out += size + extension + newline + payload + newline
    return out + b"0" + extension + newline + trailers + newline


def decode(pieces):
    decoder = ChunkedDecoder()
    out = b"".join(decoder.feed(piece) for piece in pieces)
    return out, decoder


def reference(body: bytes) -> bytes:
    """What http.client makes of the same body."""

    class Sock:
        def makefile(self, *args, **kwargs):
            return io.BytesIO(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n" + body)

    response = http.client.HTTPResponse(Sock())
    response.begin()
    return response.read()


def test_whole_body_in_one_piece():
    body = encode([b"Hello", b", ", b"world"])
    out, decoder = decode([body])
    assert out == b"Hello, world" and decoder.finished and not decoder.overflow


@pytest.mark.parametrize("newline", [b"\r\n", b"\n"], ids=["crlf", "lf"])
@pytest.mark.parametrize("extension, trailers", [(b"", b""), (b";name=value", b"X-Trailer: 1\r\n")])
def test_split_at_every_offset(newline, extension, trailers):
    body = encode([b"data: one\n\n", b"x" * 40, b"\xe2\x80\xa8"], extension=extension,
                  trailers=trailers.replace(b"\r\n", newline), newline=newline)
    expected = b"data: one\n\n" + b"x" * 40 + b"\xe2\x80\xa8"
    for cut in range(len(body) + 1):
        out, decoder = decode([body[:cut], body[cut:]])
        assert out == expected and decoder.finished, cut


def test_every_byte_on_its_own():
    body = encode([b"ab", b"cdef"], extension=b";x=1", trailers=b"T: v\r\n", upper=True)
    out, decoder = decode([bytes([b]) for b in body])
    assert out == b"abcdef" and decoder.finished


def test_payload_is_returned_as_it_arrives():
    decoder = ChunkedDecoder()
    assert decoder.feed(b"a\r\n01234") == b"01234"
    assert decoder.feed(b"56789\r\n3\r\nabc") == b"56789abc"
    assert not decoder.finished
    assert decoder.feed(b"\r\n0\r\n\r\n") == b"" and decoder.finished


def test_bytes_after_the_end_are_noticed_not_returned():
    decoder = ChunkedDecoder()
    assert decoder.feed(b"1\r\nx\r\n0\r\n\r\nHTTP/1.1 200 OK") == b"x"
    assert decoder.finished and decoder.overflow
    assert decoder.feed(b"more") == b""


@pytest.mark.parametrize(
    "body, text",
    [
        (b"zz\r\nhello\r\n", "bad chunk size"),
        (b"0x5\r\nhello\r\n", "bad chunk size"),
        (b"-5\r\n", "bad chunk size"),
        (b"3\r\nabcX\r\n", "not followed by its line end"),
        (b"1" * 9000, "too long"),
    ],
)
def test_malformed_framing(body, text):
    with pytest.raises(ChunkedError, match=text):
        decode([body])


@settings(max_examples=300, deadline=None)
@given(payloads=st.lists(st.binary(max_size=40), max_size=8),
       extension=st.sampled_from([b"", b";a=b", b" ;x"]),
       cuts=st.lists(st.integers(min_value=0, max_value=400), max_size=8))
def test_matches_http_client(payloads, extension, cuts):
    body = encode([p for p in payloads if p], extension=extension)
    points = sorted({min(c, len(body)) for c in cuts})
    pieces = [body[a:b] for a, b in zip([0] + points, points + [len(body)])]
    out, decoder = decode(pieces)
    assert out == reference(body) and decoder.finished
