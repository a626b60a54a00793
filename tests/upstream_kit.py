"""A hand-written OpenAI-compatible model server on loopback, paced and
faulty on request, for the gateway's tests and bench (``/v1/models`` and a
streamed ``/v1/chat/completions``, as llama.cpp's server streams it).

    with PacedUpstream(pace=0.01) as upstream:
        upstream.fault("cut", after=2)    # the next reply: connection cut after 2 deltas
        ... Upstream(upstream.url) ...
        upstream.hangups                   # replies whose client hung up mid-stream
"""
import collections
import json
import select
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

MODEL = "paced-1"


def reply_deltas(messages):
    """The default reply: the last user message echoed, one delta per word, non-ASCII included."""
    last = next((m["content"] for m in reversed(messages) if m.get("role") == "user"), "")
    words = f"Écho ✓ {last} — done.".split(" ")
    return [word + " " for word in words[:-1]] + [words[-1]]


def expected_reply(prompt):
    return "".join(reply_deltas([{"role": "user", "content": prompt}]))


class PacedUpstream:
    """The server; :attr:`url` is its OpenAI base (``http://127.0.0.1:PORT/v1``).

    :param pace: seconds between two deltas.
    :param reply: ``reply(messages) -> [delta, ...]``.
    """

    def __init__(self, pace=0.0, reply=reply_deltas, api_key=None):
        self.pace, self.reply, self.api_key = pace, reply, api_key
        self.bodies = []  # every chat request's JSON body
        self.headers = []  # every request's headers
        self.paths = []  # every request's method and path
        self.hangups = 0  # streams whose client went away before the end
        self.hangup_times = []  # when each was noticed (time.monotonic(), the same clock in every process)
        self.connections = 0  # TCP connections accepted
        self.finished = 0  # streams sent to their end
        self.gate = None  # a threading.Event: after the first delta, wait for it
        self.finish_reason = "stop"
        self.changed = threading.Condition()
        self._faults = collections.deque()
        server = _Server(("127.0.0.1", 0), _Handler)
        server.upstream = self
        self._server = server
        self.url = f"http://127.0.0.1:{server.server_address[1]}/v1"
        self._thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._server.shutdown()
        self._server.server_close()

    def fault(self, kind, after=0, status=500, body=None, headers=None):
        """The next chat request: ``"status"`` (an error answer), ``"cut"`` (connection
        cut after *after* deltas), ``"silent"`` (no answer at all), ``"stall"``
        (nothing more after *after* deltas), ``"error"`` (an in-stream error event
        after *after* deltas), ``"no-done"`` (the body ends without [DONE] nor finish_reason), ``"close"`` (the
        connection closed, no answer), ``"html"`` (a 200 HTML page),
        ``"whole"`` (the reply as one JSON answer, finish_reason *status*);
        the next model listing: ``"list"`` (an error answer with *status*)."""
        self._faults.append((kind, after, status, body, headers or {}))

    def wait(self, predicate, timeout=10.0):
        with self.changed:
            return self.changed.wait_for(lambda: predicate(self), timeout)

    def _note(self, name):
        with self.changed:
            if name == "hangups":
                self.hangup_times.append(time.monotonic())
            setattr(self, name, getattr(self, name) + 1)
            self.changed.notify_all()


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 1024  # (set before the socket listens) many clients connecting at once

    def process_request(self, request, client_address):
        self.upstream._note("connections")
        super().process_request(request, client_address)


