"""Noticing a client that hangs up while its reply is being written, even
when nothing is being written (a streamed reply waiting for its next delta)."""
from __future__ import annotations

import selectors
import socket
import threading
from typing import Callable, List

__all__ = ["HangUp", "watch"]

#: How often a watcher looks whether its stream has ended (it wakes at once on a hang-up).
_STOP_CHECK = 0.1
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
        """Call *callback* (from another thread) when the client hangs up; at once if it has."""
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


def watch(sock: socket.socket, hangup: HangUp) -> Callable[[], None]:
    """Watch *sock* (whose request has been read whole) in a daemon thread:
    its end sets *hangup*. Returns the function that stops watching.

    The watcher only peeks, so it takes nothing from the connection; it stops
    by itself when the client sends more (a next request on the connection),
    since from then on an end of the connection cannot be told apart from it."""
    stop = threading.Event()

    def run() -> None:
        try:
            with selectors.DefaultSelector() as selector:
                selector.register(sock, selectors.EVENT_READ)
                while not stop.is_set():
                    if not selector.select(_STOP_CHECK):
                        continue
                    try:
                        data = sock.recv(1, _PEEK)
                    except BlockingIOError:
                        continue
                    except OSError:
                        data = b""
                    if not data and not stop.is_set():
                        hangup.set()
                    return
        except (OSError, ValueError):  # the socket was closed under us: the stream is over
            return

    threading.Thread(target=run, name="fakegpt-emulator-hangup", daemon=True).start()
    return stop.set
