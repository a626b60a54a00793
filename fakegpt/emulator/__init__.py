"""An embedded emulator of the shared-account service, on loopback.

It serves the whole protocol (``/api/loads``, ``/auth/login``,
``/api/auth/session``, ``/api/conversation`` in both stream formats) with
deterministic replies (or, given an upstream, a model server's replies: see
:mod:`fakegpt.gateway`), and lets a test break it on purpose::

    >>> import fakegpt
    >>> from fakegpt.emulator import Emulator
    >>> with Emulator() as emulator:
    ...     emulator.fail_next(429, headers={"Retry-After": "0"})
    ...     with fakegpt.Client(emulator.url) as client:
    ...         print(client.complete([{"role": "user", "content": "hi"}])[:21])
    ...     print(emulator.counts["conversations"], emulator.counts["logins"])
    Hello! You said "hi".
    2 1

Its URL uses ``localhost``: aiohttp's default cookie jar ignores cookies from
IP-literal hosts, which would break the original gpt4free client.
"""
from __future__ import annotations

import collections
import secrets
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Deque, Dict, Iterable, List, Mapping, Optional, Tuple, Union

from ._conversations import (
    Conversations, ReplyFailed, RequestError, default_responder, responder_keywords, responder_wants_history,
)
from ._hangup import HangUp
from ._http import Server
from ._limits import GATEWAY_LIMITS, Limits
from ._render import Turn

__all__ = ["Emulator", "Fault", "GATEWAY_LIMITS", "HangUp", "Limits", "RecordedRequest", "ReplyFailed",
           "RequestError", "default_responder"]

Body = Union[Mapping[str, Any], List[Any], str, bytes, None]
_FORMATS = ("cumulative", "v1")
_FAULTS = ("error", "truncate", "drop", "stall", "hold")
_DEFAULT_BODIES: Dict[int, Any] = {
    401: {"detail": {"code": "token_expired", "message": "Your authentication token has expired."}},
    403: {"detail": "Only one message at a time. Please allow any other responses to complete."},
    429: {"detail": "Too many requests in 1 hour. Try again later."},
}


@dataclass(frozen=True)
class RecordedRequest:
    """One request the emulator received (its repr leaves out the headers and
    the body: they hold bearer tokens and session passwords)."""

    method: str
    path: str  # with the query string
    headers: Dict[str, str] = field(repr=False)
    body: bytes = field(repr=False)
    time: float


@dataclass(frozen=True)
class Fault:
    """An in-stream fault for a coming conversation call (see :meth:`Emulator.stream_fault`)."""

    kind: str
    after_words: int = 3
    message: str = "Something went wrong. If this issue persists please contact us."
    seconds: float = 3600.0


