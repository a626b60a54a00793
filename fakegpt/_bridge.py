"""Blocking streams → asyncio: a worker thread iterates, the event loop receives.

Why not ``asyncio.to_thread(next, stream)`` per delta: a thread-pool round
trip per item costs more than decoding the item. Here one worker thread
iterates the whole stream and appends deltas to a :class:`Channel`; the loop
takes every delta queued so far as one batch.

**When to wake the loop** is what costs: every wake-up hands the GIL from
the worker to the loop and back, and on a fast stream a wake-up per delta
doubled the CPU time. A channel has two modes, chosen by the loop from what
it receives:

* *slow* (the start, and whenever deltas come one at a time): each delta
  wakes a waiting loop at once, so a slow stream delivers each delta as it
  arrives;
* *fast* (the last batch held several deltas, or came within
  :data:`FAST_GAP` of the one before: a stream whose deltas each wake the
  loop the moment it waits again is fast too): deltas are not announced;
  the waiting loop collects them on a timer, :data:`MAX_BATCH_AGE` (20 ms)
  at most after they came, or at once when :data:`MAX_BATCH` are queued.
  A timer batch of at most one delta puts the channel back in slow mode
  (a slow stream that met a burst has one delta delayed, 20 ms at most).
  Why 20 ms: each wake-up of a loop beside a busy stream is a GIL hand-off
  each way, costlier than hundreds of deltas (docs/performance.rst).

**Backpressure.** A channel holds at most :data:`MAX_BUFFER` deltas or
:data:`MAX_BUFFER_BYTES` of text; past that, the worker waits (and so stops
reading the socket: TCP slows the server down) until the loop takes them.

**Hanging up** a cancelled stream's socket is a system call, and each one
hands the GIL to busy workers and waits to win it back: an event loop
cancelling 64 busy streams waited tens of milliseconds on them in turn.
The loop only marks the stream aborted (no delta more, at once) and
:func:`hang_up_soon` has one daemon thread shut the sockets down.

**Many streams.** With 64 or more channels open on one loop, a worker
does not wake the loop itself: the loop's timer collects the channels
with something new every 5 ms (see :mod:`fakegpt._wakeups`).

**Threads.** :func:`start_worker` runs each stream in a daemon thread of
its own, started by one spawner thread so the loop never waits for it: no
shared pool that a few stalled servers could exhaust, and no thread that
keeps the interpreter from exiting. How many run at once is bounded per
event loop, on the loop (see :class:`fakegpt.FakeGpt`).
"""
from __future__ import annotations

import asyncio
import itertools
import logging
import queue
import sys
import threading
from typing import Any, Callable, Iterator, List, Optional, Tuple

from ._fork import reset_in_child
from ._wakeups import hub_of

__all__ = [
    "Channel", "FAST_GAP", "MAX_BATCH", "MAX_BATCH_AGE", "MAX_BUFFER", "MAX_BUFFER_BYTES", "hang_up_soon", "pump",
    "start_worker",
]

#: In fast mode, a delta waits at most this long (seconds) for the loop.
MAX_BATCH_AGE = 0.02
#: ... or until this many deltas are queued.
MAX_BATCH = 1792
#: A batch taken this soon (seconds) after the one before puts the channel in fast mode.
FAST_GAP = 0.001
#: The worker stops reading while this many deltas wait for the loop ...
MAX_BUFFER = 2048
#: ... or this much text (characters).
MAX_BUFFER_BYTES = 256 * 1024

logger = logging.getLogger("fakegpt")
_worker_ids = itertools.count(1)
_hang_ups: "queue.SimpleQueue[Callable[[], None]]" = queue.SimpleQueue()
_daemons_lock = threading.Lock()


class _Daemon:
    """One daemon thread running *target* forever, started on first use (and
    again in a forked child, which has none of its parent's threads)."""

    def __init__(self, name: str, target: Callable[[], None]) -> None:
        self.name, self.target = name, target
        self.thread: Optional[threading.Thread] = None

    def ensure(self) -> None:
        """Start the thread unless it runs; raises what ``Thread.start`` raises."""
        if self.thread is None or not self.thread.is_alive():
            with _daemons_lock:
                if self.thread is None or not self.thread.is_alive():
                    self.thread = threading.Thread(target=self.target, name=self.name, daemon=True)
                    self.thread.start()


