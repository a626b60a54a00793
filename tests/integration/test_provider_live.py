"""FakeGpt over loopback: gpt4free's driver, real event loops, concurrency, cancellation."""
import asyncio
import inspect
import logging
import subprocess
import sys
import threading
import time

import g4f
import pytest

import fakegpt
from fakegpt import FakeGpt, _bridge
from fakegpt import provider as provider_module
from fakegpt.emulator import Emulator, default_responder

from ..conftest import at_once

g4f.debug.version_check = False  # it would ask PyPI for its latest version

HI = [{"role": "user", "content": "Hi"}]


@pytest.fixture
def emulator(fakegpt_emulator):
    FakeGpt.url = fakegpt_emulator.url
    return fakegpt_emulator


async def collect(agen):
    return [delta async for delta in agen]


@pytest.fixture
def pump_finished(monkeypatch):
    """An Event per pumped stream, set when its worker thread is done with it."""
    events = []
    real_pump = _bridge.pump

    def pump(stream, channel):
        done = threading.Event()
        events.append(done)
        try:
            real_pump(stream, channel)
        finally:
            done.set()

    monkeypatch.setattr(provider_module, "pump", pump)
    return events


# -- gpt4free's own driver -------------------------------------------------------------
@pytest.mark.parametrize("stream", [False, True])
def test_works_in_g4f_chat_completion_create(emulator, stream):
    result = g4f.ChatCompletion.create(model="gpt-3.5-turbo", messages=HI, provider=fakegpt.FakeGpt, stream=stream)
    assert (result if not stream else "".join(result)) == default_responder("Hi")


def test_works_in_g4f_chat_completion_create_async(emulator):
    text = asyncio.run(g4f.ChatCompletion.create_async(model="gpt-3.5-turbo", messages=HI, provider=FakeGpt))
    assert text == default_responder("Hi")


# -- the three ways in ------------------------------------------------------------------
def test_create_async_generator_yields_str_deltas(emulator):
    agen = FakeGpt.create_async_generator("gpt-3.5-turbo", HI, stream=True, anything="ignored")
    assert inspect.isasyncgen(agen)
    deltas = asyncio.run(collect(agen))
    assert "".join(deltas) == default_responder("Hi") and all(isinstance(d, str) and d for d in deltas)


def test_create_async(emulator):
    assert asyncio.run(FakeGpt.create_async("gpt-3.5-turbo", HI)) == default_responder("Hi")


def test_create_completion_inside_a_running_event_loop(emulator):
    async def in_the_loop():
        return "".join(FakeGpt.create_completion("gpt-3.5-turbo", HI))  # no nest_asyncio, no new loop

    assert asyncio.run(in_the_loop()) == default_responder("Hi")


def test_errors_arrive_with_their_type_and_partial_text(emulator):
    emulator.stream_fault("truncate", after_words=3)
    received = []

    async def run():
        async for delta in FakeGpt.create_async_generator("gpt-3.5-turbo", HI):
            received.append(delta)

    with pytest.raises(fakegpt.IncompleteStreamError) as info:
        asyncio.run(run())
    assert len(received) == 3 and info.value.partial_text == "".join(received)


def test_bad_input_raises_on_first_iteration_before_any_request(emulator):
    with pytest.raises(TypeError):
        asyncio.run(collect(FakeGpt.create_async_generator("gpt-3.5-turbo", "hi")))
    assert emulator.counts["requests"] == 0


# -- shared login state --------------------------------------------------------------------
def test_login_state_lives_on_the_class(emulator):
    assert "".join(FakeGpt.create_completion("gpt-3.5-turbo", HI))
    token = FakeGpt._access_token
    assert token and token.startswith("emu-") and FakeGpt._cookie_jar.get("credential")
    asyncio.run(FakeGpt.create_async("gpt-3.5-turbo", HI))
    assert FakeGpt._access_token == token and emulator.counts["logins"] == 1
    FakeGpt._access_token = None  # forces a fresh login
    "".join(FakeGpt.create_completion("gpt-3.5-turbo", HI))
    assert emulator.counts["logins"] == 2 and FakeGpt._access_token not in (None, token)


def test_a_token_set_on_the_class_is_used_and_replaced_when_rejected(emulator):
    FakeGpt._access_token = "emu-not-a-real-token"
    assert "".join(FakeGpt.create_completion("gpt-3.5-turbo", HI)) == default_responder("Hi")
    first = emulator.requests[0]
    assert first.path == "/api/conversation" and first.headers["X-Authorization"] == "Bearer emu-not-a-real-token"
    assert FakeGpt._access_token.startswith("emu-") and FakeGpt._access_token != "emu-not-a-real-token"


