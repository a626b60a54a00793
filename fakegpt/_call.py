"""One call: the object that owns everything a streamed reply is made of.

A :class:`Call` holds the response being read (or the connection of the
request waiting for its answer), the abort flag, the retry state and every
decoder that fed the reply, across retries and continuations.
:meth:`Call.abort` (any thread) and :meth:`Call.close` (the owner) end the
call at once, in whatever phase it is: logging in, waiting for headers,
reading, backing off before a retry, between two requests of a continuation.

The retry loop (:meth:`Call._post`) ends where the server's answer begins:
what was accepted is never sent again. No reference cycle holds a live
response: tenacity keeps no try's result, the call keeps nothing that refers
back to it, and :class:`~fakegpt.Stream` closes its call when it is dropped.
"""
from __future__ import annotations

import atexit
import contextlib
import logging
import threading
import time
import weakref
from typing import TYPE_CHECKING, Any, Generator, Iterator, List, Mapping, Optional

import requests

from ._body import Body, check_stream_response
from ._fork import reset_in_child
from ._http import headers_for
from ._protocol import ReplyDecoder
from ._reader import ReplyReader
from ._retry import make_retrying
from ._transport import hang_up, hang_up_owned, watching
from .exceptions import APITimeoutError, AuthenticationError, FakeGptError, NoValidResponseError

if TYPE_CHECKING:
    from ._engine import Engine

__all__ = ["Call"]

logger = logging.getLogger("fakegpt")

_CONVERSATION = "/api/conversation"
_live: "weakref.WeakSet[Call]" = weakref.WeakSet()  # calls not closed yet, for interpreter exit


@reset_in_child
def _forget_parent_calls() -> None:
    """A forked child's exit must not hang up the parent's calls (their sockets are shared)."""
    global _live
    _live = weakref.WeakSet()


class _CallEnded(FakeGptError):
    """Raised inside the transport for a call that has ended: nothing more is
    sent. Never reaches the caller: an aborted call ends quietly, an expired
    one with its :class:`~fakegpt.APITimeoutError`."""


