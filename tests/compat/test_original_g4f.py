"""gpt4free's original FakeGpt provider (g4f==0.2.0.9), unmodified, against the emulator.

A client nobody here wrote: if it works, the emulator speaks the protocol.
The original understands only the cumulative format (it reads
``message.metadata.message_type == "next"``), which the emulator streams
unless a client asks for delta encoding.
"""
import asyncio

import g4f
import pytest
from g4f.Provider import FakeGpt as OriginalFakeGpt

from fakegpt._protocol import flatten_prompt
from fakegpt.emulator import default_responder

g4f.debug.version_check = False  # it would ask PyPI for its latest version


@pytest.fixture
def original(fakegpt_emulator):
    saved = OriginalFakeGpt.url, OriginalFakeGpt._access_token, OriginalFakeGpt._cookie_jar
    OriginalFakeGpt.url, OriginalFakeGpt._access_token, OriginalFakeGpt._cookie_jar = fakegpt_emulator.url, None, None
    yield OriginalFakeGpt
    OriginalFakeGpt.url, OriginalFakeGpt._access_token, OriginalFakeGpt._cookie_jar = saved


async def collect(generator):
    return [chunk async for chunk in generator]


def test_create_async_generator_streams_the_reply(original, fakegpt_emulator):
    chunks = asyncio.run(collect(original.create_async_generator("gpt-3.5-turbo", [{"role": "user", "content": "Hi"}])))
    assert "".join(chunks) == default_responder("Hi") and len(chunks) > 10
    assert original._access_token.startswith("emu-") and original._cookie_jar is not None
    paths = [r.path.split("?")[0] for r in fakegpt_emulator.requests]
    assert paths[:4] == ["/api/loads", "/auth/login", "/", "/api/auth/session"]  # aiohttp follows the redirect


def test_the_original_keeps_its_login_on_the_class(original, fakegpt_emulator):
    messages = [{"role": "user", "content": "again"}]
    asyncio.run(collect(original.create_async_generator("gpt-3.5-turbo", messages)))
    asyncio.run(collect(original.create_async_generator("gpt-3.5-turbo", messages)))
    assert fakegpt_emulator.counts["logins"] == 1 and fakegpt_emulator.counts["streams"] == 2


@pytest.mark.parametrize("stream", [False, True])
def test_g4f_chat_completion_driver(original, stream):
    result = g4f.ChatCompletion.create(model="gpt-3.5-turbo", messages=[{"role": "user", "content": "Hello"}],
                                       provider=original, stream=stream)
    text = result if not stream else "".join(result)
    assert text == default_responder("Hello")


def test_both_clients_flatten_a_history_the_same_way(original, fakegpt_emulator):
    messages = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "hi"},
                {"role": "assistant", "content": "Hello"}, {"role": "user", "content": "And?"}]
    text = g4f.ChatCompletion.create(model="gpt-3.5-turbo", messages=messages, provider=original)
    assert text == default_responder(flatten_prompt(messages))


def test_the_original_fails_as_it_always_did_on_a_dead_service(original, fakegpt_emulator):
    fakegpt_emulator.clear_tokens()
    with pytest.raises(IndexError):  # random.choice([]): the crash fakegpt replaces with AuthenticationError
        asyncio.run(collect(original.create_async_generator("gpt-3.5-turbo", [{"role": "user", "content": "x"}])))
