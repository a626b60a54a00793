"""``FakeGpt.register()``: make gpt4free's lookups by name resolve to fakegpt's class.

gpt4free finds a provider named as a string in different places per release:

* 0.2.0.9 and 0.5.x: ``g4f.Provider.<Name>``, the ``g4f.Provider.__map__``
  dict (which is also ``ProviderUtils.convert``), the ``__providers__`` list,
  and module globals that imported the class (``g4f.models``, the
  ``deprecated`` package in 0.5.x), plus model entries whose
  ``best_provider`` (or its retry list) names the original class;
* 8.x: ``g4f.Provider.<Name>`` and the cache of ``ProviderLoader.from_name``
  (``ProviderLoader.loaded``), which ``__map__``/``ProviderUtils.convert``
  and ``IterListProvider(["Name"])`` consult.

Everything g4f held under the name is replaced where it is found; nothing is
added to 8.x's list of providers it picks from by itself (``ProviderLoader.names``),
so calls that do not ask for the provider are routed as before. The class is
also registered as a virtual subclass of g4f's ``AsyncGeneratorProvider``
(an ABC), which 0.2.0.9's ``create_async(stream=True)`` checks.

From then on the provider raises its authentication and rate-limit errors
as gpt4free's too (see :mod:`fakegpt._g4f_errors`).
"""
from __future__ import annotations

import abc
import importlib
import sys
import threading
from types import ModuleType
from typing import Any, Dict, List

from ._fork import reset_in_child
from ._g4f_errors import install as _install_errors

__all__ = ["register"]

_lock = threading.Lock()
#: For each registered name, every class g4f held under it before (kept so a
#: module imported after a first register() is patched by the next one too).
_replaced: Dict[str, List[type]] = {}


@reset_in_child
def _new_lock() -> None:
    """A forked child: a parent's thread may have held the lock."""
    global _lock
    _lock = threading.Lock()


def _import(package: str) -> ModuleType:
    try:
        return importlib.import_module(f"{package}.Provider")
    except ModuleNotFoundError as error:
        if error.name in (package, f"{package}.Provider"):
            raise ImportError(
                f"FakeGpt.register() needs gpt4free, and {package!r} is not installed (pip install g4f)"
            ) from error
        raise ImportError(f"FakeGpt.register(): gpt4free ({package!r}) failed to import: {error}") from error
    except ImportError as error:
        raise ImportError(f"FakeGpt.register(): gpt4free ({package!r}) failed to import: {error}") from error


def _is_old(value: Any, olds: List[type]) -> bool:
    return any(value is old for old in olds)


def _replace_in_list(items: Any, olds: List[type], provider: type) -> None:
    if isinstance(items, list):
        for index, item in enumerate(items):
            if _is_old(item, olds):
                items[index] = provider


def _patch_modules(package: str, olds: List[type], provider: type) -> None:
    """Module globals, and the models' ``best_provider`` (or its retry list), that hold an old class."""
    prefix = f"{package}."
    modules = [m for n, m in list(sys.modules.items()) if m is not None and (n == package or n.startswith(prefix))]
    for module in modules:
        namespace = module.__dict__  # not getattr: 8.x's provider package loads lazily on attribute access
        for attribute, value in list(namespace.items()):
            if _is_old(value, olds):
                setattr(module, attribute, provider)
    models = sys.modules.get(f"{package}.models")
    for model in list(vars(models).values()) if models is not None else []:
        if isinstance(model, (type, ModuleType)) or not hasattr(type(model), "__dataclass_fields__"):
            continue  # g4f's models are dataclass instances
        best = getattr(model, "best_provider", None)
        if _is_old(best, olds):
            model.best_provider = provider
        _replace_in_list(getattr(best, "providers", None), olds, provider)


def register(provider: type, package: str = "g4f") -> None:
    """Make every lookup of ``provider.__name__`` in *package* (gpt4free) give *provider*.

    :raises ImportError: *package* is not installed or fails to import.
    """
    registry = _import(package)
    name = provider.__name__
    with _lock:
        namespace = registry.__dict__
        olds = [old for old in _replaced.get(name, []) if old is not provider]
        loader = namespace.get("ProviderLoader")
        loaded = getattr(loader, "loaded", None)
        for found in (namespace.get(name), loaded.get(name) if isinstance(loaded, dict) else None):
            if isinstance(found, type) and found is not provider and not _is_old(found, olds):
                olds.append(found)
        _replaced[name] = olds

        setattr(registry, name, provider)
        for mapping in (namespace.get("__map__"), getattr(namespace.get("ProviderUtils"), "convert", None)):
            if type(mapping) is dict:  # 8.x's is a dict subclass that asks ProviderLoader
                mapping[name] = provider
        if isinstance(loaded, dict):
            loaded[name] = provider
            loaded[name.lower().replace("-", "").replace("_", "")] = provider  # from_name's normalised key
        providers = namespace.get("__providers__")
        if isinstance(providers, list):
            _replace_in_list(providers, olds, provider)
            if not any(p is provider for p in providers):
                providers.append(provider)
        exported = namespace.get("__all__")
        if isinstance(exported, list) and name not in exported:
            exported.append(name)
        if olds:
            _patch_modules(package, olds, provider)

        try:
            errors = importlib.import_module(f"{package}.errors")
        except ImportError:
            errors = None  # a release without the module: the errors stay fakegpt's alone
        if errors is not None:
            _install_errors(package, errors)
            setattr(provider, "_g4f_package", package)  # ProviderHooks._g4f_package

        base = namespace.get("AsyncGeneratorProvider")
        if isinstance(base, abc.ABCMeta) and not issubclass(provider, base):
            base.register(provider)  # an ABC: a virtual subclass, nothing inherited
