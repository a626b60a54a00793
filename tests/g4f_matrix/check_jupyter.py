"""fakegpt.FakeGpt in a real Jupyter kernel without nest_asyncio, through g4f's drivers.

Run by noxfile.py after it uninstalled nest_asyncio (and 8.x's nest-asyncio2)
from the venv. The emulator runs in this process; ``nbclient`` starts an
``ipykernel`` of this venv, whose cells run inside the kernel's running event
loop. Each cell prints what it got; this script compares it with the exact
replies. A control cell shows the kernel is the hard case: g4f's own
async-generator provider fails there (no nest_asyncio to patch the loop).
"""
import json
import os
import sys
import tempfile

import nbclient
import nbformat

from fakegpt.emulator import Emulator

from _common import Results, expected, g4f_version, raises, responder

SETUP = """
import asyncio, json, sys
for name in ("nest_asyncio", "nest_asyncio2"):
    try:
        __import__(name)
    except ImportError:
        pass
    else:
        raise AssertionError(name + " is importable in the kernel")
loop = asyncio.get_running_loop()  # the kernel's: every cell runs inside it
import g4f, fakegpt
from fakegpt import FakeGpt
g4f.debug.version_check = False
print(json.dumps({"executable": sys.executable, "loop": type(loop).__name__,
                  "patched": hasattr(type(loop), "_nest_patched")}))
"""

CONTROL = """
from g4f.Provider import AsyncGeneratorProvider
class GeneratorOnly(AsyncGeneratorProvider):
    working = True
    @classmethod
    async def create_async_generator(cls, model, messages, **kwargs):
        yield "never"
try:
    print(g4f.ChatCompletion.create(model="", messages=[{"role": "user", "content": "x"}], provider=GeneratorOnly))
except Exception as error:  # RuntimeError, or 0.2.0.9's NestAsyncioError
    print(json.dumps({"error": type(error).__name__, "message": str(error)}))
"""


def calls(provider_expr, prompt, with_client):
    """A cell printing the replies of ChatCompletion.create (plain, stream) and Client (plain, stream)."""
    messages = json.dumps([{"role": "user", "content": prompt}])
    lines = [
        f"messages = {messages}",
        "out = {}",
        f"out['create'] = g4f.ChatCompletion.create(model='gpt-3.5-turbo', messages=messages, provider={provider_expr})",
        "out['create stream'] = [c for c in g4f.ChatCompletion.create(model='gpt-3.5-turbo', messages=messages, "
        f"provider={provider_expr}, stream=True)]",
    ]
    if with_client:
        lines += [
            "from g4f.client import Client",
            f"client = Client(provider={provider_expr})",
            "out['Client'] = client.chat.completions.create(messages=messages, model='gpt-3.5-turbo')"
            ".choices[0].message.content",
            "out['Client stream'] = [c.choices[0].delta.content for c in "
            "client.chat.completions.create(messages=messages, model='gpt-3.5-turbo', stream=True)][:-1]",
        ]
    lines.append("print(json.dumps(out))")
    return "\n".join(lines)


def last_json(cell):
    text = "".join(o.text for o in cell.outputs if o.output_type == "stream" and o.name == "stdout")
    errors = [f"{o.ename}: {o.evalue}" for o in cell.outputs if o.output_type == "error"]
    assert not errors, errors
    return json.loads(text.strip().splitlines()[-1])


def check_replies(out, prompt, keys):
    assert set(keys) <= set(out), (keys, out)
    for key, value in ((key, out[key]) for key in keys):
        if isinstance(value, list):  # streams: only str chunks, exact when joined
            assert all(isinstance(chunk, str) for chunk in value), (key, value)
            assert len(value) > 3 and "".join(value) == expected(prompt), (key, value)
        else:
            assert value == expected(prompt), (key, value)


def main():
    version, full = g4f_version()
    results = Results(full)
    with_client = version >= (0, 5)
    with Emulator(responder=responder) as emulator, tempfile.TemporaryDirectory() as workdir:
        notebook = nbformat.v4.new_notebook()
        notebook.cells = [nbformat.v4.new_code_cell(source) for source in (
            SETUP,
            CONTROL,
            calls("FakeGpt", "by class in a kernel", with_client),
            "FakeGpt.register()",
            calls("'FakeGpt'", "by name in a kernel", with_client),
            "print(json.dumps({'patched': hasattr(type(asyncio.get_running_loop()), '_nest_patched')}))",
        )]
        env = dict(os.environ, FAKEGPT_BASE_URL=emulator.url, IPYTHONDIR=os.path.join(workdir, "ipython"),
                   JUPYTER_RUNTIME_DIR=os.path.join(workdir, "runtime"))
        os.environ.update(env)  # the kernel inherits this process's environment
        client = nbclient.NotebookClient(notebook, timeout=120, kernel_name="python3", allow_errors=True,
                                         resources={"metadata": {"path": workdir}})
        client.execute()
        setup, control, by_class, register, by_name, after = notebook.cells

        def kernel():
            info = last_json(setup)
            assert os.path.realpath(info["executable"]) == os.path.realpath(sys.executable), info
            assert info["patched"] is False, info
        results.run("kernel: this venv, a running loop, no nest_asyncio", "kernel", kernel)

        def control_fails():
            info = last_json(control)
            assert info["error"] in ("RuntimeError", "NestAsyncioError"), info
            assert "running event loop" in info["message"] or "already running" in info["message"], info
        results.run("control: g4f's own async-generator provider fails in the kernel", "kernel", control_fails)
        for mode, cell, prompt in (("class", by_class, "by class in a kernel"), ("name", by_name, "by name in a kernel")):
            results.run("ChatCompletion.create in the kernel", mode,
                        lambda: check_replies(last_json(cell), prompt, ("create", "create stream")))
            if with_client:
                results.run("Client in the kernel", mode,
                            lambda: check_replies(last_json(cell), prompt, ("Client", "Client stream")))
            else:
                results.not_applicable("Client in the kernel", mode, "g4f 0.2.0.9 has no g4f.client",
                                       lambda: raises(ImportError, lambda: __import__("g4f.client")))
            if mode == "class":
                def registered():
                    errors = [f"{o.ename}: {o.evalue}" for o in register.outputs if o.output_type == "error"]
                    assert not errors, errors
                results.run("register() in the kernel", "name", registered)

        def untouched():
            assert last_json(after) == {"patched": False}
            assert emulator.counts["logins"] == 1, dict(emulator.counts)
            assert emulator.counts["conversations"] == responder.calls == (8 if with_client else 4), responder.calls
        results.run("loop never patched; one login", "kernel", untouched)
    results.finish("jupyter")


if __name__ == "__main__":
    main()
