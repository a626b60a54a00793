"""One HTTP exchange with the server, and the fakegpt error for each way it fails.

:class:`Http` owns the ``requests`` session of a client. Its two calls:

* :meth:`Http.open`: the answer's headers, the body left unread (the
  conversation stream);
* :meth:`Http.fetch`: a whole, small answer, read with a cap
  (:data:`MAX_BODY`), as an :class:`Answer`; the same in two steps:
  :meth:`Http.open`, then :meth:`Http.read` (the login, which retries only
  the first).

Statuses below 400, or listed in ``passthrough``, come back; others raise the
fakegpt error that describes them (:func:`fakegpt.exceptions.error_for_status`).
"""
from __future__ import annotations

import json
import logging
import re
from typing import Any, Callable, Dict, List, Mapping, Optional, Tuple, Union

from urllib.parse import unquote, urlsplit

import requests
import urllib3
from requests.auth import HTTPBasicAuth
from requests.structures import CaseInsensitiveDict

from ._capped import read_capped as capped
from ._constants import BROWSER_HEADERS, MAX_BODY, POOL_MAXSIZE
from ._fork import reset_object_in_child
from ._retry import retry_after_seconds
from ._secrets import without_userinfo
from ._transport import Adapter, HttpSession
from .exceptions import APIConnectionError, APIStatusError, APITimeoutError, FakeGptError, error_for_status, one_line

__all__ = ["Answer", "Http", "MAX_BODY", "MAX_ERROR_BODY", "Timeout", "describe", "host_of"]

logger = logging.getLogger("fakegpt")

Timeout = Union[float, Tuple[Optional[float], Optional[float]], None]
#: How much of an error body is read to explain the error.
MAX_ERROR_BODY = 65536


class Answer:
    """A whole answer: ``status_code``, ``headers``, ``content``, ``url``."""

    def __init__(self, response: requests.Response, content: bytes) -> None:
        self.status_code: int = response.status_code
        self.headers: "CaseInsensitiveDict[str]" = response.headers
        self.url: str = response.url
        self.content = content
        #: urllib3's response: its ``headers.getlist("Set-Cookie")`` lists every cookie as sent.
        self.raw: Any = response.raw

    def json(self) -> Any:
        return json.loads(self.content)


