"""gpt4free's provider hooks on FakeGpt, and register(), at unit level.

register() is checked against small fake gpt4free packages written to
tmp_path (one laid out like 0.2.0.9/0.5.x, one like 8.x), and against the
real g4f 0.2.0.9 in a child process, so this process's g4f stays unpatched.
The per-release runs through g4f's own drivers live in noxfile.py.
"""
import asyncio
import collections.abc
import inspect
import subprocess
import sys
import textwrap
import uuid

import pytest

from fakegpt import FakeGpt
from fakegpt._g4f_register import register

from .conftest import BASE, MESSAGES


# -- the hooks ------------------------------------------------------------------------
def test_get_dict_is_name_url_label(monkeypatch):
    assert FakeGpt.get_dict() == {"name": "FakeGpt", "url": FakeGpt.url, "label": "FakeGpt"}
    FakeGpt.url = BASE
    assert FakeGpt.get_dict()["url"] == BASE

    class Mine(FakeGpt):
        label = "Mine"
    assert Mine.get_dict() == {"name": "Mine", "url": BASE, "label": "Mine"}


def test_get_parent_is_the_name_unless_a_parent_is_set():
    class Child(FakeGpt):
        pass

    class Grouped(FakeGpt):
        parent = "Family"
    assert (FakeGpt.get_parent(), Child.get_parent(), Grouped.get_parent()) == ("FakeGpt", "Child", "Family")


def test_models():
    assert FakeGpt.default_model == "gpt-3.5-turbo"
    assert FakeGpt.get_models() == FakeGpt.models == ["gpt-3.5-turbo", "text-davinci-002-render-sha"]
    assert FakeGpt.get_models(api_key="ignored") == FakeGpt.models  # g4f's Client passes its api_key
    FakeGpt.get_models().append("changed")
    assert "changed" not in FakeGpt.models  # a copy: callers cannot edit the class's list
    assert FakeGpt.model_aliases == {}

    class NoList(FakeGpt):
        models = []
    assert NoList.get_models() == ["gpt-3.5-turbo"]  # like ProviderModelMixin: the default model


def test_flags_as_g4f_async_generator_providers_have_them():
    assert FakeGpt.use_stream_timeout is True and FakeGpt.supports_system_message is True
    assert FakeGpt.supports_stream is True and FakeGpt.working is True and FakeGpt.needs_auth is False
    assert FakeGpt.label == "FakeGpt"


def test_live_is_a_class_counter_g4f_moves(monkeypatch):
    monkeypatch.setattr(FakeGpt, "live", 0)

    class Other(FakeGpt):
        pass
    assert type(FakeGpt.live) is int and FakeGpt.live == 0
    FakeGpt.live += 1  # what g4f 8.x does after a successful call
    FakeGpt.live += 1
    FakeGpt.live -= 1  # ... and after a failed one
    assert FakeGpt.live == 1
    Other.live -= 1  # a subclass counts on its own from there
    assert (FakeGpt.live, Other.live) == (1, 0)


def test_get_create_function_is_the_plain_generator(server):
    FakeGpt.url = BASE
    server.logged_in()
    server.conversation()
    create = FakeGpt.get_create_function()
    assert create == FakeGpt.create_completion

    async def in_a_running_loop():  # no loop is started or needed: it works inside one
        result = create(model="gpt-3.5-turbo", messages=MESSAGES, stream=False, provider=None, max_tokens=5)
        assert isinstance(result, collections.abc.Generator)
        return list(result)
    assert asyncio.run(in_a_running_loop()) == ["Hello", " world"]


def test_get_async_create_function_is_the_async_generator():
    create = FakeGpt.get_async_create_function()
    assert create == FakeGpt.create_async_generator and inspect.isasyncgenfunction(create.__func__)


def test_params_lines_have_g4f_shape():
    lines = FakeGpt.params.split("\n")
    assert lines[0] == "g4f.Provider.FakeGpt supports: (" and lines[-1] == ")"
    names = [line.strip().split(":")[0] for line in lines[1:-1]]
    assert names == ["model", "messages", "stream", "proxy", "timeout", "max_retries"]
    assert all(line.startswith("    ") and line.endswith(",") for line in lines[1:-1])

    class Renamed(FakeGpt):
        default_model = "text-davinci-002-render-sha"
    assert Renamed.params.splitlines()[:2] == [
        "g4f.Provider.Renamed supports: (", '    model: str = "text-davinci-002-render-sha",']


