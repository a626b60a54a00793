"""The emulator with streamed responders (a generator of deltas), hang-ups reaching
them, and the bounds of a server left running (Limits); over real loopback sockets."""
import gc
import json
import socket
import threading
import tracemalloc

import pytest
import requests

import fakegpt
from fakegpt._protocol import conversation_body
from fakegpt.emulator import Emulator, HangUp, Limits, ReplyFailed

HI = [{"role": "user", "content": "hi"}]


def words(prompt):
    yield from ["one ", "two ", "thrée"]


def client(emulator):
    return fakegpt.Client(emulator.url, max_retries=0)


def token(emulator):
    session = requests.Session()
    key = session.get(emulator.url + "/api/loads", timeout=10).json()["loads"][0]["token_id"]
    session.post(emulator.url + "/auth/login", data={"token_key": key, "session_password": "pw"}, timeout=10,
                 allow_redirects=False)
    return session.get(emulator.url + "/api/auth/session", timeout=10).json()["accessToken"]


@pytest.mark.parametrize("fmt", ["cumulative", "v1"])
def test_a_generator_responder_streams_each_delta(fmt):
    gate = threading.Event()

    def paced(prompt):
        yield "first "
        assert gate.wait(10), "the first delta was not sent before the second was made"
        yield "second"

    with Emulator(responder=paced, format=fmt) as emulator, client(emulator) as c:
        stream = c.stream(HI)
        deltas = iter(stream)
        assert next(deltas) == "first "
        gate.set()
        assert "".join(deltas) == "second"
        assert stream.finish_reason == "stop"


def failing(prompt):
    yield "ok "
    yield "so far"
    raise ReplyFailed("the model fell over")


def yields_bytes(prompt):
    yield "ok "
    yield b"so far"


@pytest.mark.parametrize("fmt", ["cumulative", "v1"])
@pytest.mark.parametrize("responder, sent, said", [(failing, "ok so far", "the model fell over"),
                                                   (yields_bytes, "ok ", "yielded bytes, not str")])
def test_a_broken_stream_is_an_in_stream_error_keeping_the_text(responder, sent, said, fmt):
    with Emulator(responder=responder, format=fmt) as emulator, client(emulator) as c:
        with pytest.raises(fakegpt.StreamError) as raised:
            "".join(c.stream(HI))
        assert raised.value.partial_text == sent and said in str(raised.value)
        emulator.responder = words
        assert c.complete(HI) == "one two thrée"  # still serving


def test_a_stream_fault_waits_for_a_reply_returned_whole():
    with Emulator(responder=words) as emulator, client(emulator) as c:
        emulator.stream_fault("truncate", after_words=1)
        assert c.complete(HI) == "one two thrée"  # streamed: not this one
        emulator.responder = lambda prompt: "a b c"
        with pytest.raises(fakegpt.IncompleteStreamError) as raised:
            c.complete(HI)
    assert raised.value.partial_text == "a "


def a_responder_raising_oserror(prompt):
    yield "sent "
    raise ConnectionResetError("the responder's own connection")


def test_an_oserror_of_the_responder_is_an_in_stream_error_not_a_hang_up():
    with Emulator(responder=a_responder_raising_oserror) as emulator, client(emulator) as c:
        with pytest.raises(fakegpt.StreamError) as raised:
            c.complete(HI)
        assert type(raised.value) is fakegpt.StreamError and raised.value.partial_text == "sent "
        assert "ConnectionResetError" in str(raised.value) and emulator.counts["disconnects"] == 0


def test_a_returned_length_is_max_tokens_and_continue_gets_the_partial_text():
    calls = []

    def long(prompt, history, partial=None):
        calls.append((prompt, list(history), partial))
        if partial is None:
            yield "a b "
            return "length"
        yield "c d"

    with Emulator(responder=long) as emulator, client(emulator) as c:
        conversation = c.conversation()
        first = conversation.complete("go")
        assert first.finish_reason == "max_tokens"
        rest = conversation.continue_reply()
        assert "".join(rest) == "c d" and rest.finish_reason == "stop"
        assert calls == [("go", [], None), ("go", [], "a b ")]
        with pytest.raises(fakegpt.APIStatusError) as raised:  # finished now: nothing to continue
            "".join(conversation.continue_reply())
        assert raised.value.status_code == 400


def test_continue_with_a_responder_that_cannot_continue_is_a_400():
    def cut(prompt):
        yield "a "
        return "length"

    with Emulator(responder=cut) as emulator, client(emulator) as c:
        conversation = c.conversation()
        assert conversation.complete("go").finish_reason == "max_tokens"
        with pytest.raises(fakegpt.APIStatusError) as raised:
            "".join(conversation.continue_reply())
    assert raised.value.status_code == 400 and "cannot continue" in str(raised.value)


