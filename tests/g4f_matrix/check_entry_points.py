"""fakegpt.FakeGpt through every gpt4free entry point of the installed g4f, by class
and by name, against the emulator; exact reply text and one login per process.

Run by noxfile.py in a venv holding one g4f release::

    python tests/g4f_matrix/check_entry_points.py               # the whole matrix
    python tests/g4f_matrix/check_entry_points.py --register-first  # register() before g4f is imported

Configuration is the environment only: ``FAKEGPT_BASE_URL`` is set after
fakegpt is imported (``FakeGpt.url`` reads it at call time).
"""
import asyncio
import os
import subprocess
import sys

import fakegpt
from fakegpt import FakeGpt
from fakegpt.emulator import Emulator

from _common import Results, expected, g4f_version, messages, raises, responder
import _drivers as drive

MODEL = "gpt-3.5-turbo"


def without_g4f(results, emulator):
    """fakegpt, its hooks and a call: g4f is never imported."""
    def check():
        hooks = (FakeGpt.get_dict(), FakeGpt.get_parent(), FakeGpt.get_models(), FakeGpt.params,
                 FakeGpt.get_params(), FakeGpt.get_create_function(), FakeGpt.get_async_create_function(),
                 FakeGpt.live, FakeGpt.use_stream_timeout, FakeGpt.supports_system_message, FakeGpt.label,
                 FakeGpt.default_model, FakeGpt.models, FakeGpt.model_aliases)
        assert all(hook is not None for hook in hooks)
        prompt = "no g4f"
        assert "".join(FakeGpt.get_create_function()(MODEL, messages(prompt))) == expected(prompt)
        assert "g4f" not in sys.modules, "fakegpt imported g4f"
    results.run("fakegpt without g4f", "class", check)


def lookups(results, g4f, version):
    """After register(): every by-name lookup gives fakegpt's class."""
    import g4f.Provider as registry

    def check():
        from g4f.Provider import FakeGpt as imported
        assert imported is FakeGpt and registry.FakeGpt is FakeGpt
        assert "FakeGpt" in registry.ProviderUtils.convert and registry.ProviderUtils.convert["FakeGpt"] is FakeGpt
        assert registry.__map__["FakeGpt"] is FakeGpt
        assert issubclass(FakeGpt, registry.AsyncGeneratorProvider) and issubclass(FakeGpt, registry.BaseProvider)
        if version < (8, 0):
            listed = [p for p in registry.__providers__ if p.__name__ == "FakeGpt"]
            assert listed == [FakeGpt], listed
        if version[0] == 0 and version[1] >= 5:
            assert registry.deprecated.FakeGpt is FakeGpt
        if version == (0, 2):
            best = g4f.models.gpt_35_long.best_provider.providers
            assert FakeGpt in best and all(p.__module__ != "g4f.Provider.FakeGpt" for p in best)
        if version >= (8, 0):
            assert registry.ProviderLoader.from_name("FakeGpt") is FakeGpt
            assert registry.ProviderLoader.from_name("fakegpt") is FakeGpt
            assert "FakeGpt" not in registry.ProviderLoader.names  # not picked for calls that do not ask for it
        assert "FakeGpt" in registry.__all__
    results.run("lookups resolve to fakegpt.FakeGpt", "name", check)


