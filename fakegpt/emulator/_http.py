"""The emulator's HTTP server: routing, the four endpoints, and streaming
with faults. Every request is answered: malformed ones with a 4xx JSON
body, never a crash or a hang."""
from __future__ import annotations

import json
import logging
import socket
import sys
import time
from http import HTTPStatus
from http.cookies import SimpleCookie
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING, Any, Dict, Optional, Set
from urllib.parse import parse_qs, urlsplit

from .._watchdog import cancel_timer, start_timer
from ._conversations import ReplyFailed, RequestError
from ._hangup import HangUp, watch
from ._render import WORD, error_frame, render
from ._writer import Hangup as _Hangup, Writer as _Writer

if TYPE_CHECKING:  # pragma: no cover
    from . import Emulator

__all__ = ["Server"]

logger = logging.getLogger("fakegpt.emulator")
#: One line per request answered (``fakegpt serve`` prints them on stderr).
access_logger = logging.getLogger("fakegpt.emulator.access")

#: What a log line shows of a client's request line, at most (the stdlib reads up to 64 KiB of it).
MAX_LOGGED_LINE = 1000
# Control characters (C0, DEL, C1) as \xNN, and the backslash doubled so that
# a client cannot write an escape that looks like one: no terminal sequence
# from a client reaches the operator's terminal (as the stdlib's log_message escapes).
_ESCAPES = {c: f"\\x{c:02x}" for c in [*range(0x20), *range(0x7F, 0xA0)]}
_ESCAPES[ord("\\")] = "\\\\"
_ESCAPE_TABLE = str.maketrans(_ESCAPES)


def printable(text: str, limit: int = MAX_LOGGED_LINE) -> str:
    """*text* from a client, safe to print: control characters escaped, cut to *limit* characters."""
    shown = text[:limit].translate(_ESCAPE_TABLE)
    return shown[:limit] + "..." if len(shown) > limit or len(text) > limit else shown


_CHALLENGE = (
    b"<!DOCTYPE html><html lang=\"en-US\"><head><title>Just a moment...</title></head>"
    b"<body><h1>Checking if the site connection is secure</h1>cf-challenge</body></html>"
)
_HOME = b"<!doctype html><html><head><title>fakegpt emulator</title></head><body>fakegpt emulator</body></html>"