# -- register() against fake gpt4free packages ---------------------------------------------
OLD_STYLE = {  # 0.2.0.9 / 0.5.x: plain dicts and lists, the original class imported around
    "__init__.py": "from . import Provider, models\n",
    "Provider/__init__.py": """
        from abc import ABC
        class BaseProvider(ABC):
            pass
        class AsyncGeneratorProvider(BaseProvider):
            pass
        class Other(AsyncGeneratorProvider):
            pass
        from .deprecated import FakeGpt
        __providers__ = [Other, FakeGpt]
        __all__ = [p.__name__ for p in __providers__]
        __map__ = {p.__name__: p for p in __providers__}
        class ProviderUtils:
            convert = __map__
    """,
    "Provider/deprecated/__init__.py": "from .FakeGpt import FakeGpt\n",
    "Provider/deprecated/FakeGpt.py": """
        class FakeGpt:
            working = False
    """,
    "models.py": """
        from dataclasses import dataclass
        from .Provider import FakeGpt, Other
        class RetryProvider:
            def __init__(self, providers):
                self.providers = providers
        @dataclass
        class Model:
            name: str
            best_provider: object = None
        retried = Model("gpt-3.5-turbo", RetryProvider([Other, FakeGpt]))
        direct = Model("direct", FakeGpt)
    """,
}

NEW_STYLE = {  # 8.x: a loader with a cache, and a map that asks it
    "__init__.py": "from . import Provider\n",
    "Provider/__init__.py": """
        from abc import ABC
        class BaseProvider(ABC):
            pass
        class AsyncGeneratorProvider(BaseProvider):
            pass
        class ProviderLoader:
            names = ["Other"]
            loaded = {}
            @classmethod
            def from_name(cls, name):
                norm = name.lower().replace("-", "").replace("_", "")
                for key in (name, norm):
                    if key in cls.loaded:
                        return cls.loaded[key]
                raise ImportError(name)
        class _ConvertDict(dict):
            def __contains__(self, name):
                try:
                    return ProviderLoader.from_name(name) is not None
                except ImportError:
                    return False
            def __getitem__(self, name):
                return ProviderLoader.from_name(name)
        __map__ = _ConvertDict()
        class ProviderUtils:
            convert = __map__
        __all__ = ["ProviderLoader"] + ProviderLoader.names
    """,
}


def make_package(tmp_path, monkeypatch, files):
    name = f"fake_g4f_{uuid.uuid4().hex[:8]}"
    for path, text in files.items():
        target = tmp_path / name / path
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(textwrap.dedent(text))
    monkeypatch.syspath_prepend(str(tmp_path))
    return name


@pytest.fixture
def package(tmp_path, monkeypatch):
    """Writes a fake gpt4free package; its modules leave sys.modules after the test."""
    made = []

    def make(files):
        name = make_package(tmp_path, monkeypatch, files)
        made.append(name)
        return name
    yield make
    for name in made:
        for module in [m for m in sys.modules if m == name or m.startswith(name + ".")]:
            del sys.modules[module]


def test_register_replaces_every_old_style_lookup(package):
    name = package(OLD_STYLE)
    register(FakeGpt, package=name)
    registry, models = sys.modules[f"{name}.Provider"], sys.modules[f"{name}.models"]
    original = sys.modules[f"{name}.Provider.deprecated.FakeGpt"]
    assert registry.FakeGpt is FakeGpt and registry.deprecated.FakeGpt is FakeGpt
    assert registry.__map__["FakeGpt"] is FakeGpt and registry.ProviderUtils.convert["FakeGpt"] is FakeGpt
    assert [p.__name__ for p in registry.__providers__] == ["Other", "FakeGpt"] and registry.__providers__[1] is FakeGpt
    assert models.FakeGpt is FakeGpt and models.direct.best_provider is FakeGpt
    assert models.retried.best_provider.providers == [registry.Other, FakeGpt]
    assert original.FakeGpt is FakeGpt  # even the defining module
    assert issubclass(FakeGpt, registry.AsyncGeneratorProvider) and issubclass(FakeGpt, registry.BaseProvider)


