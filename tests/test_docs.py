"""The documentation's examples run, and the README renders and tells the truth."""
import contextlib
import doctest
import importlib
import io
import json
import pathlib
import pkgutil
import re
import subprocess
import sys

import pytest

import fakegpt

ROOT = pathlib.Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
FLAGS = doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE


def modules():
    names = ["fakegpt"] + [m.name for m in pkgutil.walk_packages(fakegpt.__path__, "fakegpt.")]
    return [name for name in names if name not in ("fakegpt.__main__", "fakegpt.pytest_plugin")]


def pages():
    return sorted(DOCS.glob("*.rst"))


@pytest.mark.parametrize("name", modules())
def test_docstring_examples_run(name):
    module = importlib.import_module(name)
    result = doctest.testmod(module, optionflags=FLAGS, report=True)
    assert result.failed == 0, f"{result.failed} docstring example(s) failed in {name}"


@pytest.mark.parametrize("page", pages(), ids=lambda page: page.name)
def test_documentation_examples_run(page):
    result = doctest.testfile(str(page), module_relative=False, optionflags=FLAGS, report=True)
    assert result.failed == 0, f"{result.failed} example(s) failed in docs/{page.name}"


def documented_members(autoclass):
    """The members docs/api.rst documents for ``.. autoclass:: AUTOCLASS``: its ``:members:`` and the
    ``.. attribute::``/``.. method::``/``.. property::`` directives nested under it."""
    text = (DOCS / "api.rst").read_text()
    section = re.search(rf"^\.\. autoclass:: {re.escape(autoclass)}\n((?:   .*\n|\n)*)", text, re.M)
    assert section, autoclass
    body = section[1]
    members = re.search(r"^   :members: (.*)$", body, re.M)
    names = {name.strip() for name in members[1].split(",")} if members else set()
    return names | set(re.findall(r"^   \.\. (?:attribute|method|property|classmethod):: (\w+)", body, re.M))


def test_the_api_reference_documents_the_providers_public_attributes():
    documented = documented_members("fakegpt.FakeGpt")
    assert {"register", "url", "max_concurrency", "create_async_generator", "create_completion",
            "create_async", "params"} <= documented
    assert all(hasattr(fakegpt.FakeGpt, name) for name in documented)


# Run in a fresh interpreter: the example registers FakeGpt in g4f, which must not
# leak into the other tests (they check gpt4free's own FakeGpt), and the audit
# hook that records the network stays for the life of a process.
_HYPOTEZ = r"""
import doctest, json, sys
import g4f

section, flags = sys.argv[1], int(sys.argv[2])
outside, watching = [], []

def watch(event, args):
    if not watching or event not in ("socket.getaddrinfo", "socket.connect"):
        return
    host = args[0] if event == "socket.getaddrinfo" else args[1]
    host = host[0] if isinstance(host, tuple) else host
    host = host.decode() if isinstance(host, bytes) else str(host)
    if host not in ("localhost", "::1") and not host.startswith("127.") and not host.startswith("/"):
        outside.append((event, host))

sys.addaudithook(watch)
test = doctest.DocTestParser().get_doctest(section, {}, "gpt4free.rst (hypotez)", "gpt4free.rst", 0)
g4f.debug.version_check = True  # as in a fresh process
watching.append(True)
runner = doctest.DocTestRunner(optionflags=flags)
runner.run(test)
watching.clear()
print(json.dumps({"failures": runner.failures, "tries": runner.tries, "outside": outside}))
"""


def test_the_hypotez_example_is_complete_and_runs_without_asking_the_package_index():
    pytest.importorskip("g4f")
    text = (DOCS / "gpt4free.rst").read_text()
    section = text[text.index("\nIn hypotez\n"):text.index("Code that imports the provider class directly")]
    test = doctest.DocTestParser().get_doctest(section, {}, "gpt4free.rst (hypotez)", str(DOCS / "gpt4free.rst"), 0)
    sources = "".join(example.source for example in test.examples)
    for needed in ("fakegpt.FakeGpt.register()", "g4f.debug.version_check = False", "messages = [",
                   'provider="FakeGpt"'):
        assert needed in sources  # a complete program: nothing used is left undefined
    done = subprocess.run([sys.executable, "-c", _HYPOTEZ, section, str(FLAGS)], capture_output=True, text=True,
                          timeout=120, cwd=ROOT)
    out = done.stdout
    result = json.loads(out.strip().splitlines()[-1]) if done.returncode == 0 and out.strip() else None
    assert result is not None, (out, done.stderr)
    assert result["failures"] == 0 and result["tries"] >= 8, out
    assert result["outside"] == [] and "g4f version" not in out + done.stderr


