"""Blocking streams → asyncio: a worker thread iterates, the event loop receives.

Why not ``asyncio.to_thread(next, stream)`` per delta: a thread-pool round
trip per item costs more than decoding the item. Here one worker thread
iterates the whole stream and appends deltas to a :class:`Channel`; the loop
takes every delta queued so far as one batch.

When to wake the loop is what costs: every wake-up hands the GIL from the
worker to the loop and back, and on a fast stream that doubled the CPU time
(measured: 1.69x with a wake-up per delta, 1.04x with none). So the worker
wakes the loop when it is about to wait for the network (the stream's
``on_wait`` hook, with a zero-timeout probe of the socket: no more data is
ready, so nothing is gained by holding the batch), and otherwise only once the oldest queued delta has waited
:data:`MAX_BATCH_AGE` or :data:`MAX_BATCH` deltas are queued. A slow stream
still delivers each delta at once; a fast one, in batches at most
:data:`MAX_BATCH_AGE` (5 ms) late.

Threads come from one dedicated pool of :data:`MAX_WORKERS` threads
(``fakegpt-worker-N``), created on first use and reused: asyncio's default
pool (``cores + 4`` threads) would make the 13th concurrent stream on a
2-core machine wait for another to finish. Streams beyond the pool's size
wait for a free thread.
"""
from __future__ import annotations

import asyncio
import itertools
import threading
import time
from typing import Any, Callable, Iterator, List, Optional, Tuple

__all__ = ["Channel", "MAX_BATCH", "MAX_BATCH_AGE", "pump", "start_worker"]

#: While data keeps arriving, a delta waits at most this long (seconds) for company.
MAX_BATCH_AGE = 0.005
#: ... or until this many deltas are queued.
MAX_BATCH = 1024

_worker_ids = itertools.count(1)


def start_worker(target: Callable[..., None], *args: Any) -> threading.Thread:
    """Run ``target(*args)`` in a new daemon thread (``fakegpt-worker-N``).

    A thread per active stream, not a pool: one slow or stalled server
    cannot hold up every other call of the process, and a daemon thread
    never keeps the interpreter from exiting (at exit, every open call is
    hung up, so a blocked read returns at once).
    """
    thread = threading.Thread(target=target, args=args, name=f"fakegpt-worker-{next(_worker_ids)}", daemon=True)
    thread.start()
    return thread


class Channel:
    """Items from one worker thread to one event loop, in batches."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._lock = threading.Lock()
        self._items: List[str] = []
        self._closed = False
        self._error: Optional[BaseException] = None
        self._waiter: "Optional[asyncio.Future[None]]" = None
        self._wake_pending = False
        self._first_at = 0.0  # when the oldest queued item was put
        #: Hold items back while data keeps coming (the producer calls :meth:`flush`
        #: before it waits); without that promise, every item wakes the loop.
        self.batching = False
        self.abandoned = False  # the receiving side has gone away

    # -- the worker's side -----------------------------------------------------
    def put(self, item: str) -> bool:
        """Queue *item*; False when nobody will receive it any more."""
        now = time.monotonic()
        with self._lock:
            if self.abandoned:
                return False
            if not self._items:
                self._first_at = now
            self._items.append(item)
            held = self.batching and now - self._first_at < MAX_BATCH_AGE and len(self._items) < MAX_BATCH
            wake = not held and self._wake_needed()
        return self._wake() if wake else True

    def flush(self, data_ready: Callable[[], bool]) -> None:
        """The producer is about to read: if it may wait (``data_ready()`` is
        false), hand over what is queued now rather than after the wait."""
        # Unlocked first look (each read is atomic): only the loop removes items,
        # and it only waits once the queue is empty, so a queued item with no
        # waiter will be collected anyway. The probe runs only when it matters.
        if not self._items or self._waiter is None or self._wake_pending:
            return
        if data_ready() and time.monotonic() - self._first_at < MAX_BATCH_AGE:
            return  # more is coming at once: keep batching
        with self._lock:
            wake = bool(self._items) and self._wake_needed()
        if wake:
            self._wake()

    def close(self, error: Optional[BaseException] = None) -> None:
        """No more items; *error* is raised on the loop after the queued items."""
        with self._lock:
            self._closed, self._error = True, error
            wake = self._wake_needed()
        if wake:
            self._wake()

    def _wake_needed(self) -> bool:
        if self._waiter is None or self._wake_pending:
            return False
        self._wake_pending = True
        return True

    def _wake(self) -> bool:
        try:
            self._loop.call_soon_threadsafe(self._release)
            return True
        except RuntimeError:  # the loop is closed: nobody is listening
            self.abandoned = True
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
                if self._items or self._closed:
                    items, self._items = self._items, []
                    return items, self._closed, self._error
                waiter = self._waiter = self._loop.create_future()
            await waiter


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
