"""The Client over real loopback sockets, against the emulator."""
import io
import socket
import sys
import threading
import time

import pytest
import urllib3

import fakegpt
from fakegpt.emulator import Emulator, default_responder

from ..conftest import at_once
from ..netkit import read_request

MESSAGES = [{"role": "user", "content": "Tell me about streams"}]
EXPECTED = default_responder("Tell me about streams")


def client_for(emulator, **kwargs):
    client = fakegpt.Client(emulator.url, **kwargs)
    client.waits = []
    client._engine.sleep = client.waits.append
    return client


@pytest.fixture
def client(fakegpt_emulator):
    with client_for(fakegpt_emulator) as client:
        yield client


def collect(stream):
    """Deltas and the moment each arrived."""
    deltas, times = [], []
    for delta in stream:
        deltas.append(delta)
        times.append(time.monotonic())
    return deltas, times


# -- formats and framing ---------------------------------------------------------
@pytest.mark.parametrize("fmt", ["cumulative", "v1"])
@pytest.mark.parametrize("newline", ["\n", "\r\n", "\r"], ids=["lf", "crlf", "cr"])
def test_both_formats_and_every_line_end(fmt, newline):
    with Emulator(format=fmt, newline=newline) as emulator, client_for(emulator) as client:
        stream = client.stream(MESSAGES)
        deltas, _ = collect(stream)
    assert "".join(deltas) == EXPECTED and all(deltas) and len(deltas) > 20
    assert stream.finish_reason == "stop" and stream.conversation_id


@pytest.mark.parametrize("split", [1, 3, 7])
def test_events_split_across_reads_with_multibyte_text(split):
    text = "Grüße 😀 from the \u2028 emulator – naïve café 日本語"
    with Emulator(split=split, newline="\r\n", responder=lambda prompt: text) as emulator:
        with client_for(emulator) as client:
            assert client.complete(MESSAGES) == text


def test_close_delimited_body():
    with Emulator(chunked=False) as emulator, client_for(emulator) as client:
        assert client.complete(MESSAGES) == EXPECTED
        assert client.complete(MESSAGES) == EXPECTED


def test_model_is_passed_through(fakegpt_emulator, client):
    reply = client.complete(MESSAGES, model="gpt-4o-mini")
    assert reply.model == "gpt-4o-mini"
    assert client.complete(MESSAGES).model == "text-davinci-002-render-sha"


# -- connections -------------------------------------------------------------------
def test_cold_call_takes_four_requests_and_a_warm_call_one_on_the_same_connection(fakegpt_emulator, client):
    client.complete(MESSAGES)
    cold = [r.path.split("?")[0] for r in fakegpt_emulator.requests]
    assert cold == ["/api/loads", "/auth/login", "/api/auth/session", "/api/conversation"]
    connections = fakegpt_emulator.counts["connections"]
    for _ in range(3):
        before = fakegpt_emulator.counts["requests"]
        assert client.complete(MESSAGES) == EXPECTED
        assert fakegpt_emulator.counts["requests"] == before + 1
    assert fakegpt_emulator.counts["connections"] == connections == 1


def test_server_holding_the_stream_open_after_done(fakegpt_emulator, client):
    client.complete(MESSAGES)  # log in first
    fakegpt_emulator.stream_fault("hold", seconds=600)
    outcome = []
    caller = threading.Thread(target=lambda: outcome.append(client.complete(MESSAGES)))
    caller.start()
    caller.join(30)  # long before the end of the hold
    assert not caller.is_alive() and outcome == [EXPECTED]
    assert fakegpt_emulator.wait_until(lambda e: e.counts["disconnects"] == 1, timeout=10)  # dropped, not kept
    assert client.complete(MESSAGES) == EXPECTED  # the held connection was dropped, a new one works


def test_breaking_out_closes_the_response_promptly():
    with Emulator(delay=0.05) as emulator, client_for(emulator) as client:
        for delta in client.stream(MESSAGES):
            break
        # (A reply read to its end is no disconnect.)
        assert emulator.wait_until(lambda e: e.counts["disconnects"] == 1, timeout=10)


def test_closing_the_stream_closes_the_response():
    with Emulator(delay=0.05) as emulator, client_for(emulator) as client:
        stream = client.stream(MESSAGES)
        first = next(stream)
        stream.close()
        assert emulator.wait_until(lambda e: e.counts["disconnects"] == 1, timeout=1.0)
        assert first and stream.text == first
        with pytest.raises(StopIteration):
            next(stream)


