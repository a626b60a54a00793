"""One call: the object that owns everything a streamed reply is made of.

A :class:`Call` holds the response being read (or the connection of the
request waiting for its answer), the abort flag, the retry state and every
decoder that fed the reply, across retries and continuations.
:meth:`Call.abort` (any thread) and :meth:`Call.close` (the owner) end the
call at once, in whatever phase it is: logging in, waiting for headers,
reading, backing off before a retry, between two requests of a continuation.

No reference cycle holds a live response: an attempt leaves what it opened
on the call (never in a return value or exception that tenacity keeps), the
call keeps nothing that refers back to it, and :class:`~fakegpt.Stream`
closes its call when it is dropped, whatever else still refers to the
generator.
"""
from __future__ import annotations

import atexit
import contextlib
import logging
import threading
import time
import weakref
from typing import TYPE_CHECKING, Any, Generator, Iterator, List, Mapping, Optional, Tuple

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
    """Raised inside the transport for a call aborted or past its deadline:
    ends its request or its login at once, before anything more is sent.
    Never reaches the caller: an aborted call ends quietly, an expired one
    with its :class:`~fakegpt.APITimeoutError`."""


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
        self.closed = False
        self._started = time.monotonic()
        self._wake = threading.Event()  # set by abort(): ends a back-off at once
        self._lock = threading.Lock()
        self._body: Optional[Body] = None
        self._connection: Any = None  # of the request in flight, before its answer
        self._opened: Optional[Tuple[ReplyReader, Iterator[str], Optional[str]]] = None
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
            self._opened = None
        if body is not None:
            body.close()
        self.closed = True
        _live.discard(self)

    def overdue(self, now: float) -> Optional[str]:
        """Why the call should end now (its deadline, or no event for too long), or ``None``."""
        engine = self._engine
        if engine.deadline is not None and now - self._started > engine.deadline:
            return f"the call took longer than its deadline ({engine.deadline:g} s)"
        progress = self.progress_at
        if engine.event_timeout is not None and progress is not None and now - progress > engine.event_timeout:
            return (f"the stream stalled: no complete event arrived for {engine.event_timeout:g} s, "
                    "the read timeout (the connection was dropped)")
        return None

    def expire(self, reason: str) -> None:
        """End the call with an :class:`~fakegpt.APITimeoutError` (the watchdog's side)."""
        with self._lock:
            self.expired = reason
        self._hang_up()

    def check_expired(self) -> None:
        if self.expired is not None:
            raise APITimeoutError(self.expired)

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

    def ended(self) -> bool:
        """Aborted, or past its deadline: nothing more is sent for the call."""
        return self.aborted or self.expired is not None

    def pause(self, seconds: float) -> None:
        """Back off between retries, waking up at once when the call ends
        (:meth:`abort`, or the watchdog's :meth:`expire`)."""
        self._wake.wait(seconds)

    # -- one request's deltas --------------------------------------------------
    def request(self, body: Mapping[str, Any], resume: Optional[Mapping[str, str]] = None,
                require_text: bool = True) -> Generator[str, None, None]:
        """The deltas of one conversation request (*resume*: text of a message
        already delivered). Retries what is retryable before the first delta;
        on a 401, logs in once more. Errors leave with ``partial_text`` set and
        secrets redacted."""
        try:
            opened = self._open(body, resume)
            if opened is None:
                return
            reader, deltas, first = opened
            del opened
            if first is not None:
                if self._engine.event_timeout is not None:
                    # Past the first delta nothing is retried, and the watchdog
                    # times each event: the socket's own timeout is not needed.
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

    def _open(self, body: Mapping[str, Any], resume: Optional[Mapping[str, str]]
              ) -> Optional[Tuple[ReplyReader, Iterator[str], Optional[str]]]:
        engine = self._engine
        for fresh_login in (False, True):
            with self._requesting():
                # A login led by a call that ended is "interrupted": its waiters log in themselves.
                token = engine.token.get(stop=self.ended)
            self.check_expired()
            if token is None or self.aborted:
                return None
            retrying = make_retrying(engine.max_retries, engine.sleep or self.pause)
            try:
                retrying(self._attempt, body, token, resume)
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
            finally:
                del retrying
            self.check_expired()
            with self._lock:
                opened, self._opened = self._opened, None
            return opened
        raise AssertionError("unreachable")  # pragma: no cover

    def _attempt(self, body: Mapping[str, Any], token: str, resume: Optional[Mapping[str, str]]) -> None:
        """One try: open the stream and read up to its first delta. What it
        opened is left on the call (``_opened``), never returned."""
        if self.aborted:
            return
        self.check_expired()
        try:
            with self._requesting():
                # Redirects are not followed: the bearer headers would go to any host a redirect names.
                response = self._engine.http.open(
                    "POST", _CONVERSATION, what="POST /api/conversation", json=body,
                    headers=headers_for(token), allow_redirects=False)
                check_stream_response(response)  # (a body read here can still be hung up)
        except FakeGptError:
            if self.aborted:  # the abort hung up before the answer came: end quietly
                return
            raise
        reader = ReplyReader(Body(response), ReplyDecoder(resume=resume), self)
        self._attach(reader)
        deltas = reader.deltas()
        first = next(deltas, None)
        with self._lock:
            self._opened = (reader, deltas, first)

    def _attach(self, reader: ReplyReader) -> None:
        with self._lock:
            previous, self._body = self._body, reader.body
            self.progress_at = time.monotonic()
            self.current = reader.decoder
            if self.decoders and not self.decoders[-1].parts:
                self.decoders[-1] = reader.decoder  # a failed try delivered nothing: forget it
            else:
                self.decoders.append(reader.decoder)
            ended = self.ended()
        if previous is not None:
            previous.close()
        if ended:
            hang_up_owned(reader.body.connection, self)

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