class Emulator:
    """The emulator: start it (a context manager does), then point a client at :attr:`url`.

    :param host: the interface to listen on (loopback by default).
    :param port: ``0`` picks a free port.
    :param delay: seconds between two words of a reply (``0`` streams at full speed).
    :param format: ``"cumulative"`` (format A) unless the request asks for
        ``supported_encodings: ["v1"]``; ``"v1"`` always streams format B.
    :param responder: ``responder(prompt) -> str`` (or ``(prompt, history)``)
        writes the replies; the default is :func:`default_responder`. It may
        return an iterable of ``str`` deltas instead (e.g. be a generator):
        each is sent as one event as soon as it comes, in both formats. A
        generator's return value (or the iterator's ``finish`` attribute)
        says how the reply ended: ``"length"`` or ``"max_tokens"`` ends it
        with ``finish_details.type = "max_tokens"``, anything else with
        ``"stop"``; raising :class:`ReplyFailed` mid-way sends its message as
        an in-stream error. A responder taking a ``hangup`` keyword gets a
        :class:`HangUp` that is set as soon as the client hangs up (before
        the next write fails); one taking ``partial`` can continue a streamed
        reply (``action: "continue"``): it is called with the same prompt
        and history, and ``partial=`` the text sent so far. *delay*,
        *max_words* and :meth:`stream_fault` apply to replies returned whole.
    :param upstream: a model server (:class:`fakegpt.gateway.Upstream`)
        writing the replies: it replaces *responder*, and *limits* default to
        :data:`GATEWAY_LIMITS`.
    :param tokens: how many healthy shared tokens to list.
    :param token_keys: the shared tokens to list (instead of *tokens* random ones).
    :param limits: what is kept and accepted (:class:`Limits`; default: no limits).
    :param token_ttl: seconds an access token lives (``None``: forever).
    :param chunked: stream with chunked transfer encoding, or (``False``) as
        a close-delimited body.
    :param newline: the line end of events: ``"\\n"``, ``"\\r\\n"`` or ``"\\r"``.
    :param split: write every event in pieces of this many bytes.
    :param max_words: end longer replies after this many words with
        ``finish_details.type = "max_tokens"`` (the rest comes with ``continue``).
    :param cookie_attributes: extra attributes of the login cookie, e.g.
        ``"; Secure"`` to act like a server that marks it for https only.
    :param compress: ``"gzip"`` or ``"deflate"``: compress reply streams
        (``Content-Encoding``) as a reverse proxy or CDN would, flushed at
        every event.

    Every parameter is also an attribute that can be changed while it runs.
    """

    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        delay: float = 0.0,
        format: str = "cumulative",  # noqa: A002 (the protocol's word)
        responder: Optional[Callable[..., str]] = None,
        tokens: int = 3,
        token_ttl: Optional[float] = None,
        chunked: bool = True,
        newline: str = "\n",
        split: Optional[int] = None,
        max_words: Optional[int] = None,
        cookie_attributes: str = "",
        compress: Optional[str] = None,
        upstream: Any = None,
        token_keys: Optional[Iterable[str]] = None,
        limits: Optional[Limits] = None,
    ) -> None:
        if format not in _FORMATS:
            raise ValueError(f"format must be one of {_FORMATS}, not {format!r}")
        if newline not in ("\n", "\r\n", "\r"):
            raise ValueError("newline must be '\\n', '\\r\\n' or '\\r'")
        if delay < 0:
            raise ValueError("delay must be 0 or more seconds")
        self.host, self.port = host, port
        self.delay, self.format, self.token_ttl = delay, format, token_ttl
        self.chunked, self.newline, self.split, self.max_words = chunked, newline, split, max_words
        self.cookie_attributes = cookie_attributes
        if compress not in (None, "gzip", "deflate"):
            raise ValueError("compress must be None, 'gzip' or 'deflate'")
        #: Compress reply streams (``Content-Encoding``), flushed at every event.
        self.compress = compress
        #: The model server writing the replies, if any.
        self.upstream = upstream
        self.responder = upstream.respond if upstream is not None else (responder or default_responder)
        self.limits = limits if limits is not None else (GATEWAY_LIMITS if upstream is not None else Limits())
        self._calling_known: Optional[Tuple[Callable[..., Any], bool, Tuple[str, ...]]] = None
        self.challenge = False  # /api/loads answers with a Cloudflare challenge page
        self.counts: "collections.Counter[str]" = collections.Counter()
        self._changed = threading.Condition()
        self._tokens: Dict[str, Dict[str, Any]] = {}
        self._credentials: Dict[str, Tuple[str, str]] = {}
        self._access: Dict[str, Dict[str, Any]] = {}
        self._conversations = Conversations(self.limits.conversations, self.limits.conversation_age,
                                            self.limits.conversation_bytes, self.limits.reply_chars)
        self._failures: Deque[Tuple[int, Body, Dict[str, str]]] = collections.deque()
        self._faults: Deque[Fault] = collections.deque()
        self._requests: Deque[RecordedRequest] = collections.deque(maxlen=10000)
        self._logged = 0  # bytes of bodies and headers in self._requests
        self._stopping = threading.Event()
        self._server: Optional[Server] = None
        self._thread: Optional[threading.Thread] = None
        if token_keys is not None:
            for key in token_keys:
                self._tokens[key] = {"count": 0, "dead": None, "active": 0}
        else:
            for _ in range(tokens):
                self.add_token()

    # -- lifecycle -----------------------------------------------------------
    def start(self) -> "Emulator":
        """Listen and serve in a background thread; returns the emulator."""
        if self._server is not None:
            return self
        self._stopping.clear()
        self._server = Server((self.host, self.port), self)
        self.port = self._server.server_address[1]
        self._thread = threading.Thread(target=self._server.serve_forever, name=f"fakegpt-emulator-{self.port}",
                                        kwargs={"poll_interval": 0.05}, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving and hang up every open connection."""
        server, self._server = self._server, None
        if server is None:
            return
        self._stopping.set()
        server.shutdown()
        server.hang_up_all()
        server.server_close()
        if self._thread is not None:
            self._thread.join(5)

    def __enter__(self) -> "Emulator":
        return self.start()

    def __exit__(self, *exc_info: Any) -> None:
        self.stop()

    @property
    def url(self) -> str:
        """``http://localhost:<port>`` (``localhost``, for aiohttp's cookie jar)."""
        if self._server is None:
            raise RuntimeError("the emulator is not running: call start() or use it in a with block")
        host = "localhost" if self.host in ("127.0.0.1", "localhost", "0.0.0.0", "") else self.host
        return f"http://{host}:{self.port}"

    def __repr__(self) -> str:
        where = self.url if self._server is not None else "stopped"
        return f"<fakegpt.emulator.Emulator {where} format={self.format!r} delay={self.delay}>"

    # -- shared tokens -------------------------------------------------------
    @property
    def tokens(self) -> List[str]:
        """The token ids ``/api/loads`` lists."""
        with self._changed:
            return list(self._tokens)

    def add_token(self, *, count: int = 0, dead: Optional[str] = None) -> str:
        """List one more shared token; *dead* is ``None``, ``"login"`` (login
        rejected) or ``"session"`` (login works, the session is ``{}``)."""
        if dead not in (None, "login", "session"):
            raise ValueError("dead must be None, 'login' or 'session'")
        token_id = secrets.token_hex(16)
        with self._changed:
            self._tokens[token_id] = {"count": count, "dead": dead, "active": 0}
        return token_id

    def kill_token(self, token_id: Optional[str] = None, how: str = "login") -> None:
        """Make one token (or, with ``None``, every token) dead; its access tokens stop working."""
        if how not in ("login", "session"):
            raise ValueError("how must be 'login' or 'session'")
        with self._changed:
            for tid in [token_id] if token_id else list(self._tokens):
                self._tokens[tid]["dead"] = how
            for info in self._access.values():
                if token_id is None or info["token_id"] == token_id:
                    info["revoked"] = True

    def clear_tokens(self) -> None:
        """Empty the token list."""
        with self._changed:
            self._tokens.clear()

    def expire_access_tokens(self) -> None:
        """Every access token issued so far now gets 401 ``token_expired``."""
        with self._changed:
            for info in self._access.values():
                info["expired"] = True

    # -- faults --------------------------------------------------------------
    def fail_next(self, status: int, body: Body = None, *, headers: Optional[Mapping[str, str]] = None,
                  times: int = 1) -> None:
        """Answer the next *times* conversation calls with *status* (and *body*,
        a dict for JSON or a str; a fitting default otherwise)."""
        if body is None:
            body = _DEFAULT_BODIES.get(status) or {"detail": f"emulated failure (HTTP {status})"}
        with self._changed:
            self._failures.extend([(status, body, dict(headers or {}))] * times)

    def stream_fault(self, kind: str, *, after_words: int = 3, message: Optional[str] = None,
                     seconds: float = 3600.0, times: int = 1) -> None:
        """Break the next *times* streamed replies after *after_words* words:

        ``"error"`` an in-stream ``{"error": message}`` then ``[DONE]``;
        ``"truncate"`` the body ends (cleanly) without ``[DONE]``;
        ``"drop"`` the connection is cut mid-body;
        ``"stall"`` nothing is sent for *seconds* (until the client hangs up);
        ``"hold"`` the reply and ``[DONE]`` are sent, then the body is held
        open for *seconds*.

        Faults apply to replies the responder returns whole (a ``str``); a
        streamed reply breaks by itself (its responder raises
        :class:`ReplyFailed`, or stops yielding).
        """
        if kind not in _FAULTS:
            raise ValueError(f"kind must be one of {_FAULTS}")
        fault = Fault(kind, after_words, message or Fault.message, seconds)
        with self._changed:
            self._faults.extend([fault] * times)

    # -- observation ---------------------------------------------------------
    @property
    def open_connections(self) -> int:
        """Client connections open right now (streaming or idle keep-alive)."""
        server = self._server
        return len(server.open_sockets) if server is not None else 0

    @property
    def requests(self) -> List[RecordedRequest]:
        """Every request received, oldest first (the last 10,000)."""
        with self._changed:
            return list(self._requests)

    def wait_until(self, predicate: Callable[["Emulator"], bool], timeout: float = 5.0) -> bool:
        """Block until ``predicate(emulator)`` holds (checked on every change); False on timeout."""
        with self._changed:
            return self._changed.wait_for(lambda: predicate(self), timeout)

    def reset(self) -> None:
        """Forget counts, requests, queued faults and issued tokens (the token list stays)."""
        with self._changed:
            self.counts.clear()
            self._requests.clear()
            self._logged = 0
            self._failures.clear()
            self._faults.clear()
            self._access.clear()
            self._credentials.clear()
            self.challenge = False

    # -- used by the server (under the lock) --------------------------------
    def _count(self, name: str) -> None:
        with self._changed:
            self.counts[name] += 1
            self._changed.notify_all()

    def _record(self, method: str, path: str, headers: Any, body: bytes) -> None:
        limits = self.limits
        if limits.log_body is not None:
            body = body[:limits.log_body]
        recorded = RecordedRequest(method, path, dict(headers.items()), body, time.time())
        size = len(body) + len(path) + sum(len(k) + len(v) for k, v in recorded.headers.items())
        with self._changed:
            self.counts["requests"] += 1
            if len(self._requests) == self._requests.maxlen:
                self._forget_request()
            self._requests.append(recorded)
            self._logged += size
            while limits.log_bytes is not None and self._logged > limits.log_bytes and len(self._requests) > 1:
                self._forget_request()
            self._changed.notify_all()

    def _forget_request(self) -> None:
        old = self._requests.popleft()
        self._logged -= len(old.body) + len(old.path) + sum(len(k) + len(v) for k, v in old.headers.items())

    def _loads(self) -> List[Dict[str, Any]]:
        with self._changed:
            return [{"token_id": tid, "count": info["count"] + info["active"], "plus": False, "show_user_info": False}
                    for tid, info in self._tokens.items()]

    def _busy(self, token_id: str, change: int) -> None:
        """A stream of *token_id* began (+1) or ended (-1): ``/api/loads`` counts it."""
        with self._changed:
            info = self._tokens.get(token_id)
            if info is not None:
                info["active"] += change
            self._changed.notify_all()

    def _keep_sessions(self, table: Dict[str, Any]) -> None:
        """Forget the oldest entries of *table* (insertion-ordered) past :attr:`Limits.sessions`."""
        limit = self.limits.sessions
        while limit is not None and len(table) > limit:
            del table[next(iter(table))]

    def _login(self, token_id: str, password: str) -> str:
        with self._changed:
            info = self._tokens.get(token_id)
            if info is None or info["dead"] == "login" or not password:
                self.counts["login_failures"] += 1
                self._changed.notify_all()
                reason = "missing session_password" if info and not password else "invalid token_key"
                raise RequestError(400, f"Error 400: {reason}")
            credential = secrets.token_urlsafe(24)
            self._credentials[credential] = (token_id, password)
            self._keep_sessions(self._credentials)
            self.counts["logins"] += 1
            self._changed.notify_all()
            return credential

    def _session(self, credential: Optional[str]) -> Dict[str, Any]:
        with self._changed:
            owner = self._credentials.get(credential or "")
            if owner is None or self._tokens.get(owner[0], {"dead": "session"})["dead"] is not None:
                self.counts["empty_sessions"] += 1
                self._changed.notify_all()
                return {}
            access = "emu-" + secrets.token_urlsafe(32)
            self._access[access] = {"token_id": owner[0], "owner": owner, "issued": time.monotonic(),
                                    "expired": False, "revoked": False}
            self._keep_sessions(self._access)
            self.counts["sessions"] += 1
            self._changed.notify_all()
            expires = time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime(time.time() + 30 * 86400))
            return {"user": {"id": "user-" + owner[0][:8], "name": "shared", "email": "shared@emulator.invalid",
                             "image": None, "groups": [], "features": []},
                    "expires": expires, "accessToken": access, "authProvider": "auth0"}

    def _authorize(self, access: str) -> Tuple[str, str]:
        with self._changed:
            info = self._access.get(access)
            if info is None or info["revoked"]:
                raise RequestError(401, {"code": "invalid_token", "message": "Unauthorized: invalid access token."})
            ttl = self.token_ttl
            if info["expired"] or (ttl is not None and time.monotonic() - info["issued"] > ttl):
                raise RequestError(401, _DEFAULT_BODIES[401]["detail"])
            owner: Tuple[str, str] = info["owner"]
            return owner

    def _next_failure(self) -> Optional[Tuple[int, Body, Dict[str, str]]]:
        with self._changed:
            if not self._failures:
                return None
            self.counts["failures"] += 1
            self._changed.notify_all()
            return self._failures.popleft()

    def _next_fault(self) -> Optional[Fault]:
        with self._changed:
            return self._faults.popleft() if self._faults else None

    def _calling(self) -> Tuple[Callable[..., Any], bool, Tuple[str, ...]]:
        """The responder, whether it takes the history, and which keywords (read from its
        signature once: inspect.signature() costs more than the rest of planning a turn)."""
        responder = self.responder
        known = self._calling_known
        if known is None or known[0] is not responder:
            known = self._calling_known = (responder, responder_wants_history(responder),
                                           responder_keywords(responder))
        return known

    def _wants_hangup(self) -> bool:
        return "hangup" in self._calling()[2]

    def _plan(self, owner: Tuple[str, str], body: Mapping[str, Any], hangup: Optional[HangUp] = None) -> Turn:
        responder, wants_history, keywords = self._calling()

        def respond(prompt: str, history: Any, partial: Optional[str]) -> Any:
            extra: Dict[str, Any] = {}
            if "hangup" in keywords:
                extra["hangup"] = hangup or HangUp()
            if partial is not None:
                if "partial" not in keywords:
                    raise RequestError(400, "nothing to continue: this server's responder cannot continue a reply")
                extra["partial"] = partial
            return responder(prompt, history, **extra) if wants_history else responder(prompt, **extra)

        return self._conversations.plan(owner, body, respond, self.max_words, self._changed)