class Server(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False
    allow_reuse_address = True
    #: The listen backlog (socketserver's default is 5): hundreds of clients
    #: connecting at once must not have their SYNs dropped and retried seconds later.
    request_queue_size = 1024

    def __init__(self, address: Any, emulator: "Emulator") -> None:
        self.emulator = emulator
        self.open_sockets: Set[socket.socket] = set()
        super().__init__(address, _Handler)

    def process_request(self, request: Any, client_address: Any) -> None:
        request.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)  # each event leaves at once
        self.open_sockets.add(request)
        self.emulator._count("connections")
        super().process_request(request, client_address)

    def shutdown_request(self, request: Any) -> None:
        super().shutdown_request(request)
        with self.emulator._changed:
            self.open_sockets.discard(request)
            self.emulator._changed.notify_all()

    def handle_error(self, request: Any, client_address: Any) -> None:
        """A client resetting an idle keep-alive connection is normal: log it, never print it."""
        error = sys.exc_info()[1]
        if isinstance(error, OSError):
            logger.debug("connection from %s ended: %s", client_address, error)
        else:  # pragma: no cover - a bug in the handler
            logger.exception("emulator error on a connection from %s", client_address)

    def hang_up_all(self) -> None:
        for sock in list(self.open_sockets):
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "fakegpt-emulator"
    sys_version = ""
    server: Server
    _head_timer: Optional[object] = None

    def handle_one_request(self) -> None:
        """One request; its line and headers (or an idle connection's next one)
        within :attr:`Limits.head_seconds <fakegpt.emulator.Limits.head_seconds>`
        in all, else the connection is shut down and its thread freed."""
        seconds = self.server.emulator.limits.head_seconds
        if seconds is None:
            super().handle_one_request()
            return
        self._head_timer = start_timer(seconds, self._head_too_late)
        try:
            super().handle_one_request()
        finally:
            self._head_read()

    def _head_too_late(self) -> None:
        """(The watchdog's thread.) A thread blocked reading the head returns at once, with nothing."""
        try:
            self.connection.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass

    def _head_read(self) -> bool:
        """The head is read: stop its timer; False if it fired (the connection is shut down)."""
        timer, self._head_timer = self._head_timer, None
        if timer is not None and cancel_timer(timer):
            self.close_connection = True
            return False
        return True

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 (the stdlib's name)
        if logger.isEnabledFor(logging.DEBUG):
            logger.debug("%s %s", self.client_address[0], printable(format % args))

    def log_request(self, code: Any = "-", size: Any = "-") -> None:
        """One INFO line per answer on the ``fakegpt.emulator.access`` logger (``fakegpt serve`` shows them)."""
        status = code.value if isinstance(code, HTTPStatus) else code
        access_logger.info('%s "%s" %s %s', self.client_address[0], printable(self.requestline), status, size)

    # -- answers -----------------------------------------------------------
    def send_error(self, code: int, message: Optional[str] = None, explain: Optional[str] = None) -> None:
        """The stdlib's malformed-request answers, as JSON."""
        self.close_connection = True
        if self.request_version == "HTTP/0.9":  # an unparsable request line: still answer with a status line
            self.request_version = "HTTP/1.1"
        try:
            self._answer(code, {"detail": message or self.responses.get(code, ("Error",))[0]})
        except OSError:
            pass

    def _answer(self, status: int, body: Any, headers: Optional[Dict[str, str]] = None) -> None:
        content_type = "application/json"
        if isinstance(body, (dict, list)):
            data = json.dumps(body).encode()
        elif isinstance(body, str):
            data = body.encode()
            content_type = "text/html; charset=utf-8" if body.lstrip().startswith("<") else "text/plain; charset=utf-8"
        else:
            data = bytes(body)
            content_type = "text/html; charset=utf-8" if data.lstrip().startswith(b"<") else "application/octet-stream"
        self.send_response(status)
        headers = dict(headers or {})
        headers.setdefault("Content-Type", content_type)
        for name, value in headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(data)))
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)

    # -- routing -----------------------------------------------------------
    def do_GET(self) -> None:
        self._route()

    def do_POST(self) -> None:
        self._route()

    def do_HEAD(self) -> None:
        self._route()

    def __getattr__(self, name: str) -> Any:
        if name.startswith("do_"):  # PUT, DELETE, ...: 405, not the stdlib's 501 page
            return self._route
        raise AttributeError(name)

    def _route(self) -> None:
        emulator = self.server.emulator
        path = urlsplit(self.path).path
        if not self._head_read():  # (a head that came in pieces past the bound: nothing is answered)
            logger.debug("%s: the request's head took too long", self.client_address[0])
            return
        try:
            self._check_headers()
            body = self._read_body()
            emulator._record(self.command, self.path, self.headers, body)
            routes = {
                "/": ("GET", self._home),
                "/api/loads": ("GET", self._loads),
                "/auth/login": ("POST", self._login),
                "/api/auth/session": ("GET", self._session),
                "/api/conversation": ("POST", self._conversation),
            }
            if path not in routes:
                raise RequestError(404, "Not Found")
            method, handler = routes[path]
            if self.command not in (method, "HEAD" if method == "GET" else method):
                raise RequestError(405, "Method Not Allowed")
            handler(body)
        except RequestError as error:
            self._answer(error.status, {"detail": error.detail}, error.headers)
        except _Hangup:
            self.close_connection = True
            emulator._count("disconnects")
        except OSError:
            self.close_connection = True
        except Exception as error:  # a bug, or a custom responder failing: still an answer
            logger.exception("emulator error on %s %s", self.command, self.path)
            self.close_connection = True
            try:
                self._answer(500, {"detail": f"emulator error: {type(error).__name__}: {error}"})
            except OSError:
                pass

    def _check_headers(self) -> None:
        limit = self.server.emulator.limits.header_bytes
        if limit is not None and sum(len(k) + len(v) + 4 for k, v in self.headers.items()) > limit:
            self.close_connection = True
            raise RequestError(431, f"request headers larger than {limit:,} bytes")

    def _read_body(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            self.close_connection = True
            raise RequestError(411, "send the body with a Content-Length")
        length = self.headers.get("Content-Length")
        if length is None:
            return b""
        if not length.isdigit():
            self.close_connection = True
            raise RequestError(400, "bad Content-Length")
        if int(length) > self.server.emulator.limits.body_bytes:
            self.close_connection = True
            raise RequestError(413, "request body too large")
        # The whole body within the bound (a client trickling it a byte at a time
        # does not reset it); then no timeout, while the reply streams.
        seconds = self.server.emulator.limits.body_seconds
        deadline, data = time.monotonic() + seconds, bytearray()
        try:
            while len(data) < int(length):
                left = deadline - time.monotonic()
                if left <= 0:
                    raise socket.timeout()
                self.connection.settimeout(left)
                chunk = self.rfile.read1(min(int(length) - len(data), 65536))
                if not chunk:
                    break
                data += chunk
        except socket.timeout:
            self.close_connection = True
            raise RequestError(408, f"the request body did not arrive within {seconds:g} s") from None
        finally:
            self.connection.settimeout(None)
        if len(data) < int(length):
            self.close_connection = True
            raise RequestError(400, "request body shorter than its Content-Length")
        return bytes(data)

    # -- endpoints ---------------------------------------------------------
    def _home(self, body: bytes) -> None:
        self._answer(200, _HOME)

    def _loads(self, body: bytes) -> None:
        emulator = self.server.emulator
        emulator._count("loads")
        if emulator.challenge:
            self._answer(403, _CHALLENGE, {"Content-Type": "text/html; charset=UTF-8", "cf-mitigated": "challenge"})
            return
        self._answer(200, {"loads": emulator._loads()})

    def _login(self, body: bytes) -> None:
        form = parse_qs(body.decode("utf-8", "replace"))
        token_key = (form.get("token_key") or [""])[0]
        password = (form.get("session_password") or [""])[0]
        credential = self.server.emulator._login(token_key, password)
        self._answer(302, b"", {
            "Location": "/?v=2",
            "Set-Cookie": f"credential={credential}; Path=/; HttpOnly; SameSite=Lax{self.server.emulator.cookie_attributes}",
            "Content-Type": "text/plain",
        })

    def _session(self, body: bytes) -> None:
        cookies = SimpleCookie()
        try:
            cookies.load(self.headers.get("Cookie", ""))
        except Exception:
            cookies = SimpleCookie()
        morsel = cookies.get("credential")
        self._answer(200, self.server.emulator._session(morsel.value if morsel else None))

    def _conversation(self, body: bytes) -> None:
        emulator = self.server.emulator
        emulator._count("conversations")
        canned = emulator._next_failure()
        if canned is not None:
            status, canned_body, headers = canned
            self._answer(status, canned_body, headers)
            return
        auth = self.headers.get("X-Authorization") or self.headers.get("Authorization") or ""
        owner = emulator._authorize(auth[7:].strip() if auth[:7].lower() == "bearer " else "")
        try:
            request = json.loads(body)
        except ValueError:
            raise RequestError(400, "the body is not valid JSON") from None
        if not isinstance(request, dict):
            raise RequestError(400, "the body must be a JSON object")
        encodings = request.get("supported_encodings")
        fmt = "v1" if emulator.format == "v1" or (isinstance(encodings, list) and "v1" in encodings) else "cumulative"
        hangup, stop_watching = HangUp(), None
        if emulator._wants_hangup():  # from now on: a hang-up reaches the responder at once
            stop_watching = watch(self.connection, hangup)
        emulator._busy(owner[0], 1)
        turn = None
        try:
            turn = emulator._plan(owner, request, hangup)
            self._stream(turn, fmt)
        finally:
            emulator._busy(owner[0], -1)
            if stop_watching is not None:
                stop_watching()
            if turn is not None and turn.stream is not None:
                close = getattr(turn.stream, "close", None)
                if close is not None:
                    close()  # the responder's deltas end now (e.g. its request to a model server)

    # -- streaming ---------------------------------------------------------
    def _stream(self, turn: Any, fmt: str) -> None:
        emulator = self.server.emulator
        fault = emulator._next_fault() if turn.stream is None else None  # (a streamed reply breaks by itself)
        chunked = emulator.chunked
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream; charset=utf-8")
        self.send_header("Cache-Control", "no-cache")
        if chunked:
            self.send_header("Transfer-Encoding", "chunked")
        else:
            self.send_header("Connection", "close")
            self.close_connection = True
        if emulator.compress:
            self.send_header("Content-Encoding", emulator.compress)
        self.end_headers()
        emulator._count("streams")
        writer = _Writer(self, chunked, emulator.newline, emulator.split, emulator.compress)
        if turn.stream is not None:
            self._stream_deltas(turn, fmt, writer)
            return
        delay, words = emulator.delay, 0
        if not delay and fault is None and not emulator.split:
            # Nothing to wait for between events: render the whole body, then
            # send it at once, so the emulator is never busy while a client reads.
            writer.hold = True
        for kind, frame in render(turn, fmt):
            if fault and fault.kind != "hold" and words >= fault.after_words:
                if fault.kind == "error":
                    writer.send(error_frame(turn, fault.message, fmt))
                    writer.send(b"data: [DONE]\n\n")
                    break
                if fault.kind == "truncate":
                    break
                if fault.kind == "drop":
                    writer.flush()
                    self.close_connection = True
                    self.connection.shutdown(socket.SHUT_RDWR)
                    return
                if fault.kind == "stall":
                    writer.flush()
                    if not self._pause(fault.seconds):
                        raise _Hangup()
                    fault = None
            writer.send(frame)
            if kind == WORD:
                words += 1
                if delay:
                    writer.flush()
                    if not self._pause(delay):
                        raise _Hangup()
        if fault and fault.kind == "hold":
            writer.flush()
            if not self._pause(fault.seconds):
                raise _Hangup()
        writer.finish()

    def _stream_deltas(self, turn: Any, fmt: str, writer: _Writer) -> None:
        """A streamed reply: every delta leaves as soon as the responder gives it."""
        frames = render(turn, fmt)
        try:
            for kind, frame in frames:
                writer.send(frame)
                if kind == WORD:
                    writer.flush()
        except _Hangup:
            raise
        except Exception as error:  # noqa: BLE001 - the reply broke off: an in-stream error, the text so far kept
            if isinstance(error, ReplyFailed):
                message = str(error)
            else:
                logger.exception("the responder failed mid-reply")
                message = f"emulator error: {type(error).__name__}: {error}"
            writer.send(error_frame(turn, message, fmt))
            writer.send(b"data: [DONE]\n\n")
        finally:
            frames.close()
        writer.finish()

    def _pause(self, seconds: float) -> bool:
        """Wait *seconds*; False as soon as the client hangs up (or the emulator stops)."""
        deadline = time.monotonic() + seconds
        sock = self.connection
        try:
            while True:
                left = deadline - time.monotonic()
                if left <= 0:
                    return True
                if self.server.emulator._stopping.is_set():
                    return False
                sock.settimeout(min(left, 0.25))
                try:
                    data = sock.recv(1, socket.MSG_PEEK)
                except socket.timeout:
                    continue
                if not data:
                    return False
                time.sleep(min(left, 0.01))  # the client sent something; ignore it
        except OSError:
            return False
        finally:
            try:
                sock.settimeout(None)
            except OSError:
                pass