def test_abort_from_another_thread_interrupts_a_blocked_read(fakegpt_emulator, client):
    client.complete(MESSAGES)
    fakegpt_emulator.stream_fault("stall", after_words=2)
    stream = client.stream(MESSAGES)
    next(stream)
    timer = threading.Timer(0.2, stream.abort)
    timer.start()
    rest = list(stream)  # blocked in the endless stall until the abort; then ends quietly (not a timeout)
    assert stream.aborted
    assert len(rest) <= 1
    assert fakegpt_emulator.wait_until(lambda e: e.counts["disconnects"] == 1, timeout=1.0)


def test_a_chunk_declared_a_gigabyte_long_is_read_in_bounded_pieces():
    # The SSE bound (a line of 16 MiB) must fire while the chunk is still
    # arriving, not after a gigabyte was buffered (or the read timed out).
    line = b"data: " + b"x" * (17 << 20)
    server = RawServer([HEAD, b"40000000\r\n", line, 5.0])
    try:
        with fakegpt.Client(server.url, access_token="t", timeout=(5, 3), max_retries=0) as client:
            with pytest.raises(fakegpt.StreamError, match="a line of the event stream is larger than"):
                client.complete(MESSAGES)
    finally:
        server.close()


def test_abort_without_hang_up_only_marks_and_the_reader_closes_the_connection():
    with Emulator(delay=0.05) as emulator, client_for(emulator) as client:
        stream = client.stream(MESSAGES)
        first = next(stream)
        stream.abort(hang_up=False)  # only the mark: nothing touches the socket
        assert stream.aborted
        assert emulator.open_connections == 1 and emulator.counts["disconnects"] == 0
        assert list(stream) == [] and stream.text == first  # no delta more; the reader hangs up
        assert emulator.wait_until(lambda e: e.counts["disconnects"] == 1, timeout=1.0)


def test_a_later_abort_hangs_up_what_abort_without_hang_up_left_open(fakegpt_emulator, client):
    client.complete(MESSAGES)
    fakegpt_emulator.stream_fault("stall", after_words=2)
    stream = client.stream(MESSAGES)
    first = next(stream)
    stream.abort(hang_up=False)
    stream.abort()  # what the hang-up thread does for the asyncio bridge
    assert fakegpt_emulator.wait_until(lambda e: e.counts["disconnects"] == 1, timeout=1.0)
    assert list(stream) == [] and stream.text == first


# -- latency -------------------------------------------------------------------------
# urllib3 1.26 has no read1: a close-delimited body is read in blocks there (docs/performance.rst).
LEGACY_URLLIB3 = int(urllib3.__version__.split(".")[0]) < 2
needs_read1 = pytest.mark.skipif(LEGACY_URLLIB3, reason="urllib3 1.26 reads close-delimited bodies in blocks")


@pytest.mark.parametrize("chunked", [True, pytest.param(False, marks=needs_read1)], ids=["chunked", "close-delimited"])
def test_each_delta_arrives_as_its_event_does(chunked):
    delay = 0.1
    with Emulator(delay=delay, chunked=chunked, responder=lambda p: "one two three four five") as emulator:
        with client_for(emulator) as client:
            client.complete(MESSAGES)  # warm up: login
            deltas, times = collect(client.stream(MESSAGES))
    assert deltas == ["one ", "two ", "three ", "four ", "five"]
    gaps = [b - a for a, b in zip(times, times[1:])]
    # Each delta comes one server delay after the previous: none waits for a buffer to fill.
    assert all(gap > delay * 0.5 for gap in gaps), gaps


# -- failures -----------------------------------------------------------------------
def test_truncated_stream(fakegpt_emulator, client):
    fakegpt_emulator.stream_fault("truncate", after_words=4)
    stream = client.stream(MESSAGES)
    received = []
    with pytest.raises(fakegpt.IncompleteStreamError) as info:
        for delta in stream:
            received.append(delta)
    assert len(received) == 4 and EXPECTED.startswith("".join(received))
    assert info.value.partial_text == "".join(received)
    assert fakegpt_emulator.counts["conversations"] == 1


def test_connection_dropped_mid_body(fakegpt_emulator, client):
    fakegpt_emulator.stream_fault("drop", after_words=3)
    with pytest.raises(fakegpt.IncompleteStreamError, match="connection was lost mid-stream") as info:
        client.complete(MESSAGES)
    assert EXPECTED.startswith(info.value.partial_text) and len(info.value.partial_text) > 0
    assert fakegpt_emulator.counts["conversations"] == 1