def test_state_is_recorded_even_when_the_caller_stops_early(emulator):
    stream = FakeGpt.create_completion("gpt-3.5-turbo", HI)
    next(stream)
    del stream
    assert FakeGpt._access_token is not None


def test_reassigning_url_redirects_later_calls():
    with Emulator(responder=lambda p: "from one") as one, Emulator(responder=lambda p: "from two") as two:
        FakeGpt.url = one.url
        assert "".join(FakeGpt.create_completion("gpt-3.5-turbo", HI)) == "from one"
        FakeGpt.url = two.url
        assert asyncio.run(FakeGpt.create_async("gpt-3.5-turbo", HI)) == "from two"
        assert one.counts["streams"] == 1 and two.counts["streams"] == 1


def test_proxy_carries_every_request_of_the_call(fakegpt_emulator):
    # The emulator serves absolute-URI (proxy) requests too, so it can stand in for the proxy.
    FakeGpt.url = "http://chat.invalid"
    text = asyncio.run(FakeGpt.create_async("gpt-3.5-turbo", HI, proxy=fakegpt_emulator.url))
    assert text == default_responder("Hi")
    paths = [r.path for r in fakegpt_emulator.requests]
    assert len(paths) == 4 and all(p.startswith("http://chat.invalid/") for p in paths)


# -- concurrency -----------------------------------------------------------------------------
def test_32_concurrent_cold_calls_log_in_once_and_get_their_own_text(emulator):
    async def main():
        calls = [collect(FakeGpt.create_async_generator("gpt-3.5-turbo", [{"role": "user", "content": f"q{i}"}]))
                 for i in range(32)]
        return await asyncio.gather(*calls)

    results = asyncio.run(main())
    assert ["".join(r) for r in results] == [default_responder(f"q{i}") for i in range(32)]
    assert emulator.counts["logins"] == 1 and emulator.counts["streams"] == 32


@pytest.fixture
def emulator_process():
    """The emulator in its own process (fakegpt serve), so it does not share the client's GIL."""
    with subprocess.Popen([sys.executable, "-m", "fakegpt", "serve", "--port", "0", "--delay", "0.03"],
                          stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                          text=True) as process:
        try:
            yield process.stdout.readline().strip()
        finally:
            process.terminate()


def test_64_concurrent_streams_are_all_in_flight_at_once(emulator):
    """No pool caps the concurrency: 64 calls whose servers stall are all
    streaming at the same time, and cancelling them hangs every one up."""
    emulator.stream_fault("stall", after_words=1, seconds=60, times=64)

    async def first_delta(i):
        agen = FakeGpt.create_async_generator("gpt-3.5-turbo", [{"role": "user", "content": f"q{i}"}])
        try:
            return await agen.__anext__()
        finally:
            await agen.aclose()

    async def main():
        tasks = [asyncio.ensure_future(first_delta(i)) for i in range(64)]
        streaming = await asyncio.to_thread(emulator.wait_until, lambda e: e.counts["streams"] == 64, 30)
        firsts = await asyncio.gather(*tasks)
        return streaming, firsts

    streaming, firsts = asyncio.run(main())
    assert streaming, emulator.counts
    assert all(first.strip() for first in firsts)
    assert emulator.wait_until(lambda e: e.counts["disconnects"] == 64, timeout=30), emulator.counts
    assert emulator.counts["logins"] == 1


def test_each_stream_has_its_own_daemon_worker_that_ends_with_it(emulator, monkeypatch):
    served = []
    real_pump = _bridge.pump

    def pump(stream, channel):
        served.append(threading.current_thread())
        real_pump(stream, channel)

    monkeypatch.setattr(provider_module, "pump", pump)

    async def batch():
        await asyncio.gather(*(FakeGpt.create_async("gpt-3.5-turbo", HI) for _ in range(8)))

    for _ in range(3):
        asyncio.run(batch())
    assert len(served) == 24 and all(t.name.startswith("fakegpt-worker") and t.daemon for t in served)
    for thread in served:
        thread.join(10)
    assert not any(thread.is_alive() for thread in served)


def test_calls_from_many_threads_share_one_login(emulator):
    texts = at_once(lambda i: "".join(FakeGpt.create_completion("gpt-3.5-turbo", [{"role": "user", "content": f"t{i}"}])),
                    8)
    assert texts == [default_responder(f"t{i}") for i in range(8)]
    assert emulator.counts["logins"] == 1


