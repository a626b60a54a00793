"""HTTP for fakegpt: a ``requests`` session and adapter, on their public API.

What they add to the defaults, and through which public hook:

* **The connection of a request, before its answer arrives.** A call can be
  aborted while the server has not even sent its headers: the socket is
  shut down at once instead of waiting for the headers or the read timeout.
  The adapter's ``get_connection_with_tls_context`` (requests' documented
  override point) gives each pool a connection class derived from the one
  urllib3 chose for it (plain, TLS, SOCKS), through urllib3's documented
  ``ConnectionCls`` attribute. That class's ``connect()`` and ``request()``
  tell the call in progress (a context variable, see :func:`watching`)
  which connection it got, and a call that has ended (aborted, or past its
  deadline) refuses it there: nothing more is connected or sent for it, a
  retry of the login's included. The same class bounds the wait for the
  answer's headers in all by the read timeout (each read of them is bounded
  by the socket's), and reads past interim ``1xx`` answers
  (:class:`FinalResponse`). The connection joins the adapter's set, so
  :meth:`Adapter.close` really closes every socket (urllib3 2's
  ``PoolManager.clear()`` leaves pooled connections open).
* **No ~/.netrc credentials.** requests replaces the request's
  ``Authorization`` with HTTP Basic from netrc unless the session has an
  ``auth``: :class:`HttpSession` has a no-op one, and its redirects never
  add netrc either. Proxies and CA bundles from the environment still apply.
* **An https:// proxy's certificate is always verified** (:meth:`Adapter.cert_verify`,
  requests' documented override point), for an ``http://`` server too.
* **No environment proxy for loopback servers** (the emulator): like Go's
  ``ProxyFromEnvironment``, ``HTTP(S)_PROXY`` never applies to
  ``localhost``/``127.0.0.0/8``/``::1``. An explicit proxy still does.
"""
from __future__ import annotations

import contextlib
import contextvars
import functools
import http.client
import ipaddress
import os
import socket
import threading
import time
import weakref
from typing import Any, Dict, Iterator, Mapping, Optional, Protocol, Type
from urllib.parse import urlsplit

import requests
from requests.adapters import HTTPAdapter
from requests.auth import AuthBase
from urllib3.connectionpool import ConnectionPool

from ._fork import reset_in_child
from ._watchdog import cancel_timer, start_timer

__all__ = [
    "Adapter", "ConnectionWatcher", "FinalResponse", "HttpSession", "back_off", "hang_up", "hang_up_owned",
    "is_loopback", "socket_of",
    "watching",
]


class ConnectionWatcher(Protocol):
    """What a call offers the transport: it is told each connection it uses."""

    def connection_used(self, connection: Any) -> None:
        """*connection* (an urllib3 connection) is connecting for, or carries,
        this call's request now. Raises (a :class:`~fakegpt.FakeGptError`)
        when the call has ended (aborted, or past its deadline): the
        connection is hung up, and nothing more is connected or sent."""

    def pause(self, seconds: float) -> None:
        """Wait *seconds* before a retry; return at once if the call ends."""


_current: "contextvars.ContextVar[Optional[ConnectionWatcher]]" = contextvars.ContextVar(
    "fakegpt_call", default=None)


@contextlib.contextmanager
def watching(watcher: ConnectionWatcher) -> Iterator[None]:
    """While active, requests made in this context report their connection to *watcher*."""
    reset = _current.set(watcher)
    try:
        yield
    finally:
        _current.reset(reset)


def back_off(seconds: float) -> None:
    """Wait *seconds* before a retry: on the current call's terms (its abort
    ends the wait, see :func:`watching`), else ``time.sleep``."""
    watcher = _current.get()
    if watcher is None:
        time.sleep(seconds)
    else:
        watcher.pause(seconds)


def socket_of(connection: Any) -> Any:
    """The socket a connection reads, or ``None``: its ``sock``, or, once
    http.client has let go of it (a response that closes the connection
    keeps the socket only in its own reader), the socket it connected."""
    sock = getattr(connection, "sock", None)
    return sock if sock is not None else getattr(connection, "_fakegpt_socket", None)


def hang_up(connection: Any) -> None:
    """Shut a connection's socket down: a thread blocked reading it returns at
    once and the server sees the connection end. Safe from any thread, on a
    closed or not yet connected connection too.

    Only a socket this process connected: in a forked child, the parent's
    connections share their sockets with the parent, and a shutdown would end
    the parent's streams too (closing the child's copy does not)."""
    if getattr(connection, "_fakegpt_pid", None) != os.getpid():
        return
    sock = socket_of(connection)
    for _ in range(4):  # TLS inside an https:// proxy's TLS: urllib3's SSLTransport wraps a socket
        if sock is None:
            return
        shutdown = getattr(sock, "shutdown", None)
        if shutdown is not None:
            try:
                shutdown(socket.SHUT_RDWR)
            except (OSError, ValueError):
                pass  # closed already
            return
        sock = getattr(sock, "socket", None)


