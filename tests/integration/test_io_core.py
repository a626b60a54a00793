"""The I/O core over real sockets: compressed bodies, TLS with a self-signed
certificate, CONNECT and SOCKS5 proxies, and abort/close/break in every
phase. Each test checks the exact text, that the server saw the hang-up, and
that nothing was left behind."""
import asyncio
import contextlib
import gc
import gzip
import logging
import os
import ssl
import subprocess
import sys
import textwrap
import threading
import time
import zlib

import pytest
import trustme
import urllib3

import fakegpt
from fakegpt.emulator import Emulator, default_responder

from ..netkit import ConnectProxy, Silent, Socks5Proxy, TlsFront
from .test_client_live import RawServer, chunk, event, raw_stream

MESSAGES = [{"role": "user", "content": "Tell me about streams"}]
EXPECTED = default_responder("Tell me about streams")
LONG = [{"role": "user", "content": "Tell me everything about streams, at length"}]


def long_responder(prompt):
    return " ".join(f"word{i}" for i in range(400))


@pytest.fixture(scope="module")
def ca():
    return trustme.CA()


@pytest.fixture
def trust(ca, tmp_path, monkeypatch):
    """Make requests (and so the client) trust the test CA, as a user would: REQUESTS_CA_BUNDLE."""
    bundle = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(bundle))
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(bundle))
    return ca


def server_context(ca):
    cert = ca.issue_cert("localhost", "127.0.0.1")
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    cert.configure_cert(context)
    return context


@pytest.fixture
def emulator():
    with Emulator(responder=long_responder) as emulator:
        yield emulator


@pytest.fixture
def tls(trust, emulator):
    with TlsFront(("127.0.0.1", emulator.port), server_context(trust)) as front:
        yield front


def deltas_until(stream, words):
    text = ""
    for delta in stream:
        text += delta
        if len(text.split()) >= words:
            return text
    raise AssertionError(f"the stream ended after {text!r}")


def abort_mid_stream_and_check(emulator, client, *, front=None):
    """Read a few words of a stalled reply, abort from another thread, and
    check: no further delta, the server saw the hang-up, the thread returned."""
    streams, disconnects = emulator.counts["streams"], emulator.counts["disconnects"]
    emulator.stream_fault("stall", after_words=5, seconds=60)
    stream = client.stream(LONG)
    text = deltas_until(stream, 5)
    outcome = []

    def rest():
        outcome.append(list(stream))

    reader = threading.Thread(target=rest)
    reader.start()
    assert emulator.wait_until(lambda e: e.counts["streams"] == streams + 1)
    stream.abort()
    reader.join(10)
    assert not reader.is_alive(), "the blocked read did not return after abort()"
    assert outcome == [[]]  # nothing after the abort
    assert stream.text == text and long_responder("").startswith(text)
    assert emulator.wait_until(lambda e: e.counts["disconnects"] == disconnects + 1, timeout=10), emulator.counts


# -- 1. compressed streams -------------------------------------------------------------------
@pytest.mark.parametrize("compress", ["gzip", "deflate"])
@pytest.mark.parametrize("chunked", [True, False])
def test_a_compressed_stream_is_decoded(compress, chunked):
    with Emulator(compress=compress, chunked=chunked) as emulator, fakegpt.Client(emulator.url) as client:
        assert client.complete(MESSAGES) == EXPECTED
        v1 = fakegpt.Client(emulator.url)
        emulator.format = "v1"
        assert v1.complete(MESSAGES) == EXPECTED
        v1.close()


LEGACY_URLLIB3 = int(urllib3.__version__.split(".")[0]) < 2


@pytest.mark.parametrize("chunked", [True, pytest.param(False, marks=pytest.mark.skipif(
    LEGACY_URLLIB3, reason="urllib3 1.26 reads close-delimited bodies in blocks (docs/performance.rst)"))])
def test_each_compressed_event_arrives_as_soon_as_it_is_sent(chunked):
    # The server stalls after 3 words: a client that waited for more bytes
    # (a buffer to fill, a whole gzip member) would never see them.
    with Emulator(compress="gzip", chunked=chunked, responder=long_responder) as emulator, \
            fakegpt.Client(emulator.url, timeout=(5, 30)) as client:
        emulator.stream_fault("stall", after_words=3, seconds=60)
        with client.stream(LONG) as stream:
            assert deltas_until(stream, 3).strip() == "word0 word1 word2"


