"""Noticing a client that hangs up while its reply is being written, even
when nothing is being written (a streamed reply waiting for its next delta)."""
from __future__ import annotations

import selectors
import socket
import threading
from typing import Callable, List

from .._fork import reset_in_child

__all__ = ["HangUp", "watch"]

_PEEK = socket.MSG_PEEK | getattr(socket, "MSG_DONTWAIT", 0)


class HangUp:
    """Whether the client of one reply hung up; given to a responder that
    takes a ``hangup`` keyword, so it can stop its work (e.g. close a request
    to a model server) at once::

        def responder(prompt, hangup):
            hangup.on_hang_up(lambda: print("gone"))
            ...
    """

    def __init__(self) -> None:
        self._event = threading.Event()
        self._lock = threading.Lock()
        self._callbacks: List[Callable[[], None]] = []

    def is_set(self) -> bool:
        """True once the client hung up."""
        return self._event.is_set()

    def wait(self, timeout: float) -> bool:
        """Wait up to *timeout* seconds for a hang-up; True if it happened."""
        return self._event.wait(timeout)

    def on_hang_up(self, callback: Callable[[], None]) -> None:
        """Call *callback* (from another thread) when the client hangs up; at once if it has.
        Keep it quick (e.g. shut a socket down): one thread tells every stream's hang-up."""
        with self._lock:
            if not self._event.is_set():
                self._callbacks.append(callback)
                return
        callback()

    def set(self) -> None:
        """The client hung up: run every callback, once."""
        with self._lock:
            if self._event.is_set():
                return
            self._event.set()
            callbacks, self._callbacks = self._callbacks, []
        for callback in callbacks:
            callback()


class _Watcher:
    """One daemon thread watching every streaming client socket (a thread per
    stream would cost its start, about a millisecond on a busy machine)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._selector = selectors.DefaultSelector()
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        self._wake_w.setblocking(False)
        self._selector.register(self._wake_r, selectors.EVENT_READ)
        threading.Thread(target=self._run, name="fakegpt-emulator-hangups", daemon=True).start()

    def add(self, sock: socket.socket, hangup: HangUp) -> None:
        with self._lock:
            self._selector.register(sock, selectors.EVENT_READ, hangup)
        try:
            self._wake_w.send(b"w")  # select() takes the new socket on at once
        except BlockingIOError:  # a wake-up is pending already
            pass

    def discard(self, sock: socket.socket) -> None:
        with self._lock:
            try:
                self._selector.unregister(sock)
            except (KeyError, ValueError, OSError):  # gone already (it ended, or sent more)
                pass

    def close_copies(self) -> None:
        """Close this process's descriptors of the watcher (a forked child's
        copies): closing is not unregistering, the parent's watcher goes on."""
        if not isinstance(self._selector, getattr(selectors, "KqueueSelector", ())):
            # (closes the descriptor only: nothing is unregistered. A kqueue is not
            # inherited at all: its number may be another descriptor's in the child.)
            self._selector.close()
        self._wake_r.close()
        self._wake_w.close()

    def _run(self) -> None:
        while True:
            for key, _ in self._selector.select():
                if key.fileobj is self._wake_r:
                    try:
                        while self._wake_r.recv(4096):
                            pass
                    except BlockingIOError:
                        pass
                    continue
                sock = key.fileobj
                with self._lock:
                    if self._selector.get_map().get(key.fd) is not key:
                        continue  # no longer watched (the event came for a socket since discarded)
                    try:
                        data = sock.recv(1, _PEEK)  # type: ignore[union-attr]
                    except BlockingIOError:
                        continue
                    except OSError:
                        data = b""
                    # Either way it is no longer watched: ended, or the client sent more (a next
                    # request), after which an end of the connection cannot be told apart from it.
                    self._selector.unregister(sock)
                if not data:
                    key.data.set()


_watcher: "_Watcher | None" = None
_watcher_lock = threading.Lock()


@reset_in_child
def _forget_parent_watcher() -> None:
    """A forked child watches its own sockets, with its own thread (the
    parent's is not in the child) and its own selector: the parent's epoll
    instance is shared with the child, so nothing is registered in it or
    unregistered from it. The child's copies of its descriptors are closed
    (which leaves the parent's watcher as it was); the lock is made anew, a
    parent's thread may have held it."""
    global _watcher, _watcher_lock
    watcher, _watcher, _watcher_lock = _watcher, None, threading.Lock()
    if watcher is not None:
        watcher.close_copies()


def watch(sock: socket.socket, hangup: HangUp) -> Callable[[], None]:
    """Watch *sock* (whose request has been read whole): its end sets *hangup*.
    Returns the function that stops watching (call it before the socket is closed).

    The watcher only peeks, so it takes nothing from the connection; it stops
    by itself when the client sends more (a next request on the connection),
    since from then on an end of the connection cannot be told apart from it."""
    global _watcher
    with _watcher_lock:
        if _watcher is None:
            _watcher = _Watcher()
        watcher = _watcher
    watcher.add(sock, hangup)
    return lambda: watcher.discard(sock)
