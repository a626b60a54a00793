"""One daemon thread that ends calls past their deadline, or stuck without an event.

The socket's read timeout ends a stream that stalls; it cannot end one that
trickles (a byte a second resets it every time). The watchdog checks, four
times a second, every call that is streaming:

* its *deadline* (``Client(deadline=...)``): seconds for the whole call;
* its *event timeout* (the read timeout): the longest wait for the next
  complete event while the body is being read.

A call past either is expired (:meth:`fakegpt._call.Call.expire`): its
connection is shut down and the call fails with :class:`~fakegpt.APITimeoutError`.

The same thread runs the timers of :func:`start_timer`: a server that
trickles the headers of an answer byte by byte resets the socket's timeout
each time, so the transport bounds their wait with a timer that hangs up
the connection.
"""
from __future__ import annotations

import logging
import threading
import time
import weakref
from typing import TYPE_CHECKING, Callable, Dict, Optional, Tuple

from ._fork import reset_in_child

if TYPE_CHECKING:  # pragma: no cover
    from ._call import Call

__all__ = ["INTERVAL", "cancel_timer", "start_timer", "watch"]

logger = logging.getLogger("fakegpt")

#: Seconds between two checks.
INTERVAL = 0.25

_watched: "weakref.WeakSet[Call]" = weakref.WeakSet()
_lock = threading.Lock()
_thread: Optional[threading.Thread] = None
_timers: Dict[object, Tuple[float, Callable[[], None]]] = {}  # timer -> (when it is due, its action)


@reset_in_child
def _forget_parent() -> None:
    """A forked child: the parent's calls and timers are not the child's, its lock may be held."""
    global _watched, _lock, _thread, _timers
    _watched, _lock, _thread, _timers = weakref.WeakSet(), threading.Lock(), None, {}


def watch(call: "Call") -> None:
    """Check *call* until it closes."""
    with _lock:
        _watched.add(call)
        _start()


def start_timer(seconds: float, action: Callable[[], None]) -> object:
    """Run *action* (from the watchdog's thread, which must not block long)
    when *seconds* have passed, at most :data:`INTERVAL` late, unless
    :func:`cancel_timer` is called first. Returns the timer."""
    timer = object()
    with _lock:
        _timers[timer] = (time.monotonic() + seconds, action)
        _start()
    return timer


def cancel_timer(timer: object) -> bool:
    """Cancel *timer*; True when it was too late (its action ran, or runs now)."""
    with _lock:
        return _timers.pop(timer, None) is None


def _start() -> None:
    global _thread
    if _thread is None or not _thread.is_alive():  # (under _lock)
        _thread = threading.Thread(target=_run, name="fakegpt-watchdog", daemon=True)
        _thread.start()


def _run() -> None:
    while True:
        time.sleep(INTERVAL)
        now = time.monotonic()
        with _lock:
            calls = list(_watched)
        for call in calls:
            if call.closed:
                _watched.discard(call)
                continue
            reason = call.overdue(now)
            if reason is not None:
                _watched.discard(call)
                call.expire(reason)
        with _lock:
            due = [timer for timer, (when, _) in _timers.items() if when <= now]
            actions = [_timers.pop(timer)[1] for timer in due]
        for action in actions:
            try:
                action()
            except Exception:  # noqa: BLE001 - the one thread that ends overdue calls must live on
                logger.exception("a watchdog timer failed")
