"""gpt4free's provider hooks for :class:`fakegpt.FakeGpt`, without importing g4f.

gpt4free drives a provider class through hooks that its base classes define;
which ones it reads depends on the release:

* 0.2.0.9 calls ``create_completion`` / ``create_async`` /
  ``create_async_generator`` (the last only for subclasses of its
  ``AsyncGeneratorProvider``: :meth:`ProviderHooks.register` makes that check pass);
* 0.5.x calls ``get_create_function()`` and ``get_async_create_function()``,
  and its ``RetryProvider`` / ``IterListProvider`` read ``get_dict()`` and
  ``default_model``;
* 8.x calls ``create_completion`` / ``create_async_generator`` directly and
  reads ``get_dict()``, ``get_parent()``, ``use_stream_timeout``, ``live``,
  ``label`` and ``model_aliases``; ``Client(...).models.get_all()`` calls
  ``get_models()``.

Each hook here does what gpt4free's own base classes do with it. The sync
path g4f is handed is FakeGpt's plain generator over the blocking client: no
event loop is started, so it works inside a running one (Jupyter) without
``nest_asyncio``. The async path is FakeGpt's async generator of ``str``.
"""
from __future__ import annotations

import logging
import threading
from typing import (
    TYPE_CHECKING, Any, AsyncGenerator, Callable, Dict, Iterator, List, Mapping, Optional, Sequence, Set, Tuple,
)

from ._config import env_str
from ._fork import reset_in_child
from ._constants import DEFAULT_BASE_URL, DEFAULT_MAX_RETRIES, DEFAULT_TIMEOUT
from ._protocol import DEFAULT_MODEL, MODEL_SLUGS

__all__ = ["ProviderHooks", "log_ignored"]

Messages = Sequence[Mapping[str, str]]
logger = logging.getLogger("fakegpt")
_ignored_lock = threading.Lock()
_ignored_logged: Set[str] = set()


@reset_in_child
def _new_ignored_lock() -> None:
    """A forked child: the lock may have been held by a thread of the parent."""
    global _ignored_lock
    _ignored_lock = threading.Lock()


def log_ignored(names: Any) -> None:
    """Log at DEBUG, once per name per process, each keyword argument the
    provider ignores (gpt4free's contract: unknown arguments are accepted;
    a typo such as ``timout=`` shows in the debug log)."""
    with _ignored_lock:
        new = sorted(name for name in names if name not in _ignored_logged)
        _ignored_logged.update(new)
    for name in new:
        logger.debug("FakeGpt ignores the keyword argument %r (logged once)", name)


class _ClassProperty:
    """A read-only property of the class itself (``FakeGpt.params``)."""

    def __init__(self, getter: Callable[[Any], Any]) -> None:
        self._getter = getter
        self.__doc__ = getter.__doc__

    def __get__(self, obj: Any, owner: Any) -> Any:
        return self._getter(owner)


class _BaseURL:
    """The default of ``url``: ``FAKEGPT_BASE_URL`` as it is when read (so a
    variable set after import applies), else the original service.

    A non-data descriptor: ``FakeGpt.url = x`` (or ``url = x`` in a subclass)
    simply shadows it and always wins; ``del FakeGpt.url`` brings it back.
    """

    def __get__(self, obj: Any, owner: Any) -> str:
        return env_str("FAKEGPT_BASE_URL") or DEFAULT_BASE_URL


def _signature(default_model: str) -> Tuple[Tuple[str, str, Optional[str]], ...]:
    """(name, type, default) of every argument a call accepts, in g4f's order."""
    return (
        ("model", "str", f'"{default_model}"'),
        ("messages", "Messages", None),
        ("stream", "bool", "True"),
        ("proxy", "str", "None"),
        ("timeout", "float | tuple[float, float]", repr(DEFAULT_TIMEOUT)),
        ("max_retries", "int", str(DEFAULT_MAX_RETRIES)),
    )


