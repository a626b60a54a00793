"""Bounded reads of bodies that are not a stream (fakegpt._capped)."""
import pytest

import fakegpt
from fakegpt._capped import read_capped
from fakegpt._constants import MAX_BODY


def test_a_body_up_to_the_limit_is_read_whole():
    assert read_capped([b"ab", b"", b"cd"], limit=4) == b"abcd"
    assert read_capped([], limit=0) == b""


def test_a_body_past_the_limit_stops_the_reading_with_a_status_error():
    pulled = []

    def chunks():
        for n in range(100):
            pulled.append(n)
            yield b"x" * 10

    with pytest.raises(fakegpt.APIStatusError, match=r"GET /api/loads answered HTTP 200 with a body larger than 25 "
                                                     r"bytes; not read further") as info:
        read_capped(chunks(), limit=25, what="GET /api/loads", status_code=200)
    assert info.value.status_code == 200 and pulled == [0, 1, 2]  # nothing read past the bound


def test_the_default_limit_is_a_few_megabytes():
    assert MAX_BODY == 4 * 1024 * 1024
    assert len(read_capped(iter([b"x" * MAX_BODY]))) == MAX_BODY
    with pytest.raises(fakegpt.APIStatusError):
        read_capped(iter([b"x" * MAX_BODY, b"x"]))