# -- cancellation ----------------------------------------------------------------------------
@pytest.fixture
def slow(caplog):
    caplog.set_level(logging.WARNING, logger="asyncio")
    with Emulator(delay=0.05, responder=lambda p: "ok") as emulator:
        FakeGpt.url = emulator.url
        asyncio.run(FakeGpt.create_async("gpt-3.5-turbo", HI))  # log in first
        emulator.responder = default_responder  # a reply of about 40 words: 2 s at this delay
        yield emulator
    problems = [r.getMessage() for r in caplog.records if r.name == "asyncio"]
    assert problems == []  # no "Task was destroyed but it is pending", no "ignored GeneratorExit"


def assert_hung_up(emulator, pump_finished, since):
    # The reply takes about 2 s: read to its end, it would be no disconnect.
    assert emulator.wait_until(lambda e: e.counts["disconnects"] == 1, timeout=10)
    assert pump_finished[-1].wait(10)  # the worker thread is free again


def test_break_out_of_async_for_hangs_up(slow, pump_finished):
    async def main():
        async for _ in FakeGpt.create_async_generator("gpt-3.5-turbo", HI):
            break
        return time.monotonic()

    assert_hung_up(slow, pump_finished, asyncio.run(main()))


def test_aclose_hangs_up(slow, pump_finished):
    async def main():
        agen = FakeGpt.create_async_generator("gpt-3.5-turbo", HI)
        await agen.__anext__()
        await agen.aclose()
        return time.monotonic()

    assert_hung_up(slow, pump_finished, asyncio.run(main()))


def test_cancelling_the_task_hangs_up(slow, pump_finished):
    async def consume(started):
        async for _ in FakeGpt.create_async_generator("gpt-3.5-turbo", HI):
            started.set()

    async def main():
        started = asyncio.Event()
        task = asyncio.create_task(consume(started))
        await started.wait()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        return time.monotonic()

    assert_hung_up(slow, pump_finished, asyncio.run(main()))


def test_cancelling_during_a_stall_frees_the_blocked_thread(slow, pump_finished):
    slow.stream_fault("stall", after_words=2)

    async def main():
        received = []

        async def consume():
            async for delta in FakeGpt.create_async_generator("gpt-3.5-turbo", HI, timeout=(5, 60)):
                received.append(delta)

        task = asyncio.create_task(consume())
        while len(received) < 2:
            await asyncio.sleep(0.01)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        return time.monotonic()

    # The worker was blocked reading a silent socket (read timeout 60 s): it is freed at once.
    assert_hung_up(slow, pump_finished, asyncio.run(main()))


def test_a_token_from_one_server_is_not_offered_to_another():
    with Emulator() as one, Emulator() as two:
        FakeGpt.url = one.url
        "".join(FakeGpt.create_completion("gpt-3.5-turbo", HI))
        FakeGpt.url = two.url
        "".join(FakeGpt.create_completion("gpt-3.5-turbo", HI))
        assert two.counts["conversations"] == 1 and two.counts["logins"] == 1  # no 401 round trip first


def test_a_client_pushed_out_of_the_registry_is_not_closed_under_a_running_call(emulator):
    first = FakeGpt.create_completion("gpt-3.5-turbo", HI, timeout=1.5)  # created, not started yet
    others = [FakeGpt.create_completion("gpt-3.5-turbo", HI, timeout=2.0 + i) for i in range(provider_module._MAX_CLIENTS)]
    assert len(provider_module._clients) == provider_module._MAX_CLIENTS  # first's client was pushed out
    assert "".join(first)  # ...and still works
    client = first._client
    assert client._closed  # closed once its last call ended
    for stream in others:
        assert "".join(stream) == default_responder("Hi")
        assert not stream._client._closed


def test_a_call_ending_does_not_undo_forcing_a_fresh_login(emulator):
    running = FakeGpt.create_completion("gpt-3.5-turbo", HI)
    next(running)
    FakeGpt._access_token = None  # "log in again next time"
    "".join(running)  # the call in flight ends
    assert FakeGpt._access_token is None
    "".join(FakeGpt.create_completion("gpt-3.5-turbo", HI))
    assert emulator.counts["logins"] == 2 and FakeGpt._access_token is not None


