"""The retry boundary and the ends of a call, over real loopback sockets:
what the server accepted is never sent again, and every wait and read of a
call is bounded (by its read timeout, its deadline, an abort, a close or a
task's cancellation), whatever a hand-written server sends."""
import asyncio
import socket
import threading
import zlib

import brotli
import pytest
import urllib3

import fakegpt

from ..netkit import ConnectProxy, Silent, _Listener, read_request
from .test_client_live import chunk, event

MESSAGES = [{"role": "user", "content": "Hi"}]
SSE_HEAD = b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n"
HEAD = SSE_HEAD + b"\r\n"
DONE = chunk(b"data: [DONE]\n\n")


class Scripted(_Listener):
    """Answers each request with ``script(conn, number)`` (*number* counts the
    requests from 1); counts them, and each connection the client ended."""

    def __init__(self, script):
        super().__init__()
        self.script = script
        self.requests = 0
        self.started = threading.Event()  # a script began answering

    @property
    def url(self):
        return f"http://127.0.0.1:{self.port}"

    def handle(self, conn):
        while read_request(conn) is not None:
            with self.changed:
                self.requests += 1
                number = self.requests
            self.started.set()
            if self.script(conn, number) is not True:  # True: keep the connection for another request
                return


def until_hung_up(conn):
    """Hold the connection, sending nothing, until the client ends it."""
    while conn.recv(65536):
        pass


def forever(conn, data, pause=0.0):
    """Send *data* again and again (a pause between) until the client ends the connection."""
    stop = threading.Event()
    while not stop.wait(pause):
        conn.sendall(data)


def client_for(server, **kwargs):
    kwargs.setdefault("access_token", "a-token")
    client = fakegpt.Client(server.url, **kwargs)
    client.waits = []
    client._engine.sleep = client.waits.append
    return client


def in_thread(target):
    """Run *target* in a thread; its outcome (a value or a fakegpt error) lands in the list returned."""
    outcome = []

    def run():
        try:
            outcome.append(target())
        except fakegpt.FakeGptError as error:
            outcome.append(error)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread, outcome


# -- 1. a request the server accepted is never sent again ----------------------------------
def stall_after_the_headers(conn, number):
    conn.sendall(HEAD)
    until_hung_up(conn)


def test_a_2xx_stalled_before_any_text_ends_at_the_socket_timeout_and_is_sent_once():
    with Scripted(stall_after_the_headers) as server, client_for(server, timeout=(5, 0.5), max_retries=2) as client:
        client._engine.event_timeout = None  # no watchdog: the socket's own read timeout ends the stall
        with pytest.raises(fakegpt.APITimeoutError, match="no data arrived within the read timeout") as info:
            client.complete(MESSAGES)
        assert server.wait_closed(1)
    assert server.requests == 1 and server.accepted == 1 and client.waits == [] and info.value.partial_text == ""


def trickle_comments(conn, number):
    conn.sendall(HEAD)
    forever(conn, chunk(b":\n"), pause=0.05)  # bytes keep coming (the socket never times out), events never


def test_a_2xx_that_sends_no_event_is_ended_by_the_watchdog_and_sent_once():
    with Scripted(trickle_comments) as server, client_for(server, timeout=(5, 0.5), max_retries=2) as client:
        with pytest.raises(fakegpt.APITimeoutError, match="no complete event arrived for 0.5 s") as info:
            client.complete(MESSAGES)
        assert server.wait_closed(1)
    assert "stalled" not in str(info.value) and "while data kept arriving" in str(info.value)
    assert server.requests == 1 and client.waits == []


def test_a_2xx_that_stalls_after_some_text_is_sent_once_and_keeps_the_text():
    def script(conn, number):
        conn.sendall(HEAD + chunk(event("Hel")))
        until_hung_up(conn)

    with Scripted(script) as server, client_for(server, timeout=(5, 0.5), max_retries=2) as client:
        with pytest.raises(fakegpt.APITimeoutError, match="stalled") as info:
            client.complete(MESSAGES)
    assert info.value.partial_text == "Hel" and server.requests == 1 and client.waits == []


def test_a_5xx_is_sent_again_until_a_2xx_begins():
    def script(conn, number):
        if number == 1:
            conn.sendall(b"HTTP/1.1 502 Bad Gateway\r\nContent-Length: 3\r\n\r\nbad")
            return True
        conn.sendall(HEAD + chunk(event("Hello", "finished_successfully")) + DONE + b"0\r\n\r\n")
        return True

    with Scripted(script) as server, client_for(server, timeout=(5, 5), max_retries=2) as client:
        assert client.complete(MESSAGES) == "Hello"
    assert server.requests == 2 and len(client.waits) == 1


