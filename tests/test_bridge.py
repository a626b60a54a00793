"""The thread → event loop channel: batching, flushing, errors, abandonment."""
import asyncio
import threading
import time

import pytest

from fakegpt import _bridge
from fakegpt._bridge import Channel, pump


def run_with_producer(produce, *, batching=True):
    """Run *produce(channel)* in a thread; collect what the loop receives as batches."""

    async def main():
        channel = Channel(asyncio.get_running_loop())
        channel.batching = batching
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


def test_without_batching_every_item_reaches_the_loop_at_once():
    def produce(channel):
        for i in range(3):
            channel.put(str(i))
            time.sleep(0.05)
        channel.close()

    batches, error = run_with_producer(produce, batching=False)
    assert [items for _, items in batches if items] == [["0"], ["1"], ["2"]] and error is None


def loop_is_waiting(channel):
    """Block the producer until the loop waits on the channel (so a batch cannot be collected early)."""
    deadline = time.monotonic() + 5
    while channel._waiter is None:
        assert time.monotonic() < deadline
        time.sleep(0.001)


def first_arrival(batches):
    return next(t for t, items in batches if items)


def test_held_items_go_out_when_the_producer_is_about_to_wait(monkeypatch):
    monkeypatch.setattr(_bridge, "MAX_BATCH_AGE", 10.0)  # only the flush can release them
    sent = {}

    def produce(channel):
        loop_is_waiting(channel)
        channel.put("a")
        channel.put("b")
        channel.flush(lambda: True)  # more data is ready: keep batching
        time.sleep(0.1)
        sent["flush"] = time.monotonic()
        channel.flush(lambda: False)  # about to wait for the network: hand over now
        time.sleep(0.1)
        channel.close()

    batches, _ = run_with_producer(produce)
    assert [items for _, items in batches if items] == [["a", "b"]]
    assert 0 <= first_arrival(batches) - sent["flush"] < 0.05


def test_while_data_keeps_coming_a_batch_waits_at_most_max_batch_age(monkeypatch):
    monkeypatch.setattr(_bridge, "MAX_BATCH_AGE", 0.05)
    started = {}

    def produce(channel):
        loop_is_waiting(channel)
        started["t"] = time.monotonic()
        for i in range(300):  # 0.3 s of steady flow: the socket is never idle
            channel.put(str(i))
            channel.flush(lambda: True)
            time.sleep(0.001)
        channel.close()

    batches, _ = run_with_producer(produce)
    assert [x for _, items in batches for x in items] == [str(i) for i in range(300)]
    assert 0.04 <= first_arrival(batches) - started["t"] < 0.15  # held, but not until the end
    assert len([items for _, items in batches if items]) >= 2


def test_a_full_batch_goes_out_at_once(monkeypatch):
    monkeypatch.setattr(_bridge, "MAX_BATCH_AGE", 10.0)
    monkeypatch.setattr(_bridge, "MAX_BATCH", 10)
    started = {}

    def produce(channel):
        loop_is_waiting(channel)
        started["t"] = time.monotonic()
        for i in range(10):
            channel.put(str(i))
        time.sleep(0.3)
        channel.close()

    batches, _ = run_with_producer(produce)
    assert first_arrival(batches) - started["t"] < 0.1


def test_error_comes_after_the_items_before_it():
    def produce(channel):
        channel.put("x")
        channel.close(ValueError("boom"))

    batches, error = run_with_producer(produce)
    assert [x for _, items in batches for x in items] == ["x"] and isinstance(error, ValueError)


def test_put_reports_an_abandoned_channel_and_a_closed_loop():
    loop = asyncio.new_event_loop()
    channel = Channel(loop)
    channel.abandoned = True
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

    batches, error = run_with_producer(produce_with(Source(["a", "b"])), batching=False)
    assert [x for _, items in batches for x in items] == ["a", "b"] and error is None
    batches, error = run_with_producer(produce_with(Source(["a"], KeyError("k"))), batching=False)
    assert isinstance(error, KeyError) and closed == [True, True]


def test_pump_stops_when_nobody_listens():
    pulled = []

    def source():
        for i in range(100):
            pulled.append(i)
            yield str(i)

    loop = asyncio.new_event_loop()
    channel = Channel(loop)
    channel.abandoned = True
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
    batches, _ = run_with_producer(produce, batching=False)
    assert time.process_time() - cpu < 0.08  # waited on a future, not a busy loop
    assert [x for _, items in batches for x in items] == [str(i) for i in range(count)]