# Who sent the last request on each connection, and whether it was hung up
# since: a connection back in the pool may be taken by another call at any
# moment, so an abort and the next request on it go through this lock.
_owners_lock = threading.Lock()


@reset_in_child
def _new_owners_lock() -> None:
    """A forked child: a parent's thread may have held the lock."""
    global _owners_lock
    _owners_lock = threading.Lock()


def hang_up_owned(connection: Any, owner: object) -> None:
    """:func:`hang_up` *connection* only if *owner*'s request was the last one
    sent on it: once it went back to the pool and another call sent a request
    on it, the connection is that call's. (Hung up while idle in the pool, it
    is connected afresh by whoever takes it next: see ``_Watching.request``.)"""
    with _owners_lock:
        ref = getattr(connection, "_fakegpt_owner", None)
        if ref is None or ref() is not owner:
            return
        connection._fakegpt_cut = True
        hang_up(connection)


def _claim(connection: Any, watcher: Optional[ConnectionWatcher]) -> bool:
    """*watcher*'s request goes on *connection* now; whether its previous
    owner hung it up meanwhile (it must be connected afresh)."""
    with _owners_lock:
        connection._fakegpt_owner = None if watcher is None else weakref.ref(watcher)
        cut, connection._fakegpt_cut = connection._fakegpt_cut, False
    return bool(cut)


class _Watching:
    """Mixin for urllib3's connection classes (see the module docstring)."""

    _fakegpt_connections: "weakref.WeakSet[Any]"
    _fakegpt_socket: Any = None
    _fakegpt_pid: Optional[int] = None  # the process that connected it (see hang_up())
    _fakegpt_owner: "Optional[weakref.ReferenceType[Any]]" = None  # see hang_up_owned()
    _fakegpt_cut = False

    def connect(self) -> None:
        watcher = _current.get()
        _claim(self, watcher)
        if watcher is not None:  # before the TCP (and TLS) handshake: an aborted call connects nothing
            watcher.connection_used(self)
        self._fakegpt_pid = os.getpid()
        super().connect()  # type: ignore[misc]
        self._fakegpt_socket = self.sock  # type: ignore[attr-defined]  # see socket_of()
        if watcher is not None:  # aborted during the handshake: hung up now, and nothing is sent
            watcher.connection_used(self)

    def request(self, *args: Any, **kwargs: Any) -> None:
        self._fakegpt_connections.add(self)
        watcher = _current.get()
        if _claim(self, watcher):  # hung up in the pool by the call that used it before
            self.close()  # type: ignore[attr-defined]  # (the request below connects again)
        if watcher is not None:
            watcher.connection_used(self)
        super().request(*args, **kwargs)  # type: ignore[misc]
        if watcher is not None:  # aborted while the request went out: hung up now, no answer awaited
            watcher.connection_used(self)

    def getresponse(self) -> Any:
        # The socket's read timeout bounds each read of the headers, and a
        # server trickling them a byte at a time resets it with each byte: a
        # timer bounds them in all, hanging up the connection when it fires.
        # urllib3 sets ``timeout`` to the read timeout before this call.
        limit = self.timeout  # type: ignore[attr-defined]
        if not isinstance(limit, (int, float)):
            return super().getresponse()  # type: ignore[misc]
        timer = start_timer(limit, functools.partial(hang_up, self))
        try:
            response = super().getresponse()  # type: ignore[misc]
        except BaseException as error:
            if cancel_timer(timer) and isinstance(error, Exception):
                raise _headers_timeout(limit) from None  # (the hang-up's own error says nothing)
            raise
        if cancel_timer(timer):
            # Hung up mid-headers: http.client takes the end of the data for the end of the headers.
            response.close()
            raise _headers_timeout(limit)
        return response


def _headers_timeout(limit: float) -> OSError:
    """What urllib3 turns into its ReadTimeoutError (and requests into a ReadTimeout):
    ``socket.timeout``, which only from Python 3.10 on is the builtin ``TimeoutError``."""
    return socket.timeout(f"the answer's headers did not arrive within {limit:g} s, the read timeout")


#: Interim answers skipped before one request's real answer, at most.
MAX_INTERIM = 32


