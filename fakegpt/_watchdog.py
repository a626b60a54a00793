"""One daemon thread that ends calls past their deadline, or stuck without an event.

The socket's read timeout ends a stream that stalls; it cannot end one that
trickles (a byte a second resets it every time). The watchdog checks, four
times a second, every call that is streaming:

* its *deadline* (``Client(deadline=...)``): seconds for the whole call;
* its *event timeout* (the read timeout): the longest wait for the next
  complete event while the body is being read.

A call past either is expired (:meth:`fakegpt._call.Call.expire`): its
connection is shut down and the call fails with :class:`~fakegpt.APITimeoutError`.
"""
from __future__ import annotations

import threading
import time
import weakref
from typing import TYPE_CHECKING, Optional

from ._fork import reset_in_child

if TYPE_CHECKING:  # pragma: no cover
    from ._call import Call

__all__ = ["INTERVAL", "watch"]

#: Seconds between two checks.
INTERVAL = 0.25

_watched: "weakref.WeakSet[Call]" = weakref.WeakSet()
_lock = threading.Lock()
_thread: Optional[threading.Thread] = None


@reset_in_child
def _forget_parent() -> None:
    """A forked child: the parent's calls are not the child's to expire, its lock may be held."""
    global _watched, _lock, _thread
    _watched, _lock, _thread = weakref.WeakSet(), threading.Lock(), None


def watch(call: "Call") -> None:
    """Check *call* until it closes."""
    global _thread
    with _lock:
        _watched.add(call)
        if _thread is None or not _thread.is_alive():
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
