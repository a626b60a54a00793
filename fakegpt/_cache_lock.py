"""The session cache's lock: one writer at a time, across processes, waited on for a bounded time."""
from __future__ import annotations

import contextlib
import os
import time
from typing import Dict, Iterator

from ._cache_checks import untrusted
from ._fork import reset_in_child

try:  # POSIX
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None  # type: ignore[assignment]

__all__ = ["Unusable", "locked"]

#: The lock file, in the cache's directory (one lock for every cache file there).
LOCK_NAME = ".sessions.lock"


class Unusable(Exception):
    """The session cache must not be used; the message says why. *busy*: only
    because another process holds the lock (no misconfiguration)."""

    def __init__(self, why: str, *, busy: bool = False) -> None:
        super().__init__(why)
        self.busy = busy


#: The lock files this process has open, by holder: a forked child closes its copies.
_open: Dict[object, int] = {}


@reset_in_child
def _close_parent_copies() -> None:
    """A forked child shares the open lock files of its parent (a ``flock``
    lock belongs to the open file, which lives while any process has it
    open): the child closes its copies, which leaves the parent's lock as it
    is. The holder's ``with`` block, if it goes on in the child, then neither
    unlocks (the lock is the parent's) nor closes anything."""
    global _open
    descriptors, _open = list(_open.values()), {}
    for descriptor in descriptors:
        try:
            os.close(descriptor)
        except OSError:  # pragma: no cover - closed already
            pass


@contextlib.contextmanager
def locked(directory: str, timeout: float) -> Iterator[None]:
    """Hold the lock of the cache *directory*, waiting at most *timeout*
    seconds for it; :class:`Unusable` past that, or when the lock file is not
    a regular file of this user's (opened with ``O_NOFOLLOW``: a planted
    symbolic link is not followed, and nothing is created where it points)."""
    if fcntl is None:  # pragma: no cover - no advisory locks: replace() still keeps the file whole
        yield
        return
    lock = os.path.join(directory, LOCK_NAME)
    try:
        descriptor = os.open(lock, os.O_RDWR | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0),
                             0o600)
    except OSError as error:
        raise Unusable(f"its lock file {lock} cannot be opened ({error.strerror})") from None
    holder = object()
    _open[holder] = descriptor
    try:
        problem = untrusted(os.fstat(descriptor))
        if problem:
            raise Unusable(f"its lock file {lock} {problem}")
        deadline = time.monotonic() + timeout
        while True:
            try:
                fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise Unusable(f"another process has held its lock for {timeout:g} s", busy=True) from None
                time.sleep(min(0.05, left))
        yield
    finally:
        # Nothing to do in a forked child that closed it already (this block went on in the child).
        if _open.pop(holder, None) is not None:
            try:
                # Unlocked first: a child forked at any point since the open holds a copy of the
                # open file, which the close alone would leave locked.
                fcntl.flock(descriptor, fcntl.LOCK_UN)
            finally:
                os.close(descriptor)
