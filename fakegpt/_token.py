"""The client's access token: obtained once, shared by threads, replaceable.

Every token it holds is registered as a secret (:mod:`fakegpt._secrets`),
so no message or log record shows it.
"""
from __future__ import annotations

import copy
import threading
from typing import Callable, Optional

from ._fork import reset_object_in_child
from ._secrets import register_secret
from .exceptions import AuthenticationError

__all__ = ["AccessToken"]


class _Login:
    """One login in flight, and its outcome, for every thread waiting on it."""

    __slots__ = ("done", "token", "error", "interrupted")

    def __init__(self) -> None:
        self.done = threading.Event()
        self.token: Optional[str] = None
        self.error: Optional[BaseException] = None
        #: The leading thread was interrupted (Ctrl-C, its call aborted): its
        #: outcome says nothing about the server, so waiters log in themselves.
        self.interrupted = False


class AccessToken:
    """The client's access token: obtained once, shared by threads, replaceable.

    :param login: how to get a fresh token, or ``None`` when the token was
        given by the caller and must not be replaced by a login.
    """

    def __init__(
        self,
        login: Optional[Callable[[], str]],
        token: Optional[str] = None,
        on_new_token: Optional[Callable[[str], None]] = None,
    ) -> None:
        """:param on_new_token: called with each token a login obtains."""
        self._login = login
        self._token = token
        register_secret(self, token)
        self._on_new_token = on_new_token
        self._lock = threading.Lock()
        self._in_flight: Optional[_Login] = None
        self.logins = 0
        reset_object_in_child(self)

    def _after_fork_in_child(self) -> None:
        """A forked child: a login in flight was a parent's thread's (it never
        ends here), and that thread may have held the lock. The token stays."""
        self._lock, self._in_flight = threading.Lock(), None

    @property
    def can_login(self) -> bool:
        return self._login is not None

    @property
    def current(self) -> Optional[str]:
        return self._token

    def set(self, token: Optional[str]) -> None:
        register_secret(self, token)
        with self._lock:
            self._token = token

    def get(self, stop: Callable[[], bool] = lambda: False) -> Optional[str]:
        """The token, logging in first when there is none.

        One login serves every thread that needs it: the others wait for its
        outcome and share it, a failure included (each raises its own copy),
        instead of each trying again in turn. Returns ``None`` as soon as
        ``stop()`` is true (the call was aborted) rather than wait or log in.
        """
        while True:
            with self._lock:
                if self._token is not None:
                    return self._token
                if stop():
                    return None
                if self._login is None:
                    raise AuthenticationError("no access token, and logging in is disabled")
                login = self._in_flight
                leading = login is None
                if login is None:
                    login = self._in_flight = _Login()
                    self.logins += 1
            if leading:
                return self._lead(login, stop)
            while not login.done.wait(0.05):
                if stop():
                    return None
            if login.interrupted:
                continue  # never another thread's KeyboardInterrupt or abort: log in afresh
            if login.error is not None:
                raise _copy(login.error) from login.error.__cause__
            return login.token

    def _lead(self, login: _Login, stop: Callable[[], bool] = lambda: False) -> str:
        try:
            login.token = self._login()  # type: ignore[misc]
            register_secret(self, login.token)
        except BaseException as error:
            if isinstance(error, Exception) and not stop():
                login.error = error
            else:
                login.interrupted = True
            raise
        finally:
            with self._lock:
                self._in_flight = None
                if login.token is not None:
                    self._token = login.token
            login.done.set()
        if self._on_new_token is not None:
            self._on_new_token(login.token)
        return login.token

    def invalidate(self, token: str) -> None:
        """Forget *token* (it was rejected), unless another thread already replaced it."""
        with self._lock:
            if self._token == token:
                self._token = None


def _copy(error: BaseException) -> BaseException:
    """A copy of *error* to raise in another thread (one exception object is
    not raised by several threads at once: its traceback would be shared)."""
    try:
        return copy.copy(error)
    except Exception:  # pragma: no cover - an exception type that cannot be copied
        return error
