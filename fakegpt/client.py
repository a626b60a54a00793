"""The blocking client: ``stream()``, ``complete()`` and ``conversation()``."""
from __future__ import annotations

import logging
import os
import warnings
from typing import Any, Dict, Generator, Mapping, Optional, Sequence, Union

import requests

from ._auth import AccessToken, DeadTokens, SharedTokenLogin, new_session_password
from ._cache import SessionCache, default_cache_path
from ._call import Call
from ._engine import Engine
from ._config import env_max_retries, env_session_cache, env_str, env_timeout, setting_problems
from ._constants import DEFAULT_BASE_URL, DEFAULT_MAX_RETRIES, DEFAULT_TIMEOUT, LOGIN_TIMEOUT
from ._conversation import Conversation
from ._http import Answer, Http, Timeout
from ._protocol import DEFAULT_MODEL, conversation_body, flatten_prompt, validate_messages, web_model
from ._retry import make_retrying
from ._stream import Reply, Stream, drain
from ._secrets import register_url, without_userinfo
from ._transport import back_off
from .exceptions import FakeGptError, redact
from ._validate import (
    check_base_url, check_max_retries, check_path, check_proxy, check_secret, check_timeout, public_url, url_password,
)

__all__ = ["Client"]

logger = logging.getLogger("fakegpt")

Messages = Sequence[Mapping[str, str]]


class _Default:
    """The "not given" marker of settings the environment can supply."""

    def __repr__(self) -> str:
        return "<default>"


DEFAULT: Any = _Default()


