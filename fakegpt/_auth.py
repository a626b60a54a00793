"""The shared-token login (PROTOCOL §1) and the access token it yields.

A login round: ``GET /api/loads`` lists the shared tokens; tokens are tried
least busy first, each at most once per round (a dead one is never retried
in the same round), up to :data:`MAX_TOKENS_PER_LOGIN`; each try is
``POST /auth/login`` then ``GET /api/auth/session``. The rotation is a
tenacity ``Retrying`` that retries only "this token is dead".
"""
from __future__ import annotations

import copy
import hashlib
import http.cookiejar
import json
import logging
import random
import secrets
import string
import threading
import time
import urllib.request
from typing import Any, Callable, List, Optional

import requests
import tenacity
from requests.cookies import create_cookie

from ._constants import MAX_TOKENS_PER_LOGIN, SESSION_PASSWORD_LENGTH
from .exceptions import APIStatusError, AuthenticationError, detail_from_body

__all__ = ["AccessToken", "SharedTokenLogin", "new_session_password"]

logger = logging.getLogger("fakegpt")

#: ``send(method, path, *, what, passthrough=..., **requests_kwargs)``: one
#: HTTP call, already retried on transient failures; answers with a status
#: in *passthrough* (or < 400) come back, others raise a fakegpt error.
Send = Callable[..., requests.Response]


def new_session_password() -> str:
    """A fresh random isolation password, from :mod:`secrets`."""
    alphabet = string.ascii_letters + string.digits
    return "".join(secrets.choice(alphabet) for _ in range(SESSION_PASSWORD_LENGTH))


class _DeadToken(Exception):
    """This shared token cannot log in; try another."""

    def __init__(self, token_id: str, reason: str) -> None:
        super().__init__(f"{_short(token_id)}: {reason}")


def _short(token_id: str) -> str:
    return token_id[:8] + "…" if len(token_id) > 8 else token_id


_CLIENT_ERRORS = tuple(s for s in range(400, 500) if s != 429)


class SharedTokenLogin:
    """One login round; call it to get a fresh access token."""

    def __init__(self, send: Send, session: requests.Session, session_password: str, *, stable: bool = False) -> None:
        """:param stable: the password was chosen by the caller or is shared
        through the session cache, and the history kept under it is wanted
        back: always prefer the same account for it."""
        self._send = send
        self._session = session
        self._password = session_password
        self._stable = stable

    def __call__(self) -> str:
        token_ids = self.token_ids()
        if not token_ids:
            raise AuthenticationError("no shared token to log in with: the server's token list (/api/loads) is empty")
        if self._stable:
            # History lives under (account, password): rank the accounts by a hash
            # of both (rendezvous hashing), so this password finds its account
            # again while it is listed, and different passwords spread out.
            token_ids.sort(key=lambda pair: hashlib.sha256(f"{self._password}\0{pair[0]}".encode()).digest())
        else:
            # Least busy first; random among equals, as the original picked at random.
            token_ids.sort(key=lambda pair: (pair[1], random.random()))
        candidates = [token_id for token_id, _ in token_ids[:MAX_TOKENS_PER_LOGIN]]
        remaining = iter(candidates)
        failures: List[str] = []

        def try_next() -> str:
            token_id = next(remaining)
            try:
                return self._login_with(token_id)
            except _DeadToken as dead:
                failures.append(str(dead))
                logger.debug("shared token %s", dead)
                raise

        rotation = tenacity.Retrying(
            stop=tenacity.stop_after_attempt(len(candidates)),
            retry=tenacity.retry_if_exception_type(_DeadToken),
            reraise=True,
        )
        try:
            return rotation(try_next)
        except _DeadToken:
            tried = f"all {len(candidates)}" if len(candidates) == len(token_ids) else f"{len(candidates)} of {len(token_ids)}"
            raise AuthenticationError(
                f"no usable shared token: {tried} tokens tried were rejected ({'; '.join(failures)})"
            ) from None

    def token_ids(self) -> List[tuple]:
        """``[(token_id, count), ...]`` from ``GET /api/loads``."""
        response = self._send("GET", "/api/loads", what="GET /api/loads", params={"t": int(time.time())})
        data = _json(response, "GET /api/loads")
        loads = data.get("loads") if isinstance(data, dict) else None
        if not isinstance(loads, list):
            raise AuthenticationError("GET /api/loads answered without a token list ('loads' is missing)")
        pairs = []
        for entry in loads:
            if isinstance(entry, dict) and isinstance(entry.get("token_id"), str) and entry["token_id"]:
                count = entry.get("count")
                pairs.append((entry["token_id"], count if isinstance(count, (int, float)) else 0))
        logger.debug("GET /api/loads: %d shared tokens", len(pairs))
        return pairs

    def _login_with(self, token_id: str) -> str:
        # A credential cookie from an earlier (dead) token must not answer for this one.
        for cookie in [c for c in self._session.cookies if c.name == "credential"]:
            self._session.cookies.clear(cookie.domain, cookie.path, cookie.name)
        response = self._send(
            "POST",
            "/auth/login",
            what="POST /auth/login",
            passthrough=_CLIENT_ERRORS,
            data={"token_key": token_id, "session_password": self._password},
            allow_redirects=False,
        )
        if response.status_code >= 400:
            detail = detail_from_body(response.content, response.headers.get("Content-Type", ""))
            raise _DeadToken(token_id, f"login rejected (HTTP {response.status_code}{': ' + detail if detail else ''})")
        logger.debug("POST /auth/login with token %s: HTTP %d", _short(token_id), response.status_code)
        self._keep_cookies(response)
        response = self._send("GET", "/api/auth/session", what="GET /api/auth/session", passthrough=_CLIENT_ERRORS)
        if response.status_code >= 400:
            raise _DeadToken(token_id, f"session refused (HTTP {response.status_code})")
        try:
            data = response.json()
        except (ValueError, RecursionError):
            raise _DeadToken(token_id, "the session answer is not JSON") from None
        token = data.get("accessToken") if isinstance(data, dict) else None
        if not isinstance(token, str) or not token:
            raise _DeadToken(token_id, "empty session ({}): the shared account is dead or the login did not stick")
        logger.debug("GET /api/auth/session: access token obtained (expires %s)", data.get("expires", "?"))
        return token


    def _keep_cookies(self, response: requests.Response) -> None:
        """Keep every cookie the login set, even those the jar refused.

        The next call needs the login's cookie (PROTOCOL §1), but Python's
        cookie jar drops a ``Secure`` cookie received over plain http (a
        self-hosted server on http://localhost) and one whose ``Domain`` does
        not match (``Domain=localhost``). Browsers treat loopback as secure.
        Such a cookie is kept host-only, so it goes back only to the host
        that set it.
        """
        url = response.url or self._session.headers.get("Referer", "")
        sent = _cookie_header(self._session.cookies, urllib.request.Request(url)) or ""
        have = {pair.split("=", 1)[0].strip() for pair in sent.split(";") if "=" in pair}
        host = http.cookiejar.eff_request_host(urllib.request.Request(url))[1]
        for header in response.raw.headers.getlist("Set-Cookie") if response.raw is not None else ():
            name, _, value = header.split(";", 1)[0].partition("=")
            name, value = name.strip(), value.strip()
            if name and name not in have:
                self._session.cookies.set_cookie(create_cookie(name, value, domain=host, path="/"))
                logger.debug("kept the login cookie %r, which the cookie jar refused", name)