def hang_up_soon(hang_up: Callable[[], None]) -> None:
    """Run *hang_up* (e.g. a stream's ``abort``) on the hang-up thread, in
    order, soon; returns at once. The thread is a daemon, started on first
    use (and again in a forked child)."""
    if sys.is_finalizing():  # no thread can start now, and none would run
        hang_up()
        return
    _hang_ups.put(hang_up)
    _start_hanger()


def _hang_up_forever() -> None:
    while True:
        hang_up = _hang_ups.get()
        try:
            hang_up()
        except Exception:  # noqa: BLE001 - one failure must not stop the others' hang-ups
            logger.debug("hanging up a stream failed", exc_info=True)
        del hang_up


def start_worker(target: Callable[..., None], *args: Any,
                 on_failure: Callable[[BaseException], None]) -> None:
    """Run ``target(*args)`` soon in a new daemon thread (``fakegpt-worker-N``);
    returns at once. If no thread can be started, ``on_failure(error)`` is
    called instead: here, or later on the spawner thread.

    A thread per active stream, not a pool: one slow or stalled server
    cannot hold up every other call of the process, and a daemon thread
    never keeps the interpreter from exiting (at exit, every open call is
    hung up, so a blocked read returns at once).

    The thread is started by the spawner thread, not here: ``Thread.start()``
    waits for the new thread to run, and an event loop starting hundreds of
    streams while the earlier ones are busy waited for the GIL once per
    stream (256 streams at once stalled the loop for about two seconds).
    """
    try:
        _start_hanger()  # now, not when the first stream is cancelled: that may be at interpreter exit
        _start_spawner()
    except Exception as error:  # noqa: BLE001 - e.g. "can't start new thread": the caller hears of it
        on_failure(error)
        return
    _spawns.put((target, args, on_failure))


_Job = Tuple[Callable[..., None], Tuple[Any, ...], Callable[[BaseException], None]]
_spawns: "queue.SimpleQueue[_Job]" = queue.SimpleQueue()


def _new_worker(target: Callable[..., None], args: Tuple[Any, ...]) -> threading.Thread:
    return threading.Thread(target=target, args=args, name=f"fakegpt-worker-{next(_worker_ids)}", daemon=True)


def _spawn_forever() -> None:
    while True:
        target, args, on_failure = _spawns.get()
        try:
            _new_worker(target, args).start()
        except Exception as error:  # noqa: BLE001 - e.g. "can't start new thread": the caller hears of it
            try:
                on_failure(error)
            except Exception:  # noqa: BLE001 - one failure must not stop the other calls' workers
                logger.warning("reporting a failed worker start failed", exc_info=True)
        del target, args, on_failure


_hanger = _Daemon("fakegpt-hang-up", _hang_up_forever)
_spawner = _Daemon("fakegpt-spawner", _spawn_forever)
_start_hanger = _hanger.ensure
_start_spawner = _spawner.ensure


@reset_in_child
def _after_fork_in_child() -> None:
    """A forked child has none of the parent's threads: it must not run the
    parent's queued jobs (a worker would read a socket the parent reads, or
    send a request again), nor wait on a lock a parent's thread held."""
    global _spawns, _hang_ups, _daemons_lock
    _spawns, _hang_ups, _daemons_lock = queue.SimpleQueue(), queue.SimpleQueue(), threading.Lock()
    _hanger.thread = _spawner.thread = None



