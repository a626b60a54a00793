"""fakegpt.FakeGpt in the installed g4f, through the gateway (``fakegpt serve
--upstream``'s Python form) to an OpenAI-compatible server: the paced test server
of tests/upstream_kit.py on loopback. Exact reply text, the history sent up, one
login per process.

Run by noxfile.py in a venv holding one g4f release (e.g. 0.5.0.1)::

    python tests/g4f_matrix/check_gateway.py
"""
import asyncio
import os
import sys

# The checkout, for tests/upstream_kit.py; appended, so fakegpt is the installed one.
sys.path.append(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))

from fakegpt import FakeGpt  # noqa: E402
from fakegpt.emulator import Emulator  # noqa: E402
from fakegpt.gateway import Upstream  # noqa: E402
from tests.upstream_kit import PacedUpstream, expected_reply  # noqa: E402

from _common import Results, g4f_version, messages  # noqa: E402

MODEL = "gpt-3.5-turbo"


def main():
    version, full = g4f_version()
    results = Results(full)
    with PacedUpstream(pace=0.001) as upstream, Emulator(upstream=Upstream(upstream.url, model="paced")) as gateway:
        os.environ["FAKEGPT_BASE_URL"] = gateway.url  # read at call time
        import g4f
        g4f.debug.version_check = False  # it would ask PyPI for its latest version

        def create():
            prompt = "through the gateway ✓"
            assert g4f.ChatCompletion.create(model=MODEL, messages=messages(prompt), provider=FakeGpt) == \
                expected_reply(prompt)
        results.run("ChatCompletion.create through the gateway", "class", create)

        def streamed():
            prompt = "streamed through the gateway"
            deltas = list(g4f.ChatCompletion.create(model=MODEL, messages=messages(prompt), provider=FakeGpt,
                                                    stream=True))
            assert "".join(deltas) == expected_reply(prompt) and len(deltas) > 1, deltas
        results.run("ChatCompletion.create(stream=True) through the gateway", "class", streamed)

        def generator():
            prompt = "async through the gateway"

            async def collect():
                return "".join([d async for d in FakeGpt.create_async_generator(MODEL, messages(prompt))])
            assert asyncio.run(collect()) == expected_reply(prompt)
        results.run("create_async_generator through the gateway", "class", generator)

        def history():
            turns = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "one"},
                     {"role": "assistant", "content": "two"}, {"role": "user", "content": "three"}]
            assert g4f.ChatCompletion.create(model=MODEL, messages=turns, provider=FakeGpt) == expected_reply("three")
            assert upstream.bodies[-1]["messages"] == turns, upstream.bodies[-1]
        results.run("a message list goes up as messages", "class", history)

        if version >= (0, 5):
            def client():
                from g4f.client import Client
                prompt = "g4f.client through the gateway"
                reply = Client(provider=FakeGpt).chat.completions.create(messages=messages(prompt), model=MODEL)
                assert reply.choices[0].message.content == expected_reply(prompt)
            results.run("g4f.client.Client through the gateway", "class", client)

        def one_login():
            assert gateway.counts["logins"] == 1, dict(gateway.counts)
        results.run("one login per process", "class", one_login)
    results.finish("gateway")


if __name__ == "__main__":
    main()
