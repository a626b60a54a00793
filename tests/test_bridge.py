"""The thread → event loop channel: slow and fast modes, backpressure, errors, abandonment."""
import asyncio
import os
import queue
import threading
import time
import warnings

import pytest

from fakegpt import _bridge
from fakegpt._bridge import Channel, pump


def run_with_producer(produce):
    """Run *produce(channel)* in a thread; collect what the loop receives as batches."""

    async def main():
        channel = Channel(asyncio.get_running_loop())
        thread = threading.Thread(target=produce, args=(channel,))
        thread.start()
        batches, error = [], None
        while True:
            items, closed, error = await channel.get()
            batches.append((time.monotonic(), items))
            if closed:
                break
        thread.join()
        return batches, error

    return asyncio.run(main())


def loop_is_waiting(channel):
    """Block the producer until the loop waits on the channel (so a batch cannot be collected early)."""
    deadline = time.monotonic() + 10
    while channel._waiter is None:
        assert time.monotonic() < deadline
        time.sleep(0.001)


def test_slow_mode_every_item_reaches_the_loop_before_the_next_is_made():
    received = []

    def produce(channel):
        for i in range(3):
            loop_is_waiting(channel)
            channel.put(str(i))
            # The loop has it before anything else happens here: no second put, no close.
            deadline = time.monotonic() + 10
            while len(received) <= i:
                assert time.monotonic() < deadline, "the item was held back"
                time.sleep(0.001)
        channel.close()

    async def main():
        channel = Channel(asyncio.get_running_loop())
        thread = threading.Thread(target=produce, args=(channel,))
        thread.start()
        while True:
            items, closed, _ = await channel.get()
            received.extend(items)
            if closed:
                break
        thread.join()

    asyncio.run(main())
    assert received == ["0", "1", "2"]


def test_fast_mode_collects_a_held_item_on_its_timer_without_a_wake_up():
    got = threading.Event()

    def produce(channel):
        channel.put("a")
        channel.put("b")  # both queued before the loop looks: a batch of two, fast mode
        loop_is_waiting(channel)
        assert channel.fast
        channel.put("c")  # not announced in fast mode ...
        assert not channel._wake_pending
        assert got.wait(10), "the timer never collected the held item"  # ... yet it arrives
        channel.close()

    async def main():
        channel = Channel(asyncio.get_running_loop())
        thread = threading.Thread(target=produce, args=(channel,))
        thread.start()
        await asyncio.sleep(0.05)  # let a and b queue up
        batches = []
        while True:
            items, closed, _ = await channel.get()
            batches.append(items)
            if "c" in items:
                got.set()
            if closed:
                break
        thread.join()
        return batches

    batches = asyncio.run(main())
    assert batches[0] == ["a", "b"] and [x for b in batches for x in b] == ["a", "b", "c"]


def singletons_then_mode(monkeypatch, fast_gap):
    """Three items, each put alone while the loop waits; the channel's mode after each batch."""
    monkeypatch.setattr(_bridge, "FAST_GAP", fast_gap)
    modes = []

    def waiting_anew(channel):  # the loop took everything and waits again
        deadline = time.monotonic() + 10
        while channel._waiter is None or channel._wake_pending or channel._items:
            assert time.monotonic() < deadline
            time.sleep(0.001)

    def produce(channel):
        for item in "abc":
            waiting_anew(channel)
            channel.put(item)
        waiting_anew(channel)
        channel.close()

    async def main():
        channel = Channel(asyncio.get_running_loop())
        thread = threading.Thread(target=produce, args=(channel,))
        thread.start()
        received = []
        while True:
            items, closed, _ = await channel.get()
            received.extend(items)
            modes.append(channel.fast)
            if closed:
                break
        thread.join()
        return received

    assert asyncio.run(main()) == ["a", "b", "c"]
    return modes