def test_a_timeout_waiting_for_the_headers_is_retried():
    with Silent() as silent, client_for(silent, timeout=(5, 0.5), max_retries=1) as client:
        with pytest.raises(fakegpt.APITimeoutError, match="POST /api/conversation timed out waiting for the answer"):
            client.complete(MESSAGES)
        assert silent.wait_closed(2)
    assert silent.accepted == 2 and len(client.waits) == 1  # no answer began: sent again


def test_a_connection_closed_before_any_answer_is_retried():
    with Scripted(lambda conn, number: None) as server, client_for(server, timeout=(5, 5), max_retries=2) as client:
        with pytest.raises(fakegpt.APIConnectionError, match="failed: Remote end closed connection without response"):
            client.complete(MESSAGES)
    assert server.requests == 3 and len(client.waits) == 2


def test_a_429_is_retried_after_its_retry_after():
    def script(conn, number):
        if number == 1:
            conn.sendall(b"HTTP/1.1 429 Too Many Requests\r\nRetry-After: 7\r\nContent-Length: 0\r\n\r\n")
        else:
            conn.sendall(HEAD + chunk(event("Hello", "finished_successfully")) + DONE + b"0\r\n\r\n")
        return True

    with Scripted(script) as server, client_for(server, timeout=(5, 5), max_retries=2) as client:
        assert client.complete(MESSAGES) == "Hello"
    assert server.requests == 2 and client.waits == [7.0]


# -- 3. an https proxy whose certificate fails is tried once --------------------------------
def test_an_https_proxy_with_an_untrusted_certificate_is_tried_once(tmp_path):
    import ssl

    import trustme

    untrusted = trustme.CA()  # the client trusts its default bundle, not this CA
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    untrusted.issue_cert("localhost", "127.0.0.1").configure_cert(context)
    with ConnectProxy(context) as proxy:
        with fakegpt.Client("https://127.0.0.1:9", proxy=proxy.url, access_token="a-token", max_retries=2,
                            timeout=(5, 5)) as client:
            client.waits = []
            client._engine.sleep = client.waits.append
            with pytest.raises(fakegpt.APIConnectionError, match="certificate could not be verified"):
                client.complete(MESSAGES)
        assert proxy.wait_closed(1)
    assert proxy.accepted == 1 and proxy.tunnels == [] and client.waits == []


# -- 4. an interim (1xx) answer is not the answer --------------------------------------------
@pytest.mark.parametrize("interim", [
    b"HTTP/1.1 103 Early Hints\r\nLink: </app.css>; rel=preload\r\n\r\n",
    b"HTTP/1.1 102 Processing\r\n\r\nHTTP/1.1 103 Early Hints\r\nLink: </a.js>; rel=preload\r\n\r\n",
], ids=["103", "102-then-103"])
def test_interim_answers_before_the_stream_are_skipped(interim):
    def script(conn, number):
        conn.sendall(interim + HEAD + chunk(event("Hello", "finished_successfully")) + DONE + b"0\r\n\r\n")
        return True

    with Scripted(script) as server, client_for(server, timeout=(5, 5)) as client:
        assert client.complete(MESSAGES) == "Hello"
        assert client.complete(MESSAGES) == "Hello"  # the connection stays usable
    assert server.requests == 2 and server.accepted == 1


def test_endless_interim_answers_are_a_connection_failure_not_a_hang():
    def script(conn, number):
        forever(conn, b"HTTP/1.1 103 Early Hints\r\n\r\n")

    with Scripted(script) as server, client_for(server, timeout=(5, 30), max_retries=0) as client:
        with pytest.raises(fakegpt.APIConnectionError, match=r"more than 32 interim \(1xx\) answers"):
            client.complete(MESSAGES)
        assert server.wait_closed(1)
    assert server.requests == 1


# -- 14. headers trickled byte by byte end at the read timeout --------------------------------
def test_headers_trickled_byte_by_byte_time_out_and_that_is_retried():
    def script(conn, number):
        conn.sendall(SSE_HEAD + b"X-Padding: ")
        forever(conn, b"a", pause=0.05)  # one endless header line: the socket's timeout never fires

    with Scripted(script) as server, client_for(server, timeout=(5, 0.5), max_retries=1) as client:
        with pytest.raises(fakegpt.APITimeoutError, match="POST /api/conversation timed out waiting for the answer"):
            client.complete(MESSAGES)
        assert server.wait_closed(2)
    assert server.requests == 2 and len(client.waits) == 1  # no answer began: a timeout before it is retried