def _cookie_header(jar: Any, request: urllib.request.Request) -> Optional[str]:
    """The Cookie header *jar* would send with *request*."""
    jar.add_cookie_header(request)
    return request.get_header("Cookie")


def _json(response: requests.Response, what: str) -> Any:
    try:
        return json.loads(response.content)
    except (ValueError, RecursionError):
        detail = detail_from_body(response.content, response.headers.get("Content-Type", ""))
        raise APIStatusError(
            f"{what} answered HTTP {response.status_code} with a body that is not JSON: {detail or 'empty'}",
            status_code=response.status_code,
            detail=detail,
        ) from None


class _Login:
    """One login in flight, and its outcome, for every thread waiting on it."""

    __slots__ = ("done", "token", "error")

    def __init__(self) -> None:
        self.done = threading.Event()
        self.token: Optional[str] = None
        self.error: Optional[BaseException] = None


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
        self._on_new_token = on_new_token
        self._lock = threading.Lock()
        self._in_flight: Optional[_Login] = None
        self.logins = 0

    @property
    def can_login(self) -> bool:
        return self._login is not None

    @property
    def current(self) -> Optional[str]:
        return self._token

    def set(self, token: Optional[str]) -> None:
        with self._lock:
            self._token = token

    def get(self, stop: Callable[[], bool] = lambda: False) -> Optional[str]:
        """The token, logging in first when there is none.

        One login serves every thread that needs it: the others wait for its
        outcome and share it, a failure included (each raises its own copy),
        instead of each trying again in turn. Returns ``None`` as soon as
        ``stop()`` is true (the call was aborted) rather than wait or log in.
        """
        with self._lock:
            if self._token is not None:
                return self._token
            if stop():
                return None
            if self._login is None:
                raise AuthenticationError("no access token, and logging in is disabled")
            login = self._in_flight
            leading = login is None
            if leading:
                login = self._in_flight = _Login()
                self.logins += 1
        if leading:
            return self._lead(login)  # type: ignore[arg-type]
        while not login.done.wait(0.05):  # type: ignore[union-attr]
            if stop():
                return None
        if login.error is not None:  # type: ignore[union-attr]
            raise _copy(login.error) from login.error.__cause__  # type: ignore[union-attr]
        return login.token  # type: ignore[union-attr]

    def _lead(self, login: _Login) -> str:
        try:
            login.token = self._login()  # type: ignore[misc]
        except BaseException as error:
            login.error = error
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
