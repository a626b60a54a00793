"""A user's script written as the documentation shows it; ``mypy --strict`` must
pass on it (tests/test_typing.py), and ``reveal_type`` checks pin the types."""
import asyncio
import contextlib
from typing import AsyncGenerator, Dict, List

from typing_extensions import assert_type  # (type-checking only: mypy knows it without the package)

import fakegpt
from fakegpt import Client, FakeGpt

messages: List[Dict[str, str]] = [{"role": "user", "content": "Say hi"}]


def blocking(url: str) -> str:
    with Client(url) as client:
        text = ""
        for delta in client.stream(messages):
            assert_type(delta, str)  # a str, not Any
            text += delta
        with client.stream(messages, model="gpt-3.5-turbo") as stream:
            first: str = next(stream)
            text += first + (stream.finish_reason or "")
        reply = client.complete(messages)
        text += reply + (reply.conversation_id or "")
        conversation = client.conversation()
        for delta in conversation.stream("Remember the word teapot."):
            assert_type(delta, str)
            text += delta
        text += conversation.complete("Which word?")
        return text


def provider_sync() -> str:
    for delta in FakeGpt.create_completion("gpt-3.5-turbo", messages):
        assert_type(delta, str)
    return "".join(FakeGpt.create_completion("gpt-3.5-turbo", messages))


async def provider_async() -> str:
    text = ""
    generator: AsyncGenerator[str, None] = FakeGpt.create_async_generator("gpt-3.5-turbo", messages)
    async for delta in generator:
        assert_type(delta, str)
        text += delta
        break
    await generator.aclose()
    async with contextlib.aclosing(FakeGpt.create_async_generator("gpt-3.5-turbo", messages)) as deltas:
        async for delta in deltas:
            text += delta.strip()
    return text + await FakeGpt.create_async("gpt-3.5-turbo", messages)


def errors(url: str) -> str:
    try:
        return blocking(url)
    except fakegpt.RateLimitError as error:
        return f"rate limited: retry after {error.retry_after}"
    except fakegpt.FakeGptError as error:
        return str(error)


if __name__ == "__main__":  # pragma: no cover - type-checked, not run
    print(errors("http://localhost:8787"), asyncio.run(provider_async()), provider_sync())