def test_headers_of_a_login_answer_trickled_byte_by_byte_time_out_at_the_login_timeout():
    def script(conn, number):
        conn.sendall(b"HTTP/1.1 200 OK\r\nX-Padding: ")
        forever(conn, b"a", pause=0.05)

    with Scripted(script) as server, client_for(server, access_token=None, login_timeout=(5, 0.5),
                                                timeout=(5, 60), max_retries=0) as client:
        with pytest.raises(fakegpt.APITimeoutError, match="GET /api/loads timed out waiting for the answer"):
            client.complete(MESSAGES)
        assert server.wait_closed(1)
    assert server.requests == 1


class LoginServer(_Listener):
    """Lists one shared token (``GET /api/loads``) and answers ``POST /auth/login``
    with ``login(conn)``; ``seen`` lists each request as ``"METHOD /path"``."""

    def __init__(self, login):
        super().__init__()
        self.login = login
        self.seen = []

    @property
    def url(self):
        return f"http://127.0.0.1:{self.port}"

    def handle(self, conn):
        while True:
            head = read_request(conn)
            if head is None:
                return
            method, target = head.split(b"\r\n", 1)[0].decode().split()[:2]
            path = target.split("?")[0]
            with self.changed:
                self.seen.append(f"{method} {path}")
            if path == "/auth/login":
                self.login(conn)
            if path != "/api/loads":
                return
            body = b'{"loads": [{"token_id": "t1", "count": 0}]}'
            conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s"
                         % (len(body), body))


def cut_body(status):
    def login(conn):
        conn.sendall(b"HTTP/1.1 %s\r\nLocation: /\r\nSet-Cookie: credential=c\r\nContent-Length: 100\r\n\r\nabc"
                     % status)  # then the connection closes: the body is cut
    return login


def stalled_body(conn):
    conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nContent-Length: 100\r\n\r\nabc")
    until_hung_up(conn)  # the rest never comes: the read timeout ends it


# urllib3 1.26 does not enforce Content-Length: there a cut body reads as a short one, no failure.
_ENFORCED = pytest.mark.skipif(int(urllib3.__version__.split(".")[0]) < 2,
                               reason="urllib3 1.26 reads a cut body as a short one")


@pytest.mark.parametrize("login", [pytest.param(cut_body(b"302 Found"), marks=_ENFORCED),
                                   pytest.param(cut_body(b"200 OK"), marks=_ENFORCED), stalled_body],
                         ids=["302-cut", "200-cut", "200-stalled"])
def test_a_login_answer_that_began_is_not_sent_again_when_its_body_fails(login):
    with LoginServer(login) as server, client_for(server, access_token=None, login_timeout=(5, 0.5),
                                                  max_retries=2) as client:
        with pytest.raises(fakegpt.APIConnectionError, match="POST /auth/login: the answer could not be read"):
            client.complete(MESSAGES)
    assert server.seen == ["GET /api/loads", "POST /auth/login"] and client.waits == []


# -- 11. the drain after [DONE] is bounded in total --------------------------------------------
def test_newlines_trickled_after_done_do_not_hold_the_reply():
    def script(conn, number):
        conn.sendall(HEAD + chunk(event("Hello", "finished_successfully")) + DONE)
        forever(conn, chunk(b"\n") * 64)  # without a pause: each read of the drain gets something at once

    with Scripted(script) as server, client_for(server, timeout=(5, 30)) as client:
        thread, outcome = in_thread(lambda: client.complete(MESSAGES))
        thread.join(20)
        assert not thread.is_alive() and outcome == ["Hello"]
        assert server.wait_closed(1)  # the connection could not be reused: dropped
    assert server.requests == 1


# -- 12. a finished reply whose connection then drops is finished -------------------------------
@pytest.mark.parametrize("reset", [False, True], ids=["closed", "reset"])
def test_a_finished_reply_whose_chunked_connection_drops_is_a_finished_reply(reset):
    def script(conn, number):
        conn.sendall(HEAD + chunk(event("Hello")) + chunk(event("Hello world", "finished_successfully")))
        if reset:
            conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")

    with Scripted(script) as server, client_for(server, timeout=(5, 30), max_retries=2) as client:
        reply = client.complete(MESSAGES)
    assert reply == "Hello world" and server.requests == 1


