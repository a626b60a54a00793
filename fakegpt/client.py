"""The blocking client: owns the ``requests.Session``; ``stream()`` and ``complete()``."""
from __future__ import annotations

import logging
import math
import os
import re
import time
from typing import Any, Callable, Dict, Generator, Mapping, Optional, Sequence, Tuple, Union
from urllib.parse import urlsplit

import requests

from ._auth import AccessToken, SharedTokenLogin, new_session_password
from ._cache import SessionCache, default_cache_path
from ._config import env_max_retries, env_session_cache, env_str, env_timeout
from ._constants import BROWSER_HEADERS, DEFAULT_BASE_URL, DEFAULT_MAX_RETRIES, DEFAULT_TIMEOUT, POOL_MAXSIZE
from ._conversation import Conversation
from ._protocol import DEFAULT_MODEL, ReplyDecoder, conversation_body, flatten_prompt, validate_messages, web_model
from ._retry import make_retrying, retry_after_seconds
from ._stream import Reply, Stream, StreamState, _Reader
from ._transport import Adapter, connection_watch
from .exceptions import (
    APIConnectionError,
    APIStatusError,
    APITimeoutError,
    AuthenticationError,
    FakeGptError,
    NoValidResponseError,
    StreamError,
    detail_from_body,
    error_for_status,
    one_line,
    redact,
)

__all__ = ["Client"]

logger = logging.getLogger("fakegpt")

Timeout = Union[float, Tuple[Optional[float], Optional[float]], None]
Messages = Sequence[Mapping[str, str]]
_CONVERSATION = "/api/conversation"
_MAX_ERROR_BODY = 65536


class _TokenRejected(Exception):
    """The conversation call answered 401: the access token is no good."""

    def __init__(self, error: AuthenticationError) -> None:
        super().__init__(str(error))
        self.error = error


class _Default:
    """The "not given" marker of settings the environment can supply."""

    def __repr__(self) -> str:
        return "<default>"