# A server that is not the emulator: bytes compressed here with the standard
# library, the way a reverse proxy or CDN compresses a whole body, and cut
# into HTTP chunks that ignore the events' and the compressor's boundaries.
SSE_BODY = event("Hello") + event("Hello world", "finished_successfully") + b"data: [DONE]\n\n"


def compressed_head(encoding, chunked):
    framing = b"Transfer-Encoding: chunked\r\n\r\n" if chunked else b"Connection: close\r\n\r\n"
    return (b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nContent-Encoding: " + encoding + b"\r\n"
            + framing)


def compressed_script(encoding, data, chunked):
    if not chunked:
        return [compressed_head(encoding, False), data]
    return [compressed_head(encoding, True)] + [chunk(data[i:i + 7]) for i in range(0, len(data), 7)] + [b"0\r\n\r\n"]


def raw_deflate(data):
    compressor = zlib.compressobj(wbits=-15)  # deflate without the zlib wrapper, as some servers send it
    return compressor.compress(data) + compressor.flush()


def has_brotli():
    return "br" in urllib3.response.HTTPResponse.CONTENT_DECODERS


@pytest.mark.parametrize("chunked", [True, False], ids=["chunked", "close-delimited"])
@pytest.mark.parametrize("encoding, compress", [
    (b"gzip", gzip.compress), (b"deflate", zlib.compress), (b"deflate", raw_deflate),
    pytest.param(b"x-gzip", gzip.compress, marks=pytest.mark.skipif(
        "x-gzip" not in urllib3.response.HTTPResponse.CONTENT_DECODERS, reason="urllib3 1.26 has no x-gzip")),
    (b"GZip", gzip.compress), (b"gzip, gzip", lambda data: gzip.compress(gzip.compress(data))),
    pytest.param(b"br", lambda data: __import__("brotli").compress(data),
                 marks=pytest.mark.skipif(not has_brotli(), reason="no brotli decoder installed")),
], ids=["gzip", "zlib-deflate", "raw-deflate", "x-gzip", "mixed-case", "stacked", "brotli"])
def test_a_body_compressed_whole_by_another_server_is_decoded(encoding, compress, chunked):
    arrivals, error, _ = raw_stream(compressed_script(encoding, compress(SSE_BODY), chunked))
    assert error is None and [delta for delta, _ in arrivals] == ["Hello", " world"]


@pytest.mark.parametrize("chunked", [True, False], ids=["chunked", "close-delimited"])
def test_a_body_that_is_not_what_its_content_encoding_says_is_a_one_line_stream_error(chunked):
    arrivals, error, _ = raw_stream(compressed_script(b"gzip", SSE_BODY, chunked))
    assert arrivals == [] and type(error) is fakegpt.StreamError
    assert str(error) == ("could not decode the stream: received response with content-encoding: gzip, "
                          "but failed to decode it")


@pytest.mark.parametrize("encoding", [b"none", b"utf-8", b"identity", b"identity, identity", b"Identity"])
def test_a_content_encoding_that_is_no_compression_leaves_the_body_as_it_is(encoding):
    # Labels seen in the wild on plain streams: read as they always were.
    arrivals, error, _ = raw_stream(compressed_script(encoding, SSE_BODY, False))
    assert error is None and [delta for delta, _ in arrivals] == ["Hello", " world"]


@pytest.mark.parametrize("encoding", [b"compress", b"gzip, compress", b"gzip, identity"],
                         ids=["compress", "stacked", "identity-in-a-list"])
def test_an_encoding_urllib3_cannot_decode_is_named_before_reading(encoding):
    # (br without a brotli package is refused the same way: the test extra installs one.)
    arrivals, error, _ = raw_stream(compressed_script(encoding, b"\x1f\x9d\x90 compressed bytes", False))
    decoders = ", ".join(urllib3.response.HTTPResponse.CONTENT_DECODERS)
    assert arrivals == [] and type(error) is fakegpt.StreamError
    assert str(error) == (f"the server sent the stream with Content-Encoding: {encoding.decode()}, which cannot be "
                          f"decoded here (this urllib3 decodes {decoders})")


