"""The asyncio bridge and the client under load and abuse: queued calls that
are cancelled, trickling bodies, deadlines, an interrupted login, and a
connection pool sized to the concurrency."""
import asyncio
import logging
import threading

import pytest

import fakegpt
from fakegpt import FakeGpt
from fakegpt._auth import AccessToken
from fakegpt.emulator import Emulator, default_responder

from ..conftest import at_once
from .test_client_live import HEAD, MESSAGES, RawServer, chunk, event


@pytest.fixture
def limited():
    saved = FakeGpt.max_concurrency
    yield
    FakeGpt.max_concurrency = saved


def test_cancelling_calls_waiting_for_a_turn_sends_no_request(limited):
    FakeGpt.max_concurrency = 2
    with Emulator() as emulator:
        FakeGpt.url = emulator.url
        emulator.stream_fault("stall", after_words=1, seconds=60, times=2)

        async def one(i):
            return "".join([d async for d in FakeGpt.create_async_generator(
                "gpt-3.5-turbo", [{"role": "user", "content": f"q{i}"}])])

        async def main():
            tasks = [asyncio.ensure_future(one(i)) for i in range(10)]
            assert await asyncio.to_thread(emulator.wait_until, lambda e: e.counts["streams"] == 2, 30)
            for task in tasks:
                task.cancel()
            return await asyncio.gather(*tasks, return_exceptions=True)

        outcomes = asyncio.run(main())
        assert all(isinstance(o, asyncio.CancelledError) for o in outcomes)
        assert emulator.wait_until(lambda e: e.counts["disconnects"] == 2, timeout=10)
        assert emulator.counts["conversations"] == 2  # the 8 that waited sent nothing


def test_calls_past_the_limit_wait_their_turn_and_all_finish(limited):
    FakeGpt.max_concurrency = 3
    with Emulator(delay=0.01) as emulator:
        FakeGpt.url = emulator.url

        async def main():
            return await asyncio.gather(*(FakeGpt.create_async(
                "gpt-3.5-turbo", [{"role": "user", "content": f"q{i}"}]) for i in range(12)))

        assert asyncio.run(main()) == [default_responder(f"q{i}") for i in range(12)]
        assert emulator.counts["logins"] == 1


def test_a_trickling_body_ends_with_a_timeout_error():
    # One byte per chunk, a chunk every 0.1 s: the socket's read timeout (1 s)
    # never fires, but no complete event comes within it.
    whole = event("Hello") + event("Hello world, this never ends")
    script = [HEAD, chunk(whole[:len(event("Hello"))])]
    for byte in whole[len(event("Hello")):]:
        script += [0.1, chunk(bytes([byte]))]
    server = RawServer(script)
    try:
        with fakegpt.Client(server.url, access_token="t", timeout=(5, 1), max_retries=0) as client:
            stream = client.stream(MESSAGES)
            with pytest.raises(fakegpt.APITimeoutError, match="no complete event arrived for 1 s, the read timeout, while data kept arriving") as info:
                for _ in stream:
                    pass
            assert info.value.partial_text == "Hello" and stream.text == "Hello"
    finally:
        server.close()


def test_a_deadline_ends_a_slow_call_keeping_what_arrived():
    with Emulator(delay=0.1) as emulator, fakegpt.Client(emulator.url, deadline=1.0) as client:
        stream = client.stream([{"role": "user", "content": "words"}])
        with pytest.raises(fakegpt.APITimeoutError, match="deadline") as info:
            for _ in stream:
                pass
        assert info.value.partial_text and info.value.partial_text == stream.text
        assert default_responder("words").startswith(stream.text)
        assert emulator.wait_until(lambda e: e.counts["disconnects"] == 1, timeout=10)


def test_bad_deadlines_are_refused_before_any_request():
    for bad, error in ((0, ValueError), (-1, ValueError), ("1", TypeError), (float("inf"), ValueError)):
        with pytest.raises(error):
            fakegpt.Client("http://127.0.0.1:9", deadline=bad)


def test_an_interrupted_login_leader_does_not_interrupt_the_waiters():
    started, release = threading.Event(), threading.Event()
    calls = []

    def login():
        calls.append(threading.current_thread().name)
        if len(calls) == 1:
            started.set()
            release.wait(10)
            raise KeyboardInterrupt
        return "fresh-token"

    token = AccessToken(login)
    outcomes = {}

    def lead():
        try:
            token.get()
        except BaseException as error:  # noqa: B902 - the test looks at what it was
            outcomes["leader"] = error

    def wait():
        outcomes["waiter"] = token.get()

    leader = threading.Thread(target=lead, name="leader")
    leader.start()
    assert started.wait(10)
    waiter = threading.Thread(target=wait, name="waiter")
    waiter.start()
    release.set()
    leader.join(10)
    waiter.join(10)
    assert isinstance(outcomes["leader"], KeyboardInterrupt)
    assert outcomes["waiter"] == "fresh-token" and calls == ["leader", "waiter"]


def test_the_pool_holds_every_concurrent_connection_and_reuses_them(caplog):
    caplog.set_level(logging.WARNING, logger="urllib3")
    with Emulator(delay=0.02) as emulator, fakegpt.Client(emulator.url) as client:
        client.complete(MESSAGES)
        for _ in range(2):
            texts = at_once(lambda i: client.complete([{"role": "user", "content": f"p{i}"}]), 80)
            assert texts == [default_responder(f"p{i}") for i in range(80)]
        # The second round found the first round's connections in the pool.
        assert emulator.counts["connections"] <= 81
    assert not [r for r in caplog.records if "pool is full" in r.getMessage()]