def test_a_responder_learns_of_a_hang_up_while_nothing_is_written():
    told = threading.Event()

    def waiting(prompt, hangup):
        assert isinstance(hangup, HangUp)
        hangup.on_hang_up(told.set)
        yield "first "
        hangup.wait(30)  # silent: no write can fail
        yield "never sent"

    with Emulator(responder=waiting) as emulator, client(emulator) as c:
        stream = c.stream(HI)
        assert next(iter(stream)) == "first "
        stream.abort()
        assert told.wait(10), "the responder never heard of the hang-up"
        assert emulator.wait_until(lambda e: e.counts["disconnects"] == 1, 10)


def test_loads_counts_active_streams_on_top_of_the_set_count():
    gate = threading.Event()

    def held(prompt):
        yield "a "
        gate.wait(10)
        yield "b"

    with Emulator(responder=held, token_keys=["key-one"]) as emulator, client(emulator) as c:
        emulator.add_token(count=5)
        stream = c.stream(HI)
        next(iter(stream))
        counts = {e["token_id"]: e["count"] for e in requests.get(emulator.url + "/api/loads", timeout=5).json()["loads"]}
        assert counts["key-one"] == 1 and sorted(counts.values()) == [1, 5]
        gate.set()
        "".join(stream)
        counts = {e["token_id"]: e["count"] for e in requests.get(emulator.url + "/api/loads", timeout=5).json()["loads"]}
        assert counts["key-one"] == 0


# -- limits --------------------------------------------------------------------------------
def test_conversations_are_bounded_least_recently_used_first():
    with Emulator(limits=Limits(conversations=2)) as emulator, client(emulator) as c:
        first, second = c.conversation(), c.conversation()
        first.complete("one")
        second.complete("two")
        first.complete("one again")  # first is now the most recently used
        c.conversation().complete("three")  # second is forgotten
        assert first.complete("still here")
        with pytest.raises(fakegpt.APIStatusError) as raised:
            second.complete("gone?")
    assert raised.value.status_code == 404


def test_conversations_are_bounded_by_their_text_least_recently_used_first():
    def reply(prompt):
        yield "r" * 100

    with Emulator(responder=reply, limits=Limits(conversation_bytes=450)) as emulator, client(emulator) as c:
        first, second = c.conversation(), c.conversation()
        first.complete("a" * 100)  # 200 characters kept
        second.complete("b" * 100)  # 400
        first.complete("c" * 100)  # 600: over, but the next request forgets the least recently used
        with pytest.raises(fakegpt.APIStatusError) as raised:
            second.complete("gone?")
        assert raised.value.status_code == 404
        assert first.complete("d").startswith("r")  # 400 + 101: still kept until another request
        assert len(emulator._conversations) == 1


def test_conversations_are_forgotten_after_their_age():
    with Emulator(limits=Limits(conversation_age=0.0)) as emulator, client(emulator) as c:
        conversation = c.conversation()
        conversation.complete("one")
        with pytest.raises(fakegpt.APIStatusError) as raised:
            conversation.complete("two")
    assert raised.value.status_code == 404


def test_the_request_log_is_bounded_in_bytes_with_bodies_cut():
    with Emulator(limits=Limits(log_bytes=5000, log_body=100)) as emulator:
        access = token(emulator)
        for _ in range(30):
            requests.post(emulator.url + "/api/conversation", timeout=10, headers={"Authorization": f"Bearer {access}"},
                          json={**conversation_body("x" * 5000, "m")})
        logged = emulator.requests
    assert all(len(r.body) <= 100 for r in logged)
    assert sum(len(r.body) + len(r.path) + sum(len(k) + len(v) for k, v in r.headers.items()) for r in logged) <= 5000
    assert logged[-1].path == "/api/conversation" and len(logged) < 33


def test_headers_and_bodies_are_capped():
    with Emulator(limits=Limits(header_bytes=4096, body_bytes=1000)) as emulator:
        big = requests.get(emulator.url + "/api/loads", headers={"X-Big": "y" * 5000}, timeout=10)
        assert big.status_code == 431
        body = requests.post(emulator.url + "/auth/login", data="z" * 2000, timeout=10)
        assert body.status_code == 413
        assert requests.get(emulator.url + "/api/loads", timeout=10).status_code == 200
        assert all(len(r.body) <= 1000 for r in emulator.requests)


def _ended(sock):
    """What the server sent before closing *sock* (a socket.timeout if it never closes it)."""
    sock.settimeout(30)
    answer = b""
    while True:
        piece = sock.recv(65536)
        if not piece:
            return answer
        answer += piece


def _trickle(sock, data, stop):
    """Send *data* a byte at a time, until the server closes the connection or *stop* is set."""
    for byte in data:
        if stop.wait(0.02):
            return
        try:
            sock.sendall(bytes([byte]))
        except OSError:
            return