class Channel:
    """Items from one worker thread to one event loop, in batches, bounded."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._lock = threading.Lock()
        self._room = threading.Condition(self._lock)  # the worker waits here when the buffer is full
        self._items: List[str] = []
        self._chars = 0
        self._closed = False
        self._error: Optional[BaseException] = None
        self._waiter: "Optional[asyncio.Future[None]]" = None
        self._wake_pending = False
        self._last_batch = float("-inf")  # when the loop last took a batch (loop time)
        #: Set by the loop's side: deltas come in bursts, collect them on a timer.
        self.fast = False
        self.abandoned = False  # the receiving side has gone away
        self._hub = hub_of(loop)  # with many channels open, wake-ups go through the loop's timer
        self._hub.opened()
        self._detached = False

    # -- the worker's side -----------------------------------------------------
    def put(self, item: str) -> bool:
        """Queue *item*, waiting while the buffer is full; False when nobody
        will receive it any more (abandoned, or its loop closed)."""
        if self._loop.is_closed():
            self.abandon()
            return False
        with self._lock:
            items = self._items
            if len(items) >= MAX_BUFFER or self._chars >= MAX_BUFFER_BYTES or self.abandoned:
                if not self._wait_for_room():
                    return False
                items = self._items
            items.append(item)
            self._chars += len(item)
            if (self.fast and len(items) < MAX_BATCH) or not self._wake_needed():
                return True
        return self._wake()

    def _wait_for_room(self) -> bool:
        """With the lock held: wait until the buffer has room; False once abandoned."""
        while not self.abandoned and (len(self._items) >= MAX_BUFFER or self._chars >= MAX_BUFFER_BYTES):
            if self._wake_needed():
                self._lock.release()
                try:
                    self._wake()
                finally:
                    self._lock.acquire()
            self._room.wait(0.25)
            if self._loop.is_closed():
                self.abandoned = True
        return not self.abandoned

    def close(self, error: Optional[BaseException] = None) -> None:
        """No more items; *error* is raised on the loop after the queued items."""
        with self._lock:
            self._closed, self._error = True, error
            wake = self._wake_needed()
        if wake:
            self._wake()

    def abandon(self) -> None:
        """The receiver is gone (any thread): a waiting :meth:`put` returns False."""
        with self._lock:
            self.abandoned = True
            self._room.notify_all()
        self._detach()

    def _detach(self) -> None:
        """No longer counted as open by the loop's hub (once)."""
        with self._lock:
            if self._detached:
                return
            self._detached = True
        self._hub.closed()

    def _wake_needed(self) -> bool:
        if self._waiter is None or self._wake_pending:
            return False
        self._wake_pending = True
        return True

    def _wake(self) -> bool:
        if self._hub.defer(self._release):  # a busy loop: its timer releases us, no system call here
            return True
        try:
            self._loop.call_soon_threadsafe(self._release)
            return True
        except RuntimeError:  # the loop is closed: nobody is listening
            self.abandon()
            return False

    # -- the loop's side -------------------------------------------------------
    def _release(self) -> None:
        with self._lock:
            waiter, self._waiter, self._wake_pending = self._waiter, None, False
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    async def get(self) -> Tuple[List[str], bool, Optional[BaseException]]:
        """Wait for items: ``(batch, closed, error)``; *closed* once nothing more will come."""
        while True:
            with self._lock:
                closed, error = self._closed, self._error  # as of this take: an item put since comes next time
                ready = bool(self._items) or closed
                if ready:
                    items, self._items, self._chars = self._items, [], 0
                    now = self._loop.time()
                    self.fast = len(items) > 1 or now - self._last_batch < FAST_GAP
                    self._last_batch = now
                    self._room.notify_all()
                else:
                    waiter = self._waiter = self._loop.create_future()
                    fast = self.fast
            if ready:
                if closed:
                    self._detach()
                return items, closed, error
            if not fast:
                self._hub.arm(self._loop)  # many channels open: deltas come on its timer
            timer = self._loop.call_later(MAX_BATCH_AGE, self._release) if fast else None
            try:
                await waiter
            finally:
                if timer is not None:
                    timer.cancel()
                with self._lock:
                    if self._waiter is waiter:
                        self._waiter, self._wake_pending = None, False
                    if fast and not self._items and not self._closed:
                        self.fast = False  # the timer found nothing: announce each delta again


def pump(stream: Iterator[str], channel: Channel) -> None:
    """Worker thread: iterate *stream* into *channel*; never raises (errors travel to the loop)."""
    try:
        for item in stream:
            if not channel.put(item):
                break
        channel.close()
    except BaseException as error:  # noqa: B902 - everything is handed to the loop, nothing swallowed
        channel.close(error)
    finally:
        close: Any = getattr(stream, "close", None)
        if close is not None:
            close()