def test_register_is_idempotent(package):
    name = package(OLD_STYLE)
    FakeGpt.register(package=name)  # a gpt4free tree vendored under another name
    registry = sys.modules[f"{name}.Provider"]
    state = (list(registry.__providers__), list(registry.__all__), dict(registry.__map__))
    register(FakeGpt, package=name)
    register(FakeGpt, package=name)
    assert (list(registry.__providers__), list(registry.__all__), dict(registry.__map__)) == state
    assert registry.__all__.count("FakeGpt") == 1


def test_a_later_register_replaces_the_earlier_class_too(package):
    name = package(OLD_STYLE)

    class FakeGptV2(FakeGpt):
        pass
    FakeGptV2.__name__ = "FakeGpt"
    register(FakeGpt, package=name)
    register(FakeGptV2, package=name)
    registry = sys.modules[f"{name}.Provider"]
    assert registry.FakeGpt is FakeGptV2 and registry.__map__["FakeGpt"] is FakeGptV2
    assert [p for p in registry.__providers__ if p.__name__ == "FakeGpt"] == [FakeGptV2]


def test_register_fills_the_loader_of_new_style_packages(package):
    name = package(NEW_STYLE)
    register(FakeGpt, package=name)
    registry = sys.modules[f"{name}.Provider"]
    loader = registry.ProviderLoader
    assert loader.from_name("FakeGpt") is FakeGpt and loader.from_name("fake-gpt") is FakeGpt
    assert "FakeGpt" in registry.ProviderUtils.convert and registry.__map__["FakeGpt"] is FakeGpt
    assert not dict.__contains__(registry.__map__, "FakeGpt")  # the loader answers, not the dict's storage
    assert loader.names == ["Other"]  # not added to what g4f picks from for calls not naming it
    assert registry.FakeGpt is FakeGpt and "FakeGpt" in registry.__all__
    assert issubclass(FakeGpt, registry.AsyncGeneratorProvider)


def test_register_without_g4f_is_a_clear_import_error(monkeypatch):
    monkeypatch.setitem(sys.modules, "g4f", None)  # import g4f fails, as when it is not installed
    monkeypatch.setitem(sys.modules, "g4f.Provider", None)
    with pytest.raises(ImportError, match=r"needs gpt4free, and 'g4f' is not installed \(pip install g4f\)"):
        FakeGpt.register()
    with pytest.raises(ImportError, match="not installed"):
        register(FakeGpt, package=f"no_such_g4f_{uuid.uuid4().hex[:8]}")


def test_a_broken_g4f_is_an_import_error_with_the_cause(package):
    name = package({"__init__.py": "import a_dependency_that_is_missing_xyz\n", "Provider/__init__.py": ""})
    with pytest.raises(ImportError, match="failed to import: No module named 'a_dependency_that_is_missing_xyz'"):
        register(FakeGpt, package=name)


# -- the real g4f 0.2.0.9, in a child process ----------------------------------------------
REAL = """
import sys
import fakegpt
from fakegpt import FakeGpt
FakeGpt.get_dict(), FakeGpt.params, FakeGpt.get_models(), FakeGpt.get_create_function()
assert "g4f" not in sys.modules, "fakegpt imported g4f"
FakeGpt.register()  # before anything imported g4f: register() imports it
FakeGpt.register()
import g4f
g4f.debug.version_check = False  # it would ask PyPI for its latest version
from g4f.Provider import AsyncGeneratorProvider, ProviderUtils
from g4f.Provider import FakeGpt as looked_up
assert looked_up is FakeGpt and ProviderUtils.convert["FakeGpt"] is FakeGpt
assert issubclass(FakeGpt, AsyncGeneratorProvider)
assert [p for p in g4f.Provider.__providers__ if p.__name__ == "FakeGpt"] == [FakeGpt]
assert FakeGpt in g4f.models.gpt_35_long.best_provider.providers
assert sys.modules["g4f.Provider.FakeGpt"].FakeGpt is FakeGpt
model, provider = g4f.get_model_and_provider("gpt-3.5-turbo", "FakeGpt", stream=True)
assert provider is FakeGpt
print("ok")
"""


def test_register_with_the_real_g4f_0_2_0_9():
    result = subprocess.run([sys.executable, "-c", REAL], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout == "ok\n"