def test_stall_mid_stream_is_a_timeout_and_is_not_retried(fakegpt_emulator):
    with client_for(fakegpt_emulator, timeout=(5, 0.3)) as client:
        fakegpt_emulator.stream_fault("stall", after_words=5)
        received = []
        with pytest.raises(fakegpt.APITimeoutError, match="stalled") as info:
            for delta in client.stream(MESSAGES):
                received.append(delta)
    assert type(info.value) is fakegpt.APITimeoutError and len(received) == 5
    assert info.value.partial_text == "".join(received)
    assert fakegpt_emulator.counts["conversations"] == 1 and client.waits == []
    assert fakegpt_emulator.wait_until(lambda e: e.counts["disconnects"] == 1, timeout=1.0)


def test_past_the_first_delta_the_watchdog_times_the_reads_and_the_next_call_gets_its_timeout_back(
        fakegpt_emulator):
    with client_for(fakegpt_emulator, timeout=(5, 0.3)) as client:
        stream = client.stream(MESSAGES)
        received = [next(stream)]
        sock = stream._call._body.connection.sock
        # Nothing is retried past the first delta and the watchdog ends a call
        # with no complete event within the read timeout: the socket blocks
        # (no poll() before each read).
        assert sock.gettimeout() is None
        received += list(stream)
        assert "".join(received) == EXPECTED
        # The same pooled connection serves the next call with the read timeout
        # set again: a stall before any text ends the call with a timeout.
        fakegpt_emulator.stream_fault("stall", after_words=0)
        with pytest.raises(fakegpt.APITimeoutError, match="stalled"):
            client.complete(MESSAGES)
        assert client.waits == []
    assert fakegpt_emulator.counts["conversations"] == 2


def test_a_stall_before_any_text_is_not_retried_the_server_accepted_the_turn(fakegpt_emulator):
    with client_for(fakegpt_emulator, timeout=(5, 0.3)) as client:
        fakegpt_emulator.stream_fault("stall", after_words=0)
        with pytest.raises(fakegpt.APITimeoutError, match="stalled") as info:
            client.complete(MESSAGES)
    assert fakegpt_emulator.counts["conversations"] == 1 and client.waits == [] and info.value.partial_text == ""


def test_in_stream_error(fakegpt_emulator, client):
    fakegpt_emulator.stream_fault("error", after_words=2, message="The model is overloaded")
    with pytest.raises(fakegpt.StreamError, match="The model is overloaded") as info:
        client.complete(MESSAGES)
    assert type(info.value) is fakegpt.StreamError and EXPECTED.startswith(info.value.partial_text)
    assert len(info.value.partial_text) > 0 and fakegpt_emulator.counts["conversations"] == 1


def test_dead_tokens_are_skipped():
    with Emulator(tokens=0) as emulator:
        emulator.add_token(count=0, dead="login")
        emulator.add_token(count=1, dead="session")
        emulator.add_token(count=2)
        with client_for(emulator) as client:
            assert client.complete(MESSAGES) == EXPECTED
        assert emulator.counts["login_failures"] == 1 and emulator.counts["empty_sessions"] == 1
        assert emulator.counts["logins"] == 2 and emulator.counts["sessions"] == 1


@pytest.mark.parametrize("how", ["login", "session"])
def test_every_token_dead(fakegpt_emulator, client, how):
    fakegpt_emulator.kill_token(how=how)
    with pytest.raises(fakegpt.AuthenticationError, match="all 3 tokens tried were rejected"):
        client.complete(MESSAGES)
    assert client.waits == [] and fakegpt_emulator.counts["conversations"] == 0  # rotating does not back off


def test_empty_token_list(fakegpt_emulator, client):
    fakegpt_emulator.clear_tokens()
    with pytest.raises(fakegpt.AuthenticationError, match="empty"):
        client.complete(MESSAGES)
    assert fakegpt_emulator.counts["requests"] == 1


def test_challenge_page(fakegpt_emulator, client):
    fakegpt_emulator.challenge = True
    with pytest.raises(fakegpt.APIStatusError, match="HTTP 403: HTML page: Just a moment") as info:
        client.complete(MESSAGES)
    assert info.value.status_code == 403 and fakegpt_emulator.counts["loads"] == 1


def test_expired_token_is_replaced_by_a_fresh_login(fakegpt_emulator, client):
    client.complete(MESSAGES)
    fakegpt_emulator.expire_access_tokens()
    assert client.complete(MESSAGES) == EXPECTED
    assert fakegpt_emulator.counts["logins"] == 2 and fakegpt_emulator.counts["conversations"] == 3


