"""The HTTP transport under ``requests``: its adapter, with fakegpt's connection classes.

Two things the defaults do not give:

* **A 64 KiB read buffer per response** (http.client's is 8 KiB). An event
  of a cumulative stream is several KiB; with a small buffer most of them
  straddle a refill, costing an extra read and a join per event.
* **The connection of a request, before its answer arrives.** A call can
  then be aborted while the server has not even sent its headers: the
  socket is shut down at once (:func:`connection_watch`), instead of
  waiting for the headers or the read timeout.

SOCKS proxies keep urllib3's own classes (they need theirs).
"""
from __future__ import annotations

import contextlib
import http.client
import threading
from typing import Any, Callable, Iterator, Optional

from requests.adapters import HTTPAdapter
from urllib3 import connection, connectionpool, poolmanager

__all__ = ["Adapter", "RESPONSE_BUFFER", "connection_watch"]

RESPONSE_BUFFER = 65536
_watch = threading.local()


class _Response(http.client.HTTPResponse):
    def __init__(self, sock: Any, *args: Any, **kwargs: Any) -> None:
        super().__init__(sock, *args, **kwargs)
        unread, self.fp = self.fp, sock.makefile("rb", buffering=RESPONSE_BUFFER)
        unread.close()  # nothing was read from it yet


class _HTTPConnection(connection.HTTPConnection):
    response_class = _Response


class _HTTPSConnection(connection.HTTPSConnection):
    response_class = _Response


class _Watched:
    """Pool mixin: tell this thread's watcher which connection a request got."""

    def _get_conn(self, timeout: Optional[float] = None) -> Any:
        conn = super()._get_conn(timeout=timeout)  # type: ignore[misc]
        watcher = getattr(_watch, "watcher", None)
        if watcher is not None:
            watcher(conn)
        return conn


class _HTTPPool(_Watched, connectionpool.HTTPConnectionPool):
    ConnectionCls = _HTTPConnection


class _HTTPSPool(_Watched, connectionpool.HTTPSConnectionPool):
    ConnectionCls = _HTTPSConnection


_POOLS = {"http": _HTTPPool, "https": _HTTPSPool}


class Adapter(HTTPAdapter):
    """``requests``' adapter, building its pools from the classes above."""

    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        super().init_poolmanager(*args, **kwargs)
        self.poolmanager.pool_classes_by_scheme = _POOLS

    def proxy_manager_for(self, proxy: str, **kwargs: Any) -> Any:
        manager = super().proxy_manager_for(proxy, **kwargs)
        if manager.pool_classes_by_scheme is poolmanager.pool_classes_by_scheme:  # not SOCKS
            manager.pool_classes_by_scheme = _POOLS
        return manager


@contextlib.contextmanager
def connection_watch(watcher: Callable[[Any], None]) -> Iterator[None]:
    """While this is active, ``watcher(conn)`` learns each connection this thread's requests use."""
    _watch.watcher = watcher
    try:
        yield
    finally:
        _watch.watcher = None