class Http:
    """The client's HTTP session: one ``requests.Session``, thread-safe."""

    def __init__(self, base_url: str, *, referer: str, proxy: Optional[str], timeout: Timeout,
                 scrub: Callable[[FakeGptError], FakeGptError] = lambda error: error,
                 pool_size: int = POOL_MAXSIZE) -> None:
        """:param base_url: the server; its credentials (``user:pw@``), if any,
            are sent as HTTP Basic auth in ``Authorization`` on every request
            (the access token then goes in ``X-Authorization`` only).
        :param scrub: redacts the client's secrets from an error before it is raised."""
        parts = urlsplit(base_url)
        self._basic: Optional[HTTPBasicAuth] = None
        if parts.username is not None or parts.password is not None:
            self._basic = HTTPBasicAuth(unquote(parts.username or ""), unquote(parts.password or ""))
            base_url = without_userinfo(base_url)
        self.base_url = base_url
        self._scrub = scrub
        self.timeout = timeout
        self.session = HttpSession()
        self.session.headers.update(BROWSER_HEADERS)
        self.session.headers["Referer"] = referer
        self._pool_size = pool_size
        self._mount()
        self.proxies = {"http": proxy, "https": proxy} if proxy else None
        self._where = host_of(base_url)
        self._tls_at_proxy_only = bool(proxy and proxy.lower().startswith("https:")
                                       and base_url.lower().startswith("http:"))
        reset_object_in_child(self)

    def _mount(self) -> None:
        self._adapter = Adapter(pool_connections=4, pool_maxsize=self._pool_size)
        self.session.mount("http://", self._adapter)
        self.session.mount("https://", self._adapter)

    def _after_fork_in_child(self) -> None:
        """A forked child connects on its own: the parent's pooled connections
        share their sockets with the parent (a request on one would mix with
        the parent's), and a parent's thread may have held a pool's lock or
        the cookie jar's. The parent's are dropped, not closed; the cookies
        are copied (iterating a jar takes no lock)."""
        jar = requests.cookies.RequestsCookieJar()
        jar.update(self.session.cookies)
        self.session.cookies = jar
        self._mount()

    @property
    def cookies(self) -> requests.cookies.RequestsCookieJar:
        return self.session.cookies

    def open(self, method: str, path: str, *, what: str, timeout: Optional[Timeout] = None,
             passthrough: Tuple[int, ...] = (), **kwargs: Any) -> requests.Response:
        """Send a request; the answer with its body unread (close it when done)."""
        if self._basic is not None:
            kwargs["auth"] = self._basic  # (it replaces a bearer Authorization header: X-Authorization has the token)
        try:
            response = self.session.request(
                method, self.base_url + path, timeout=self.timeout if timeout is None else timeout,
                proxies=self.proxies, stream=True, **kwargs)
        except requests.exceptions.Timeout as error:
            phase = "connecting" if isinstance(error, requests.exceptions.ConnectTimeout) else "waiting for the answer"
            raise self._scrub(APITimeoutError(f"{what} timed out {phase} to {self._where}")) from _detach(error)
        except requests.exceptions.RequestException as error:
            raise self._scrub(APIConnectionError(
                f"{what} to {self._where} failed: {describe(error, tls_at_proxy_only=self._tls_at_proxy_only)}"
            )) from _detach(error)
        except OSError as error:  # e.g. a CA bundle path (REQUESTS_CA_BUNDLE) that does not exist
            raise APIConnectionError(f"{what} to {self._where} failed: {one_line(str(error), 200)}") from None
        status = response.status_code
        logger.debug("%s: HTTP %d", what, status)
        if status < 400 or status in passthrough:
            return response
        body = read_capped(response, MAX_ERROR_BODY, what, truncate=True)
        raise self._scrub(error_for_status(
            status, body, content_type=response.headers.get("Content-Type", ""), what=what,
            retry_after=retry_after_seconds(response.headers.get("Retry-After"))))

    def fetch(self, method: str, path: str, *, what: str, **kwargs: Any) -> Answer:
        """Send a request and read its whole (small) answer."""
        return self.read(self.open(method, path, what=what, **kwargs), what)

    @staticmethod
    def read(response: requests.Response, what: str) -> Answer:
        """The whole (small) answer of :meth:`open`'s *response*, read now.
        A caller that retries keeps this out of its retries: the answer
        began, so the request is not sent again whatever happens to the body."""
        return Answer(response, read_capped(response, MAX_BODY, what))

    def close(self) -> None:
        """Close every connection, in use or pooled."""
        self.session.close()


def read_capped(response: requests.Response, limit: int, what: str, *, truncate: bool = False) -> bytes:
    """The body of *response* (decompressed), at most *limit* bytes; the response is closed.

    Past *limit*: the first *limit* bytes with *truncate* (an error body,
    which only explains the error), else an :class:`~fakegpt.APIStatusError`.
    Nothing larger is ever held in memory.
    """
    chunks = response.iter_content(65536)
    try:
        if not truncate:
            try:
                return capped(chunks, limit, what=what, status_code=response.status_code)
            except FakeGptError:
                raise
            except Exception as error:  # noqa: BLE001 - a cut body
                raise APIConnectionError(f"{what}: the answer could not be read: {describe(error)}") from None
        pieces: List[bytes] = []
        size = 0
        try:
            for piece in chunks:
                pieces.append(piece)
                size += len(piece)
                if size > limit:
                    break
        except Exception:  # noqa: BLE001 - a cut error body: what arrived still explains it
            pass
        return b"".join(pieces)[:limit]
    finally:
        response.close()


def host_of(url: str) -> str:
    """``host:port`` of *url*, without credentials."""
    parts = urlsplit(url)
    host = parts.hostname or "?"
    if ":" in host:
        host = f"[{host}]"
    return f"{host}:{parts.port}" if parts.port else host


def _detach(error: requests.exceptions.RequestException) -> requests.exceptions.RequestException:
    """The requests error as a cause, without the prepared request (its headers hold the token)."""
    error.request = error.response = None
    return error


