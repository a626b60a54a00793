"""fakegpt._body: a streamed body's bytes (Body), the checks before reading
it, and the errors of a failed read. Bodies come from real loopback sockets."""
import socket
import threading

import pytest
import requests
import urllib3

import fakegpt
from fakegpt._body import Body, body_error, check_stream_response, undecodable

from .netkit import _Listener, read_request

HEAD = b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n"


def chunk(data):
    return b"%x\r\n%s\r\n" % (len(data), data)


class OneAnswer(_Listener):
    """Answers every request with *answer* (bytes), then calls *then(conn)*."""

    def __init__(self, answer, then=None):
        super().__init__()
        self.answer, self.then = answer, then

    def handle(self, conn):
        if read_request(conn) is not None:
            conn.sendall(self.answer)
            if self.then is not None:
                self.then(conn)
            while conn.recv(65536):  # until the client hangs up
                pass


def body_of(server):
    response = requests.get(f"http://127.0.0.1:{server.port}/", stream=True, timeout=(5, 30), allow_redirects=False)
    return Body(response)


def read_all(body):
    data = b""
    while True:
        piece = body.read()
        if not piece:
            return data
        data += piece


def test_a_chunked_body_is_read_chunk_by_chunk_and_decoded():
    with OneAnswer(HEAD + chunk(b"data: a\n\n") + chunk(b"data: b\n\n") + b"0\r\n\r\n") as server:
        body = body_of(server)
        assert body.chunked and body.read() == b"data: a\n\n" and body.read() == b"data: b\n\n"
        assert body.read() == b""
        body.close()


def test_drain_keeps_a_connection_whose_body_ends_at_once():
    with OneAnswer(HEAD + chunk(b"data: [DONE]\n\n"), then=lambda conn: conn.sendall(b"0\r\n\r\n")) as server:
        body = body_of(server)
        assert body.read() == b"data: [DONE]\n\n"
        assert body.drain() is True
        body.close()


def test_drain_gives_up_on_bytes_trickled_without_end_in_bounded_total_time():
    stop = threading.Event()

    def trickle(conn):
        try:
            while not stop.is_set():  # each read of the drain gets a newline at once: only a total bound ends it
                conn.sendall(chunk(b"\n") * 64)
        except OSError:
            pass

    with OneAnswer(HEAD + chunk(b"data: [DONE]\n\n"), then=trickle) as server:
        body = body_of(server)
        assert body.read() == b"data: [DONE]\n\n"
        assert body.drain() is False  # (the old per-read timeout never expired: this never returned)
        body.close()
        stop.set()
        assert server.wait_closed(1)


@pytest.mark.skipif(int(urllib3.__version__.split(".")[0]) < 2,
                    reason="urllib3 1.26 reads close-delimited bodies in blocks: read() waits for the end")
def test_drain_of_a_close_delimited_body_is_not_attempted():
    answer = b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nConnection: close\r\n\r\ndata: [DONE]\n\n"
    with OneAnswer(answer) as server:
        body = body_of(server)
        assert not body.chunked and body.read() == b"data: [DONE]\n\n" and body.drain() is False
        body.close()


def test_untimed_reads_lift_the_socket_timeout():
    with OneAnswer(HEAD + chunk(b": hi\n\n")) as server:
        body = body_of(server)
        assert body.read() == b": hi\n\n"
        body.untimed_reads()
        assert body.connection.sock.gettimeout() is None
        body.close()


@pytest.mark.parametrize("error, kind, text", [
    (urllib3.exceptions.ReadTimeoutError(None, "/", "read timed out"), fakegpt.APITimeoutError, "stalled"),
    (socket.timeout("timed out"), fakegpt.APITimeoutError, "stalled"),
    (urllib3.exceptions.ProtocolError("Connection broken"), fakegpt.IncompleteStreamError, "lost mid-stream"),
    (ConnectionResetError(104, "reset"), fakegpt.IncompleteStreamError, "lost mid-stream"),
    (urllib3.exceptions.DecodeError("Received response with content-encoding: gzip, but failed to decode it."),
     fakegpt.StreamError, "could not decode the stream: received response with content-encoding: gzip"),
    (RuntimeError("?"), fakegpt.StreamError, "could not read the stream: RuntimeError"),
])
def test_body_error_names_what_failed(error, kind, text):
    failure = body_error(error)
    assert type(failure) is kind and text in str(failure)


def response_with(status=200, headers=None, body=b""):
    answer = b"HTTP/1.1 %d X\r\nContent-Length: %d\r\n" % (status, len(body))
    answer += b"".join(b"%s: %s\r\n" % (k.encode(), v.encode()) for k, v in (headers or {}).items()) + b"\r\n"
    return OneAnswer(answer + body)


def test_check_stream_response_refuses_a_redirect_a_page_and_an_unknown_encoding():
    with response_with(302, {"Location": "https://elsewhere.test/x"}) as server:
        with pytest.raises(fakegpt.APIStatusError, match=r"redirected \(HTTP 302 to elsewhere.test\)"):
            check_stream_response(body_of(server).response)
    with response_with(200, {"Content-Type": "text/html"}, b"<title>Just a moment</title>") as server:
        with pytest.raises(fakegpt.StreamError, match="expected an event stream, got text/html"):
            check_stream_response(body_of(server).response)
    with response_with(200, {"Content-Type": "text/event-stream", "Content-Encoding": "compress"}) as server:
        response = body_of(server).response
        assert "Content-Encoding: compress" in undecodable(response)
        with pytest.raises(fakegpt.StreamError, match="cannot be decoded here"):
            check_stream_response(response)
    with response_with(200, {"Content-Type": "text/event-stream", "Content-Encoding": "utf-8"}) as server:
        response = body_of(server).response
        assert undecodable(response) is None  # a label that is no compression
        check_stream_response(response)
        response.close()
