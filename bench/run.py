#!/usr/bin/env python3
"""fakegpt benchmark: the project against a floor and the original gpt4free client.

    python bench/run.py              # every workload; exits 1 if a target is missed
    python bench/run.py --repeat 15  # more rounds, steadier medians
    python bench/run.py --smoke      # tiny sizes, targets not checked (the test suite runs this)

The emulator runs in a separate process (so the server does not share the
client's GIL). Contenders alternate round by round, in a rotating order; the
table shows each contender's median, and as the ratio the median of the
per-round ratios (measurements taken moments apart, all in this one run).
CPU time is the client process's (``time.process_time``: every thread of
it). Contenders:

* fakegpt: ``Client.stream`` and ``FakeGpt.create_async_generator``;
* floor: bare ``requests`` + splitting lines + ``json.loads``, nothing else
  (for format B, plus applying the appends; for gzip, ``iter_content``
  decoding it): the least any client must do;
* original: gpt4free's FakeGpt from ``g4f==0.2.0.9`` (aiohttp), if installed.

Workloads (``--only``): streaming, concurrency, scale, requests, latency,
memory, and for the async bridge under abuse: cancel (``cancel()`` to the
server seeing the hang-up; cancelled queued calls send nothing), trickle (a
healthy call beside streams from a server dribbling a byte every 0.5 s: a raw
server in the emulator's process) and backpressure (peak memory with a
consumer 10x slower than the stream, in a fresh process); and hangup
(``abort()`` and ``break`` to the server seeing the hang-up, direct, over
TLS, through CONNECT, https and SOCKS5 proxies, and on a close-delimited
body); and gateway (``fakegpt serve --upstream``'s Python form in front of
the paced OpenAI-compatible server of tests/upstream_kit.py, each in its own
process: the time to the first delta through it minus direct, its CPU per
delta, 64 concurrent streams through it against one, and a client's break
to the model server seeing its request end while the model is silent).
"""
from __future__ import annotations

import argparse
import asyncio
import json
import math
import multiprocessing
import gc
import os
import socket
import statistics
import sys
import threading
import time
import warnings
from typing import Any, Callable, Dict, List, Optional, Tuple

import requests

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import fakegpt  # noqa: E402
from fakegpt import FakeGpt  # noqa: E402
from fakegpt._protocol import conversation_body  # noqa: E402
from tests.netkit import ConnectProxy, Socks5Proxy, TlsFront, read_request  # noqa: E402 (the tests' loopback kit)


