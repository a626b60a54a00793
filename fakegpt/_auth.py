"""The shared-token login (PROTOCOL §1) and the access token it yields.

A login: ``GET /api/loads`` lists the shared tokens, and they are tried one
after the other, each at most once, until one works or every listed token
was tried; no further token is tried once :data:`LOGIN_BUDGET` seconds have
passed. The next token is tried after a rejected one (a dead token), and
after a 5xx or a timeout that outlasted the retries of the request (a
broken account); a 429 or a connection failure ends the login (the server
as a whole is failing). A try is ``POST /auth/login`` then ``GET /api/auth/session``, each
with the short :data:`LOGIN_TIMEOUT` (not the stream's).

The order: least busy first (random among equals), or, when the password
was chosen or is shared through the session cache, a stable order of its
own (its history lives on one account). Either way, tokens whose login was
rejected in the last :data:`DEAD_TOKEN_TTL` seconds come last: a dead token
looks least busy (nobody can use it), so without this memory a few dead
tokens would be tried first by every login. The memory is per client and,
with a session cache, shared by every process using it.
"""
from __future__ import annotations

import hashlib
import http.cookiejar
import logging
import random
import secrets
import string
import threading
import time
import urllib.request
from typing import TYPE_CHECKING, Any, Callable, Dict, Iterable, List, Optional, Set, Tuple

import requests
from requests.cookies import create_cookie

from ._fork import reset_object_in_child
from ._constants import DEAD_TOKEN_TTL, LOGIN_BUDGET, LOGIN_TIMEOUT, SESSION_PASSWORD_LENGTH
from ._secrets import register_secret
from ._token import AccessToken
from .exceptions import (
    _NOT_JSON, APIStatusError, APITimeoutError, AuthenticationError, FakeGptError, detail_from_body, parse_json,
)

if TYPE_CHECKING:  # pragma: no cover
    from ._cache import SessionCache

__all__ = ["AccessToken", "DeadTokens", "SharedTokenLogin", "new_session_password"]

logger = logging.getLogger("fakegpt")

#: ``send(method, path, *, what, passthrough=..., timeout=..., **requests_kwargs)``:
#: one HTTP call, already retried on transient failures; answers with a status
#: in *passthrough* (or < 400) come back, others raise a fakegpt error.
Send = Callable[..., Any]
#: ``(connect, read)`` seconds, or one number for both.
Timeout = Any


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


class DeadTokens:
    """Shared tokens whose login was rejected lately, tried last by later logins.

    Kept in memory and, with a *cache*, in the session cache entry of
    *base_url*, so that every process sharing the cache tries them last too.
    A token is remembered for *ttl* seconds, or until it logs in again.
    """

    def __init__(self, cache: Optional["SessionCache"] = None, base_url: str = "", *, ttl: float = DEAD_TOKEN_TTL,
                 clock: Callable[[], float] = time.time) -> None:
        self._cache, self._base_url = cache, base_url
        self._ttl, self._clock = ttl, clock
        self._lock = threading.Lock()
        self._until: Dict[str, float] = {}
        reset_object_in_child(self)

    def _after_fork_in_child(self) -> None:
        self._lock = threading.Lock()  # a parent's thread may have held it

    def known(self) -> Set[str]:
        """The tokens to try last now."""
        shared = self._cache.dead_tokens(self._base_url) if self._cache is not None else {}
        now = self._clock()
        with self._lock:
            for token_id, until in shared.items():
                self._until[token_id] = max(until, self._until.get(token_id, 0.0))
            self._until = {token_id: until for token_id, until in self._until.items() if until > now}
            return set(self._until)

    def update(self, dead: Iterable[str], revived: Iterable[str] = ()) -> None:
        """Remember *dead* (their login was just rejected); forget *revived*."""
        dead, revived = list(dead), list(revived)
        if not dead and not revived:
            return
        until = self._clock() + self._ttl
        with self._lock:
            self._until.update(dict.fromkeys(dead, until))
            for token_id in revived:
                self._until.pop(token_id, None)
        if self._cache is not None:
            self._cache.update_dead_tokens(self._base_url, dict.fromkeys(dead, until), revived)