# -- 2. no reference cycle keeps a response open ------------------------------------------------
@pytest.mark.parametrize("first_answer", [503, 401])
def test_break_after_a_retried_open_closes_the_response_without_the_gc(emulator, first_answer):
    client = fakegpt.Client(emulator.url)
    client._engine.sleep = lambda seconds: None
    client.complete(MESSAGES)  # logged in
    emulator.fail_next(first_answer, {"detail": "try again"})
    emulator.stream_fault("stall", after_words=2, seconds=60)
    gc.disable()
    try:
        for delta in client.stream(LONG):
            break
        assert emulator.wait_until(lambda e: e.counts["disconnects"] == 1, timeout=10), emulator.counts
    finally:
        gc.enable()
        client.close()
    assert emulator.counts["logins"] == (2 if first_answer == 401 else 1)


def test_dropping_an_unfinished_stream_closes_it_without_the_gc(emulator):
    with fakegpt.Client(emulator.url) as client:
        emulator.stream_fault("stall", after_words=2, seconds=60)
        gc.disable()
        try:
            stream = client.stream(LONG)
            next(stream)
            del stream
            assert emulator.wait_until(lambda e: e.counts["disconnects"] == 1, timeout=10)
        finally:
            gc.enable()


# -- 3. abort() in every phase ------------------------------------------------------------------
def test_abort_yields_nothing_more_even_with_deltas_already_buffered(emulator):
    with fakegpt.Client(emulator.url) as client:
        stream = client.stream(LONG)  # the emulator sends the whole reply at once
        first = next(stream)
        stream.abort()
        assert list(stream) == [] and stream.text == first and stream.aborted


def test_abort_mid_stream_direct(emulator):
    with fakegpt.Client(emulator.url) as client:
        abort_mid_stream_and_check(emulator, client)


# A response that closes its connection (a close-delimited body, or
# "Connection: close") leaves its socket only in the response's own reader:
# http.client drops it from the connection. abort() once did nothing there.
# (urllib3 1.26 reads such a body in blocks of 1 KiB: the stall comes after
# 20 words, several KiB, so some words are delivered on every version.)
@pytest.fixture
def close_delimited():
    with Emulator(responder=long_responder, chunked=False) as emulator:
        emulator.stream_fault("stall", after_words=20, seconds=60)
        yield emulator


def read_in_a_thread(stream):
    """Iterate *stream* in a thread; returns it and the deltas so far, once there is one."""
    delivered = []
    reader = threading.Thread(target=lambda: delivered.extend(stream))
    reader.start()
    deadline = time.monotonic() + 10
    while not delivered:  # the response is being read: its headers came and went
        assert time.monotonic() < deadline
        time.sleep(0.01)
    return reader, delivered


def check_ended_early(emulator, delivered, stream=None):
    text = "".join(delivered)
    assert long_responder("").startswith(text) and 1 <= len(text.split()) <= 20
    if stream is not None:
        assert stream.text == text
    assert emulator.wait_until(lambda e: e.counts["disconnects"] == 1, timeout=10)


@pytest.mark.parametrize("how, over", [("abort", "direct"), ("abort", "tls"), ("client.close", "direct")])
def test_abort_or_close_ends_a_body_that_closes_its_connection(close_delimited, how, over, trust):
    with contextlib.ExitStack() as stack:
        url = close_delimited.url
        if over == "tls":
            url = stack.enter_context(TlsFront(("127.0.0.1", close_delimited.port), server_context(trust))).url
        client = stack.enter_context(fakegpt.Client(url, timeout=(5, 60)))
        stream = client.stream(LONG)
        reader, delivered = read_in_a_thread(stream)
        stream.abort() if how == "abort" else client.close()
        reader.join(10)
        assert not reader.is_alive()
        check_ended_early(close_delimited, delivered, stream)


def test_cancelling_a_task_ends_a_body_that_closes_its_connection(close_delimited):
    fakegpt.FakeGpt.url = close_delimited.url

    async def main():
        got = []

        async def consume():
            async for delta in fakegpt.FakeGpt.create_async_generator("gpt-3.5-turbo", LONG, timeout=(5, 60)):
                got.append(delta)

        task = asyncio.ensure_future(consume())
        while not got:
            await asyncio.sleep(0.01)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        return got

    check_ended_early(close_delimited, asyncio.run(main()))


