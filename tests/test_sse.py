"""The SSE decoder, byte by byte."""
import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fakegpt._sse import SSEDecoder
from fakegpt.exceptions import StreamError

NEWLINES = [b"\n", b"\r\n", b"\r"]


def feed_all(pieces):
    decoder = SSEDecoder()
    events = []
    for piece in pieces:
        events += decoder.feed(piece)
    return events + decoder.close()


def frame(newline, *lines):
    return newline.join(lines) + newline + newline


@pytest.mark.parametrize("newline", NEWLINES, ids=["lf", "crlf", "cr"])
def test_one_frame_split_at_every_offset_gives_exactly_one_event(newline):
    payload = json.dumps({"text": "héllo \u2028 wörld 😀"}, ensure_ascii=False).encode()
    data = frame(newline, b"event: delta", b"data: " + payload)
    for cut in range(len(data) + 1):
        decoder = SSEDecoder()
        first = decoder.feed(data[:cut])
        second = decoder.feed(data[cut:])
        events = first + second
        assert events == [("delta", payload)], f"cut at {cut}"
        assert json.loads(events[0][1])["text"] == "héllo \u2028 wörld 😀"
        assert decoder.close() == []  # nothing left over, nothing emitted twice


@pytest.mark.parametrize("newline", NEWLINES, ids=["lf", "crlf", "cr"])
def test_every_byte_on_its_own(newline):
    data = frame(newline, b"data: {\"a\": 1}") + frame(newline, b": comment", b"data: [DONE]")
    assert feed_all([bytes([b]) for b in data]) == [("message", b'{"a": 1}'), ("message", b"[DONE]")]


def test_event_is_emitted_when_its_blank_line_arrives_not_later():
    decoder = SSEDecoder()
    assert decoder.feed(b"data: x\n") == []
    assert decoder.feed(b"\n") == [("message", b"x")]
    # A trailing \r completes the line at once; the next read's \n is its pair.
    assert decoder.feed(b"data: y\r\n\r") == [("message", b"y")]
    assert decoder.feed(b"\ndata: z\r\n\r\n") == [("message", b"z")]


def test_crlf_split_between_reads_is_one_line_break():
    assert feed_all([b"data: 1\r", b"\n", b"\r", b"\n", b"data: 2\r\n\r\n"]) == [
        ("message", b"1"),
        ("message", b"2"),
    ]


def test_multiline_data_is_joined_with_newline():
    assert feed_all([b"data: {\"a\":\ndata:  1}\n\n"]) == [("message", b'{"a":\n 1}')]


def test_comments_ids_and_retry_are_ignored_and_event_type_resets():
    stream = b": ping - 2024-01-01\n\nid: 7\nretry: 10\nevent: ping\ndata: {}\n\ndata: after\n\n"
    assert feed_all([stream]) == [("ping", b"{}"), ("message", b"after")]


def test_trailing_spaces_are_ignored_and_a_line_of_spaces_ends_an_event():
    assert feed_all([b"event: delta  \ndata: [DONE]   \n   \ndata: 2\t\n\n"]) == [
        ("delta", b"[DONE]"),
        ("message", b"2"),
    ]


def test_data_without_space_and_with_two_spaces():
    assert feed_all([b"data:x\n\ndata:  y\n\n"]) == [("message", b"x"), ("message", b" y")]


def test_event_without_data_is_not_dispatched():
    assert feed_all([b"event: delta\n\ndata: 1\n\n"]) == [("message", b"1")]


def test_utf8_split_inside_a_character_survives():
    payload = "naïve – 日本語".encode()
    data = b"data: " + payload + b"\n\n"
    for cut in range(6, len(data)):
        assert feed_all([data[:cut], data[cut:]]) == [("message", payload)]


def test_unicode_line_separators_inside_json_are_not_line_breaks():
    payload = '{"t": "a\u2028b\u2029c\u0085d\x0ce"}'.encode()
    assert feed_all([b"data: " + payload + b"\n\n"]) == [("message", payload)]


def test_close_dispatches_an_event_whose_blank_line_never_came():
    assert feed_all([b"data: [DONE]"]) == [("message", b"[DONE]")]
    assert feed_all([b"data: 1\n"]) == [("message", b"1")]
    assert feed_all([b"data: 1\n\n"]) == [("message", b"1")]


def test_empty_feed_is_harmless():
    decoder = SSEDecoder()
    assert decoder.feed(b"") == []
    assert decoder.feed(b"\n") == []
    assert decoder.close() == []


_text = st.text(st.characters(blacklist_categories=("Cs",)), max_size=20)