def hooks_match_g4f(results, version):
    """The hooks give what g4f's own base-class implementations give for the class."""
    from g4f.Provider import BaseProvider
    try:
        from g4f.providers.base_provider import ProviderModelMixin
    except ImportError:
        from g4f.Provider.base_provider import ProviderModelMixin

    def check():
        theirs = BaseProvider.get_dict.__func__(FakeGpt)
        ours = FakeGpt.get_dict()
        assert {k: ours[k] for k in theirs} == theirs, (ours, theirs)
        probe = type("Probe", (ProviderModelMixin,), {"default_model": FakeGpt.default_model,
                                                      "models": list(FakeGpt.models)})
        assert probe.get_models() == FakeGpt.get_models()
        if hasattr(BaseProvider, "get_parent"):
            assert BaseProvider.get_parent.__func__(FakeGpt) == FakeGpt.get_parent() == "FakeGpt"
        if hasattr(BaseProvider, "live"):
            assert type(BaseProvider.live) is type(FakeGpt.live) is int
        lines = FakeGpt.params.split("\n")
        assert lines[0] == "g4f.Provider.FakeGpt supports: (" and lines[-1] == ")", lines
        assert all(line.startswith("    ") and ": " in line for line in lines[1:-1]), lines
        assert FakeGpt.get_create_function() == FakeGpt.create_completion
        assert FakeGpt.get_async_create_function() == FakeGpt.create_async_generator
    results.run("hooks match g4f's base classes", "class", check)


def record(results, mode, checks):
    for entry, check in checks:
        if isinstance(check, drive.NotApplicable):
            results.not_applicable(entry, mode, check.reason, check.proof)
        else:
            results.run(entry, mode, check)


def entry_points(results, g4f, version, mode, get):
    """The drivers of ChatCompletion and of the clients, with the provider *get()* gives."""
    checks = drive.chat_completion(g4f, get, mode)
    if version < (0, 5) and mode == "class":  # before register()
        def refused():
            raises(g4f.StreamNotSupportedError, lambda: g4f.ChatCompletion.create_async(
                model=MODEL, messages=messages("x"), provider=FakeGpt, stream=True))
        checks[3] = (checks[3][0], drive.NotApplicable(
            "0.2.0.9 checks issubclass(provider, AsyncGeneratorProvider): works after register()", refused))
    record(results, mode, checks)
    if version < (0, 5):
        def no_client():
            raises(ImportError, lambda: __import__("g4f.client"))
        record(results, mode, [(entry, drive.NotApplicable("g4f 0.2.0.9 has no g4f.client", no_client))
                               for entry in drive.CLIENT_ENTRIES])
        return
    record(results, mode, drive.clients(get, version, mode))


def retry_lists(results, g4f, version, mode):
    import g4f.Provider as registry
    members = [registry.ProviderUtils.convert["FakeGpt"]] if mode == "name" else [FakeGpt]
    for kind in ("RetryProvider", "IterListProvider", "RotatedProvider"):
        if kind not in vars(registry):
            def absent(kind=kind):
                raises(ImportError, lambda: exec(f"from g4f.Provider import {kind}", {}))
            results.not_applicable(f"{kind}([FakeGpt])", mode, f"this g4f has no {kind}", absent)
            continue
        record(results, mode, drive.retry(g4f, vars(registry)[kind], members, version, mode))
        if mode == "name" and version >= (8, 0):  # 8.x also resolves names given in the list
            record(results, mode, drive.retry(g4f, vars(registry)[kind], ["FakeGpt"], version, "name-in-list"))


def models_and_live(results, g4f, version, by):
    import g4f.Provider as registry
    provider = registry.ProviderUtils.convert["FakeGpt"] if by == "name" else FakeGpt
    if version < (0, 5):
        results.not_applicable("Client(provider=FakeGpt).models.get_all()", by, "g4f 0.2.0.9 has no g4f.client",
                               lambda: raises(ImportError, lambda: __import__("g4f.client")))
    else:
        def get_all():
            from g4f.client import AsyncClient, Client
            assert Client(provider=provider).models.get_all() == FakeGpt.models
            assert AsyncClient(provider=provider).models.get_all() == FakeGpt.models
        results.run("Client(provider=FakeGpt).models.get_all()", by, get_all)
    if version < (8, 0):
        results.not_applicable("live counter", by, "g4f before 8.x keeps no live counter",
                               lambda: raises(AttributeError, lambda: registry.BaseProvider.live))
        return

    def live():
        from g4f.client import Client
        before, prompt = FakeGpt.live, f"live {by}"
        reply = Client(provider=provider).chat.completions.create(messages=messages(prompt), model=MODEL)
        assert reply.choices[0].message.content == expected(prompt)
        assert FakeGpt.live == before + 1, (before, FakeGpt.live)
    results.run("live counter", by, live)