class SharedTokenLogin:
    """One login; call it to get a fresh access token (see the module's description)."""

    def __init__(
        self,
        send: Send,
        session: requests.Session,
        session_password: str,
        *,
        stable: bool = False,
        timeout: Timeout = LOGIN_TIMEOUT,
        dead_tokens: Optional[DeadTokens] = None,
        budget: float = LOGIN_BUDGET,
    ) -> None:
        """:param stable: the password was chosen by the caller or is shared
        through the session cache, and the history kept under it is wanted
        back: always prefer the same account for it.
        :param timeout: of each request of the login (``requests``' form).
        :param dead_tokens: where the tokens that failed are remembered (a
            client's own memory when not given).
        :param budget: seconds after which no further token is tried."""
        self._send = send
        self._session = session
        self._password = session_password
        self._stable = stable
        self._timeout = timeout
        self._dead = dead_tokens if dead_tokens is not None else DeadTokens()
        self._budget = budget
        register_secret(self, session_password)

    def __call__(self) -> str:
        started = time.monotonic()
        order, known = self._order(self.token_ids())
        if not order:
            raise AuthenticationError("no shared token to log in with: the server's token list (/api/loads) is empty")
        failures: List[str] = []
        dead: List[str] = []
        revived: List[str] = []
        transient: Optional[FakeGptError] = None
        try:
            for tried, token_id in enumerate(order):
                if tried and time.monotonic() - started >= self._budget:
                    break
                try:
                    token = self._login_with(token_id)
                except _DeadToken as failure:
                    failures.append(str(failure))
                    dead.append(token_id)
                    logger.debug("shared token %s", failure)
                    continue
                except (APIStatusError, APITimeoutError) as error:
                    if isinstance(error, APIStatusError) and error.status_code < 500:
                        raise  # a 429 or a redirect speaks for the whole server, not for this token
                    # A 5xx or a timeout (each already retried): this account's login is broken
                    # for now, maybe not the next one's. Not remembered as dead.
                    failures.append(f"{_short(token_id)}: {error}")
                    transient = error
                    logger.debug("shared token %s: %s; trying the next one", _short(token_id), error)
                    continue
                if token_id in known:
                    revived.append(token_id)
                return token
        finally:
            self._dead.update(dead, revived)
        if transient is not None and not dead:
            raise transient  # no token was rejected: the server failed, say how
        if len(failures) == len(order):
            tried_text = f"all {len(order)} tokens tried failed"
        else:
            tried_text = (f"{len(failures)} of {len(order)} tokens tried failed before the "
                          f"{self._budget:g} s login budget ran out")
        if not transient:
            tried_text = tried_text.replace(" failed", " were rejected")
        raise AuthenticationError(f"no usable shared token: {tried_text} ({'; '.join(failures)})")

    def _order(self, listed: List[Tuple[str, float]]) -> Tuple[List[str], Set[str]]:
        """Every listed token once, in the order to try them, and those known dead."""
        known = self._dead.known()
        if self._stable:
            # History lives under (account, password): rank the accounts by a hash
            # of both (rendezvous hashing), so this password finds its account
            # again while it is listed, and different passwords spread out.
            def rank(pair: Tuple[str, float]) -> Any:
                return hashlib.sha256(f"{self._password}\0{pair[0]}".encode()).digest()
        else:
            def rank(pair: Tuple[str, float]) -> Any:
                return (pair[1], random.random())  # least busy first; random among equals, like the original
        unique: Dict[str, float] = {}
        for token_id, count in listed:
            unique.setdefault(token_id, count)  # a token listed twice is tried once
        ranked = sorted(unique.items(), key=lambda pair: (pair[0] in known, rank(pair)))
        return [token_id for token_id, _ in ranked], known

    def token_ids(self) -> List[Tuple[str, float]]:
        """``[(token_id, count), ...]`` from ``GET /api/loads``."""
        response = self._send("GET", "/api/loads", what="GET /api/loads", params={"t": int(time.time())},
                              timeout=self._timeout)
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
            timeout=self._timeout,
        )
        if response.status_code >= 400:
            detail = detail_from_body(response.content, response.headers.get("Content-Type", ""))
            raise _DeadToken(token_id, f"login rejected (HTTP {response.status_code}{': ' + detail if detail else ''})")
        logger.debug("POST /auth/login with token %s: HTTP %d", _short(token_id), response.status_code)
        self._keep_cookies(response)
        response = self._send("GET", "/api/auth/session", what="GET /api/auth/session", passthrough=_CLIENT_ERRORS,
                              timeout=self._timeout)
        if response.status_code >= 400:
            raise _DeadToken(token_id, f"session refused (HTTP {response.status_code})")
        data = parse_json(response.content)
        if data is _NOT_JSON:
            raise _DeadToken(token_id, "the session answer is not JSON")
        token = data.get("accessToken") if isinstance(data, dict) else None
        if not isinstance(token, str) or not token:
            raise _DeadToken(token_id, "empty session ({}): the shared account is dead or the login did not stick")
        register_secret(self, token)
        expires = data.get("expires")
        logger.debug("GET /api/auth/session: access token obtained (expires %s)",
                     expires if isinstance(expires, str) else "?")
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
        url = str(response.url or self._session.headers.get("Referer", ""))
        sent = _cookie_header(self._session.cookies, urllib.request.Request(url)) or ""
        have = {pair.split("=", 1)[0].strip() for pair in sent.split(";") if "=" in pair}
        host = http.cookiejar.eff_request_host(urllib.request.Request(url))[1]  # type: ignore[attr-defined]
        for header in response.raw.headers.getlist("Set-Cookie") if response.raw is not None else ():
            name, _, value = header.split(";", 1)[0].partition("=")
            name, value = name.strip(), value.strip()
            if name and name not in have:
                self._session.cookies.set_cookie(create_cookie(name, value, domain=host, path="/"))  # type: ignore[no-untyped-call]
                logger.debug("kept the login cookie %r, which the cookie jar refused", name)


def _cookie_header(jar: Any, request: urllib.request.Request) -> Optional[str]:
    """The Cookie header *jar* would send with *request*."""
    jar.add_cookie_header(request)
    return request.get_header("Cookie")


def _json(response: requests.Response, what: str) -> Any:
    data = parse_json(response.content)
    if data is _NOT_JSON:
        detail = detail_from_body(response.content, response.headers.get("Content-Type", ""))
        raise APIStatusError(
            f"{what} answered HTTP {response.status_code} with a body that is not JSON: {detail or 'empty'}",
            status_code=response.status_code,
            detail=detail,
        )
    return data