def test_a_deadline_ends_a_stalled_body_that_closes_its_connection(close_delimited):
    # The deadline (1 s) ends the call, not the read timeout (60 s): the watchdog's hang-up reaches the socket.
    with fakegpt.Client(close_delimited.url, timeout=(5, 60), deadline=1) as client:
        outcome = []

        def read():
            try:
                list(client.stream(LONG))
            except fakegpt.FakeGptError as error:
                outcome.append(error)

        reader = threading.Thread(target=read)
        reader.start()
        reader.join(20)
        assert not reader.is_alive() and len(outcome) == 1
    error = outcome[0]
    assert type(error) is fakegpt.APITimeoutError and str(error) == "the call took longer than its deadline (1 s)"
    words = error.partial_text.split()
    assert words == [f"word{i}" for i in range(20)][:len(words)] and (LEGACY_URLLIB3 or len(words) == 20)
    assert close_delimited.wait_until(lambda e: e.counts["disconnects"] == 1, timeout=10)


def test_abort_during_a_socks_handshake_sends_nothing(emulator):
    # The handshake cannot be interrupted (urllib3 has no public handle on a
    # socket still connecting), but once it completes nothing is sent.
    with Socks5Proxy(hold=True) as proxy, \
            fakegpt.Client(emulator.url, proxy=proxy.url, access_token="a-token", timeout=(30, 30)) as client:
        stream = client.stream(MESSAGES)
        outcome = []
        reader = threading.Thread(target=lambda: outcome.append(list(stream)))
        reader.start()
        assert proxy.greeted.wait(10)
        stream.abort()
        proxy.release.set()
        reader.join(10)
        assert not reader.is_alive() and outcome == [[]]
        assert proxy.wait_closed(1)
        assert proxy.forwarded == 0  # the tunnel was made, and nothing went through it
    assert emulator.requests == []


@pytest.mark.parametrize("token", ["a-token", None], ids=["conversation", "login"])
def test_abort_while_waiting_for_the_headers(token):
    # With no token, the request that never gets its answer is the login's own.
    with Silent() as silent, fakegpt.Client(silent.url, access_token=token, timeout=(5, 60)) as client:
        stream = client.stream(MESSAGES)
        outcome = []
        reader = threading.Thread(target=lambda: outcome.append(list(stream)))
        reader.start()
        assert silent.wait_request()
        stream.abort()
        reader.join(10)
        assert not reader.is_alive() and outcome == [[]]
        assert silent.wait_closed(1)
        # Nothing more was connected or sent: no retry of the hung-up request
        # (a login's retries once made two more connections, 1.3 s later).
        assert silent.accepted == 1 and silent.requests == 1


def test_cancelling_a_task_during_its_login_hangs_up_and_sends_nothing_more():
    def workers():
        return [t for t in threading.enumerate() if t.name.startswith("fakegpt-worker-")]

    async def main(silent):
        task = asyncio.ensure_future(fakegpt.FakeGpt.create_async("gpt-3.5-turbo", MESSAGES, timeout=(5, 60)))
        while not silent.requests:  # GET /api/loads is waiting for an answer that never comes
            await asyncio.sleep(0.01)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    with Silent() as silent:
        fakegpt.FakeGpt.url = silent.url
        asyncio.run(main(silent))
        assert silent.wait_closed(1)
        deadline = time.monotonic() + 10
        while workers():  # the call has ended: any retry would have been made by now
            assert time.monotonic() < deadline, workers()
            time.sleep(0.01)
        assert silent.accepted == 1 and silent.requests == 1


def assert_no_second_connection(server):
    """The RawServer took one connection; none waits in its backlog."""
    server.sock.setblocking(False)
    with pytest.raises(BlockingIOError):
        server.sock.accept()


def test_abort_during_the_logins_retry_back_off_ends_it_and_sends_nothing_more():
    busy = (b"HTTP/1.1 503 Service Unavailable\r\nRetry-After: 20\r\nContent-Type: text/plain\r\n"
            b"Content-Length: 4\r\n\r\nbusy")
    server = RawServer([busy])
    try:
        with fakegpt.Client(server.url, timeout=(5, 30)) as client:
            stream = client.stream(MESSAGES)
            outcome = []
            reader = threading.Thread(target=lambda: outcome.append(list(stream)))
            reader.start()
            server.thread.join(10)  # GET /api/loads was answered: the login now backs off for 20 s
            assert not server.thread.is_alive()
            stream.abort()
            reader.join(10)
            assert not reader.is_alive() and outcome == [[]]
            assert_no_second_connection(server)  # the retry was never made
    finally:
        server.close()