def in_a_running_loop(results, g4f, version, by, provider):
    """The sync drivers called from inside a running event loop: no loop is started or patched."""
    def check():
        async def inside():
            loop = asyncio.get_running_loop()
            prompt = f"running loop {by}"
            assert g4f.ChatCompletion.create(model=MODEL, messages=messages(prompt), provider=provider) == expected(prompt)
            if version >= (0, 5):
                from g4f.client import Client
                reply = Client(provider=provider).chat.completions.create(messages=messages(prompt), model=MODEL)
                assert reply.choices[0].message.content == expected(prompt)
            assert not hasattr(type(loop), "_nest_patched"), "the loop was patched by nest_asyncio"
        asyncio.run(inside())
    results.run("sync drivers inside a running event loop", by, check)


def register_first(results, version):
    """A second process: register() before anything imported g4f; then the drivers by name."""
    with Emulator(responder=responder) as emulator:
        os.environ["FAKEGPT_BASE_URL"] = emulator.url

        def check():
            assert "g4f" not in sys.modules
            FakeGpt.register()
            import g4f
            g4f.debug.version_check = False
            from g4f.Provider import FakeGpt as imported
            assert imported is FakeGpt
            prompt = "registered first"
            assert g4f.ChatCompletion.create(model=MODEL, messages=messages(prompt), provider="FakeGpt") == expected(prompt)
            if version >= (0, 5):
                from g4f.client import Client
                reply = Client(provider="FakeGpt").chat.completions.create(messages=messages(prompt), model=MODEL)
                assert reply.choices[0].message.content == expected(prompt)
            assert emulator.counts["logins"] == 1, emulator.counts
        results.run("register() before g4f is imported", "name", check)


def main():
    version, full = g4f_version()
    results = Results(full)
    if "--register-first" in sys.argv:
        register_first(results, version)
        results.finish("register-first")
    with Emulator(responder=responder) as emulator:
        os.environ["FAKEGPT_BASE_URL"] = emulator.url  # after import: read at call time
        without_g4f(results, emulator)
        import g4f
        g4f.debug.version_check = False  # it would ask PyPI for its latest version

        # By class, before register(): nothing else is needed (0.2.0.9's create_async(stream=True) aside).
        entry_points(results, g4f, version, "class", lambda: FakeGpt)
        retry_lists(results, g4f, version, "class")
        models_and_live(results, g4f, version, "class")
        in_a_running_loop(results, g4f, version, "class", FakeGpt)
        hooks_match_g4f(results, version)

        results.run("register() twice", "name", lambda: (FakeGpt.register(), FakeGpt.register()))
        lookups(results, g4f, version)
        for mode, get in (("registered class", lambda: FakeGpt), ("name", lambda: "FakeGpt")):
            entry_points(results, g4f, version, mode, get)
            retry_lists(results, g4f, version, mode)
            models_and_live(results, g4f, version, mode)
            in_a_running_loop(results, g4f, version, mode, get())

        def one_login():
            assert emulator.counts["logins"] == 1, dict(emulator.counts)
            # one conversation per reply asked for: none retried or sent twice
            assert emulator.counts["conversations"] == responder.calls, (dict(emulator.counts), responder.calls)
        results.run("one login per process", "class+name", one_login)

    child = subprocess.run([sys.executable, __file__, "--register-first"], capture_output=True, text=True)
    print(child.stdout, end="")
    print(child.stderr, end="", file=sys.stderr)
    results.run("register() before g4f is imported (child process)", "name",
                lambda: _assert(child.returncode == 0, f"exit {child.returncode}"))
    results.finish("entry-points")


def _assert(condition, message):
    assert condition, message


if __name__ == "__main__":
    assert fakegpt.FakeGpt is FakeGpt
    main()