def test_a_cancel_storm_hangs_up_every_stream_from_the_hang_up_thread(slow):
    # The loop only marks each stream aborted; the sockets are shut down by
    # one daemon thread, so the loop never waits on a system call per stream.
    async def consume(started):
        async for _ in FakeGpt.create_async_generator("gpt-3.5-turbo", HI):
            started.set()

    async def main():
        events = [asyncio.Event() for _ in range(16)]
        tasks = [asyncio.create_task(consume(started)) for started in events]
        for started in events:
            await started.wait()
        for task in tasks:
            task.cancel()
        results = await asyncio.gather(*tasks, return_exceptions=True)
        assert all(isinstance(result, asyncio.CancelledError) for result in results)

    asyncio.run(main())
    assert slow.wait_until(lambda e: e.counts["disconnects"] == 16, timeout=5)
    hangers = [t for t in threading.enumerate() if t.name == "fakegpt-hang-up"]
    assert len(hangers) == 1 and hangers[0].daemon
    assert slow.wait_until(lambda e: e.open_connections == 0, timeout=5)


@pytest.fixture
def hang_ups_asked(monkeypatch):
    """The hang-ups create_async_generator asks the hang-up thread for."""
    asked = []
    real = provider_module.hang_up_soon
    monkeypatch.setattr(provider_module, "hang_up_soon", lambda hang_up: (asked.append(hang_up), real(hang_up)))
    return asked


def test_a_call_that_ran_to_its_end_asks_no_hang_up_and_keeps_its_connection(emulator, hang_ups_asked):
    # The worker reached the end and closed the stream itself: nothing to hang
    # up (an abort per finished call was a thread wake-up each, at 1,000 calls).
    async def main():
        first = await FakeGpt.create_async("gpt-3.5-turbo", HI)
        second = "".join([delta async for delta in FakeGpt.create_async_generator("gpt-3.5-turbo", HI)])
        return first, second

    assert asyncio.run(main()) == (default_responder("Hi"), default_responder("Hi"))
    assert hang_ups_asked == []
    assert emulator.counts["disconnects"] == 0 and emulator.counts["connections"] == 1  # reused, never cut


def test_leaving_a_stream_early_asks_one_hang_up(slow, hang_ups_asked, pump_finished):
    async def main():
        async for _ in FakeGpt.create_async_generator("gpt-3.5-turbo", HI):
            break
        return time.monotonic()

    assert_hung_up(slow, pump_finished, asyncio.run(main()))
    assert len(hang_ups_asked) == 1


def test_a_call_cancelled_before_its_worker_thread_runs_sends_nothing(emulator, monkeypatch):
    # Worker threads are started by the spawner thread, so a call can be
    # cancelled after it got its turn but before its worker ran.
    asyncio.run(FakeGpt.create_async("gpt-3.5-turbo", HI))  # log in
    posts = emulator.counts["conversations"]
    held = []
    monkeypatch.setattr(provider_module, "start_worker",
                        lambda target, *args, on_failure: held.append((target, args)))

    async def main():
        task = asyncio.ensure_future(FakeGpt.create_async("gpt-3.5-turbo", HI))
        while not held:
            await asyncio.sleep(0)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(main())
    (target, args), = held
    worker = threading.Thread(target=target, args=args)
    worker.start()
    worker.join(10)
    assert not worker.is_alive()
    assert emulator.counts["conversations"] == posts and emulator.open_connections <= 1


def test_a_worker_thread_that_cannot_start_fails_the_call_with_a_fakegpt_error(emulator, monkeypatch):
    asyncio.run(FakeGpt.create_async("gpt-3.5-turbo", HI))  # log in
    posts = emulator.counts["conversations"]

    class NoThread:
        def start(self):
            raise RuntimeError("can't start new thread")

    monkeypatch.setattr(_bridge, "_new_worker", lambda target, args: NoThread())
    with pytest.raises(fakegpt.FakeGptError) as caught:
        asyncio.run(FakeGpt.create_async("gpt-3.5-turbo", HI))
    assert str(caught.value) == "could not start a worker thread for the stream: can't start new thread"
    assert isinstance(caught.value.__cause__, RuntimeError)
    assert emulator.counts["conversations"] == posts  # nothing was sent
    monkeypatch.undo()  # the spawner is still there for the next call
    assert asyncio.run(FakeGpt.create_async("gpt-3.5-turbo", HI)) == default_responder("Hi")


def test_a_failed_worker_start_reaches_the_consumer_even_if_closing_the_stream_fails():
    from fakegpt._bridge import Channel

    class Unclosable:
        def close(self):
            raise OSError("close failed")

    async def main():
        channel = Channel(asyncio.get_running_loop())
        with pytest.raises(OSError, match="close failed"):
            provider_module._no_worker(Unclosable(), channel, RuntimeError("can't start new thread"))
        return await asyncio.wait_for(channel.get(), 10)

    items, closed, error = asyncio.run(main())
    assert items == [] and closed and isinstance(error, fakegpt.FakeGptError)
    assert str(error) == "could not start a worker thread for the stream: can't start new thread"