def test_silent_and_half_sent_heads_are_closed_past_the_head_bound():
    with Emulator(limits=Limits(head_seconds=0.5)) as emulator:
        heads = [b"", b"GET /api/lo", b"GET /api/loads HTTP/1.1\r\nHost: x\r\n"]
        socks = [socket.create_connection(("127.0.0.1", emulator.port)) for _ in heads]
        idle = socket.create_connection(("127.0.0.1", emulator.port))  # one answer, then a kept-alive silence
        idle.sendall(b"GET /api/loads HTTP/1.1\r\nHost: x\r\n\r\n")
        try:
            for sock, head in zip(socks, heads):
                sock.sendall(head)
            assert [_ended(sock) for sock in socks] == [b"", b"", b""]
            assert _ended(idle).startswith(b"HTTP/1.1 200 ")
            assert emulator.wait_until(lambda e: e.open_connections == 0, 30), "threads still held"
        finally:
            for sock in socks + [idle]:
                sock.close()
        assert requests.get(emulator.url + "/api/loads", timeout=10).status_code == 200


def test_a_head_trickled_a_byte_at_a_time_is_closed_past_the_head_bound():
    with Emulator(limits=Limits(head_seconds=0.5)) as emulator:
        sock, stop = socket.create_connection(("127.0.0.1", emulator.port)), threading.Event()
        sender = threading.Thread(target=_trickle, args=(sock, b"GET / HTTP/1.1\r\nX-Slow: " + b"s" * 5000, stop))
        sender.start()
        try:
            assert _ended(sock) == b""  # nothing answered: its head never ended
        finally:
            stop.set()
            sender.join()
            sock.close()
        assert emulator.counts["requests"] == 0


def test_a_body_trickled_a_byte_at_a_time_is_a_408_past_the_body_bound():
    with Emulator(limits=Limits(body_seconds=0.5)) as emulator:
        sock, stop = socket.create_connection(("127.0.0.1", emulator.port)), threading.Event()
        sock.sendall(b"POST /auth/login HTTP/1.1\r\nHost: x\r\nContent-Length: 5000\r\n\r\n")
        sender = threading.Thread(target=_trickle, args=(sock, b"t" * 5000, stop))
        sender.start()
        try:
            answer = _ended(sock)
        finally:
            stop.set()
            sender.join()
            sock.close()
    assert answer.startswith(b"HTTP/1.1 408 ") and b"did not arrive within 0.5 s" in answer


def test_the_gateway_limits_bound_heads_and_bodies_and_the_plain_emulator_keeps_idle_connections():
    from fakegpt.emulator import GATEWAY_LIMITS

    assert GATEWAY_LIMITS.head_seconds == 30.0 and GATEWAY_LIMITS.body_seconds == 30.0
    assert Limits().head_seconds is None


def test_sessions_are_bounded():
    with Emulator(limits=Limits(sessions=3)) as emulator:
        tokens = [token(emulator) for _ in range(5)]
        assert len(emulator._access) == 3 and len(emulator._credentials) == 3
        gone = requests.post(emulator.url + "/api/conversation", json=conversation_body("hi", "m"), timeout=10,
                             headers={"Authorization": f"Bearer {tokens[0]}"})
        kept = requests.post(emulator.url + "/api/conversation", json=conversation_body("hi", "m"), timeout=10,
                             headers={"Authorization": f"Bearer {tokens[-1]}"})
    assert gone.status_code == 401 and kept.status_code == 200


@pytest.mark.timeout(300)
def test_memory_stays_flat_over_10000_requests():
    """Each request keeps a conversation, a 16 KiB body and 8 KB of headers; with the gateway's
    limits what is kept stops growing: the second half of the run adds (almost) nothing.
    (Raw HTTP on one kept-alive connection: the client side costs next to nothing.)"""
    limits = Limits(conversations=100, sessions=100, log_bytes=1 << 20, log_body=2048, header_bytes=65536)
    with Emulator(responder=lambda prompt: "ok", limits=limits) as emulator:
        body = json.dumps(conversation_body("q" * 16384, "m", keep_history=True)).encode()
        request = (b"POST /api/conversation HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n"
                   b"Authorization: Bearer " + token(emulator).encode() + b"\r\nX-Padding: " + b"p" * 8000
                   + b"\r\nContent-Length: %d\r\n\r\n" % len(body) + body)
        sock = socket.create_connection(("127.0.0.1", emulator.port))
        sock.settimeout(10)

        def run(n):
            for _ in range(n):
                sock.sendall(request)
                answer = b""
                while not answer.endswith(b"\r\n0\r\n\r\n"):
                    piece = sock.recv(65536)
                    assert piece, "the connection ended"
                    answer += piece
                assert answer.startswith(b"HTTP/1.1 200 ")

        try:
            run(6000)  # every bound reached long before; untraced, so the run stays quick
            gc.collect()
            tracemalloc.start()  # (it counts what is allocated from now on, and costs time per allocation)
            try:
                run(2000)
                gc.collect()
                middle = tracemalloc.get_traced_memory()[0]
                run(2000)
                gc.collect()
                end = tracemalloc.get_traced_memory()[0]
            finally:
                tracemalloc.stop()
        finally:
            sock.close()
        assert emulator.counts["conversations"] == 10000
        assert len(emulator._conversations) == 100
    # 2,000 requests each keeping 16 KiB of body and 8 KB of headers: a leak of
    # anything per request shows; 128 bytes a request is the most let through.
    assert end - middle < 256 * 1024, f"grew {end - middle:,} bytes over the last 2,000 requests"