def test_single_items_that_follow_each_other_closely_switch_to_fast_mode(monkeypatch):
    # Every batch holds one item, but each comes within FAST_GAP of the one
    # before: waking the loop per item would cost a GIL hand-off per delta.
    modes = singletons_then_mode(monkeypatch, fast_gap=3600.0)
    assert modes[0] is False and all(modes[1:3])


def test_single_items_further_apart_than_the_gap_stay_in_slow_mode(monkeypatch):
    assert singletons_then_mode(monkeypatch, fast_gap=0.0)[:3] == [False, False, False]


def test_a_timer_that_finds_nothing_returns_to_slow_mode():
    async def main():
        channel = Channel(asyncio.get_running_loop())
        channel.fast = True
        waiting = asyncio.ensure_future(channel.get())
        await asyncio.sleep(_bridge.MAX_BATCH_AGE * 20)
        assert not channel.fast and not waiting.done()
        channel.close()
        return await waiting

    assert asyncio.run(main()) == ([], True, None)


def test_a_timer_that_finds_one_item_delivers_it_and_returns_to_slow_mode(monkeypatch):
    # A slow stream that met a burst: the one delta the fast-mode timer
    # collects is delivered, and the next one wakes the loop at once again.
    monkeypatch.setattr(_bridge, "FAST_GAP", 0.0)

    async def main():
        channel = Channel(asyncio.get_running_loop())
        channel.fast = True
        waiting = asyncio.ensure_future(channel.get())
        await asyncio.sleep(0)  # the loop waits, on the timer
        assert channel.put("late") is True
        assert not waiting.done()  # not announced: the timer collects it
        batch = await waiting
        return batch, channel.fast

    assert asyncio.run(main()) == ((["late"], False, None), False)


def test_a_full_buffer_stops_the_producer_until_the_loop_takes_the_items(monkeypatch):
    monkeypatch.setattr(_bridge, "MAX_BUFFER", 5)
    progress = []

    def produce(channel):
        for i in range(12):
            channel.put(str(i))
            progress.append(i)
        channel.close()

    async def main():
        channel = Channel(asyncio.get_running_loop())
        thread = threading.Thread(target=produce, args=(channel,))
        thread.start()
        deadline = time.monotonic() + 10
        while len(progress) < 5:
            assert time.monotonic() < deadline
            await asyncio.sleep(0.01)
        await asyncio.sleep(0.2)
        stalled_at = list(progress)  # the 6th put waits for room
        received = []
        while True:
            items, closed, _ = await channel.get()
            assert len(items) <= 5
            received.extend(items)
            if closed:
                break
        thread.join()
        return stalled_at, received

    stalled_at, received = asyncio.run(main())
    assert stalled_at == [0, 1, 2, 3, 4]
    assert received == [str(i) for i in range(12)]


def test_abandoning_releases_a_producer_waiting_for_room(monkeypatch):
    monkeypatch.setattr(_bridge, "MAX_BUFFER", 2)
    loop = asyncio.new_event_loop()
    channel = Channel(loop)
    outcomes = []
    thread = threading.Thread(target=lambda: outcomes.extend(channel.put(x) for x in "abc"))
    thread.start()
    time.sleep(0.1)
    channel.abandon()
    thread.join(10)
    loop.close()
    assert not thread.is_alive() and outcomes == [True, True, False]


def test_error_comes_after_the_items_before_it():
    def produce(channel):
        channel.put("x")
        channel.close(ValueError("boom"))

    batches, error = run_with_producer(produce)
    assert [x for _, items in batches for x in items] == ["x"] and isinstance(error, ValueError)


def test_put_reports_an_abandoned_channel_and_a_closed_loop():
    loop = asyncio.new_event_loop()
    channel = Channel(loop)
    channel.abandon()
    assert channel.put("x") is False
    channel = Channel(loop)
    loop.run_until_complete(asyncio.sleep(0))

    async def wait_then_leave():
        task = asyncio.ensure_future(channel.get())
        await asyncio.sleep(0)
        task.cancel()

    loop.run_until_complete(wait_then_leave())
    loop.close()
    assert channel.put("x") is False and channel.abandoned  # the wake-up cannot be delivered