def test_the_pages_that_promise_examples_have_them():
    tested = {page.name for page in pages() if ">>> " in page.read_text()}
    assert {"quickstart.rst", "streaming.rst", "conversations.rst", "errors.rst", "async.rst", "gpt4free.rst",
            "emulator.rst"} <= tested


# -- the README ---------------------------------------------------------------------------
README = (ROOT / "README.rst").read_text()


def blocks(language):
    """The bodies of ``.. code-block:: LANGUAGE`` directives in the README."""
    found = []
    for match in re.finditer(rf"^\.\. code-block:: {language}\n\n((?:    .*\n|\n)+)", README, re.M):
        found.append("\n".join(line[4:] for line in match[1].splitlines()).strip() + "\n")
    return found


def test_the_readme_renders_for_pypi():
    from readme_renderer.rst import render

    warnings = io.StringIO()
    html = render(README, stream=warnings)
    assert html is not None and warnings.getvalue() == ""


DEMO_COMMAND = """python3 -m venv .venv && .venv/bin/pip install . && .venv/bin/fakegpt chat --emulator "Say hello\""""
TEST_COMMAND = "python3 -m venv .venv && .venv/bin/pip install -e '.[test]' && .venv/bin/python -m pytest"
DOCS_COMMAND = ("python3 -m venv .venv && .venv/bin/pip install -e '.[docs]' && "
                ".venv/bin/sphinx-build -n -W --keep-going -b html docs docs/_build/html")


def test_the_readme_leads_with_one_sentence_then_the_two_commands():
    body = README.split("\n", 3)[3].lstrip()  # after the title
    lead = body.split("\n\n", 1)[0]
    assert lead.count(". ") == 0 and lead.rstrip().endswith(".")
    # Two set-up commands (the demo, the tests), then the example, then the docs command.
    assert [command.strip() for command in blocks("console")] == [DEMO_COMMAND, TEST_COMMAND, DOCS_COMMAND]
    assert README.index(DEMO_COMMAND) < README.index(TEST_COMMAND) < README.index(".. code-block:: python")
    assert README.index("\nDocumentation\n") < README.index(DOCS_COMMAND)


def test_the_quickstart_and_installation_show_the_readmes_commands():
    for page in ("quickstart.rst", "installation.rst"):
        text = (DOCS / page).read_text()
        assert DEMO_COMMAND in text and TEST_COMMAND in text, page
    assert DOCS_COMMAND in (DOCS / "installation.rst").read_text()


def test_ci_runs_the_readmes_commands():
    ci = (ROOT / ".ci" / "run").read_text()
    assert TEST_COMMAND in ci  # the main test step, as written
    assert "readme_command demo" in ci and "readme_command docs" in ci  # each in a fresh venv, from the sdist


def test_the_readmes_python_examples_run():
    examples = blocks("python")
    assert examples, "the README shows code"
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        for code in examples:
            exec(compile(code, "README.rst", "exec"), {"__name__": "readme"})
    assert out.getvalue().startswith('Hello! You said "Hello!".')


def test_the_readme_names_the_docs_pages():
    named = re.findall(r"docs/(\w+)\.rst", README)
    for page in named:
        assert (DOCS / f"{page}.rst").exists(), page
    assert {page.stem for page in pages()} - {"index", "api", "changelog", "installation"} <= set(named)


def test_the_readmes_links_work_on_a_package_index_too():
    """A relative link (``docs/x.rst``) breaks once the README is a package's
    description on an index: every link target is an absolute URL."""
    targets = re.findall(r"`[^`<]*<([^>]+)>`_", README) + re.findall(r"^\.\. _[^:]+:\s*(\S+)", README, re.M)
    assert all(re.match(r"https?://", target) for target in targets), targets


def test_the_notebook_is_saved_without_outputs():
    import json

    notebook = json.loads((DOCS / "examples" / "quickstart.ipynb").read_text())
    code = [cell for cell in notebook["cells"] if cell["cell_type"] == "code"]
    assert code and all(cell["outputs"] == [] and cell["execution_count"] is None for cell in code)


def test_a_base_url_with_a_path_prefix_is_kept_as_configuration_rst_says():
    import responses

    from .conftest import MockServer

    assert "may carry a path prefix" in (DOCS / "configuration.rst").read_text()
    with responses.RequestsMock(assert_all_requests_are_fired=False) as rsps:
        server = MockServer(rsps, base="https://example.org/chat")
        server.logged_in()
        server.conversation()
        with fakegpt.Client("https://example.org/chat/", max_retries=0) as client:
            assert client.base_url == "https://example.org/chat"
            assert client.complete([{"role": "user", "content": "hi"}]) == "Hello world"
        assert [call.request.url.split("?")[0] for call in rsps.calls] == [
            "https://example.org/chat/api/loads", "https://example.org/chat/auth/login",
            "https://example.org/chat/api/auth/session", "https://example.org/chat/api/conversation"]
