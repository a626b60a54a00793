"""What a forked child must not inherit: module state, reset in one handler.

A child forked (``os.fork()``, multiprocessing's ``"fork"`` start method)
after calls were made holds copies of the parent's module state, but none of
the parent's threads:

* a lock that one of those threads held stays locked forever in the child;
* the parent's calls, clients, queued jobs and watched calls are the
  parent's: their sockets are shared with the parent, so the child must not
  read them, send on them, or hang them up (at its exit, say), or the
  parent's live stream dies.

Each module with such state registers a reset with :func:`reset_in_child`,
and each object holding locks or connections (a client's HTTP session, its
token, its engine) registers itself with :func:`reset_object_in_child`. The
one ``os.register_at_fork(after_in_child=...)`` handler of this module runs
the module resets, in the order they were registered, then each live
object's ``_after_fork_in_child()``. Independently,
:func:`fakegpt._transport.hang_up` only ever shuts down a socket this process
connected.
"""
from __future__ import annotations

import logging
import os
import weakref
from typing import Any, Callable, List

__all__ = ["reset_in_child", "reset_object_in_child"]

logger = logging.getLogger("fakegpt")

_resets: List[Callable[[], None]] = []
_objects: "weakref.WeakSet[Any]" = weakref.WeakSet()


def reset_in_child(reset: Callable[[], None]) -> Callable[[], None]:
    """Run *reset* in every child forked from now on, before it goes on
    (usable as a decorator; a module registers once, at import)."""
    _resets.append(reset)
    return reset


def reset_object_in_child(obj: Any) -> None:
    """Call ``obj._after_fork_in_child()`` in every child forked from now on,
    for as long as *obj* lives (a weak reference)."""
    _objects.add(obj)


def _after_fork_in_child() -> None:
    resets = list(_resets) + [obj._after_fork_in_child for obj in list(_objects)]
    for reset in resets:
        try:
            reset()
        except Exception:  # noqa: BLE001 - every other reset must still run
            logger.debug("resetting %r after fork failed", reset, exc_info=True)


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)