@pytest.mark.parametrize("answer", ["busy", "silent"])
def test_a_deadline_during_the_login_ends_it_and_sends_nothing_more(answer):
    busy = (b"HTTP/1.1 503 Service Unavailable\r\nRetry-After: 5\r\nContent-Type: text/plain\r\n"
            b"Content-Length: 4\r\n\r\nbusy")
    server = RawServer([busy, 30.0] if answer == "busy" else [30.0])
    try:
        with fakegpt.Client(server.url, timeout=(5, 30), deadline=1, max_retries=3) as client:
            with pytest.raises(fakegpt.APITimeoutError) as info:
                client.complete(MESSAGES)
        assert str(info.value) == "the call took longer than its deadline (1 s)"
        assert_no_second_connection(server)  # no retry of the login after the deadline
    finally:
        server.close()


def test_aborting_a_call_in_its_back_off_never_hangs_up_another_call_on_its_old_connection():
    # A's 503 try gave its connection back to the pool, and B streams on it now:
    # A's abort must not reach it (the call once kept it as its request in flight).
    slow_reply = " ".join(f"word{i}" for i in range(30))
    backing_off = threading.Event()

    class Retries(logging.Handler):
        def emit(self, record):
            if record.getMessage().startswith("retrying"):
                backing_off.set()

    handler = Retries()
    logger = logging.getLogger("fakegpt")
    logger.addHandler(handler)
    old_level = logger.level
    logger.setLevel(logging.INFO)
    try:
        with Emulator(responder=lambda prompt: slow_reply, delay=0.01) as emulator, \
                fakegpt.Client(emulator.url, timeout=(5, 30)) as client:
            client.complete(MESSAGES)  # logged in; one connection in the pool
            emulator.fail_next(503, {"detail": "busy"}, headers={"Retry-After": "30"})
            a = client.stream(MESSAGES)
            reader, outcome = threading.Thread(target=lambda: list(a)), []
            reader.start()
            assert backing_off.wait(10)
            b = client.stream(MESSAGES)
            received = [next(b)]  # on the connection A's try used
            a.abort()
            reader.join(10)
            assert not reader.is_alive()
            received.extend(b)
            assert "".join(received) == slow_reply
            assert emulator.open_connections == 1 and emulator.counts["disconnects"] == 0
    finally:
        logger.removeHandler(handler)
        logger.setLevel(old_level)


def test_abort_during_a_retry_back_off(emulator):
    with fakegpt.Client(emulator.url) as client:
        client.complete(MESSAGES)
        sent = emulator.counts["conversations"]
        emulator.fail_next(503, {"detail": "busy"}, headers={"Retry-After": "50"})
        stream = client.stream(MESSAGES)
        outcome = []
        reader = threading.Thread(target=lambda: outcome.append(list(stream)))
        reader.start()
        assert emulator.wait_until(lambda e: e.counts["failures"] == 1)
        stream.abort()
        reader.join(10)
        assert not reader.is_alive() and outcome == [[]]
        assert emulator.counts["conversations"] == sent + 1  # the retry was never sent


def test_abort_between_a_continuations_requests(emulator):
    emulator.max_words = 3
    with fakegpt.Client(emulator.url) as client:
        conversation = client.conversation(auto_continue=True)
        stream = conversation.stream("Tell me about streams")
        text = next(stream)
        stream.abort()
        assert list(stream) == [] and stream.text == text
        sent = emulator.counts["conversations"]
    assert sent == 1


# -- 4, 5. proxies and TLS ------------------------------------------------------------------------
def test_tls_with_a_self_signed_certificate(tls, emulator):
    with fakegpt.Client(tls.url) as client:
        assert client.complete(LONG) == long_responder("")
        abort_mid_stream_and_check(emulator, client)