def test_401_that_survives_a_fresh_login(fakegpt_emulator, client):
    fakegpt_emulator.fail_next(401, times=2)
    with pytest.raises(fakegpt.AuthenticationError, match="even after a fresh login"):
        client.complete(MESSAGES)
    assert fakegpt_emulator.counts["logins"] == 2 and fakegpt_emulator.counts["conversations"] == 2


def test_rate_limit_with_retry_after_then_success(fakegpt_emulator, client):
    fakegpt_emulator.fail_next(429, headers={"Retry-After": "0"})
    assert client.complete(MESSAGES) == EXPECTED
    assert client.waits == [0.0] and fakegpt_emulator.counts["conversations"] == 2


def test_rate_limit_persisting(fakegpt_emulator, client):
    fakegpt_emulator.fail_next(429, headers={"Retry-After": "1"}, times=3)
    with pytest.raises(fakegpt.RateLimitError, match="Too many requests") as info:
        client.complete(MESSAGES)
    assert info.value.retry_after == 1.0 and client.waits == [1.0, 1.0]


def test_server_errors_then_success_and_persisting(fakegpt_emulator, client):
    fakegpt_emulator.fail_next(502, times=2)
    assert client.complete(MESSAGES) == EXPECTED
    fakegpt_emulator.fail_next(500, times=3)
    with pytest.raises(fakegpt.APIStatusError, match="HTTP 500") as info:
        client.complete(MESSAGES)
    assert info.value.status_code == 500 and fakegpt_emulator.counts["conversations"] == 6


def test_redirect_is_not_followed(fakegpt_emulator, client):
    fakegpt_emulator.fail_next(307, body="", headers={"Location": "http://127.0.0.2:9/steal"})
    with pytest.raises(fakegpt.APIStatusError, match="redirected"):
        client.complete(MESSAGES)
    assert fakegpt_emulator.counts["conversations"] == 1


def test_nothing_listening():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    with fakegpt.Client(f"http://127.0.0.1:{port}", max_retries=1) as client:
        client._engine.sleep = lambda s: None
        with pytest.raises(fakegpt.APIConnectionError, match=r"GET /api/loads to 127.0.0.1:\d+ failed: the connection was refused \(is the server running\?\)$"):
            client.complete(MESSAGES)


# -- threads -------------------------------------------------------------------------
def test_threads_sharing_a_cold_client_log_in_once(fakegpt_emulator, client):
    replies = at_once(lambda i: client.complete([{"role": "user", "content": f"question {i}"}]), 8)
    assert replies == [default_responder(f"question {i}") for i in range(8)]
    assert fakegpt_emulator.counts["logins"] == 1


@pytest.mark.parametrize("attributes", ["; Secure", "; Domain=localhost"])
def test_login_cookie_the_jar_refuses_still_logs_in(attributes):
    with Emulator(cookie_attributes=attributes) as emulator, client_for(emulator) as client:
        assert client.complete(MESSAGES) == EXPECTED
        assert emulator.counts["empty_sessions"] == 0 and emulator.counts["sessions"] == 1


# -- raw servers: framings the emulator does not produce -------------------------------------
class RawServer:
    """A one-connection-at-a-time server replying with scripted bytes and pauses."""

    def __init__(self, script):
        self.script = script  # list of bytes (sent) and floats (pauses in seconds)
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(8)
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}"
        self.thread = threading.Thread(target=self.serve, daemon=True)
        self.thread.start()

    def serve(self):
        try:
            conn, _ = self.sock.accept()
        except OSError:
            return
        with conn:
            read_request(conn)
            for step in self.script:
                if isinstance(step, threading.Event):  # sent on once the test sets it
                    step.wait(60)
                elif isinstance(step, float):
                    time.sleep(step)
                else:
                    try:
                        conn.sendall(step)
                    except OSError:
                        return
            time.sleep(0.3)

    def close(self):
        self.sock.close()


def chunk(data: bytes) -> bytes:
    return b"%x\r\n%s\r\n" % (len(data), data)