def _gone(sock, seconds):
    """Wait *seconds*; True as soon as the client has closed the connection."""
    deadline = time.monotonic() + seconds
    while True:
        left = deadline - time.monotonic()
        readable, _, _ = select.select([sock], [], [], max(0.0, left))
        if readable:
            try:
                if sock.recv(1, socket.MSG_PEEK) == b"":
                    return True
            except OSError:
                return True
            time.sleep(0.01)
        if left <= 0:
            return False


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def _json(self, status, obj, headers=None):
        data = json.dumps(obj).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(data)

    def _authorized(self):
        upstream = self.server.upstream
        with upstream.changed:
            upstream.headers.append(dict(self.headers.items()))
            upstream.paths.append(f"{self.command} {self.path}")
        if upstream.api_key and self.headers.get("Authorization") != f"Bearer {upstream.api_key}":
            self._json(401, {"error": {"message": "Incorrect API key provided", "type": "invalid_request_error"}})
            return False
        return True

    def do_GET(self):
        upstream = self.server.upstream
        if not self._authorized():
            return
        if upstream._faults and upstream._faults[0][0] == "list":
            _, _, status, body, headers = upstream._faults.popleft()
            self._json(status, body or {"error": {"message": f"emulated {status}"}}, headers)
            return
        self._json(200, {"object": "list", "data": [{"id": MODEL, "object": "model"}]})

    def do_POST(self):
        upstream = self.server.upstream
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        with upstream.changed:
            upstream.bodies.append(body)
            upstream.changed.notify_all()
        if not self._authorized():
            return
        kind, after, status, error_body, headers = upstream._faults.popleft() if upstream._faults else (None, 0, 0,
                                                                                                      None, {})
        if kind == "status":
            self._json(status, error_body or {"error": {"message": f"emulated {status}"}}, headers)
            return
        if kind == "whole":  # a server that ignores stream=true
            reply = "".join(upstream.reply(body["messages"]))
            self._json(200, {"object": "chat.completion", "choices": [
                {"index": 0, "message": {"role": "assistant", "content": reply}, "finish_reason": status or "stop"}]})
            return
        if kind == "html":  # a login page, or a proxy's
            data = b"<!doctype html><title>Sign in</title>"
            self.send_response(200)
            self.send_header("Content-Type", "text/html")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)
            return
        if kind == "close":  # the connection closed without an answer (a kept-alive one the server dropped)
            self.close_connection = True
            self.connection.shutdown(socket.SHUT_RDWR)
            return
        if kind == "silent":
            if _gone(self.connection, 3600):
                upstream._note("hangups")
            self.close_connection = True
            return
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        deltas = upstream.reply(body["messages"])
        sock = self.connection

        def send(obj):
            data = b"data: " + (obj if isinstance(obj, bytes) else json.dumps(obj).encode()) + b"\n\n"
            sock.sendall(b"%x\r\n%s\r\n" % (len(data), data))

        def chunk(content=None, finish=None):
            delta = {"content": content} if content is not None else {}
            return {"id": "chatcmpl-1", "object": "chat.completion.chunk", "model": body["model"],
                    "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}

        try:
            send(chunk(""))  # a role-only first chunk, as servers send
            for index, delta in enumerate(deltas):
                if kind in ("cut", "stall", "error") and index == after:
                    if kind == "cut":
                        sock.shutdown(socket.SHUT_RDWR)
                        self.close_connection = True
                        return
                    if kind == "error":
                        send({"error": {"message": "the model crashed", "type": "server_error"}})
                        send(b"[DONE]")
                        sock.sendall(b"0\r\n\r\n")
                        return
                    if _gone(sock, 3600):
                        upstream._note("hangups")
                    self.close_connection = True
                    return
                send(chunk(delta))
                if index == 0 and upstream.gate is not None:
                    while not upstream.gate.wait(0.05):
                        if _gone(sock, 0):
                            upstream._note("hangups")
                            self.close_connection = True
                            return
                elif upstream.pace and _gone(sock, upstream.pace):
                    upstream._note("hangups")
                    self.close_connection = True
                    return
            if kind != "no-done":
                send(chunk(finish=upstream.finish_reason))
                send({"id": "chatcmpl-1", "choices": [], "usage": {"completion_tokens": len(deltas)}})
                send(b"[DONE]")
            sock.sendall(b"0\r\n\r\n")
            upstream._note("finished")
        except OSError:
            upstream._note("hangups")
            self.close_connection = True