class Client:
    """A blocking client for a ChatGPT-web "shared account" server.

    >>> from fakegpt.emulator import Emulator
    >>> with Emulator() as emulator, Client(emulator.url) as client:
    ...     for delta in client.stream([{"role": "user", "content": "Say hi"}]):
    ...         print(delta, end="")
    ...     print()
    ...     print(client.complete([{"role": "user", "content": "Say hi"}]).finish_reason)
    Hello! You said "Say hi". ...
    stop

    :param base_url: the server; any server speaking the protocol.
    :param proxy: ``"http://host:port"`` (or ``socks5://`` with PySocks), for
        http and https.
    :param timeout: seconds, or ``(connect, read)``, for the conversation
        stream. The read timeout also bounds a stall in the middle of a stream.
    :param login_timeout: the same for the small requests of the login
        (default ``(10, 20)``): a server that accepts and never answers
        fails the login quickly.
    :param deadline: seconds for a whole call, login, retries and
        continuations included (default: none). Past it, the call fails with
        :class:`~fakegpt.APITimeoutError`. Independently, a body that
        trickles (bytes keep coming, but no complete event within the read
        timeout) fails the same way.
    :param max_retries: retries of a failed call, not counting the first try.
    :param session_password: the isolation password used at login (the
        server keeps conversations under it); ``None`` reuses the one in the
        session cache, else makes a fresh random one.
    :param access_token: skip the shared-token login and use this token (a
        401 is then final: the client does not log in on its own).
    :param session_cache: keep the login in a file shared by processes, so a
        new process skips the login: ``True`` for the per-user cache file, or
        a path. A cached token the server rejects is replaced; the isolation
        password is cached too, so conversations outlive a re-login.
        ``None`` reads ``FAKEGPT_SESSION_CACHE``.

    Settings left out come from the environment (``FAKEGPT_BASE_URL``,
    ``FAKEGPT_PROXY``, ``FAKEGPT_TIMEOUT``, ``FAKEGPT_MAX_RETRIES``,
    ``FAKEGPT_SESSION_CACHE``), else the defaults; an argument always wins.
    ``proxy=""`` ignores ``FAKEGPT_PROXY`` (requests still applies
    ``HTTP(S)_PROXY``, except to a loopback server such as the emulator).
    Credentials in *base_url* (``https://user:pw@host``) are sent as HTTP
    Basic auth (the ``Authorization`` header) on every request, for a
    server behind a password-protected gate; the access token then goes in
    ``X-Authorization`` only. They are never shown (``***@host``).

    The client is thread-safe: one ``requests.Session`` (its connection pool
    and cookie jar lock internally) serves every thread, and the first
    threads to need a token share one login.
    """

    def __init__(
        self,
        base_url: Optional[str] = None,
        *,
        proxy: Optional[str] = None,
        timeout: Union[Timeout, _Default] = DEFAULT,
        max_retries: Union[int, _Default] = DEFAULT,
        session_password: Optional[str] = None,
        access_token: Optional[str] = None,
        session_cache: Union[None, bool, str, "os.PathLike[str]"] = None,
        login_timeout: Timeout = LOGIN_TIMEOUT,
        deadline: Optional[float] = None,
    ) -> None:
        for problem in setting_problems():  # (FAKEGPT_LOG, read at import): said once, by the first client
            warnings.warn(problem, stacklevel=2)
        if base_url is None:
            base_url = env_str("FAKEGPT_BASE_URL") or DEFAULT_BASE_URL
        url = check_base_url(base_url)
        register_url(self, url)
        #: The server, with any credentials shown as ``***``.
        self.base_url: str = public_url(url)
        #: The proxy for http and https, or ``None``.
        self.proxy: Optional[str] = check_proxy(env_str("FAKEGPT_PROXY") if proxy is None else proxy)
        register_url(self, self.proxy)
        if timeout is DEFAULT:
            timeout = env_timeout() or DEFAULT_TIMEOUT
        #: Seconds, or ``(connect, read)``, for the conversation stream.
        self.timeout: Timeout = check_timeout(timeout)
        self.login_timeout: Timeout = check_timeout(login_timeout, "login_timeout")
        #: Seconds for a whole call (login, retries and continuations included), or ``None``.
        self.deadline: Optional[float] = check_timeout(deadline, "deadline") if deadline is not None else None  # type: ignore[assignment]
        if max_retries is DEFAULT:
            from_env = env_max_retries()
            max_retries = DEFAULT_MAX_RETRIES if from_env is None else from_env
        #: Retries of a failed call, not counting the first try.
        self.max_retries: int = check_max_retries(max_retries)
        session_password = check_secret("session_password", session_password)
        access_token = check_secret("access_token", access_token, token=True)
        self._cache = _session_cache(session_cache)
        cached = None
        #: Whether the first login claims the password shared through the cache (see _log_in).
        self._claim = False
        if self._cache is not None and not access_token:
            cached = self._cache.load(self.base_url)
            if session_password is None:
                # One password per server for every process using the cache: each
                # one's conversations stay reachable, whichever logs in next.
                session_password = (cached and cached["session_password"]) or self._cache.saved_password(
                    self.base_url)
                self._claim = session_password is None  # none saved yet: claimed at the first login
            if cached is not None and cached["session_password"] != session_password:
                cached = None  # a login under another password: its conversations are not this client's
        self._password = session_password or new_session_password()
        self._url_secret = url_password(url) or url_password(self.proxy)
        self._http = Http(url, referer=f"{without_userinfo(url)}/?v=2", proxy=self.proxy,
                          timeout=self.timeout, scrub=lambda error: redact(error, self._secrets()))
        # A chosen or cached password wants its history back: the same account each login.
        stable = session_password is not None or self._cache is not None
        self._login = SharedTokenLogin(self._login_send, self._http.session, self._password, stable=stable,
                                       timeout=self.login_timeout, dead_tokens=DeadTokens(self._cache, self.base_url))
        save = self._save_login if self._cache is not None else None
        self._token = AccessToken(None if access_token else self._log_in, access_token, on_new_token=save)
        read_timeout = self.timeout[1] if isinstance(self.timeout, tuple) else self.timeout
        self._engine = Engine(self._http, self._token, self.max_retries, self._secrets, deadline=self.deadline,
                              event_timeout=read_timeout)
        self._closed = False
        if cached is not None:
            self._restore_login(cached)

    # -- public API --------------------------------------------------------
    @property
    def session_cache(self) -> Optional[str]:
        """The session cache file in use, or ``None``."""
        return self._cache.path if self._cache is not None else None

    @property
    def cookies(self) -> requests.cookies.RequestsCookieJar:
        """The session's cookies (the login's among them)."""
        return self._http.cookies

    def stream(self, messages: Messages, model: Optional[str] = DEFAULT_MODEL) -> Stream:
        """Stream the reply to *messages*: a generator of non-empty ``str`` deltas.

        :param messages: ``[{"role": "user", "content": "..."}, ...]``; several
            messages are flattened into one prompt, like the original provider.
        :param model: ``"gpt-3.5-turbo"`` (the default) or a backend slug.
        :raises TypeError, ValueError: bad input, before any request.
        :raises FakeGptError: while iterating, when the call fails (see
            :mod:`fakegpt.exceptions`).
        """
        self._check_open()
        prompt = flatten_prompt(validate_messages(messages))
        if not prompt.strip():
            raise ValueError("the prompt is empty")
        slug = web_model(model)

        def deltas(call: Call) -> Generator[str, None, None]:
            # The body (two uuid4s: system calls) is made when the stream starts, by the
            # thread that reads it: not by an event loop starting hundreds of calls.
            yield from call.request(conversation_body(prompt, slug))

        return Stream(self._engine.new_call(), deltas)

    def complete(self, messages: Messages, model: Optional[str] = DEFAULT_MODEL) -> Reply:
        """The whole reply to *messages*: a :class:`Reply`, which is the text
        itself (a ``str``) carrying the reply's ids and finish reason."""
        return drain(self.stream(messages, model))

    def conversation(
        self,
        *,
        conversation_id: Optional[str] = None,
        parent_message_id: Optional[str] = None,
        model: Optional[str] = DEFAULT_MODEL,
        auto_continue: bool = False,
    ) -> Conversation:
        """A conversation the server keeps: each call sends only the new message.

        Give both ids (saved from an earlier :class:`Conversation`) to resume
        one. With *auto_continue*, a reply that stops at the length limit is
        continued until it is whole, as one seamless stream.
        """
        self._check_open()
        return Conversation(self._engine, conversation_id=conversation_id, parent_message_id=parent_message_id,
                            model=model, auto_continue=auto_continue)

    @property
    def access_token(self) -> Optional[str]:
        """The current access token (a secret), or ``None`` before the first login.
        Setting it replaces the token; ``None`` forces a login on the next call."""
        return self._token.current

    @access_token.setter
    def access_token(self, token: Optional[str]) -> None:
        self._token.set(check_secret("access_token", token, token=True))

    def close(self) -> None:
        """End the calls still streaming and close every connection, pooled
        or in use. The client cannot be used afterwards."""
        self._closed = True
        self._engine.close()

    def __enter__(self) -> "Client":
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "closed" if self._closed else ("logged in" if self._token.current else "not logged in")
        return f"<fakegpt.Client {self.base_url!r} {state}>"

    # -- internals -----------------------------------------------------------
    def _login_send(self, method: str, path: str, *, what: str, timeout: Optional[Timeout] = None,
                    **kwargs: Any) -> Answer:
        """One request of the login, retried on transient failures until its answer begins
        (reading the body is not retried: the request was accepted, it is not sent again)."""
        if self._closed:  # by another thread, during the login: the call ends (quietly, as it is aborted)
            raise FakeGptError("the client was closed during the call")
        retrying = make_retrying(self.max_retries, self._engine.sleep or back_off)  # an abort ends the wait
        response = retrying(self._http.open, method, path, what=what,
                            timeout=self.login_timeout if timeout is None else timeout, **kwargs)
        return self._http.read(response, what)

    def _log_in(self) -> str:
        """The shared-token login (one at a time: :class:`AccessToken` sees to
        it). The first one claims the isolation password in the session cache
        when none was saved: the one another process saved meanwhile, else
        this client's, saved now, so that processes starting at once agree."""
        if self._claim:
            self._claim = False
            claimed = self._cache.claim_password(self.base_url, self._password)  # type: ignore[union-attr]
            if claimed != self._password:
                self._password = claimed
                self._login = SharedTokenLogin(
                    self._login_send, self._http.session, claimed, stable=True, timeout=self.login_timeout,
                    dead_tokens=DeadTokens(self._cache, self.base_url))
        return self._login()

    def _secrets(self) -> Sequence[Optional[str]]:
        return (self._token.current, self._password, self._url_secret)

    def _restore_login(self, entry: Dict[str, Any]) -> None:
        self._http.cookies.update(self._cache.cookies(entry))  # type: ignore[union-attr]
        self._token.set(entry["access_token"])
        logger.debug("session cache: using the saved login for %s", self.base_url)

    def _save_login(self, token: str) -> None:
        self._cache.save(self.base_url, token, self._http.cookies, self._password)  # type: ignore[union-attr]

    def _check_open(self) -> None:
        if self._closed:
            raise ValueError("this Client is closed")


def _session_cache(value: Any) -> Optional[SessionCache]:
    if value is None:
        value = env_session_cache()
    if value is True:
        return SessionCache(default_cache_path())
    if value is False:
        return None
    if check_path(value):
        return SessionCache(value)
    raise TypeError(f"session_cache must be True, False, None or a path, not {value!r}")

