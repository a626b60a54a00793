"""docs/examples/quickstart.ipynb runs in a real Jupyter kernel and shows what it says.

The notebook is executed once per module, in memory (the file in docs/ is only
read), by ``nbclient`` in a fresh ``python3`` kernel started from a temporary
working directory; each test then checks the outputs of one step, found by the
tag in its cell's metadata.
"""
import pathlib
import re

import nbclient
import nbformat
import pytest

from fakegpt._protocol import web_model
from fakegpt.emulator import default_responder

NOTEBOOK = pathlib.Path(__file__).resolve().parent.parent / "docs" / "examples" / "quickstart.ipynb"
TAGS = ("emulator", "stream", "async-stream", "create-completion", "metadata", "rate-limit", "auth-error", "stop")

# The prompts the notebook sends: one user message each, so the prompt is its
# content verbatim (flatten_prompt) and the emulator answers default_responder(content).
STREAM_PROMPT = "Say hello"
ASYNC_PROMPT = "What is streaming?"

UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


def cell(notebook, tag):
    """The one code cell tagged *tag*."""
    found = [c for c in notebook.cells if c.cell_type == "code" and tag in c.metadata.get("tags", [])]
    assert len(found) == 1, f"expected exactly one code cell tagged {tag!r}, found {len(found)}"
    return found[0]


def stdout(cell_):
    """Everything the cell printed (a streamed print arrives in many pieces)."""
    return "".join(o.text for o in cell_.outputs if o.output_type == "stream" and o.name == "stdout")


@pytest.fixture(scope="module")
def executed(tmp_path_factory):
    """The notebook, executed; the file itself is left as it is."""
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    workdir = tmp_path_factory.mktemp("notebook")
    with pytest.MonkeyPatch.context() as env:
        # The kernel inherits this environment: no user settings for fakegpt,
        # IPython or Jupyter, and loopback never goes through a proxy.
        for name in ("FAKEGPT_BASE_URL", "FAKEGPT_PROXY", "FAKEGPT_TIMEOUT", "FAKEGPT_MAX_RETRIES",
                     "FAKEGPT_SESSION_CACHE", "FAKEGPT_LOG"):
            env.delenv(name, raising=False)
        env.setenv("NO_PROXY", "localhost,127.0.0.1")
        env.setenv("no_proxy", "localhost,127.0.0.1")
        env.setenv("IPYTHONDIR", str(workdir / "ipython"))
        env.setenv("JUPYTER_RUNTIME_DIR", str(workdir / "runtime"))
        env.chdir(workdir)
        client = nbclient.NotebookClient(
            notebook, timeout=60, kernel_name="python3", resources={"metadata": {"path": str(workdir)}}
        )
        client.execute()  # raises CellExecutionError, with the traceback, if a cell fails
    return notebook


def test_the_stored_notebook_is_clean():
    notebook = nbformat.read(NOTEBOOK, as_version=nbformat.NO_CONVERT)
    nbformat.validate(notebook)
    assert notebook.nbformat == 4
    assert notebook.metadata.kernelspec.name == "python3"
    for tag in TAGS:
        cell(notebook, tag)
    for code in (c for c in notebook.cells if c.cell_type == "code"):
        assert code.outputs == [], f"cell {code.id!r} has stored outputs"
        assert code.execution_count is None, f"cell {code.id!r} has an execution count"


def test_every_cell_ran_without_errors_or_stderr(executed):
    codes = [c for c in executed.cells if c.cell_type == "code"]
    assert [c.execution_count for c in codes] == list(range(1, len(codes) + 1))
    for code in codes:
        errors = [o for o in code.outputs if o.output_type == "error"]
        assert not errors, f"cell {code.id!r} raised {errors[0].ename}: {errors[0].evalue}"
        stderr = "".join(o.text for o in code.outputs if o.output_type == "stream" and o.name == "stderr")
        assert stderr == "", f"cell {code.id!r} wrote to stderr: {stderr!r}"


def test_the_emulator_starts_on_localhost(executed):
    results = [o for o in cell(executed, "emulator").outputs if o.output_type == "execute_result"]
    assert len(results) == 1
    assert re.fullmatch(r"'http://localhost:\d+'", results[0].data["text/plain"])


def test_the_for_loop_streams_the_reply(executed):
    assert STREAM_PROMPT in cell(executed, "stream").source
    assert stdout(cell(executed, "stream")) == default_responder(STREAM_PROMPT)


def test_async_for_streams_the_reply(executed):
    assert ASYNC_PROMPT in cell(executed, "async-stream").source
    assert "async for" in cell(executed, "async-stream").source
    assert stdout(cell(executed, "async-stream")) == default_responder(ASYNC_PROMPT)


def test_create_completion_gives_the_same_reply(executed):
    assert stdout(cell(executed, "create-completion")) == default_responder(ASYNC_PROMPT) + "\n"


def test_the_reply_carries_its_metadata(executed):
    lines = stdout(cell(executed, "metadata")).splitlines()
    fields = dict(line.split(": ", 1) for line in lines)
    assert list(fields) == ["text", "conversation_id", "message_id", "model", "finish_reason"]
    assert fields["text"] == default_responder(STREAM_PROMPT)
    assert UUID.fullmatch(fields["conversation_id"]), fields["conversation_id"]
    assert UUID.fullmatch(fields["message_id"]), fields["message_id"]
    assert fields["message_id"] != fields["conversation_id"]
    assert fields["model"] == web_model("gpt-3.5-turbo")
    assert fields["finish_reason"] == "stop"


def test_a_rate_limit_is_caught(executed):
    assert stdout(cell(executed, "rate-limit")) == (
        "RateLimitError: POST /api/conversation failed: HTTP 429: "
        "Too many requests in 1 hour. Try again later. (retry after 0s)\n"
        "status_code: 429\n"
        "retry_after: 0.0\n"
    )


def test_an_authentication_error_is_caught(executed):
    assert stdout(cell(executed, "auth-error")) == (
        "AuthenticationError: no shared token to log in with: the server's token list (/api/loads) is empty\n"
    )


def test_the_emulator_stops_quietly(executed):
    assert cell(executed, "stop").outputs == []