def test_an_unfinished_reply_whose_chunked_connection_drops_is_still_incomplete():
    def script(conn, number):
        conn.sendall(HEAD + chunk(event("Hello")))

    with Scripted(script) as server, client_for(server, timeout=(5, 30), max_retries=2) as client:
        with pytest.raises(fakegpt.IncompleteStreamError) as info:
            client.complete(MESSAGES)
    assert info.value.partial_text == "Hello" and server.requests == 1 and client.waits == []


# -- 13. a compressed body of endless comments obeys every end -----------------------------------
def endless_comments(coding):
    """(head, first, again): a body whose first bytes are *first* and that
    goes on with *again* as often as wanted; each piece decodes to 2 MB of
    SSE comments (``:`` lines), so a few KB decode to gigabytes."""
    block = b":\n" * (1 << 20)
    if coding == "br":
        compressor = brotli.Compressor(quality=5)
        first = compressor.process(block) + compressor.flush()
        again = compressor.process(block) + compressor.flush()
    else:
        compressor = zlib.compressobj(9, zlib.DEFLATED, 31)  # gzip; a full flush: each piece stands alone
        first = compressor.compress(block) + compressor.flush(zlib.Z_FULL_FLUSH)
        again = compressor.compress(block) + compressor.flush(zlib.Z_FULL_FLUSH)
        assert compressor.compress(block) + compressor.flush(zlib.Z_FULL_FLUSH) == again
    return SSE_HEAD + b"Content-Encoding: " + coding.encode() + b"\r\n\r\n", first, again


def comment_bomb(coding, sent=None):
    """A script sending gigabytes of comments, compressed; *sent* is set once some are out."""
    head, first, again = endless_comments(coding)
    piece = chunk(again * (2000 if coding == "br" else 200))  # ~120 KB of brotli, ~400 KB of gzip: 4 GB, 400 MB

    def script(conn, number):
        conn.sendall(head + chunk(first) + piece)
        if sent is not None:
            sent.set()
        forever(conn, piece)

    return script


def wait_reading(stream):
    """Wait until the call reads its body (it gets no event: nothing else shows it)."""
    call = stream._call
    assert wait_for(lambda: call.read_at is not None)


def wait_for(condition, timeout=30.0):
    done = threading.Event()
    for _ in range(int(timeout / 0.01)):
        if condition():
            return True
        done.wait(0.01)
    return False


CODINGS = pytest.mark.parametrize("coding", ["gzip", "br"])


@CODINGS
def test_a_compressed_body_of_comments_ends_at_the_deadline(coding):
    with Scripted(comment_bomb(coding)) as server, client_for(server, timeout=(5, 60), deadline=1) as client:
        thread, outcome = in_thread(lambda: client.complete(MESSAGES))
        thread.join(30)
        assert not thread.is_alive() and len(outcome) == 1
        assert server.wait_closed(1)
    error = outcome[0]
    assert type(error) is fakegpt.APITimeoutError and str(error) == "the call took longer than its deadline (1 s)"
    assert server.requests == 1 and client.waits == []


@CODINGS
@pytest.mark.parametrize("how", ["abort", "close"])
def test_a_compressed_body_of_comments_ends_at_an_abort_or_a_close(coding, how):
    with Scripted(comment_bomb(coding)) as server, client_for(server, timeout=(5, 60)) as client:
        stream = client.stream(MESSAGES)
        thread, outcome = in_thread(lambda: list(stream))
        wait_reading(stream)
        stream.abort() if how == "abort" else client.close()
        thread.join(30)
        assert not thread.is_alive() and outcome == [[]]
        assert server.wait_closed(1)
    assert server.requests == 1


@CODINGS
def test_a_compressed_body_of_comments_ends_when_its_task_is_cancelled(coding):
    sent = threading.Event()

    async def main():
        agen = fakegpt.FakeGpt.create_async_generator("gpt-3.5-turbo", MESSAGES, timeout=(5, 60))
        task = asyncio.ensure_future(agen.__anext__())
        while not sent.is_set():  # the call is reading gigabytes of comments (no event, no delta)
            await asyncio.sleep(0.01)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        await agen.aclose()

    def workers():
        return [thread for thread in threading.enumerate() if thread.name.startswith("fakegpt-worker-")]

    with Scripted(comment_bomb(coding, sent)) as server:
        fakegpt.FakeGpt.url = server.url
        fakegpt.FakeGpt._access_token = "a-token"
        asyncio.run(main())
        assert server.wait_closed(1, timeout=30)
        assert wait_for(lambda: not workers())  # the worker stopped reading too, not only the socket
    assert server.requests == 1