def test_pump_hands_over_items_and_errors_and_closes_the_stream():
    closed = []

    class Source:
        def __init__(self, items, error=None):
            self.items, self.error = items, error

        def __iter__(self):
            yield from self.items
            if self.error:
                raise self.error

        def close(self):
            closed.append(True)

    def produce_with(source):
        def produce(channel):
            pump(source, channel)
        return produce

    batches, error = run_with_producer(produce_with(Source(["a", "b"])))
    assert [x for _, items in batches for x in items] == ["a", "b"] and error is None
    batches, error = run_with_producer(produce_with(Source(["a"], KeyError("k"))))
    assert isinstance(error, KeyError) and closed == [True, True]


def test_pump_stops_when_nobody_listens():
    pulled = []

    def source():
        for i in range(100):
            pulled.append(i)
            yield str(i)

    loop = asyncio.new_event_loop()
    channel = Channel(loop)
    channel.abandon()
    pump(source(), channel)
    loop.close()
    assert pulled == [0]


@pytest.mark.parametrize("count", [1, 5])
def test_get_waits_without_spinning(count):
    def produce(channel):
        time.sleep(0.1)
        for i in range(count):
            channel.put(str(i))
        channel.close()

    cpu = time.process_time()
    batches, _ = run_with_producer(produce)
    assert time.process_time() - cpu < 0.08  # waited on a future, not a busy loop
    assert [x for _, items in batches for x in items] == [str(i) for i in range(count)]


def test_hang_ups_run_in_order_on_one_daemon_thread_and_a_failure_does_not_stop_the_rest():
    ran, done = [], threading.Event()

    def failing():
        ran.append(("fail", threading.current_thread().name))
        raise OSError("already closed")

    _bridge.hang_up_soon(lambda: ran.append(("first", threading.current_thread().name)))
    _bridge.hang_up_soon(failing)
    _bridge.hang_up_soon(lambda: (ran.append(("last", threading.current_thread().name)), done.set()))
    assert done.wait(5)
    assert [what for what, _ in ran] == ["first", "fail", "last"]
    assert {thread for _, thread in ran} == {"fakegpt-hang-up"}


def test_a_spawner_that_cannot_start_reports_through_on_failure_and_queues_nothing(monkeypatch):
    def no_thread():
        raise RuntimeError("can't start new thread")

    monkeypatch.setattr(_bridge, "_start_spawner", no_thread)
    monkeypatch.setattr(_bridge, "_spawns", queue.SimpleQueue())
    failures, ran = [], []
    _bridge.start_worker(ran.append, "job", on_failure=failures.append)
    assert [str(error) for error in failures] == ["can't start new thread"] and ran == []
    assert _bridge._spawns.empty()  # no job left for a later spawner to start


@pytest.mark.skipif(not hasattr(os, "fork"), reason="no fork() here")
def test_a_forked_child_does_not_inherit_queued_jobs_or_held_locks(monkeypatch):
    # A job queued in the parent (here: never taken, as its spawner reads
    # another queue) must not be started in a child: its worker would read
    # a socket the parent reads, or send the request a second time.
    monkeypatch.setattr(_bridge, "_spawns", queue.SimpleQueue())
    _bridge._spawns.put((print, ("parent's job",), print))
    with _bridge._daemons_lock, warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # "multi-threaded, use of fork()" (3.12+)
        pid = os.fork()
        if pid == 0:  # the child: report through the exit status only
            ok = _bridge._spawns.empty() and _bridge._hang_ups.empty() and _bridge._daemons_lock.acquire(timeout=5)
            os._exit(0 if ok else 1)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert not _bridge._spawns.empty()  # the parent's own queue is untouched