@settings(max_examples=200, deadline=None)
@given(
    payloads=st.lists(_text, min_size=1, max_size=6),
    newline=st.sampled_from(NEWLINES),
    cuts=st.lists(st.integers(min_value=0, max_value=400), max_size=12),
)
def test_any_chunking_gives_the_same_events(payloads, newline, cuts):
    encoded = [json.dumps({"v": p}, ensure_ascii=False).encode() for p in payloads]
    data = b"".join(frame(newline, b"event: delta", b"data: " + e) for e in encoded)
    points = sorted({min(c, len(data)) for c in cuts})
    pieces = [data[a:b] for a, b in zip([0] + points, points + [len(data)])]
    events = feed_all(pieces)
    assert events == [("delta", e) for e in encoded]
    assert [json.loads(d)["v"] for _, d in events] == payloads


def test_a_leading_byte_order_mark_is_ignored():
    assert feed_all([b"\xef\xbb", b"\xbfdata: 1\n\n"]) == [("message", b"1")]
    assert feed_all([b"\xef\xbb\xbfdata: 1\n\ndata: \xef\xbb\xbf2\n\n"]) == [("message", b"1"), ("message", b"\xef\xbb\xbf2")]


def test_the_first_line_that_is_not_sse_is_kept_for_error_messages():
    decoder = SSEDecoder()
    decoder.feed(b'id: 1\nretry: 5\n{"detail": "not an event stream"}\nmore junk\n')
    assert decoder.stray == b'{"detail": "not an event stream"}'


def reference_parse(body: bytes):
    """The SSE specification, plainly (plus the two documented leniencies): a reference."""
    events, data, name = [], [], "message"
    lines = body.replace(b"\r\n", b"\n").replace(b"\r", b"\n").split(b"\n")
    for line in lines[:-1] if body.endswith((b"\n", b"\r")) else lines:
        if line.startswith(b"data:"):
            value = line[5:]
            value = value[1:] if value.startswith(b" ") else value
            data.append(value.rstrip())
            continue
        line = line.rstrip()
        if not line:
            if data:
                events.append((name, b"\n".join(data)))
            data, name = [], "message"
        elif line.startswith(b"event:"):
            name = line[6:].strip().decode() or "message"
    if data:  # leniency: an event whose blank line never came
        events.append((name, b"\n".join(data)))
    return events


_line = st.one_of(
    st.builds(lambda v: b"data: " + v, st.binary(max_size=12).map(lambda b: b.replace(b"\n", b"").replace(b"\r", b""))),
    st.builds(lambda v: b"data:" + v.encode(), st.text("ab {}\"", max_size=8)),
    st.sampled_from([b"event: delta", b"event:ping", b"event: x  ", b": comment", b"id: 7", b"retry: 5", b"",
                     b"   ", b"data:", b"data:  two spaces", b"event:"]),
)


@settings(max_examples=400, deadline=None)
@given(lines=st.lists(_line, max_size=25), newline=st.sampled_from(NEWLINES),
       cuts=st.lists(st.integers(min_value=0, max_value=300), max_size=10),
       line_cuts=st.lists(st.integers(min_value=0, max_value=25), max_size=6))
def test_decoder_matches_a_reference_parser_on_any_stream(lines, newline, cuts, line_cuts):
    body = b"".join(line + newline for line in lines)
    # Cut at random bytes, and right after random lines (where one read ends and the next begins).
    ends = [sum(len(line) + len(newline) for line in lines[:n]) for n in line_cuts]
    points = sorted({min(c, len(body)) for c in cuts + ends})
    pieces = [body[a:b] for a, b in zip([0] + points, points + [len(body)])]
    assert feed_all(pieces) == reference_parse(body)


@settings(max_examples=300, deadline=None)
@given(events=st.lists(st.lists(_line, min_size=1, max_size=4), max_size=12), newline=st.sampled_from(NEWLINES))
def test_events_flushed_a_chunk_each_decode_as_the_reference_says(events, newline):
    # The shape servers send (each event flushed as one chunk) has a fast path
    # of its own: it must agree with the general one, and with the reference.
    chunks = [b"".join(line + newline for line in lines) + newline for lines in events]
    body = b"".join(chunks)
    expected = reference_parse(body)
    assert feed_all(chunks) == expected
    assert feed_all([body[i:i + 1] for i in range(len(body))]) == expected


def test_whole_event_chunks_keep_their_names_spaces_and_bounds():
    chunks = [b"data: 1\n\n", b"event: delta\ndata: 2 \t\n\n", b"event:ping\ndata: 3\n\n", b"event: x\n",
              b"data: 4\n\n", b"data: 5\n\n", b"event: odd name \ndata: 6\n\n", b"data: \n\n"]
    assert feed_all(chunks) == [("message", b"1"), ("delta", b"2"), ("ping", b"3"), ("x", b"4"), ("message", b"5"),
                                ("odd name", b"6"), ("message", b"")]
    decoder = SSEDecoder(max_event=4)
    assert decoder.feed(b"data: 1234\n\n") == [("message", b"1234")]
    with pytest.raises(StreamError, match="an event of the event stream is larger than 4 bytes"):
        decoder.feed(b"event: delta\ndata: 12345\n\n")