DEFAULT = _Default()


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
    :param timeout: seconds, or ``(connect, read)``. The read timeout also
        bounds a stall in the middle of a stream.
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
    ``HTTP(S)_PROXY``, as it always does).

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
    ) -> None:
        if base_url is None:
            base_url = env_str("FAKEGPT_BASE_URL") or DEFAULT_BASE_URL
        self.base_url = _check_base_url(base_url)
        self.proxy = _check_proxy(env_str("FAKEGPT_PROXY") if proxy is None else proxy)
        if timeout is DEFAULT:
            timeout = env_timeout() or DEFAULT_TIMEOUT
        self.timeout = _check_timeout(timeout)
        if max_retries is DEFAULT:
            max_retries = env_max_retries()
            max_retries = DEFAULT_MAX_RETRIES if max_retries is None else max_retries
        self.max_retries = _check_max_retries(max_retries)
        _check_optional_str("session_password", session_password)
        _check_optional_str("access_token", access_token)
        self._cache = _session_cache(session_cache)
        cached = None
        if self._cache is not None and not access_token:
            cached = self._cache.load(self.base_url)
            if session_password is None:
                # One password per server for every process using the cache: each
                # one's conversations stay reachable, whichever logs in next.
                session_password = (cached and cached["session_password"]) or self._cache.claim_password(
                    self.base_url, new_session_password())
            if cached is not None and cached["session_password"] != session_password:
                cached = None  # a login under another password: its conversations are not this client's
        self._password = session_password or new_session_password()
        self._session = requests.Session()
        self._session.headers.update(BROWSER_HEADERS)
        self._session.headers["Referer"] = f"{self.base_url}/?v=2"
        adapter = Adapter(pool_maxsize=POOL_MAXSIZE)
        self._session.mount("http://", adapter)
        self._session.mount("https://", adapter)
        self._proxies = {"http": self.proxy, "https": self.proxy} if self.proxy else None
        # A chosen or cached password wants its history back: the same account each login.
        stable = session_password is not None or self._cache is not None
        login = SharedTokenLogin(self._send, self._session, self._password, stable=stable)
        save = self._save_login if self._cache is not None else None
        self._token = AccessToken(None if access_token else login, access_token, on_new_token=save)
        self._sleep: Optional[Callable[[float], Any]] = None  # tests record waits here
        self._closed = False
        if cached is not None:
            self._restore_login(cached)

    # -- public API --------------------------------------------------------
    @property
    def session_cache(self) -> Optional[str]:
        """The session cache file in use, or ``None``."""
        return self._cache.path if self._cache is not None else None

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
        body = conversation_body(prompt, web_model(model))
        return Stream(lambda state: self._generate(state, body))

    def complete(self, messages: Messages, model: Optional[str] = DEFAULT_MODEL) -> Reply:
        """The whole reply to *messages*: a :class:`Reply`, which is the text
        itself (a ``str``) carrying the reply's ids and finish reason."""
        return self._drain(self.stream(messages, model))

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
        return Conversation(self, conversation_id=conversation_id, parent_message_id=parent_message_id,
                            model=model, auto_continue=auto_continue)

    @property
    def access_token(self) -> Optional[str]:
        """The current access token (a secret), or ``None`` before the first login.
        Setting it replaces the token; ``None`` forces a login on the next call."""
        return self._token.current

    @access_token.setter
    def access_token(self, token: Optional[str]) -> None:
        _check_optional_str("access_token", token)
        self._token.set(token)

    def close(self) -> None:
        """Release the connections. The client cannot be used afterwards."""
        self._closed = True
        self._session.close()

    def __enter__(self) -> "Client":
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "closed" if self._closed else ("logged in" if self._token.current else "not logged in")
        return f"<fakegpt.Client {self.base_url!r} {state}>"

    # -- the conversation call ---------------------------------------------
    def _stream(self, generate: Callable[[StreamState], Generator[str, None, None]]) -> Stream:
        self._check_open()
        return Stream(generate)

    @staticmethod
    def _drain(stream: Stream) -> Reply:
        with stream:
            for _ in stream:
                pass
        return stream.reply()

    def _generate(
        self, state: StreamState, body: Mapping[str, Any], resume: Optional[Mapping[str, str]] = None,
        require_text: bool = True,
    ) -> Generator[str, None, None]:
        """One conversation call's deltas (*resume*: text of a message already delivered).

        Its errors leave annotated: the text delivered so far in
        ``partial_text``, and secrets redacted, whatever the server echoed.
        """
        try:
            opened = self._open(state, body, resume)
            if opened is None:
                return
            reader, deltas, first = opened
            if first is not None:
                yield first
                yield from deltas
            if require_text and not reader.decoder.parts and not state.aborted:
                raise NoValidResponseError("no valid response: the stream completed without any assistant text")
        except FakeGptError as error:
            if not error.partial_text:
                error.partial_text = state.text
            raise self._scrub(error)

    def _open(self, state: StreamState, body: Mapping[str, Any], resume: Optional[Mapping[str, str]] = None) -> Any:
        """Open the stream and read up to its first delta, retrying what is
        retryable; on a 401, log in once more and try again."""
        sleep = self._sleep or state.wait
        for fresh_login in (False, True):
            token = self._token.get(stop=lambda: state.aborted)
            if token is None:  # aborted: do not wait for, or start, a login
                return None
            try:
                return make_retrying(self.max_retries, sleep)(self._attempt, state, body, token, resume)
            except _TokenRejected as rejected:
                if fresh_login or not self._token.can_login:
                    suffix = " even after a fresh login" if fresh_login else ""
                    raise AuthenticationError(
                        f"the server rejected the access token{suffix} ({rejected.error})", status_code=401
                    ) from None
                logger.info("access token rejected (HTTP 401); logging in again")
                self._token.invalidate(token)
        raise AssertionError("unreachable")  # pragma: no cover

    def _attempt(self, state: StreamState, body: Mapping[str, Any], token: str, resume: Any) -> Any:
        if state.aborted:
            return None
        headers = {
            "Content-Type": "application/json",
            "Accept": "text/event-stream",
            "X-Authorization": f"Bearer {token}",
            "Authorization": f"Bearer {token}",
        }
        try:
            # Redirects are not followed: the bearer headers would go to any host a redirect names.
            with connection_watch(state.watch):
                response = self._send_once(
                    "POST", _CONVERSATION, what="POST /api/conversation", stream=True,
                    json=body, headers=headers, allow_redirects=False,
                )
        except AuthenticationError as error:
            raise _TokenRejected(error) from None
        except FakeGptError:
            if state.aborted:  # the abort hung up before the answer came: end quietly
                return None
            raise
        _check_stream_response(response)
        reader = _Reader(response, ReplyDecoder(resume=resume))
        state.attach(reader)
        deltas = reader.deltas()
        first = next(deltas, None)
        return reader, deltas, first

    # -- HTTP ----------------------------------------------------------------
    def _send(self, method: str, path: str, *, what: str, **kwargs: Any) -> requests.Response:
        """One HTTP call, retried on transient failures (used by the login)."""
        self._check_open()
        sleep = self._sleep or time.sleep
        return make_retrying(self.max_retries, sleep)(self._send_once, method, path, what=what, **kwargs)

    def _send_once(
        self, method: str, path: str, *, what: str, passthrough: Tuple[int, ...] = (), **kwargs: Any
    ) -> requests.Response:
        """One try. Statuses < 400 or in *passthrough* come back; others raise."""
        try:
            response = self._session.request(
                method, self.base_url + path, timeout=self.timeout, proxies=self._proxies, **kwargs
            )
        except requests.exceptions.Timeout as error:
            phase = "connecting" if isinstance(error, requests.exceptions.ConnectTimeout) else "waiting for the answer"
            raise APITimeoutError(f"{what} timed out {phase}: {_reason(error)}") from _detach(error)
        except requests.exceptions.RequestException as error:
            where = urlsplit(self.base_url).netloc
            raise APIConnectionError(f"{what} to {where} failed: {_reason(error)}") from _detach(error)
        status = response.status_code
        logger.debug("%s: HTTP %d", what, status)
        if status < 400 or status in passthrough:
            return response
        try:
            body = response.raw.read(_MAX_ERROR_BODY, decode_content=True) if kwargs.get("stream") else response.content
        except Exception:  # the status says enough
            body = b""
        finally:
            response.close()
        error = error_for_status(
            status,
            body or b"",
            content_type=response.headers.get("Content-Type", ""),
            what=what,
            retry_after=retry_after_seconds(response.headers.get("Retry-After")),
        )
        raise self._scrub(error)

    # -- the session cache ---------------------------------------------------
    def _restore_login(self, entry: Dict[str, Any]) -> None:
        self._session.cookies.update(self._cache.cookies(entry))  # type: ignore[union-attr]
        self._token.set(entry["access_token"])
        logger.debug("session cache: using the saved login for %s", self.base_url)

    def _save_login(self, token: str) -> None:
        self._cache.save(self.base_url, token, self._session.cookies, self._password)  # type: ignore[union-attr]

    def _scrub(self, error: FakeGptError) -> FakeGptError:
        return redact(error, (self._token.current, self._password))

    def _check_open(self) -> None:
        if self._closed:
            raise ValueError("this Client is closed")