_ERRNO = re.compile(r"\[Errno -?\d+\] ([^'\")]+)")
_NOISE = (
    re.compile(r"<[^>]*? object at 0x[0-9a-f]+>:? ?"),
    re.compile(r"\w*Connection(?:Pool)?\((?:host|proxy)=[^)]*\):? ?"),
    re.compile(r"Max retries exceeded with url: \S+ ?"),
    re.compile(r"\(Caused by \w+\(|\)+$"),
)
_HINTS: Dict[str, str] = {
    "Name or service not known": "the host name could not be resolved",
    "nodename nor servname": "the host name could not be resolved",
    "Temporary failure in name resolution": "the host name could not be resolved",
    "Connection refused": "the connection was refused (is the server running?)",
    "CERTIFICATE_VERIFY_FAILED": "the server's TLS certificate could not be verified",
    "Connection reset": "the connection was reset",
    "RemoteDisconnected": "the server closed the connection without answering",
}


def describe(error: BaseException, *, tls_at_proxy_only: bool = False) -> str:
    """What went wrong, in words: no Python reprs, no internal class names.

    With *tls_at_proxy_only* (a plain ``http://`` server reached through an
    ``https://`` proxy), a TLS failure is the proxy's whatever wraps it
    (urllib3 1.26 raises it unwrapped, 2.x inside a ``ProxyError``)."""
    text = _innermost_text(error)
    proxy = _is_proxy_error(error) or (tls_at_proxy_only and "CERTIFICATE_VERIFY_FAILED" in text)
    for needle, hint in _HINTS.items():
        if needle in text:
            text = hint
            break
    else:
        errno = _ERRNO.search(text)
        if errno:
            text = errno.group(1).strip()
        for noise in _NOISE:
            text = noise.sub("", text)
        text = text.strip(" :'\"(),") or type(error).__name__
    text = one_line(text, 200)
    if not proxy:
        return text
    for server, the_proxy in (("(is the server running?)", "(is the proxy running?)"),
                              ("the server's TLS certificate", "the proxy's TLS certificate")):
        text = text.replace(server, the_proxy)
    return "could not use the proxy: " + text


def _chain(error: BaseException) -> List[BaseException]:
    """*error* and the errors it wraps (urllib3's ``reason``, exceptions among ``args``)."""
    chain = [error]
    for _ in range(8):
        current = chain[-1]
        inner = getattr(current, "reason", None)
        if not isinstance(inner, BaseException):
            inner = next((a for a in reversed(current.args) if isinstance(a, BaseException)), None)
        if inner is None or inner in chain:
            break
        chain.append(inner)
    return chain


def _is_proxy_error(error: BaseException) -> bool:
    """urllib3's ProxyError (an HTTP proxy), or a SOCKS proxy that could not
    be reached or broke off. (A SOCKS proxy that answers that *it* could not
    reach the server is not the proxy's failure: the server is named, as
    without a proxy.)"""
    for link in _chain(error):
        if type(link).__name__ == "ProxyError":
            return True
        if isinstance(link, urllib3.exceptions.NewConnectionError) and _socks_proxy_failed(link):
            return True
    return False


def _socks_proxy_failed(error: BaseException) -> bool:
    """urllib3 raises *error* while handling PySocks' own, which says who failed."""
    try:
        import socks  # type: ignore[import-untyped,unused-ignore]  # (PySocks ships no types)
    except ImportError:  # no PySocks: no SOCKS proxy either
        return False
    failure = error.__cause__ or error.__context__
    if not isinstance(failure, socks.ProxyError):
        return False
    inner = failure.socket_err if failure.socket_err is not None else failure
    return not isinstance(inner, (socks.SOCKS5Error, socks.SOCKS4Error, socks.HTTPError))  # the proxy's reply


def _innermost_text(error: BaseException) -> str:
    return str(_chain(error)[-1])


def headers_for(token: str) -> Mapping[str, str]:
    """The headers of a conversation request made with *token*."""
    return {
        "Content-Type": "application/json",
        "Accept": "text/event-stream",
        "X-Authorization": f"Bearer {token}",
        "Authorization": f"Bearer {token}",
    }
