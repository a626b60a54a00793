"""The documentation's examples run, and the README renders and tells the truth."""
import contextlib
import doctest
import importlib
import io
import pathlib
import pkgutil
import re

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


def test_the_readme_leads_with_one_sentence_then_the_two_commands():
    body = README.split("\n", 3)[3].lstrip()  # after the title
    lead = body.split("\n\n", 1)[0]
    assert lead.count(". ") == 0 and lead.rstrip().endswith(".")
    commands = blocks("console")
    assert len(commands) == 2
    assert commands[0].strip().endswith('fakegpt chat --emulator "Say hello"')
    assert commands[1].strip().endswith("python -m pytest")
    assert README.index(commands[0].strip()) < README.index(commands[1].strip()) < README.index(".. code-block:: python")


def test_the_quickstart_shows_the_readmes_two_commands():
    quickstart = (DOCS / "quickstart.rst").read_text()
    assert all(command.strip() in quickstart for command in blocks("console"))


def test_ci_runs_the_readmes_test_command():
    test_command = blocks("console")[1].strip()
    assert test_command in (ROOT / ".ci" / "run").read_text()


def test_the_readmes_python_examples_run():
    examples = blocks("python")
    assert examples, "the README shows code"
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        for code in examples:
            exec(compile(code, "README.rst", "exec"), {"__name__": "readme"})
    assert out.getvalue().startswith('Hello! You said "Hello!".')


def test_the_readme_links_into_the_docs():
    for page in re.findall(r"docs/(\w+)\.rst", README):
        assert (DOCS / f"{page}.rst").exists(), page
    assert len(re.findall(r"docs/(\w+)\.rst", README)) >= 5