class Call:
    """One call's state (see the module docstring). Thread-safe: :meth:`abort`
    from any thread; everything else from the thread iterating the call."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine
        self.decoders: List[ReplyDecoder] = []
        #: The decoder of the response opened last (``None`` until one opens).
        self.current: Optional[ReplyDecoder] = None
        #: Whether :meth:`abort` was called (a plain attribute: read per event).
        self.aborted = False
        #: Why the watchdog ended the call (see :mod:`fakegpt._watchdog`), or ``None``.
        self.expired: Optional[str] = None
        #: When the last event arrived (the reader sets it), while a body is read.
        self.progress_at: Optional[float] = None
        #: When the last bytes of the body arrived (the reader sets it).
        self.read_at: Optional[float] = None
        self.closed = False
        self._started = time.monotonic()
        self._wake = threading.Event()  # set by abort(): ends a back-off at once
        self._lock = threading.Lock()
        self._body: Optional[Body] = None
        self._connection: Any = None  # of the request in flight, before its answer
        _live.add(self)

    # -- ending the call -------------------------------------------------------
    def abort(self, hang_up: bool = True) -> None:
        """End the call from any thread: a blocked read or wait returns at
        once, the server sees the connection end, no further delta comes.
        With *hang_up* false, only the last: the caller hangs up later
        (another ``abort()``), off a thread that must not wait for sockets."""
        with self._lock:
            self.aborted = True
        if hang_up:
            self._hang_up()

    def _hang_up(self) -> None:
        """Wake a back-off, and shut down the body's or the pending request's
        connection: only while this call's request is the last one sent on it
        (it may be back in the pool, serving another call now)."""
        with self._lock:
            connection, body = self._connection, self._body
        self._wake.set()
        if body is not None:
            hang_up_owned(body.connection, self)
        if connection is not None:
            hang_up_owned(connection, self)

    def close(self) -> None:
        """Release the response (the owner's side; also when abandoned)."""
        with self._lock:
            body, self._body = self._body, None
        if body is not None:
            body.close()
        self.closed = True
        _live.discard(self)

    # -- has this call ended? ----------------------------------------------------
    def ended(self) -> bool:
        """Whether the call has ended: aborted, or expired (past its deadline,
        or no event for too long). The one answer, asked by the transport
        before each connect and send (:meth:`connection_used`), by the reader
        after each read, and by the retry loop before each try; nothing more
        is sent or read for a call that has ended."""
        return self.aborted or self.expired is not None

    def check_expired(self) -> None:
        """Raise the call's :class:`~fakegpt.APITimeoutError` if it expired."""
        if self.expired is not None:
            raise APITimeoutError(self.expired)

    def overdue(self, now: float) -> Optional[str]:
        """Why the call should end now (its deadline, or no event for too long), or ``None``."""
        engine = self._engine
        if engine.deadline is not None and now - self._started > engine.deadline:
            return f"the call took longer than its deadline ({engine.deadline:g} s)"
        progress, limit = self.progress_at, engine.event_timeout
        if limit is None or progress is None or now - progress <= limit:
            return None
        if self.read_at is not None and now - self.read_at <= limit:
            return (f"no complete event arrived for {limit:g} s, the read timeout, while data kept "
                    "arriving (the connection was dropped)")
        return (f"the stream stalled: no complete event arrived for {limit:g} s, "
                "the read timeout (the connection was dropped)")

    def expire(self, reason: str) -> None:
        """End the call with an :class:`~fakegpt.APITimeoutError` (the watchdog's side)."""
        with self._lock:
            self.expired = reason
        self._hang_up()

    # -- ConnectionWatcher (see fakegpt._transport) -----------------------------
    @contextlib.contextmanager
    def _requesting(self) -> Iterator[None]:
        """The one owner of the call's current connection. While active, each
        connection the transport uses for this call's requests is reported to
        :meth:`connection_used`, which makes it the current one (under the
        lock); on leaving, the call forgets it (under the lock), whatever
        happened. A connection that went back to the pool meanwhile may serve
        another call already: :meth:`_hang_up` leaves it alone then."""
        with watching(self):
            try:
                yield
            finally:
                with self._lock:
                    self._connection = None

    def connection_used(self, connection: Any) -> None:
        with self._lock:
            self._connection = connection
            ended = self.ended()
        if ended:
            hang_up(connection)
            raise _CallEnded("the call has ended")  # the request is not sent (or its answer not awaited)

    def pause(self, seconds: float) -> None:
        """Back off between retries, waking up at once when the call ends
        (:meth:`abort`, or the watchdog's :meth:`expire`)."""
        if not self.ended():
            self._wake.wait(seconds)

    # -- one request's deltas --------------------------------------------------
    def request(self, body: Mapping[str, Any], resume: Optional[Mapping[str, str]] = None,
                require_text: bool = True) -> Generator[str, None, None]:
        """The deltas of one conversation request (*resume*: text of a message
        already delivered). Retries what is retryable until the server
        accepts the request (see :meth:`_post`); on a 401, logs in once
        more. Errors leave with ``partial_text`` set and secrets redacted."""
        try:
            reader = self._open(body, resume)
            if reader is None:
                self.check_expired()
                return
            deltas = reader.deltas()
            first = next(deltas, None)
            if first is not None:
                if self._engine.event_timeout is not None:
                    # The watchdog times each event from now on: the socket's own timeout is not needed.
                    reader.body.untimed_reads()
                yield first
                yield from deltas
            if require_text and not reader.decoder.parts and not self.aborted:
                raise NoValidResponseError("no valid response: the stream completed without any assistant text")
        except FakeGptError as error:
            if self.aborted:
                return  # what the abort cut short is not an error
            if self.expired is not None and not isinstance(error, APITimeoutError):
                error = APITimeoutError(self.expired)
            if not error.partial_text:
                error.partial_text = self.text
            raise self._engine.scrub(error)

    def _open(self, body: Mapping[str, Any], resume: Optional[Mapping[str, str]]) -> Optional[ReplyReader]:
        """The reader of the accepted request, or ``None`` when the call ended first."""
        engine = self._engine
        for fresh_login in (False, True):
            with self._requesting():
                # A login led by a call that ended is "interrupted": its waiters log in themselves.
                token = engine.token.get(stop=self.ended)
            if token is None or self.ended():
                return None
            try:
                response = self._post(body, token)
            except AuthenticationError as error:
                if error.status_code != 401:
                    raise
                if fresh_login or not engine.token.can_login:
                    suffix = " even after a fresh login" if fresh_login else ""
                    raise AuthenticationError(f"the server rejected the access token{suffix} ({error})",
                                              status_code=401) from None
                logger.info("access token rejected (HTTP 401); logging in again")
                engine.token.invalidate(token)
                continue
            if response is None:
                return None
            # The server accepted the request: its answer began (a 2xx, or a
            # redirect refused below). Nothing is sent again for it, whatever
            # happens to the body: a stall, a drop, an error event.
            return self._accept(response, resume)
        raise AssertionError("unreachable")  # pragma: no cover

    def _post(self, body: Mapping[str, Any], token: str) -> Optional[requests.Response]:
        """The retry loop: POST until the server's answer begins, and return
        it (``None`` when the call ended first). Retried, after a wait (see
        :mod:`fakegpt._retry`): a connection failure, a timeout before the
        answer's headers, 429 and 5xx. Raised: any other error, or the last
        one when the tries run out."""
        engine = self._engine
        retrying = make_retrying(engine.max_retries, engine.sleep or self.pause)
        for attempt in retrying:
            if self.ended():
                return None
            with attempt:
                return self._send(body, token)
        return None  # pragma: no cover - the loop returns or raises

    def _send(self, body: Mapping[str, Any], token: str) -> requests.Response:
        """One try: send the POST, and wait for its answer's headers (at most
        the read timeout, see :mod:`fakegpt._transport`)."""
        with self._requesting():
            # Redirects are not followed: the bearer headers would go to any host a redirect names.
            return self._engine.http.open(
                "POST", _CONVERSATION, what="POST /api/conversation", json=body,
                headers=headers_for(token), allow_redirects=False)

    def _accept(self, response: requests.Response, resume: Optional[Mapping[str, str]]) -> ReplyReader:
        body = Body(response)
        self._attach(body)  # from here abort() reaches the body, also while the check below reads it
        check_stream_response(response)
        # An event stream: only now its decoder joins the reply (an error page or a redirect has no
        # reply: the last request's finish_reason stays the call's).
        reader = ReplyReader(body, ReplyDecoder(resume=resume), self)
        with self._lock:
            self.current = reader.decoder
            if self.decoders and not self.decoders[-1].parts:
                self.decoders[-1] = reader.decoder  # a request that delivered nothing: forget it
            else:
                self.decoders.append(reader.decoder)
        return reader

    def _attach(self, body: Body) -> None:
        with self._lock:
            previous, self._body = self._body, body
            self.progress_at = time.monotonic()
            self.read_at = None
            ended = self.ended()
        if previous is not None:
            previous.close()
        if ended:
            hang_up_owned(body.connection, self)

    # -- what the call knows about the reply -----------------------------------
    def last(self, name: str) -> Optional[str]:
        """The latest non-``None`` value of a decoder's *name* (an id or the model)."""
        for decoder in reversed(self.decoders):
            value = getattr(decoder, name)
            if value is not None:
                return str(value)
        return None

    @property
    def text(self) -> str:
        """The text delivered so far; from any thread, a prefix of the final
        text. Each list is copied in one step (``list()`` of a list) before it
        is read: the reading thread joins a decoder's parts in place, and an
        iteration across that would skip some."""
        return "".join(["".join(list(decoder.parts)) for decoder in list(self.decoders)])


@atexit.register
def _abort_all() -> None:
    """Interpreter exit: hang up every call still open, so no thread stays
    blocked on a socket and every server sees the end."""
    for call in list(_live):
        call.abort()