def test_an_untrusted_certificate_is_refused_and_not_retried(ca, emulator, monkeypatch):
    with TlsFront(("127.0.0.1", emulator.port), server_context(ca)) as front, \
            fakegpt.Client(front.url) as client:
        with pytest.raises(fakegpt.APIConnectionError, match="certificate could not be verified"):
            client.complete(MESSAGES)
        assert front.accepted == 1


def test_through_an_http_connect_proxy(tls, emulator):
    with ConnectProxy() as proxy, fakegpt.Client(tls.url, proxy=proxy.url) as client:
        assert client.complete(LONG) == long_responder("")
        abort_mid_stream_and_check(emulator, client)
        assert proxy.tunnels and all(t == f"localhost:{tls.port}" for t in proxy.tunnels)


def test_through_an_https_proxy_tls_in_tls(trust, tls, emulator):
    with ConnectProxy(server_context(trust)) as proxy, fakegpt.Client(tls.url, proxy=proxy.url) as client:
        assert client.complete(LONG) == long_responder("")
        abort_mid_stream_and_check(emulator, client)


def test_cancelling_a_task_through_an_https_proxy_raises_cancelled_error(trust, tls, emulator):
    fakegpt.FakeGpt.url = tls.url

    async def main():
        with ConnectProxy(server_context(trust)) as proxy:
            emulator.stream_fault("stall", after_words=3, seconds=60)
            got = []

            async def consume():
                async for delta in fakegpt.FakeGpt.create_async_generator("gpt-3.5-turbo", LONG, proxy=proxy.url):
                    got.append(delta)

            task = asyncio.ensure_future(consume())
            while len("".join(got).split()) < 3:
                await asyncio.sleep(0.01)
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            return got

    got = asyncio.run(main())
    assert "".join(got).strip() == "word0 word1 word2"
    assert emulator.wait_until(lambda e: e.counts["disconnects"] == 1, timeout=10)


def test_through_a_socks5_proxy(emulator):
    with Socks5Proxy() as proxy, fakegpt.Client(emulator.url, proxy=proxy.url) as client:
        assert client.complete(LONG) == long_responder("")
        abort_mid_stream_and_check(emulator, client)
        assert proxy.tunnels


def test_environment_proxies_skip_loopback_but_an_explicit_proxy_applies(tls, emulator, monkeypatch):
    with ConnectProxy() as proxy:
        for name in ("HTTPS_PROXY", "HTTP_PROXY", "https_proxy", "http_proxy"):
            monkeypatch.setenv(name, proxy.url)
        monkeypatch.delenv("NO_PROXY", raising=False)
        monkeypatch.delenv("no_proxy", raising=False)
        with fakegpt.Client(emulator.url) as client:  # the loopback emulator: direct
            assert client.complete(MESSAGES) == long_responder("")
        with fakegpt.Client(tls.url, proxy="") as client:
            assert client.complete(MESSAGES) == long_responder("")
        assert proxy.accepted == 0
        with fakegpt.Client(tls.url, proxy=proxy.url) as client:  # asked for: used, loopback or not
            assert client.complete(MESSAGES) == long_responder("")
        assert proxy.tunnels == [f"localhost:{tls.port}"]


# -- 6. interpreter exit ---------------------------------------------------------------------------
def test_interpreter_exit_does_not_wait_for_an_open_async_generator(emulator):
    emulator.stream_fault("stall", after_words=2, seconds=120)
    script = textwrap.dedent(f"""
        import asyncio, fakegpt
        fakegpt.FakeGpt.url = {emulator.url!r}
        loop = asyncio.new_event_loop()
        agen = fakegpt.FakeGpt.create_async_generator("gpt-3.5-turbo", [{{"role": "user", "content": "hi"}}],
                                                      timeout=None)
        print(loop.run_until_complete(agen.__anext__()), flush=True)
        loop.close()   # the generator is left open, its worker blocked on the socket
    """)
    completed = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60,
                               env={**os.environ, "PYTHONPATH": os.getcwd()})
    assert completed.stdout.strip() == "word0", completed.stderr
    assert emulator.wait_until(lambda e: e.counts["disconnects"] == 1, timeout=10)


