"""bench/run.py in its smoke mode: tiny sizes, so the script never rots (figures are not checked here)."""
import os
import subprocess
import sys

BENCH = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "bench", "run.py")


def test_bench_smoke_run_prints_every_row():
    done = subprocess.run([sys.executable, BENCH, "--smoke"], capture_output=True, text=True, timeout=120,
                          stdin=subprocess.DEVNULL)
    assert done.returncode == 0, done.stderr
    out = done.stdout
    for row in ("cumulative events, Client.stream", "format B, Client.stream", "create_async_generator",
                "concurrent async calls", "cold call: HTTP requests", "warm call: HTTP requests",
                "warm call: new TCP connections", "per-event latency, chunked", "per-event latency, close-delimited",
                "event-loop lag max", "abort() to hang-up seen by server, https proxy",
                "break to hang-up seen by server, SOCKS5 proxy", "gateway: time to first delta added",
                "gateway: its CPU per delta", "gateway: 8 concurrent streams vs one",
                "gateway: break to upstream hang-up (silent)"):
        assert row in out, row
    assert "original" in out  # g4f is a test dependency: the original client is measured too
    assert "targets are not checked" in out


def test_bench_help():
    done = subprocess.run([sys.executable, BENCH, "--help"], capture_output=True, text=True, timeout=60,
                          stdin=subprocess.DEVNULL)
    assert done.returncode == 0 and "--only" in done.stdout and "--smoke" in done.stdout