def _detach(error: requests.exceptions.RequestException) -> requests.exceptions.RequestException:
    """The requests error as a cause, without the prepared request (its headers hold the token)."""
    error.request = error.response = None
    return error


def _reason(error: BaseException) -> str:
    """The innermost, most telling part of a requests/urllib3 error."""
    inner: Any = error.args[0] if error.args else error
    reason = getattr(inner, "reason", None) or inner
    text = re.sub(r"<[^>]*? object at 0x[0-9a-f]+>: ", "", str(reason))
    text = re.sub(r"^\w*Connection(?:Pool)?\(host=[^)]*\): ", "", text)
    return one_line(text, 200)


def _check_stream_response(response: requests.Response) -> None:
    """A 2xx that is not an event stream (a redirect, an HTML page, a JSON error)."""
    status = response.status_code
    if 300 <= status < 400:
        response.close()
        where = urlsplit(response.headers.get("Location", "")).netloc or "elsewhere"
        raise APIStatusError(
            f"POST /api/conversation was redirected (HTTP {status} to {where}); not followed, "
            "because the access token would go along",
            status_code=status,
        )
    content_type = response.headers.get("Content-Type", "").lower()
    if "html" in content_type or "json" in content_type:
        try:
            body = response.raw.read(_MAX_ERROR_BODY, decode_content=True)
        except Exception:
            body = b""
        finally:
            response.close()
        detail = detail_from_body(body, content_type)
        raise StreamError(f"expected an event stream, got {content_type.split(';')[0]}: {detail or 'empty body'}")


