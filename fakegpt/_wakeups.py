"""Waking one event loop for many busy channels: one timer instead of a wake-up each.

A channel of :mod:`fakegpt._bridge` in slow mode wakes its loop for each
delta with ``call_soon_threadsafe``: a write to the loop's self-pipe, a
system call on the worker, and a read of it on the loop. Each system call
hands the GIL over, and with hundreds of streams the GIL is the limit: a
thread that gave it up waits its turn to get it back. With
:data:`BUSY_CHANNELS` or more channels of one loop open at once, a worker
instead puts its channel on the loop's :class:`Hub` list (a lock and an
append, no system call), and one timer of the loop releases every listed
channel each :data:`BUSY_TICK` seconds. A delta then reaches the loop
:data:`BUSY_TICK` (5 ms) at most after it came; below the threshold
nothing changes, and the timer stops once the loop is no longer busy.
"""
from __future__ import annotations

import asyncio
import threading
import weakref
from typing import Callable, List

from ._fork import reset_in_child

__all__ = ["BUSY_CHANNELS", "BUSY_TICK", "Hub", "hub_of"]

#: From this many open channels on one loop, wake-ups go through the loop's timer.
BUSY_CHANNELS = 64
#: How often (seconds) that timer releases the channels that have something.
BUSY_TICK = 0.005

_hubs_lock = threading.Lock()
_hubs: "weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, Hub]" = weakref.WeakKeyDictionary()


@reset_in_child
def _forget_parent_hubs() -> None:
    """A forked child runs none of the parent's loops; the lock may have been held."""
    global _hubs_lock, _hubs
    _hubs_lock, _hubs = threading.Lock(), weakref.WeakKeyDictionary()


class Hub:
    """The open channels of one loop, and the releases its timer runs.

    Holds no reference to the loop (so the loop can be collected); the
    timer's callbacks carry it.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.open = 0
        self._armed = False  # the timer runs: a listed release is run at the next tick
        self._ready: List[Callable[[], None]] = []

    def opened(self) -> None:
        with self._lock:
            self.open += 1

    def closed(self) -> None:
        with self._lock:
            self.open -= 1

    def defer(self, release: Callable[[], None]) -> bool:
        """Worker side: list *release* for the next tick; False when the timer
        does not run (the caller wakes the loop itself)."""
        with self._lock:
            if self._armed:
                self._ready.append(release)
            return self._armed

    def arm(self, loop: asyncio.AbstractEventLoop) -> None:
        """Loop side: start the timer if the loop is busy and it does not run yet."""
        if self.open < BUSY_CHANNELS or self._armed:
            return
        with self._lock:
            if self._armed:
                return
            self._armed = True
        loop.call_later(BUSY_TICK, self._tick, loop)

    def _tick(self, loop: asyncio.AbstractEventLoop) -> None:
        with self._lock:
            ready, self._ready = self._ready, []
            if not ready and self.open < BUSY_CHANNELS:
                self._armed = False  # from now on the workers wake the loop themselves
                return
        try:
            for release in ready:
                release()
        finally:
            loop.call_later(BUSY_TICK, self._tick, loop)


def hub_of(loop: asyncio.AbstractEventLoop) -> Hub:
    """The :class:`Hub` of *loop* (made on first use)."""
    with _hubs_lock:
        hub = _hubs.get(loop)
        if hub is None:
            hub = _hubs[loop] = Hub()
        return hub