HEAD = (b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n")


def event(text, status="in_progress"):
    return (b'data: {"message": {"id": "m", "author": {"role": "assistant"}, "content": {"parts": ["'
            + text.encode() + b'"]}, "status": "' + status.encode() + b'"}}\n\n')


def raw_stream(script, timeout=(5, 3)):
    server = RawServer(script)
    try:
        with fakegpt.Client(server.url, access_token="t", timeout=timeout, max_retries=0) as client:
            started, arrivals = time.monotonic(), []
            stream = client.stream(MESSAGES)
            try:
                for delta in stream:
                    arrivals.append((delta, round(time.monotonic() - started, 1)))
            except fakegpt.FakeGptError as error:
                return arrivals, error, time.monotonic() - started
            return arrivals, None, time.monotonic() - started
    finally:
        server.close()


CLOSE_HEAD = b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nConnection: close\r\n\r\n"


def test_a_chunk_is_delivered_as_soon_as_it_is_complete():
    # Servers write (flush) each event as one chunk: it is delivered at once,
    # not held for the next. (Inside one chunk, events wait for its end: see
    # docs/performance.rst.)
    delivered = threading.Event()  # the server sends the next chunk only once the first was delivered
    script = [HEAD, chunk(event("Hello")), delivered, chunk(event("Hello world", "finished_successfully")),
              chunk(b"data: [DONE]\n\n") + b"0\r\n\r\n"]
    assert stream_gated(script, delivered) == ["Hello", " world"]


@needs_read1
def test_an_event_of_a_close_delimited_body_is_delivered_as_soon_as_its_bytes_arrive():
    whole = event("Hello") + event("Hello world", "finished_successfully") + b"data: [DONE]\n\n"
    cut = len(event("Hello"))
    delivered = threading.Event()
    assert stream_gated([CLOSE_HEAD, whole[:cut], delivered, whole[cut:]], delivered) == ["Hello", " world"]


def stream_gated(script, delivered):
    """The deltas of *script*, setting *delivered* once the first arrived (a
    first delta held back for more bytes would end at the read timeout instead)."""
    server = RawServer(script)
    try:
        with fakegpt.Client(server.url, access_token="t", timeout=(5, 5), max_retries=0) as client:
            stream = client.stream(MESSAGES)
            deltas = [next(stream)]
            delivered.set()
            return deltas + list(stream)
    finally:
        delivered.set()
        server.close()


def test_a_chunk_cut_short_ends_the_stream_keeping_the_text_of_the_whole_chunks():
    script = [HEAD, chunk(event("A")), b"%x\r\n" % (len(event("AB")) + 500) + event("AB")]  # promises more
    arrivals, error, _ = raw_stream(script)
    assert [d for d, _ in arrivals] == ["A"] and isinstance(error, fakegpt.IncompleteStreamError)
    assert error.partial_text == "A"


@needs_read1
def test_events_of_a_close_delimited_body_cut_short_are_not_lost():
    body = event("A") + event("AB") + event("ABC")
    arrivals, error, _ = raw_stream([CLOSE_HEAD, body])
    assert [d for d, _ in arrivals] == ["A", "B", "C"] and isinstance(error, fakegpt.IncompleteStreamError)
    assert error.partial_text == "ABC"


def test_done_line_without_its_blank_line_on_a_held_socket_ends_the_stream():
    script = [HEAD, chunk(event("Hel")), chunk(event("Hello") + b"data: [DONE]\n"), 600.0]
    arrivals, error, _ = raw_stream(script)  # (waiting for the blank line: a stall, the 3 s read timeout)
    assert error is None and [d for d, _ in arrivals] == ["Hel", "lo"]


def test_a_finished_reply_on_a_stalled_socket_ends_quietly_at_the_read_timeout():
    script = [HEAD, chunk(event("Hi")), chunk(event("Hi!", "finished_successfully")), 600.0]  # (pytest's timeout: 60 s)
    arrivals, error, _ = raw_stream(script, timeout=(5, 0.5))
    assert error is None and [d for d, _ in arrivals] == ["Hi", "!"]


def test_a_server_that_keeps_writing_after_done_does_not_hold_the_caller():
    script = [HEAD, chunk(event("Hi", "finished_successfully") + b"data: [DONE]\n\n")]
    script += [chunk(b": keep-alive\n\n"), 0.01] * 60000  # 10 minutes (pytest's timeout: 60 s)
    arrivals, error, _ = raw_stream(script)
    assert error is None and [d for d, _ in arrivals] == ["Hi"]


def test_abort_while_the_server_has_not_answered_yet_hangs_up_at_once():
    server = RawServer([600.0, HEAD])  # the headers come only after 10 minutes (pytest's timeout: 60 s)
    try:
        with fakegpt.Client(server.url, access_token="t", timeout=(5, 300)) as client:
            stream = client.stream(MESSAGES)
            threading.Timer(0.3, stream.abort).start()
            assert list(stream) == []  # ends quietly
    finally:
        server.close()