class ProviderHooks:
    """The hooks gpt4free reads from a provider class (see the module docstring).

    Subclasses define ``create_completion`` (a plain generator of ``str``)
    and ``create_async_generator`` (an async generator of ``str``).
    """

    if TYPE_CHECKING:
        url: str
    else:
        url = _BaseURL()
    #: The name gpt4free shows for the provider.
    label: str = "FakeGpt"
    #: System messages are kept: they become ``System: ...`` lines of the prompt.
    supports_system_message: bool = True
    #: gpt4free 8.x bounds each chunk of a stream by ``stream_timeout=`` (not
    #: ``timeout=``) when this is true, as for its own async generator providers.
    use_stream_timeout: bool = True
    #: gpt4free 8.x counts successful calls up and failed ones down here.
    live: int = 0
    default_model: str = DEFAULT_MODEL
    #: What ``model=`` accepts: the public name and the web backend's slug.
    models: List[str] = [DEFAULT_MODEL, *MODEL_SLUGS.values()]
    #: Other names for those models (none: any other name is passed through to the server).
    model_aliases: Dict[str, str] = {}
    #: The gpt4free package :meth:`register` registered the class in: its
    #: authentication and rate-limit errors are then gpt4free's too.
    _g4f_package: Optional[str] = None

    if TYPE_CHECKING:
        @classmethod
        def create_completion(
            cls, model: str, messages: Messages, stream: bool = True, proxy: Optional[str] = None, **kwargs: Any
        ) -> Iterator[str]: ...

        @classmethod
        def create_async_generator(
            cls, model: str, messages: Messages, proxy: Optional[str] = None, **kwargs: Any
        ) -> AsyncGenerator[str, None]: ...

    @classmethod
    def get_create_function(cls) -> Callable[..., Iterator[str]]:
        """The sync entry point: ``create_completion``, a plain generator (no event loop)."""
        return cls.create_completion

    @classmethod
    def get_async_create_function(cls) -> Callable[..., AsyncGenerator[str, None]]:
        """The async entry point: ``create_async_generator``, an async generator of ``str``."""
        return cls.create_async_generator

    @classmethod
    def get_dict(cls) -> Dict[str, Optional[str]]:
        """``{"name", "url", "label"}``, as gpt4free's ``BaseProvider.get_dict``."""
        return {"name": cls.__name__, "url": cls.url, "label": getattr(cls, "label", None)}

    @classmethod
    def get_parent(cls) -> str:
        """The provider family's name: ``parent`` if the class sets one, else its own name."""
        parent = getattr(cls, "parent", cls.__name__)
        return str(parent)

    @classmethod
    def get_models(cls, api_key: Optional[str] = None, **kwargs: Any) -> List[str]:
        """The model names ``model=`` accepts (``Client(...).models.get_all()``); no request is made."""
        if not cls.models and cls.default_model is not None:
            return [cls.default_model]
        return list(cls.models)

    @_ClassProperty
    def params(cls: "type[ProviderHooks]") -> str:
        """The supported arguments, in gpt4free's multi-line format."""
        lines = "".join(
            f"\n    {name}: {kind}" + ("" if default is None else f" = {default}") + ","
            for name, kind, default in _signature(cls.default_model)
        )
        return f"g4f.Provider.{cls.__name__} supports: ({lines}\n)"

    @classmethod
    def get_params(cls) -> str:
        """:attr:`params` (gpt4free 8.x reads it through this method)."""
        return str(cls.params)

    @classmethod
    def register(cls, *, package: str = "g4f") -> None:
        """Make every gpt4free lookup of this provider's name resolve to this class.

        The one line a gpt4free/hypotez application adds: afterwards
        ``provider="FakeGpt"``, ``g4f.Provider.FakeGpt`` and gpt4free's
        by-name maps all give this class. Idempotent; safe before or after g4f
        is imported elsewhere.

        :param package: the import name of gpt4free, for a tree vendored under
            another name (``"g4f"`` by default).
        :raises ImportError: g4f is not installed, or fails to import.
        """
        from ._g4f_register import register

        register(cls, package)