# -- the emulator process ---------------------------------------------------------------
def responder(prompt: str) -> str:
    """``words N`` → N short words; ``bytes B events E`` → B characters in E words."""
    parts = prompt.split()
    if parts[:1] == ["words"]:
        return " ".join(f"w{i}" for i in range(int(parts[1])))
    if parts[:1] == ["bytes"]:
        size, events = int(parts[1]), int(parts[3])
        word = "x" * (size // events - 1)
        return " ".join([word] * events)
    return "ok"


EMULATORS = {
    "fast": {},
    "v1": {"format": "v1"},
    "gzip": {"compress": "gzip"},
    "slow": {"delay": 0.05},
    "slow-close": {"delay": 0.05, "chunked": False},
    "tick": {"delay": 0.02},
    "tick-close": {"delay": 0.02, "chunked": False},
    "lag": {"delay": 0.005},
}


def pin(cpu_index: int) -> None:
    """Keep the emulator's process on one CPU (where the OS allows): less noise
    between runs. The client is left free: its threads are part of what is measured."""
    if hasattr(os, "sched_setaffinity") and (os.cpu_count() or 1) > 1:
        try:
            os.sched_setaffinity(0, {cpu_index % (os.cpu_count() or 1)})
        except OSError:
            pass


class Trickle:
    """A raw HTTP server that trickles: it answers ``POST /api/conversation``
    with event-stream headers at once, then one byte of a never-ending event
    every :attr:`interval` seconds, forever (no read timeout fires, no event
    completes). Anything else gets a 404. For the bench's child process."""

    interval = 0.5
    head = (b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream; charset=utf-8\r\n"
            b"Cache-Control: no-cache\r\nTransfer-Encoding: chunked\r\n\r\n")
    body = b'data: {"message": {"id": "m", "author": {"role": "assistant"}, "content": {"parts": ["'

    def __init__(self) -> None:
        self._sock = socket.create_server(("127.0.0.1", 0), backlog=1024)
        self.url = f"http://127.0.0.1:{self._sock.getsockname()[1]}"
        self._lock = threading.Lock()
        self.stats = {"requests": 0, "streaming": 0, "open": 0}
        threading.Thread(target=self._accept, name="bench-trickle", daemon=True).start()

    def _add(self, name: str, n: int) -> None:
        with self._lock:
            self.stats[name] += n

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self._sock.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        self._add("open", 1)
        try:
            with conn:
                conn.settimeout(10)
                head = read_request(conn)
                if head is None:
                    return
                if not head.startswith(b"POST /api/conversation"):
                    conn.sendall(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
                    return
                self._add("requests", 1)
                self._add("streaming", 1)
                try:
                    conn.sendall(self.head)
                    sent = 0
                    while True:
                        byte = self.body[sent:sent + 1] or b"x"
                        conn.sendall(b"1\r\n%s\r\n" % byte)
                        sent += 1
                        if not self._pause(conn):
                            return
                finally:
                    self._add("streaming", -1)
        except OSError:
            pass
        finally:
            self._add("open", -1)

    def _pause(self, conn: socket.socket) -> bool:
        """Wait one interval; False as soon as the client hangs up."""
        conn.settimeout(self.interval)
        try:
            if not conn.recv(1, socket.MSG_PEEK):
                return False
            time.sleep(self.interval)  # the client sent something: ignore it
        except socket.timeout:
            pass
        return True

    def close(self) -> None:
        self._sock.close()


def serve(conn: Any) -> None:
    """Child process: run the emulators; answer commands from the bench until "stop"."""
    pin(1)
    from fakegpt.emulator import Emulator
    from fakegpt.emulator import _http

    flushed: List[float] = []  # when each write left the server (the clock is system-wide)
    real_flush = _http._Writer.flush

    def flush(self: Any) -> None:
        real_flush(self)
        flushed.append(time.monotonic())

    _http._Writer.flush = flush
    emulators = {name: Emulator(responder=responder, **options).start() for name, options in EMULATORS.items()}
    # When each emulator noticed a client hang up mid-stream (the handler counts
    # a "disconnects" the moment its write or its wait between events fails).
    hangups: Dict[str, List[float]] = {name: [] for name in emulators}
    for name, emulator in emulators.items():
        def count(what: str, real: Any = emulator._count, stamps: List[float] = hangups[name]) -> None:
            if what == "disconnects":
                stamps.append(time.monotonic())
            real(what)

        emulator._count = count  # type: ignore[method-assign,assignment]
    trickle = Trickle()
    conn.send({**{name: emulator.url for name, emulator in emulators.items()}, "trickle": trickle.url})
    while True:
        command, name = conn.recv()
        if command == "stop":
            break
        if command == "counts":
            conn.send(dict(emulators[name].counts))
        elif command == "flushed":
            conn.send(list(flushed))
            flushed.clear()
        elif command == "hangups":
            taken = hangups[name][:]
            del hangups[name][:len(taken)]  # not a hang-up noticed meanwhile
            conn.send(taken)
        elif command == "trickle":
            with trickle._lock:
                conn.send(dict(trickle.stats))
    trickle.close()
    for emulator in emulators.values():
        emulator.stop()


class Server:
    def __enter__(self) -> "Server":
        context = multiprocessing.get_context("spawn")
        self._conn, child = context.Pipe()
        self._process = context.Process(target=serve, args=(child,), daemon=True)
        self._process.start()
        self.urls: Dict[str, str] = self._conn.recv()
        return self

    def ask(self, command: str, name: str = "") -> Any:
        self._conn.send((command, name))
        return self._conn.recv()

    def __exit__(self, *exc: Any) -> None:
        self._conn.send(("stop", ""))
        self._process.join(10)


# -- contenders ----------------------------------------------------------------------------
def cpu(fn: Callable[[], Any]) -> float:
    gc.collect()  # not the previous contender's garbage
    started = time.process_time()
    fn()
    return time.process_time() - started


def wall(fn: Callable[[], Any]) -> float:
    started = time.perf_counter()
    fn()
    return time.perf_counter() - started


def floor_stream(url: str, token: str, prompt: str, appends: bool,
                 first: Optional[Callable[[], None]] = None) -> int:
    """Bare requests: split lines, json.loads each data line (and, for format B, apply the appends).
    *first* is called when the first chunk of the body arrives (the scale rows' first delta)."""
    body = conversation_body(prompt, "gpt-3.5-turbo")
    if appends:
        body["supported_encodings"] = ["v1"]
    response = FLOOR_SESSION.post(f"{url}/api/conversation", json=body, stream=True,
                                  headers={"X-Authorization": f"Bearer {token}", "Accept": "text/event-stream"})
    pending, text, events = b"", "", 0
    for chunk in response.iter_content(chunk_size=None):
        if first is not None:
            first()
            first = None
        pending += chunk
        *lines, pending = pending.split(b"\n")
        for line in lines:
            if line.startswith(b"data: {"):
                event = json.loads(line[6:])
                events += 1
                if appends and type(event.get("v")) is str:
                    text += event["v"]
    response.close()
    return events


FLOOR_SESSION = requests.Session()


def point(provider: Any, url: str) -> None:
    """Aim a provider class at a server, forgetting a login made elsewhere (the original never logs in again)."""
    provider.url, provider._access_token, provider._cookie_jar = url, None, None


def original_provider() -> Optional[Any]:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            import g4f
            from g4f.Provider import FakeGpt as Original
    except ImportError:
        return None
    g4f.debug.version_check = False
    return Original


async def drain(agen: Any) -> int:
    count = 0
    async for _ in agen:
        count += 1
    return count


# -- the workloads ---------------------------------------------------------------------------
Row = Tuple[str, str, float, str, Optional[float], Optional[float], Optional[float], str]
ROWS: List[Row] = []


def row(workload: str, unit: str, value: float, against: str = "", base: Optional[float] = None,
        limit: Optional[float] = None, kind: str = "ratio", ratio: Optional[float] = None) -> None:
    if ratio is None and base:
        ratio = value / base
    ROWS.append((workload, unit, value, against, base, ratio, limit, kind))


class Measured(Dict[str, float]):
    """Each contender's median, and the samples behind them, round by round."""

    def __init__(self, samples: Dict[str, List[float]]) -> None:
        super().__init__({name: statistics.median(values) for name, values in samples.items()})
        self.samples = samples

    def ratio(self, name: str, base: str) -> float:
        """The median of the per-round ratios. A round runs every contender back
        to back, so each ratio compares measurements taken moments apart; the
        ratio of two medians would not, and this machine's speed drifts (its
        samples fall into a fast and a slow mode, minutes apart)."""
        return statistics.median(a / b for a, b in zip(self.samples[name], self.samples[base]))


def rounds(contenders: Dict[str, Callable[[], float]], repeat: int) -> Measured:
    """Run each contender *repeat* times, alternating and rotating the order."""
    for fn in contenders.values():
        fn()  # warm up: connections, caches, imports
    samples: Dict[str, List[float]] = {name: [] for name in contenders}
    names = list(contenders)
    for i in range(repeat):
        for name in names[i % len(names):] + names[:i % len(names)]:
            samples[name].append(contenders[name]())
    return Measured(samples)


def streaming(server: Server, client: fakegpt.Client, original: Any, events: int, repeat: int) -> None:
    prompt = [{"role": "user", "content": f"words {events}"}]
    fast, v1, gz = server.urls["fast"], server.urls["v1"], server.urls["gzip"]
    v1_client, gz_client = fakegpt.Client(v1), fakegpt.Client(gz)
    token, v1_token = client.access_token, (v1_client.complete(prompt[:1]) and v1_client.access_token)
    gz_token = gz_client.complete(prompt[:1]) and gz_client.access_token
    point(FakeGpt, fast)

    def via_async() -> None:
        asyncio.run(drain(FakeGpt.create_async_generator("gpt-3.5-turbo", prompt)))

    contenders = {
        "fakegpt": lambda: cpu(lambda: sum(1 for _ in client.stream(prompt))),
        "floor": lambda: cpu(lambda: floor_stream(fast, token, prompt[0]["content"], False)),
        "async": lambda: cpu(via_async),
        "fakegpt v1": lambda: cpu(lambda: sum(1 for _ in v1_client.stream(prompt))),
        "floor v1": lambda: cpu(lambda: floor_stream(v1, v1_token, prompt[0]["content"], True)),
        "fakegpt gzip": lambda: cpu(lambda: sum(1 for _ in gz_client.stream(prompt))),
        "floor gzip": lambda: cpu(lambda: floor_stream(gz, gz_token, prompt[0]["content"], False)),
    }
    if original is not None:
        point(original, fast)
        contenders["original"] = lambda: cpu(lambda: asyncio.run(drain(
            original.create_async_generator("gpt-3.5-turbo", prompt))))
    m = rounds(contenders, repeat * 3)  # cheap and noisy: more rounds
    name = f"{events} cumulative events, Client.stream"
    row(name, "CPU", m["fakegpt"], "floor", m["floor"], 1.10, ratio=m.ratio("fakegpt", "floor"))
    if original is not None:
        row(name, "CPU", m["fakegpt"], "original", m["original"], 1.00, ratio=m.ratio("fakegpt", "original"))
    row(f"{events} events, format B, Client.stream", "CPU", m["fakegpt v1"], "floor v1", m["floor v1"], 1.10,
        ratio=m.ratio("fakegpt v1", "floor v1"))
    row(f"{events} cumulative events, gzip, Client.stream", "CPU", m["fakegpt gzip"], "floor gzip", m["floor gzip"],
        1.10, ratio=m.ratio("fakegpt gzip", "floor gzip"))
    row(f"{events} cumulative events, create_async_generator", "CPU", m["async"], "Client.stream", m["fakegpt"], 1.25,
        ratio=m.ratio("async", "fakegpt"))
    v1_client.close()
    gz_client.close()


def concurrency(server: Server, original: Any, calls: int, events: int, repeat: int) -> None:
    slow = server.urls["slow"]
    point(FakeGpt, slow)

    def messages(i: int) -> list:
        return [{"role": "user", "content": f"words {events}"}] if i >= 0 else []

    async def ours(n: int) -> None:
        await asyncio.gather(*(drain(FakeGpt.create_async_generator("gpt-3.5-turbo", messages(i))) for i in range(n)))

    contenders = {
        "one": lambda: wall(lambda: asyncio.run(ours(1))),
        "many": lambda: wall(lambda: asyncio.run(ours(calls))),
    }
    if original is not None:
        point(original, slow)

        async def theirs(n: int) -> None:
            await asyncio.gather(*(drain(original.create_async_generator("gpt-3.5-turbo", messages(i)))
                                   for i in range(n)))

        contenders["original many"] = lambda: wall(lambda: asyncio.run(theirs(calls)))
    m = rounds(contenders, repeat)
    name = f"{calls} concurrent async calls, {events} events 50 ms apart"
    row(name, "wall", m["many"], "one call", m["one"], 1.15, ratio=m.ratio("many", "one"))
    if original is not None:
        row(name, "wall", m["many"], "original", m["original many"], 1.00, ratio=m.ratio("many", "original many"))


def scale(server: Server, sizes: Tuple[int, ...], lag_sizes: Tuple[int, ...], repeat: int,
          events: int = 20, lag_events: int = 200) -> None:
    """Hundreds of concurrent async calls (*events* 50 ms apart each) against
    the floor at the same fan-out, in the same rounds: bare requests with a
    thread per call (what ``asyncio.to_thread`` per call amounts to), against
    the same server, which runs in a process of its own. The target is
    1.10x that floor; each call's first delta (from the start of the round)
    is reported as p50 and p99 beside the floor's at the largest size. Then
    the event loop's responsiveness beside streams of *lag_events* at 200/s."""
    def prompt(i: int) -> list:
        return [{"role": "user", "content": f"words {events + i % 2}"}]

    async def run(n: int, firsts: Optional[List[float]] = None) -> None:
        started = time.perf_counter()

        async def one(i: int) -> str:
            parts: List[str] = []
            async for delta in FakeGpt.create_async_generator("gpt-3.5-turbo", prompt(i)):
                if not parts and firsts is not None:
                    firsts.append(time.perf_counter() - started)
                parts.append(delta)
            return "".join(parts)

        texts = await asyncio.gather(*(one(i) for i in range(n)))
        assert texts == [responder(prompt(i)[0]["content"]) for i in range(n)], "a reply was wrong"

    def floor_threads(n: int, firsts: Optional[List[float]] = None) -> None:
        """The floor at the same fan-out: bare requests, a thread per call."""
        started = time.perf_counter()

        def stamp() -> None:
            if firsts is not None:
                firsts.append(time.perf_counter() - started)  # list.append is atomic
        threads = [threading.Thread(target=floor_stream, args=(server.urls["slow"], token, prompt(i)[0]["content"],
                                                               False, stamp)) for i in range(n)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()

    point(FakeGpt, server.urls["slow"])
    asyncio.run(run(1))  # log in
    token = FakeGpt._access_token
    FLOOR_SESSION.mount("http://", requests.adapters.HTTPAdapter(pool_maxsize=max(sizes)))  # a pool as large as ours
    logins = server.ask("counts", "slow").get("logins")
    firsts: Dict[str, List[float]] = {"many": [], "floor": []}
    for n in sizes:
        last = n == sizes[-1]
        m = rounds({"one": lambda: wall(lambda: asyncio.run(run(1))),
                    "many": lambda n=n, last=last: wall(lambda: asyncio.run(run(n, firsts["many"] if last else None))),
                    "floor": lambda n=n, last=last: wall(lambda: floor_threads(n, firsts["floor"] if last else None))},
                   max(1, repeat // 3))
        row(f"{n} concurrent async calls, {events} events 50 ms apart", "wall", m["many"], "floor", m["floor"],
            1.10, ratio=m.ratio("many", "floor"))
        row("  the same against one call", "wall", m["many"], "one call", m["one"], kind="info",
            ratio=m.ratio("many", "one"))
        row(f"  the floor: {n} bare requests calls, a thread each", "wall", m["floor"], "one call", m["one"],
            kind="info", ratio=m.ratio("floor", "one"))
    n = sizes[-1]
    for q in (0.5, 0.99):
        ours, theirs = percentile(firsts["many"], q), percentile(firsts["floor"], q)
        row(f"  first delta p{q * 100:g} of {n} calls (all rounds)", "wall", ours, "floor", theirs, kind="info")
    assert server.ask("counts", "slow").get("logins") == logins, "a call logged in again"

    point(FakeGpt, server.urls["lag"])

    async def lag(n: int) -> float:
        late: List[float] = []
        done = asyncio.Event()

        async def ticker() -> None:
            while not done.is_set():
                before = time.perf_counter()
                await asyncio.sleep(0.001)
                late.append(time.perf_counter() - before - 0.001)

        tick = asyncio.ensure_future(ticker())
        await asyncio.gather(*(drain(FakeGpt.create_async_generator(
            "gpt-3.5-turbo", [{"role": "user", "content": f"words {lag_events}"}])) for _ in range(n)))
        done.set()
        await tick
        late.sort()
        return (late[int(len(late) * 0.99)], late[-1]) if late else (0.0, 0.0)

    asyncio.run(lag(1))
    for n in lag_sizes:
        p99, worst = asyncio.run(lag(n))
        row(f"event-loop lag p99, 1 ms ticker beside {n} streams at 200 events/s", "ms", p99 * 1000,
            limit=50.0 if n == lag_sizes[0] else None, kind="max" if n == lag_sizes[0] else "info")
        row(f"event-loop lag max, 1 ms ticker beside {n} streams at 200 events/s", "ms", worst * 1000, kind="info")


def requests_per_call(server: Server) -> None:
    url = server.urls["tick"]
    before = server.ask("counts", "tick")
    with fakegpt.Client(url) as client:
        client.complete([{"role": "user", "content": "words 3"}])
        cold = server.ask("counts", "tick")
        client.complete([{"role": "user", "content": "words 3"}])
        client.complete([{"role": "user", "content": "words 3"}])
        warm = server.ask("counts", "tick")
    row("cold call: HTTP requests", "count", cold["requests"] - before.get("requests", 0), limit=4, kind="max")
    row("warm call: HTTP requests", "count", (warm["requests"] - cold["requests"]) / 2, limit=1, kind="exact")
    row("warm call: new TCP connections", "count", (warm["connections"] - cold["connections"]) / 2, limit=0,
        kind="exact")


def latency(server: Server, events: int) -> None:
    for name, label in (("tick", "chunked"), ("tick-close", "close-delimited")):
        with fakegpt.Client(server.urls[name]) as client:
            client.complete([{"role": "user", "content": "words 2"}])  # log in
            server.ask("flushed")
            arrived = [time.monotonic() for _ in client.stream([{"role": "user", "content": f"words {events}"}])]
            written = server.ask("flushed")[: len(arrived)]
        gaps = sorted(a - w for a, w in zip(arrived, written))
        p90 = gaps[int(0.9 * (len(gaps) - 1))]
        row(f"per-event latency, {label}, p90", "ms", p90 * 1000, limit=5.0, kind="max")


def rss() -> int:
    """The process's resident set size now, in bytes."""
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def memory_child(url: str, conn: Any) -> None:
    """A fresh process: its peak RSS while streaming, above its RSS just before.

    The current RSS is sampled every 0.2 ms by a thread (ru_maxrss would be
    the lifetime peak, which start-up may already have set higher).
    """
    client = fakegpt.Client(url)
    client.complete([{"role": "user", "content": "bytes 10000 events 100"}])  # log in, warm up
    gc.collect()
    before = peak = rss()
    done = threading.Event()

    def sample() -> None:
        nonlocal peak
        while not done.wait(0.0002):
            peak = max(peak, rss())

    sampler = threading.Thread(target=sample)
    sampler.start()
    reply = client.complete([{"role": "user", "content": "bytes 100000 events 1000"}])
    done.set()
    sampler.join()
    peak = max(peak, rss())
    conn.send(((peak - before) / 2**20, len(reply)))


def memory(server: Server) -> None:
    if not os.path.exists("/proc/self/statm"):
        print("memory: /proc/self/statm is missing (not Linux): skipped")
        return
    context = multiprocessing.get_context("spawn")
    parent, child = context.Pipe()
    process = context.Process(target=memory_child, args=(server.urls["fast"], child))
    process.start()
    growth, size = parent.recv()
    process.join(30)
    assert size >= 99_000, size
    row("100 KB reply as 1,000 cumulative events: peak RSS growth", "MB", growth, limit=5.0, kind="max")


# -- cancellation, trickling servers, a slow consumer (issue 14) -------------------------------
def percentile(values: List[float], q: float) -> float:
    """The nearest-rank percentile (for 64 values, p99 is the largest)."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(len(ordered) * q) - 1)] if ordered else float("nan")


def collect_hangups(server: Server, name: str, n: int, timeout: float = 10.0) -> List[float]:
    """The next *n* hang-ups emulator *name* notices (fewer if *timeout* passes first)."""
    stamps: List[float] = []
    deadline = time.monotonic() + timeout
    while len(stamps) < n and time.monotonic() < deadline:
        stamps += server.ask("hangups", name)
        if len(stamps) < n:
            time.sleep(0.01)
    return stamps


def wait_counts(server: Server, name: str, predicate: Callable[[Dict[str, int]], bool],
                timeout: float = 10.0) -> Dict[str, int]:
    counts = server.ask("counts", name)
    deadline = time.monotonic() + timeout
    while not predicate(counts) and time.monotonic() < deadline:
        time.sleep(0.01)
        counts = server.ask("counts", name)
    return counts


async def started_streams(n: int, prompt: str, provider: Any = FakeGpt) -> Tuple[List["asyncio.Task[None]"], Any]:
    """*n* tasks each draining a ``create_async_generator`` stream, and a
    coroutine that waits until *count* (default: every one) of them have
    received a delta, raising what a stream that ended early raised."""
    first = asyncio.Semaphore(0)

    async def one() -> None:
        seen = False
        async for _ in provider.create_async_generator("gpt-3.5-turbo", [{"role": "user", "content": prompt}]):
            if not seen:
                seen = True
                first.release()

    tasks = [asyncio.ensure_future(one()) for _ in range(n)]

    async def all_streaming(count: int = n, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        for _ in range(count):
            while True:
                ended = [task for task in tasks if task.done()]
                if ended:
                    for task in tasks:
                        task.cancel()
                    error = ended[0].exception()
                    raise RuntimeError(f"{len(ended)} of {n} streams ended early: {error!r}") from error
                if time.monotonic() > deadline:
                    raise TimeoutError(f"fewer than {count} of {n} streams started within {timeout:g} s")
                try:
                    await asyncio.wait_for(first.acquire(), 0.1)
                    break
                except asyncio.TimeoutError:
                    pass

    return tasks, all_streaming


def cancellation(server: Server, sizes: Tuple[int, ...], queued: int, limit: int) -> None:
    """How fast a cancelled task hangs up, and what cancelling queued calls sends.

    Hang-up: *n* ``create_async_generator`` streams at 200 events/s each (the
    "lag" emulator, 5 ms between events: the issue's load), all mid-stream;
    every task is cancelled in one loop (the *n* ``cancel()`` calls take well
    under a millisecond). Each figure is the time from the *first* ``cancel()``
    to the moment the server process noticed a hang-up, stamped there with
    ``time.monotonic()`` (a system-wide clock) when the emulator's handler
    counts the disconnect. The server's hang-ups cannot be matched to the
    streams, so each is counted from the earliest cancel: an upper bound of
    each stream's own figure. Between events the emulator waits on a
    ``recv(MSG_PEEK)`` of the socket, so it notices a hang-up at once, not at
    its next write: the figure is how fast the client hangs up (the loop
    reaching each cancelled task, the bridge's hang-up thread shutting the
    sockets down, one after the other) plus the server process's scheduling
    (its threads share one CPU). An info row gives the same at 20 events/s ("slow").
    """
    async def storm(n: int, name: str) -> Tuple[float, int]:
        tasks, all_streaming = await started_streams(n, "words 5000")  # 25 s at 200/s: all still mid-stream
        await all_streaming()
        await asyncio.sleep(0.2)  # the loop under its steady load
        server.ask("hangups", name)  # forget earlier ones
        cancelled_at = time.monotonic()
        for task in tasks:
            task.cancel()
        outcomes = await asyncio.gather(*tasks, return_exceptions=True)
        return cancelled_at, sum(1 for o in outcomes if not isinstance(o, asyncio.CancelledError))

    # The target is at 200 events/s per stream (the issue's load); at 20
    # events/s ("slow", 50 ms apart), for comparison: the same count, less load.
    for i, (n, name, rate) in enumerate([(n, "lag", 200) for n in sizes] + [(sizes[0], "slow", 20)]):
        point(FakeGpt, server.urls[name])
        asyncio.run(FakeGpt.create_async("gpt-3.5-turbo", [{"role": "user", "content": "words 2"}]))  # log in
        cancelled_at, finished = asyncio.run(storm(n, name))
        assert finished == 0, f"{finished} of {n} streams were not cancelled mid-stream"
        stamps = collect_hangups(server, name, n)
        # A hang-up never noticed within 10 s counts as infinitely late.
        delays = [stamp - cancelled_at for stamp in stamps] + [float("inf")] * (n - len(stamps))
        label = f"cancel() to hang-up seen by server, p99, {n} x {rate} ev/s"
        row(label, "ms", percentile(delays, 0.99) * 1000, limit=50.0 if i == 0 else None,
            kind="max" if i == 0 else "info")

    # Queued calls: FakeGpt.max_concurrency=limit, *queued* calls started, the
    # first *limit* streaming (a 200-word reply, 50 ms between words: 10 s),
    # then all cancelled: every POST /api/conversation the server receives
    # beyond those *limit* is a cancelled call that should have stayed unsent.
    saved = FakeGpt.max_concurrency
    point(FakeGpt, server.urls["slow"])
    try:
        FakeGpt.max_concurrency = limit
        asyncio.run(FakeGpt.create_async("gpt-3.5-turbo", [{"role": "user", "content": "words 2"}]))  # log in
        base = server.ask("counts", "slow")

        async def cancel_queued() -> float:
            tasks, all_streaming = await started_streams(queued, "words 200")
            await all_streaming(limit)
            await asyncio.sleep(0.1)  # the others are waiting for a turn
            started = time.perf_counter()
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            return time.perf_counter() - started

        gathered = asyncio.run(cancel_queued())
        counts = wait_counts(server, "slow", lambda c: c.get("disconnects", 0) >= base.get("disconnects", 0) + limit)
        time.sleep(0.5)  # a request sent late still arrives
        counts = server.ask("counts", "slow")
    finally:
        FakeGpt.max_concurrency = saved
    sent = counts.get("conversations", 0) - base.get("conversations", 0) - limit
    row(f"cancelling {queued - limit} queued calls (max_concurrency={limit}): POSTs", "count", sent, limit=0,
        kind="exact")
    row(f"cancelling {queued} calls ({limit} streaming): gather() returns after", "ms", gathered * 1000,
        kind="info")


def trickling(server: Server, n: int, words: int, repeat: int) -> None:
    """One healthy call (*words* events 20 ms apart) beside *n* streams from a
    server that trickles (a byte every 0.5 s, no event ever complete), against
    the same call alone."""
    trickle_url = server.urls["trickle"]
    # The trickling server has no login: a provider class of its own, given a token.
    Trickling: Any = type("Trickling", (FakeGpt,), {"url": trickle_url, "_access_token": "bench-trickle-token"})
    point(FakeGpt, server.urls["tick"])
    healthy: Any = [{"role": "user", "content": f"words {words}"}]
    asyncio.run(FakeGpt.create_async("gpt-3.5-turbo", healthy))  # log in
    workers_before = set(threading.enumerate())

    def trickle_stats(predicate: Callable[[Dict[str, int]], bool], timeout: float = 10.0) -> Dict[str, int]:
        stats = server.ask("trickle")
        deadline = time.monotonic() + timeout
        while not predicate(stats) and time.monotonic() < deadline:
            time.sleep(0.01)
            stats = server.ask("trickle")
        return stats

    async def call() -> float:
        started = time.perf_counter()
        text = await FakeGpt.create_async("gpt-3.5-turbo", healthy)
        assert text == responder(healthy[0]["content"]), "the healthy reply was wrong"
        return time.perf_counter() - started

    async def beside() -> float:
        tasks = [asyncio.ensure_future(drain(Trickling.create_async_generator(
            "gpt-3.5-turbo", [{"role": "user", "content": f"trickle {i}"}]))) for i in range(n)]
        deadline = time.monotonic() + 30
        while server.ask("trickle")["streaming"] < n:  # every one connected and trickling
            assert time.monotonic() < deadline, "the trickling streams did not all start"
            assert not any(task.done() for task in tasks), [t.exception() for t in tasks if t.done()]
            await asyncio.sleep(0.01)
        try:
            return await call()
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    def round_beside() -> float:
        elapsed = asyncio.run(beside())
        trickle_stats(lambda s: s["streaming"] == 0)  # all hung up before the next round
        return elapsed

    m = rounds({"alone": lambda: asyncio.run(call()), "beside": round_beside}, max(1, repeat // 3))
    row(f"1 healthy async call beside {n} trickling streams", "wall", m["beside"], "alone", m["alone"], 1.2,
        ratio=m.ratio("beside", "alone"))
    left = trickle_stats(lambda s: s["open"] == 0, timeout=2.0)["open"]
    row(f"{n} trickling streams cancelled: connections left open", "count", left, limit=0, kind="exact")
    workers = [t for t in threading.enumerate() if t not in workers_before and t.name.startswith("fakegpt-worker")]
    deadline = time.monotonic() + 2.0
    for thread in workers:
        thread.join(max(0.0, deadline - time.monotonic()))
    row(f"{n} trickling streams cancelled: worker threads left", "count",
        sum(1 for t in workers if t.is_alive()), limit=0, kind="exact")


def backpressure_child(url: str, words: int, pace: float, conn: Any) -> None:
    """A fresh process: peak RSS growth while a ``create_async_generator``
    stream of *words* deltas (format B, one word each) is consumed, *pace*
    seconds per delta (0: at full speed), and how long the consumption took."""
    point(FakeGpt, url)
    asyncio.run(FakeGpt.create_async("gpt-3.5-turbo", [{"role": "user", "content": "words 2000"}]))  # log in, warm up
    gc.collect()
    before = peak = rss()
    done = threading.Event()

    def sample() -> None:
        nonlocal peak
        while not done.wait(0.0002):
            peak = max(peak, rss())

    async def consume() -> int:
        # asyncio cannot sleep less than about a millisecond: the consumer owes
        # *pace* per delta and sleeps off what it owes once that reaches 1 ms;
        # its rate is the same as sleeping *pace* after every delta.
        count, owed = 0, 0.0
        async for _ in FakeGpt.create_async_generator("gpt-3.5-turbo", [{"role": "user", "content": f"words {words}"}]):
            count += 1
            owed += pace
            if owed >= 0.001:
                slept = time.perf_counter()
                await asyncio.sleep(owed)
                owed -= time.perf_counter() - slept
        return count

    sampler = threading.Thread(target=sample)
    sampler.start()
    started = time.perf_counter()
    count = asyncio.run(consume())
    elapsed = time.perf_counter() - started
    done.set()
    sampler.join()
    peak = max(peak, rss())
    conn.send(((peak - before) / 2**20, count, elapsed))


def backpressure(server: Server, words: int) -> None:
    """Peak memory with a consumer 10x slower than the stream.

    The "v1" emulator streams format B (one word per event) as fast as it is
    read; the stream's per-event interval is measured (a fresh process reading
    the same reply at full speed), then another fresh process consumes it
    sleeping 10x that interval per delta. Both report their peak RSS growth,
    which includes what the stream itself keeps (``Stream.text``: the text
    delivered so far, in runs of 256 deltas joined into one string): the
    full-speed row shows that part, the difference is what a slow consumer adds.
    """
    if not os.path.exists("/proc/self/statm"):
        print("backpressure: /proc/self/statm is missing (not Linux): skipped")
        return
    context = multiprocessing.get_context("spawn")

    def run_child(pace: float) -> Tuple[float, float]:
        parent, child = context.Pipe()
        process = context.Process(target=backpressure_child, args=(server.urls["v1"], words, pace, child))
        process.start()
        growth, count, elapsed = parent.recv()
        process.join(30)
        assert count == words, (count, words)
        return growth, elapsed

    fast_growth, fast = run_child(0.0)
    slow_growth, slow = run_child(10 * fast / words)
    name = f"{words}-delta reply, consumer 10x slower"
    row(f"{name}: peak RSS growth", "MB", slow_growth, limit=2.0, kind="max")
    row(f"{words}-delta reply, read at full speed: peak RSS growth", "MB", fast_growth, kind="info")
    row(f"{name}: its time", "wall", slow, "full speed", fast, kind="info", ratio=slow / fast)


def hangup(server: Server, samples: int) -> None:
    """``abort()`` and ``break`` to the server seeing the hang-up, on every kind
    of connection: direct, TLS (a self-signed CA), an HTTP CONNECT proxy, an
    https proxy (TLS in TLS), SOCKS5, and a close-delimited body. The TLS
    front and the proxies run in this process (tests/netkit.py); the server
    is the slow emulator."""
    try:
        import socks  # noqa: F401 - PySocks, for requests' SOCKS support
        import trustme
    except ImportError as missing:  # the test extra brings them
        print(f"hangup: skipped ({missing})", file=sys.stderr)
        return
    import contextlib
    import ssl
    import tempfile
    from unittest import mock

    url = server.urls["slow"]
    port = int(url.rsplit(":", 1)[1])
    ca = trustme.CA()
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("localhost", "127.0.0.1").configure_cert(context)
    prompt = [{"role": "user", "content": "words 60"}]  # 3 s at 50 ms a word: never ends by itself here

    def one(client: fakegpt.Client, how: str, emulator: str) -> float:
        """Read 3 deltas, leave (from another thread while the reader blocks,
        for abort; between deltas, as a for loop's break does, for close)."""
        stream = client.stream(prompt)
        for _ in range(3):
            next(stream)
        server.ask("hangups", emulator)  # forget any earlier one
        if how == "abort":
            reader = threading.Thread(target=lambda: list(stream))
            reader.start()
            time.sleep(0.02)  # the reader is blocked on the socket
            started = time.monotonic()
            stream.abort()
            reader.join(10)
        else:
            started = time.monotonic()
            stream.close()
        stamps = collect_hangups(server, emulator, 1, timeout=5.0)
        return (stamps[0] - started) if stamps else math.inf

    with tempfile.TemporaryDirectory() as tmp, contextlib.ExitStack() as stack:
        bundle = os.path.join(tmp, "ca.pem")
        ca.cert_pem.write_to_path(bundle)
        tls = stack.enter_context(TlsFront(("127.0.0.1", port), context))
        connect = stack.enter_context(ConnectProxy())
        https_proxy = stack.enter_context(ConnectProxy(context))
        socks5 = stack.enter_context(Socks5Proxy())
        stack.enter_context(mock.patch.dict(os.environ, {"REQUESTS_CA_BUNDLE": bundle}))  # as a user trusts a CA
        kinds = {"direct": (fakegpt.Client(url), "slow"), "TLS": (fakegpt.Client(tls.url), "slow"),
                 "CONNECT proxy": (fakegpt.Client(tls.url, proxy=connect.url), "slow"),
                 "https proxy": (fakegpt.Client(tls.url, proxy=https_proxy.url), "slow"),
                 "SOCKS5 proxy": (fakegpt.Client(url, proxy=socks5.url), "slow"),
                 # a body that closes its connection: its socket is no longer the connection's
                 "close-delimited": (fakegpt.Client(server.urls["slow-close"]), "slow-close")}
        for kind, (client, emulator) in kinds.items():
            with client:
                client.complete([{"role": "user", "content": "words 1"}])  # log in
                for how, label in (("abort", "abort()"), ("close", "break")):
                    worst = max(one(client, how, emulator) for _ in range(samples))
                    row(f"{label} to hang-up seen by server, {kind}, worst of {samples}", "ms", worst * 1000,
                        limit=100.0, kind="max")


# -- the gateway -------------------------------------------------------------------------------
#: The paced OpenAI-compatible test servers: seconds between two deltas (a small model on a CPU
#: makes about 40 tokens a second; "fast" shows the gateway's own cost).
UPSTREAM_PACES = {"paced": 0.02, "fast": 0.0}


def upstream_child(conn: Any) -> None:
    """Child process: the paced OpenAI-compatible test servers until told to stop; "stall" makes
    the next paced reply stop after 2 deltas (and wait for the hang-up), "hangups" answers when
    the paced server saw its clients hang up since the last time asked."""
    pin(0)
    import contextlib

    from tests.upstream_kit import PacedUpstream

    with contextlib.ExitStack() as stack:
        servers = {name: stack.enter_context(PacedUpstream(pace=pace)) for name, pace in UPSTREAM_PACES.items()}
        conn.send({name: server.url for name, server in servers.items()})
        while True:
            command = conn.recv()
            if command == "stall":
                servers["paced"].fault("stall", after=2)
            elif command == "hangups":
                with servers["paced"].changed:
                    conn.send(servers["paced"].hangup_times[:])
                    servers["paced"].hangup_times.clear()
            else:
                break


def gateway_child(conn: Any, upstream_urls: Dict[str, str]) -> None:
    """Child process: a gateway in front of each upstream; answers "cpu" with its CPU time so far."""
    pin(1)
    from fakegpt.emulator import Emulator
    from fakegpt.gateway import Upstream

    gateways = {name: Emulator(upstream=Upstream(url, model="paced")).start() for name, url in upstream_urls.items()}
    conn.send({name: gateway.url for name, gateway in gateways.items()})
    while conn.recv() == "cpu":
        conn.send(time.process_time())
    for gateway in gateways.values():
        gateway.stop()


def words_prompt(words: int) -> List[Dict[str, str]]:
    """A prompt whose reply (tests/upstream_kit.py echoes it) is *words* + 4 deltas."""
    return [{"role": "user", "content": " ".join(f"w{i}" for i in range(words))}]


def gateway(smoke: bool, repeat: int) -> None:
    """Through the gateway against direct to the upstream; the gateway and the upstream
    each run in a process of their own."""
    context = multiprocessing.get_context("spawn")
    upstream_pipe, upstream_end = context.Pipe()
    upstream_process = context.Process(target=upstream_child, args=(upstream_end,), daemon=True)
    upstream_process.start()
    upstream_urls = upstream_pipe.recv()
    control, gateway_end = context.Pipe()
    gateway_process = context.Process(target=gateway_child, args=(gateway_end, upstream_urls), daemon=True)
    gateway_process.start()
    gateway_urls = control.recv()
    direct = requests.Session()
    messages = words_prompt(5 if smoke else 40)

    def first_direct() -> float:
        started = time.perf_counter()
        response = direct.post(upstream_urls["paced"] + "/chat/completions", stream=True, timeout=30,
                               json={"model": "paced", "messages": messages, "stream": True})
        for chunk in response.iter_content(chunk_size=None):
            if b'"content": "\\u00c9' in chunk:  # the first word of the reply, "\u00c9cho"
                break
        took = time.perf_counter() - started
        response.close()
        return took

    try:
        with fakegpt.Client(gateway_urls["paced"]) as client:
            client.complete(words_prompt(1))  # log in

            def first_gateway() -> float:
                started = time.perf_counter()
                stream = client.stream(messages)
                next(stream)
                took = time.perf_counter() - started
                stream.close()
                return took

            added = rounds({"direct": first_direct, "gateway": first_gateway}, 5 if smoke else 10 * repeat)
            gaps = sorted(g - d for g, d in zip(added.samples["gateway"], added.samples["direct"]))
            row("gateway: time to first delta added, p50", "ms", statistics.median(gaps) * 1000, limit=5.0,
                kind="max")

        with fakegpt.Client(gateway_urls["fast"]) as client:
            client.complete(words_prompt(1))
            long = words_prompt(20 if smoke else 400)
            control.send("cpu")
            before = control.recv()
            deltas = sum(sum(1 for _ in client.stream(long)) for _ in range(2 if smoke else 10))
            control.send("cpu")
            row("gateway: its CPU per delta (400-delta replies)", "us", (control.recv() - before) / deltas * 1e6,
                kind="info")

        def streams(n: int) -> float:
            clients = [fakegpt.Client(gateway_urls["paced"]) for _ in range(n)]
            for c in clients:
                c.complete(words_prompt(1))  # logged in first: only the streams are timed
            threads = [threading.Thread(target=lambda c=c: "".join(c.stream(messages))) for c in clients]

            def run_all() -> None:
                for thread in threads:
                    thread.start()
                for thread in threads:
                    thread.join(60)
            took = wall(run_all)
            for c in clients:
                c.close()
            return took

        with fakegpt.Client(gateway_urls["paced"]) as client:
            client.complete(words_prompt(1))
            worst, samples = 0.0, 2 if smoke else 10
            for _ in range(samples):
                upstream_pipe.send("stall")  # two deltas, then silence: only the gateway's watch can notice
                upstream_pipe.send("hangups")
                upstream_pipe.recv()  # (forget any earlier one)
                stream = client.stream(messages)
                next(stream)
                next(stream)
                started = time.monotonic()
                stream.close()
                seen: List[float] = []
                deadline = started + 5
                while not seen and time.monotonic() < deadline:
                    time.sleep(0.005)
                    upstream_pipe.send("hangups")
                    seen = upstream_pipe.recv()
                worst = max(worst, (seen[0] - started) if seen else math.inf)
            row(f"gateway: break to upstream hang-up (silent), worst of {samples}", "ms",
                worst * 1000, limit=500.0, kind="max")

        n = 8 if smoke else 64
        measured = rounds({"one": lambda: streams(1), "many": lambda: streams(n)}, 1 if smoke else max(3, repeat // 3))
        row(f"gateway: {n} concurrent streams vs one", "wall", measured["many"], "one stream", measured["one"],
            limit=1.2, ratio=measured.ratio("many", "one"))
    finally:
        control.send("stop")
        upstream_pipe.send("stop")
        gateway_process.join(10)
        upstream_process.join(10)


# -- the report --------------------------------------------------------------------------------
def report(check: bool) -> int:
    missed = 0
    print(f"{'workload':58} {'fakegpt':>10} {'baseline':>21} {'ratio':>7} {'target':>9}  ok")
    for workload, unit, value, against, base, ratio, limit, kind in ROWS:
        if unit in ("CPU", "wall"):
            shown = f"{value * 1000:.1f} ms"
        else:
            shown = f"{value:g}" if unit == "count" else f"{value:.2f} {unit}"
        baseline = f"{against} {base * 1000:.1f} ms" if base is not None else ""
        if kind == "ratio":
            ok = ratio is not None and limit is not None and ratio <= limit
            target = f"<={limit:.2f}x"
        elif kind == "exact":
            ok, target = value == limit, f"={limit:g}"
        elif kind == "info":
            ok, target = True, "(report)"
        else:
            ok, target = limit is not None and value <= limit, f"<={limit:g}"
        missed += 0 if ok else 1
        ratio_text = f"{ratio:.2f}x" if ratio is not None else ""
        mark = "-" if kind == "info" else ("yes" if ok else "NO")
        print(f"{workload[:58]:58} {shown:>10} {baseline:>21} {ratio_text:>7} {target:>9}  {mark}")
    if not check:
        print("smoke run: sizes are tiny and targets are not checked")
        return 0
    print("ratio: the median of per-round ratios (each round runs the contenders back to back)")
    print(f"{missed} target(s) missed" if missed else "all targets met")
    return 1 if missed else 0


WORKLOADS = ("streaming", "concurrency", "scale", "requests", "latency", "memory", "cancel", "trickle",
             "backpressure", "hangup", "gateway")


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeat", type=int, default=9, help="rounds per workload (default: %(default)s)")
    parser.add_argument("--smoke", action="store_true", help="tiny sizes, one round, targets not checked")
    parser.add_argument("--only", choices=WORKLOADS, action="append",
                        help="run just this workload (repeatable); default: all")
    args = parser.parse_args(argv)
    chosen = set(args.only or WORKLOADS)
    repeat = 1 if args.smoke else args.repeat
    events, calls, slow_events, tick_events = (30, 3, 3, 10) if args.smoke else (1500, 32, 20, 100)
    original = original_provider()
    started = time.perf_counter()
    with Server() as server:
        if "streaming" in chosen:
            with fakegpt.Client(server.urls["fast"]) as client:
                client.complete([{"role": "user", "content": "words 2"}])  # log in
                streaming(server, client, original, events, repeat)
        if "concurrency" in chosen:
            concurrency(server, original, calls, slow_events, repeat)
        if "scale" in chosen:
            if args.smoke:
                scale(server, (8, 16), (4, 8), repeat, events=3, lag_events=20)
            else:
                scale(server, (256, 1000), (32, 64, 256), repeat)
        if "requests" in chosen:
            requests_per_call(server)
        if "latency" in chosen:
            latency(server, tick_events)
        if "memory" in chosen and not args.smoke:
            memory(server)
        if "cancel" in chosen:
            cancellation(server, (8,) if args.smoke else (64,), 16 if args.smoke else 64, 4 if args.smoke else 8)
        if "trickle" in chosen:
            trickling(server, 8 if args.smoke else 64, 5 if args.smoke else 20, repeat)
        if "backpressure" in chosen:
            backpressure(server, 2000 if args.smoke else 30000)
        if "hangup" in chosen:
            hangup(server, 1 if args.smoke else 5)
    if "gateway" in chosen:
        gateway(args.smoke, repeat)
    print(f"fakegpt {fakegpt.__version__}, Python {sys.version.split()[0]}, {os.cpu_count()} CPUs, "
          f"{repeat} round(s), {time.perf_counter() - started:.0f} s"
          + ("" if original is not None else "; g4f not installed: no 'original' rows"))
    return report(check=not args.smoke)


if __name__ == "__main__":
    sys.exit(main())