# -- 7. netrc ----------------------------------------------------------------------------------------
def test_netrc_never_replaces_the_bearer_header(emulator, tmp_path, monkeypatch):
    netrc = tmp_path / ".netrc"
    netrc.write_text("machine localhost login alice password netrc-secret\n"
                     "machine 127.0.0.1 login alice password netrc-secret\n")
    netrc.chmod(0o600)
    monkeypatch.setenv("NETRC", str(netrc))
    monkeypatch.setenv("HOME", str(tmp_path))
    with fakegpt.Client(emulator.url) as client:
        assert client.complete(MESSAGES) == long_responder("")
        token = client.access_token
    sent = [r for r in emulator.requests if r.path.startswith("/api/conversation")]
    assert sent and all(r.headers.get("Authorization") == f"Bearer {token}" for r in sent)
    assert not any("Basic" in (r.headers.get("Authorization") or "") for r in emulator.requests)


# -- 8. close() closes every socket -------------------------------------------------------------------
def test_close_closes_pooled_sockets_while_finished_streams_are_referenced(emulator):
    client = fakegpt.Client(emulator.url)
    streams = [client.stream(MESSAGES) for _ in range(6)]
    threads = [threading.Thread(target=lambda s=s: list(s)) for s in streams]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    assert all(s.finish_reason == "stop" for s in streams)
    assert emulator.open_connections >= 1
    client.close()
    assert emulator.wait_until(lambda e: e.open_connections == 0, timeout=10), emulator.open_connections
    assert [s.text for s in streams] == [long_responder("")] * 6


def test_nothing_is_left_behind(emulator):
    """break, abort, close and finished calls, then close(): no thread, no file descriptor left."""
    def fds():
        return len(os.listdir("/proc/self/fd"))

    def ending_all_ways():
        with fakegpt.Client(emulator.url) as client:
            assert client.complete(MESSAGES) == long_responder("")
            for delta in client.stream(LONG):
                break
            stream = client.stream(LONG)
            next(stream)
            stream.abort()
            assert list(stream) == []
            with client.stream(LONG) as stream:
                next(stream)
        assert emulator.wait_until(lambda e: e.open_connections == 0, timeout=10)

    ending_all_ways()  # the first round imports and caches what it needs
    threads, before = threading.active_count(), fds()
    for _ in range(3):
        ending_all_ways()
    assert threading.active_count() == threads
    assert fds() == before


def test_a_missing_ca_bundle_is_a_one_line_connection_error(tls, monkeypatch, tmp_path):
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(tmp_path / "missing.pem"))
    with fakegpt.Client(tls.url, max_retries=0) as client:
        with pytest.raises(fakegpt.APIConnectionError) as info:
            client.complete(MESSAGES)
    message = str(info.value)
    assert "GET /api/loads" in message and "\n" not in message and "OSError" not in message


@pytest.mark.parametrize("scheme", ["socks5", "socks5h"])
def test_a_socks_proxy_that_cannot_reach_the_server_names_the_server(scheme):
    import socket

    with socket.socket() as bound, Socks5Proxy() as proxy:  # the proxy answers 0x05, connection refused
        bound.bind(("127.0.0.1", 0))
        port = bound.getsockname()[1]
        with fakegpt.Client(f"http://127.0.0.1:{port}", proxy=proxy.url.replace("socks5h", scheme),
                            max_retries=0) as client:
            with pytest.raises(fakegpt.APIConnectionError) as info:
                client.complete(MESSAGES)
    assert type(info.value) is fakegpt.APIConnectionError
    assert str(info.value) == (f"GET /api/loads to 127.0.0.1:{port} failed: "
                               "the connection was refused (is the server running?)")


@pytest.mark.parametrize("scheme", ["http", "socks5", "socks5h"])
def test_a_refused_proxy_is_named_in_words_not_reprs(tls, scheme):
    import socket

    with socket.socket() as bound:  # bound, never listening: connecting is refused
        bound.bind(("127.0.0.1", 0))
        proxy = f"{scheme}://127.0.0.1:{bound.getsockname()[1]}"
        with fakegpt.Client(tls.url, proxy=proxy, max_retries=0) as client:
            with pytest.raises(fakegpt.APIConnectionError) as info:
                client.complete(MESSAGES)
    assert type(info.value) is fakegpt.APIConnectionError
    assert str(info.value) == (f"GET /api/loads to localhost:{tls.port} failed: could not use the proxy: "
                               "the connection was refused (is the proxy running?)")
