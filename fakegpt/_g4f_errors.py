"""fakegpt's errors as gpt4free's too, once :meth:`FakeGpt.register` has run.

gpt4free gives a status of its own to some error types only: its API server
answers 401 for ``g4f.errors.MissingAuthError`` and (8.x) 429 for
``g4f.errors.RateLimitError``, and everything else is a 500. After
registration the provider raises, instead of the plain class, a subclass of
both (``except fakegpt.AuthenticationError`` and ``except MissingAuthError``
both catch it)::

    fakegpt.AuthenticationError  ->  AuthenticationError(fakegpt.AuthenticationError, g4f.errors.MissingAuthError)
    fakegpt.RateLimitError       ->  RateLimitError(fakegpt.RateLimitError, g4f.errors.RateLimitError)

The error keeps its message, attributes, cause and traceback: only its class
changes. g4f is not imported here; :func:`install` is handed its ``errors``
module by the registration.

Every error so raised is also noted in :data:`failures`, when the caller set
it (``fakegpt.g4f_api`` does, per request, to give the answer its status and
``Retry-After`` where gpt4free does not).
"""
from __future__ import annotations

import contextvars
import importlib
import threading
from typing import Any, Dict, List, Optional, Tuple

from ._fork import reset_in_child
from .exceptions import AuthenticationError, FakeGptError, RateLimitError

__all__ = ["as_g4f", "failures", "install"]

#: fakegpt's class, and the name of the gpt4free class it also becomes.
_PAIRS: Tuple[Tuple["type[FakeGptError]", str], ...] = (
    (AuthenticationError, "MissingAuthError"),
    (RateLimitError, "RateLimitError"),
)
_lock = threading.Lock()
#: Per gpt4free package name: fakegpt class -> the class that is both.
_variants: Dict[str, Dict[type, type]] = {}


@reset_in_child
def _new_lock() -> None:
    """A forked child: the lock may have been held by a thread of the parent."""
    global _lock
    _lock = threading.Lock()
#: The errors the provider raised in this context (a list the caller sets; None: not noted).
failures: "contextvars.ContextVar[Optional[List[BaseException]]]" = contextvars.ContextVar(
    "fakegpt_g4f_failures", default=None)


def install(package: str, errors: Any) -> Dict[type, type]:
    """Make (once per *package*) the classes that are both fakegpt's and
    those of *errors* (gpt4free's ``errors`` module); a class that release
    lacks is left out. Returns the mapping fakegpt class -> both."""
    with _lock:
        known = _variants.get(package)
        if known is not None:
            return known
        made: Dict[type, type] = {}
        for ours, theirs_name in _PAIRS:
            theirs = getattr(errors, theirs_name, None)
            if not isinstance(theirs, type) or not issubclass(theirs, Exception):
                continue
            made[ours] = type(ours.__name__, (ours, theirs), {
                "__module__": __name__,
                "__qualname__": ours.__name__,
                "__doc__": f"{ours.__doc__}\n\n    Also gpt4free's ``{theirs.__module__}.{theirs_name}``.",
                "__reduce__": _reduce,
                "_g4f_package": package,
            })
        _variants[package] = made
        return made


def _reduce(error: FakeGptError) -> Any:
    """Pickle as (gpt4free package, fakegpt class): rebuilt as both where that package imports."""
    plain = type(error).__mro__[1]
    return _rebuild, (getattr(error, "_g4f_package", "g4f"), plain, error.args, dict(error.__dict__))


def _rebuild(package: str, plain: "type[FakeGptError]", args: Tuple[Any, ...], state: Dict[str, Any]) -> BaseException:
    cls: "type[BaseException]" = plain
    try:
        cls = install(package, importlib.import_module(f"{package}.errors")).get(plain, plain)
    except ImportError:
        pass  # gpt4free is not here: the plain fakegpt error
    error = cls.__new__(cls)
    error.args = args
    error.__dict__.update(state)
    return error


def as_g4f(error: BaseException, package: Optional[str]) -> BaseException:
    """*error*, now also gpt4free's class where one was made for its class
    (for *package*), and noted in :data:`failures`; returns it."""
    if package is not None:
        variant = _variants.get(package, {}).get(type(error))
        if variant is not None:
            error.__class__ = variant  # same layout: a subclass adding no slots
    noted = failures.get()
    if noted is not None and isinstance(error, FakeGptError):
        noted.append(error)
    return error
