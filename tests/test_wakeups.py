"""A loop with many open channels collects them on one timer instead of a wake-up per delta."""
import asyncio
import threading
import time

from fakegpt._bridge import Channel
from fakegpt._wakeups import BUSY_CHANNELS, hub_of


class CountingLoop(asyncio.SelectorEventLoop):
    """An event loop that counts the wake-ups other threads ask of it."""

    def __init__(self):
        super().__init__()
        self.woken = 0

    def call_soon_threadsafe(self, *args, **kwargs):
        self.woken += 1
        return super().call_soon_threadsafe(*args, **kwargs)


def run(main):
    loop = CountingLoop()
    try:
        return loop.run_until_complete(main(loop)), loop
    finally:
        loop.close()


def wait_for(predicate, what):
    deadline = time.monotonic() + 10
    while not predicate():
        assert time.monotonic() < deadline, what
        time.sleep(0.001)


async def deliver(channel, items):
    """Put *items* from a thread one at a time, each once the loop has the one
    before and waits again, then close; returns what the loop got."""
    received = []

    def loop_waits_with(count):
        wait_for(lambda: len(received) == count and channel._waiter is not None, "the loop never waited")

    def produce():
        for count, item in enumerate(items):
            loop_waits_with(count)
            channel.put(item)
        loop_waits_with(len(items))
        channel.close()

    thread = threading.Thread(target=produce)
    thread.start()
    while True:
        batch, closed, _ = await channel.get()
        received += batch
        if closed:
            break
    thread.join()
    return received


def test_a_busy_loop_collects_deltas_on_its_timer_without_a_wake_up_each():
    async def main(loop):
        others = [Channel(loop) for _ in range(BUSY_CHANNELS - 1)]
        received = await deliver(Channel(loop), ["a", "b", "c"])
        armed = hub_of(loop)._armed
        for other in others:
            other.abandon()
        return received, armed

    (received, armed), loop = run(main)
    assert received == ["a", "b", "c"] and armed
    assert loop.woken == 0  # every delta, and the close, came through the timer


def test_below_the_threshold_a_delta_wakes_the_loop_at_once():
    async def main(loop):
        others = [Channel(loop) for _ in range(BUSY_CHANNELS - 2)]
        received = await deliver(Channel(loop), ["a"])
        for other in others:
            other.abandon()
        return received

    received, loop = run(main)
    assert received == ["a"]
    assert loop.woken == 2  # the delta (slow mode, as every stream starts) and the close
    assert not hub_of(loop)._armed


def test_the_timer_stops_once_the_loop_is_no_longer_busy_and_wake_ups_resume():
    async def main(loop):
        hub = hub_of(loop)
        others = [Channel(loop) for _ in range(BUSY_CHANNELS - 1)]
        assert await deliver(Channel(loop), ["a"]) == ["a"]
        assert hub._armed and hub.open == BUSY_CHANNELS - 1  # the finished channel no longer counts
        for other in others:
            other.abandon()
            other.abandon()  # counted once
        assert hub.open == 0
        deadline = time.monotonic() + 10
        while hub._armed:
            assert time.monotonic() < deadline, "the timer kept running"
            await asyncio.sleep(0.001)
        woken = loop.woken
        assert await deliver(Channel(loop), ["b"]) == ["b"]
        return loop.woken - woken

    woken, loop = run(main)
    assert woken == 2  # the delta and the close woke the loop themselves again


def test_each_loop_has_its_own_hub():
    first, second = asyncio.new_event_loop(), asyncio.new_event_loop()
    try:
        assert hub_of(first) is hub_of(first) and hub_of(first) is not hub_of(second)
        Channel(first)
        assert (hub_of(first).open, hub_of(second).open) == (1, 0)
    finally:
        first.close()
        second.close()