def test_an_event_line_and_its_data_in_separate_reads():
    assert feed_all([b"event: delta\n", b"data: 1\n\n"]) == [("delta", b"1")]
    assert feed_all([b"event: delta\n", b"data: 1\n", b"\n"]) == [("delta", b"1")]
    assert feed_all([b"event: delta\ndata: 1\n", b"\ndata: 2\n\n"]) == [("delta", b"1"), ("message", b"2")]


# -- bounds --------------------------------------------------------------------------------
LIMIT = 1000


@pytest.mark.parametrize("newline", NEWLINES, ids=["lf", "crlf", "cr"])
def test_an_event_of_exactly_the_limit_passes_in_any_chunking(newline):
    data = frame(newline, b"data: " + b"x" * LIMIT)
    for size in (1, 7, 999, len(data)):
        decoder = SSEDecoder(max_event=LIMIT)
        events = [e for i in range(0, len(data), size) for e in decoder.feed(data[i:i + size])]
        assert events == [("message", b"x" * LIMIT)]


@pytest.mark.parametrize("size", [1, 64, 4096, 10**6])
def test_a_line_that_never_ends_is_a_stream_error_past_the_limit(size):
    import fakegpt

    decoder = SSEDecoder(max_event=LIMIT)
    fed = 0
    with pytest.raises(fakegpt.StreamError, match="a line of the event stream is larger than 1,064 bytes") as info:
        while fed < 10 * LIMIT + size:
            decoder.feed(b"x" * size)
            fed += size
    assert type(info.value) is fakegpt.StreamError and fed <= LIMIT + 64 + size  # raised as soon as it passed


@pytest.mark.parametrize("raw", [
    b"data: " + b"y" * (LIMIT + 1) + b"\n\n",  # one whole event in one read (the fast path)
    b"data: " + b"y" * (LIMIT + 1) + b"\n",  # one line, its event not ended yet
    b"data: " + b"y" * 600 + b"\ndata: " + b"y" * 600 + b"\n",  # lines each short, their event too long
    b": " + b"c" * (LIMIT + 100) + b"\n",  # a comment line
])
def test_an_event_or_a_line_past_the_limit_is_a_stream_error(raw):
    import fakegpt

    for size in (len(raw), 1 + len(raw) // 3):
        decoder = SSEDecoder(max_event=LIMIT)
        with pytest.raises(fakegpt.StreamError, match=r"of the event stream is larger than 1,0(00|64) bytes"):
            for i in range(0, len(raw), size):
                decoder.feed(raw[i:i + size])


def test_the_default_limit_is_the_documented_16_mib():
    import fakegpt
    from fakegpt._constants import MAX_EVENT

    assert MAX_EVENT == 16 * 1024 * 1024
    assert SSEDecoder().feed(b"data: " + b"z" * (MAX_EVENT - 10) + b"\n\n")[0][1][:3] == b"zzz"
    with pytest.raises(fakegpt.StreamError, match="16,777,216 bytes"):
        SSEDecoder().feed(b"data: " + b"z" * MAX_EVENT + b"z\n\n")


def test_an_event_of_many_tiny_data_lines_is_refused_at_one_line_per_64_bytes_of_the_bound():
    import fakegpt

    lines = LIMIT // 64  # 15
    decoder = SSEDecoder(max_event=LIMIT)
    assert decoder.feed(b"data:x\n" * lines + b"\n") == [("message", b"\n".join([b"x"] * lines))]
    with pytest.raises(fakegpt.StreamError) as info:
        decoder.feed(b"data:x\n" * (lines + 1))
    assert str(info.value) == ("an event of the event stream has more than 15 data lines: "
                               "not a stream fakegpt can read (the connection was dropped)")
    assert decoder.feed(b"data: 1\n\n") == [("message", b"1")]  # nothing of the refused event is kept


def peak_memory(feed):
    import tracemalloc

    tracemalloc.start()
    try:
        feed()
    except StreamError:
        pass
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return peak


def test_a_line_arriving_a_byte_per_read_costs_its_bytes_not_an_object_per_read():
    decoder = SSEDecoder(max_event=10**6)
    piece = b"x"

    def feed():
        for _ in range(50_000):
            decoder.feed(piece)

    assert peak_memory(feed) < 3 * 50_000  # not a bytes object and a list slot per read: 40 bytes each


def test_tiny_data_lines_cost_less_than_twice_the_bound():
    bound = 2**20
    decoder = SSEDecoder(max_event=bound)
    chunk = b"data:xy\n" * 65536

    def feed():
        for _ in range(20):  # 10 MB of lines, were it all accepted
            decoder.feed(chunk)

    assert peak_memory(feed) < 2 * bound  # a line was a bytes object and a list slot: 45 bytes for 3 counted