class FinalResponse(http.client.HTTPResponse):
    """http.client's response, which takes a ``1xx`` interim answer (``103
    Early Hints``, ``102 Processing``) for the answer itself: it skips only
    ``100 Continue``. This one reads past every interim answer (RFC 9110
    §15.2: a client must accept them, and may ignore them) to the final one;
    ``101 Switching Protocols`` is final (never asked for here). Installed
    through ``response_class``, http.client's hook for its response type."""

    def begin(self) -> None:
        super().begin()
        for _ in range(MAX_INTERIM):
            if not (100 <= self.status < 200) or self.status == 101:
                return
            self.headers = self.msg = None  # type: ignore[assignment]  # begin() reads a head while it has none
            super().begin()
        raise http.client.HTTPException(f"more than {MAX_INTERIM} interim (1xx) answers")


class Adapter(HTTPAdapter):
    """``requests``' adapter; its connections are watched and closed for real."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self._connections: "weakref.WeakSet[Any]" = weakref.WeakSet()
        self._classes: Dict[type, type] = {}
        self._classes_lock = threading.Lock()
        super().__init__(*args, **kwargs)

    def get_connection_with_tls_context(
        self, request: requests.PreparedRequest, verify: Any, proxies: Optional[Mapping[str, str]] = None,
        cert: Any = None,
    ) -> ConnectionPool:
        pool = super().get_connection_with_tls_context(request, verify, proxies, cert)
        base = getattr(pool, "ConnectionCls")  # HTTPConnectionPool's documented attribute
        if not issubclass(base, _Watching):
            pool.ConnectionCls = self._watched(base)  # type: ignore[attr-defined]
        return pool

    def cert_verify(self, conn: Any, url: str, verify: Any, cert: Any) -> None:
        """As requests does, and an ``https://`` proxy's certificate is checked
        for an ``http://`` URL too: the pool's TLS then goes to the proxy
        (which reads every header, the bearer token included), and requests
        would leave it unverified because the URL is not ``https``."""
        if getattr(conn, "scheme", None) == "https" and not url.lower().startswith("https:"):
            url = "https:" + url.partition(":")[2]
        super().cert_verify(conn, url, verify, cert)  # type: ignore[no-untyped-call]

    def _watched(self, base: type) -> Type[Any]:
        with self._classes_lock:
            cls = self._classes.get(base)
            if cls is None:
                cls = type(base.__name__, (_Watching, base),
                           {"_fakegpt_connections": self._connections, "response_class": FinalResponse})
                self._classes[base] = cls
            return cls

    def close(self) -> None:
        """Close the pools and every connection this adapter made, in use or not."""
        super().close()
        for connection in list(self._connections):
            hang_up(connection)
            try:
                connection.close()
            except Exception:  # noqa: BLE001 - closing must go on for the rest
                pass
        self._connections.clear()


class _NoNetrc(AuthBase):
    """A session-wide auth that changes nothing: requests then never reads ~/.netrc."""

    def __call__(self, request: requests.PreparedRequest) -> requests.PreparedRequest:
        return request

    def __eq__(self, other: object) -> bool:
        return isinstance(other, _NoNetrc)

    def __hash__(self) -> int:
        return hash(_NoNetrc)


class HttpSession(requests.Session):
    """``requests.Session`` as requests users expect it (environment proxies
    and CA bundles apply), except that netrc never replaces our headers and
    loopback servers are never reached through an environment proxy."""

    def __init__(self) -> None:
        super().__init__()
        self.auth = _NoNetrc()

    def rebuild_auth(self, prepared_request: requests.PreparedRequest, response: requests.Response) -> None:
        """On a redirect to another host, drop the bearer headers; never add netrc's."""
        headers = prepared_request.headers
        if self.should_strip_auth(response.request.url or "", prepared_request.url or ""):  # type: ignore[no-untyped-call]
            for name in ("Authorization", "X-Authorization"):
                headers.pop(name, None)

    def merge_environment_settings(
        self, url: Any, proxies: Any, stream: Any, verify: Any, cert: Any,
    ) -> Any:
        loopback = not proxies and isinstance(url, str) and is_loopback(url)
        if loopback:
            # Naming the host in no_proxy spares requests reading every proxy
            # variable of the environment (twice, per request) only for us to drop them.
            proxies = {"no_proxy": urlsplit(url).hostname or ""}
        settings = super().merge_environment_settings(url, proxies, stream, verify, cert)
        if loopback:
            settings["proxies"] = {}
        return settings


def is_loopback(url: str) -> bool:
    """Whether *url* names this machine (``localhost``, ``127.0.0.0/8``, ``::1``)."""
    host = (urlsplit(url).hostname or "").rstrip(".").lower()
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