def _session_cache(value: Any) -> Optional[SessionCache]:
    if value is None:
        value = env_session_cache()
    if value is True:
        return SessionCache(default_cache_path())
    if value is False:
        return None
    if isinstance(value, (str, os.PathLike)) and os.fspath(value):
        return SessionCache(value)
    raise TypeError(f"session_cache must be True, False, None or a path, not {value!r}")


def _check_base_url(base_url: Any) -> str:
    if not isinstance(base_url, str):
        raise TypeError(f"base_url must be a str, not {type(base_url).__name__}")
    parts = urlsplit(base_url.strip())
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"base_url must be an http(s) URL like 'https://host', not {base_url!r}")
    if parts.query or parts.fragment:
        raise ValueError(f"base_url must not carry a query or fragment: {base_url!r}")
    return base_url.strip().rstrip("/")


def _check_proxy(proxy: Any) -> Optional[str]:
    if proxy is None or proxy == "":
        return None
    if not isinstance(proxy, str):
        raise TypeError(f"proxy must be a str like 'http://host:port', not {type(proxy).__name__}")
    parts = urlsplit(proxy)
    if parts.scheme not in ("http", "https", "socks4", "socks4a", "socks5", "socks5h") or not parts.hostname:
        raise ValueError("proxy must be a URL like 'http://host:port' or 'socks5://host:port'")
    if parts.scheme.startswith("socks"):
        try:
            import socks  # noqa: F401  (PySocks, what requests needs for SOCKS)
        except ImportError:
            raise ValueError("SOCKS proxies need PySocks: pip install 'requests[socks]'") from None
    return proxy


def _check_timeout(timeout: Any) -> Timeout:
    def seconds(value: Any, name: str) -> Optional[float]:
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise TypeError(f"{name} must be a number of seconds, not {type(value).__name__}")
        if not (value > 0 and math.isfinite(value)):
            raise ValueError(f"{name} must be a positive, finite number of seconds, not {value!r}")
        return float(value)

    if isinstance(timeout, (tuple, list)):
        if len(timeout) != 2:
            raise ValueError("timeout must be seconds or a (connect, read) pair")
        return (seconds(timeout[0], "connect timeout"), seconds(timeout[1], "read timeout"))
    return seconds(timeout, "timeout")


def _check_max_retries(max_retries: Any) -> int:
    if isinstance(max_retries, bool) or not isinstance(max_retries, int):
        raise TypeError(f"max_retries must be an int, not {type(max_retries).__name__}")
    if max_retries < 0:
        raise ValueError(f"max_retries must be 0 or more, not {max_retries}")
    return max_retries


def _check_optional_str(name: str, value: Any) -> None:
    if value is not None and not isinstance(value, str):
        raise TypeError(f"{name} must be a str, not {type(value).__name__}")
    if value is not None and not value.strip():
        raise ValueError(f"{name} must not be empty")
