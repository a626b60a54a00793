"""What the calls of one client share: the :class:`Engine`, which makes them."""
from __future__ import annotations

import threading
import weakref
from typing import Any, Callable, Iterable, Optional

from ._auth import AccessToken
from ._call import Call
from ._fork import reset_object_in_child
from ._http import Http
from ._watchdog import watch
from .exceptions import FakeGptError, redact

__all__ = ["Engine"]


class Engine:
    """What the calls of one client share: its HTTP session, its access
    token and its retry settings."""

    def __init__(self, http: Http, token: AccessToken, max_retries: int,
                 secrets: Callable[[], Iterable[Optional[str]]], *, deadline: Optional[float] = None,
                 event_timeout: Optional[float] = None) -> None:
        self.http = http
        #: Seconds for a whole call, or ``None``.
        self.deadline = deadline
        #: The longest wait for the next event while a body is read, or ``None``.
        self.event_timeout = event_timeout
        self.token = token
        self.max_retries = max_retries
        self.secrets = secrets
        #: Replaces the waits between retries (tests record them here).
        self.sleep: Optional[Callable[[float], Any]] = None
        self._calls: "weakref.WeakSet[Call]" = weakref.WeakSet()
        self._lock = threading.Lock()
        #: Whether :meth:`close` was called: no call starts any more.
        self.closed = False
        reset_object_in_child(self)

    def _after_fork_in_child(self) -> None:
        """A forked child: the parent's calls are not its own to abort, and a
        parent's thread may have held the lock."""
        self._lock, self._calls = threading.Lock(), weakref.WeakSet()

    def new_call(self) -> Call:
        """A new call; ``ValueError`` once the client is closed (before any request)."""
        with self._lock:
            if self.closed:
                raise ValueError("this Client is closed")
            call = Call(self)
            self._calls.add(call)
        if self.deadline is not None or self.event_timeout is not None:
            watch(call)
        return call

    def scrub(self, error: FakeGptError) -> FakeGptError:
        scrubbed: FakeGptError = redact(error, self.secrets())
        return scrubbed

    def close(self) -> None:
        """Abort every call still running, then close every connection."""
        with self._lock:
            self.closed = True
            calls = list(self._calls)
        for call in calls:
            call.abort()
        self.http.close()
