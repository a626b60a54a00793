"""The command line as real processes: signals, standard output that fails, ``serve``."""
import os
import re
import signal
import subprocess
import sys

import pytest

import fakegpt
from fakegpt.emulator import Emulator, default_responder

from .cli_helpers import command, console_script


def test_the_console_script_in_a_subprocess():
    done = subprocess.run(console_script() + ["chat", "--emulator", "hi"], capture_output=True, text=True, timeout=30,
                          stdin=subprocess.DEVNULL)
    assert (done.returncode, done.stderr) == (0, "") and done.stdout == default_responder("hi") + "\n"


def test_python_dash_m_and_a_failure_in_a_subprocess():
    done = subprocess.run([sys.executable, "-m", "fakegpt", "chat", "--base-url", "http://127.0.0.1:9", "--timeout",
                           "1", "hi"], capture_output=True, text=True, timeout=60, env={**os.environ, "CI": "true"},
                          stdin=subprocess.DEVNULL)
    assert done.returncode == 1 and done.stdout == ""
    assert done.stderr.startswith("fakegpt: error: APIConnectionError: GET /api/loads to 127.0.0.1:9 failed")
    assert done.stderr.count("\n") == 1


def test_fakegpt_log_and_debug_print_each_record_once(fakegpt_emulator):
    env = {**os.environ, "FAKEGPT_LOG": "debug"}
    done = subprocess.run(console_script() + ["chat", "--debug", "--base-url", fakegpt_emulator.url, "hi"],
                          capture_output=True, text=True, timeout=30, stdin=subprocess.DEVNULL, env=env)
    assert done.returncode == 0 and done.stdout == default_responder("hi") + "\n"
    assert done.stderr.count("GET /api/auth/session: HTTP 200") == 1, done.stderr


def test_ctrl_c_mid_stream_exits_130_cleanly():
    with Emulator(delay=0.2) as emulator:
        process = subprocess.Popen(command("chat", "--base-url", emulator.url, "tell me a story"),
                                   stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        try:
            assert process.stdout.read(3)  # streaming has begun
            process.send_signal(signal.SIGINT)
            out, err = process.communicate(timeout=10)
        finally:
            process.kill()
        assert process.returncode == 130 and b"Traceback" not in err
        assert emulator.wait_until(lambda e: e.counts["disconnects"] == 1, timeout=2)


def test_the_commands_start_as_a_shell_job_even_with_sigint_ignored_here():
    """The helper gives SIGINT back its default, so the tests do not depend on
    the disposition this test run inherited (a shell may start it ignored)."""
    script = ("import signal, subprocess, sys\n"
              "signal.signal(signal.SIGINT, signal.SIG_IGN)\n"
              "sys.exit(subprocess.call(sys.argv[1:]))\n")
    ignored = [sys.executable, "-c", script]
    probe = ("import signal, sys; "
             "sys.exit(0 if signal.getsignal(signal.SIGINT) is signal.default_int_handler else 3)")
    assert subprocess.call(ignored + [sys.executable, "-c", probe], timeout=30) == 3  # inherited: ignored
    shim = command()[:4]  # python -c SHIM -: the helper without fakegpt
    assert subprocess.call(ignored + shim + [sys.executable, "-c", probe], timeout=30) == 0


def test_serve_prints_its_url_serves_and_stops_on_ctrl_c_and_sigterm():
    for stop in (signal.SIGINT, signal.SIGTERM):
        process = subprocess.Popen(command("serve", "--port", "0", "--delay", "0", "--format", "v1"),
                                   stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            url = process.stdout.readline().strip()
            assert url.startswith("http://localhost:")
            with fakegpt.Client(url) as client:
                assert client.complete([{"role": "user", "content": "hi"}]) == default_responder("hi")
            process.send_signal(stop)
            out, err = process.communicate(timeout=10)
        finally:
            process.kill()
        assert process.returncode == 0 and "serving on" in err and "Traceback" not in err


def serve_and_stop(*options):
    """``fakegpt serve`` with *options*: one completed call, then Ctrl-C; its (stderr, exit status)."""
    process = subprocess.Popen(command("serve", "--port", "0", "--delay", "0", *options),
                               stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        url = process.stdout.readline().strip()
        with fakegpt.Client(url) as client:
            assert client.complete([{"role": "user", "content": "hi"}]) == default_responder("hi")
        process.send_signal(signal.SIGINT)
        _, err = process.communicate(timeout=10)
    finally:
        process.kill()
    return err, process.returncode, url


def test_serve_logs_one_line_per_request_and_ends_with_a_newline_on_ctrl_c():
    err, status, url = serve_and_stop()
    lines = err.split("\n")
    assert status == 0 and lines[0] == f"fakegpt emulator serving on {url} (Ctrl-C to stop)"
    assert [re.sub(r"\?t=\d+", "", line) for line in lines[1:]] == [
        '127.0.0.1 "GET /api/loads HTTP/1.1" 200 -',
        '127.0.0.1 "POST /auth/login HTTP/1.1" 302 -',
        '127.0.0.1 "GET /api/auth/session HTTP/1.1" 200 -',
        '127.0.0.1 "POST /api/conversation HTTP/1.1" 200 -',
        "",  # the newline after ^C
        "",
    ]


def test_serve_quiet_logs_no_request():
    err, status, url = serve_and_stop("--quiet")
    assert status == 0 and err == f"fakegpt emulator serving on {url} (Ctrl-C to stop)\n\n"


def test_a_bad_fakegpt_log_is_one_warning_line_not_a_python_warning():
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("FAKEGPT_")}, "FAKEGPT_LOG": "bogus"}
    done = subprocess.run(console_script() + ["chat", "--emulator", "hi"], capture_output=True, text=True,
                          timeout=60, stdin=subprocess.DEVNULL, env=env)
    assert done.returncode == 0 and done.stdout.startswith('Hello! You said "hi".')
    assert done.stderr == "fakegpt: warning: FAKEGPT_LOG must be 'debug' or 'info', not 'bogus': ignored\n"


def test_serve_on_a_busy_port_is_one_line_exit_1():
    with Emulator() as emulator:
        done = subprocess.run(console_script() + ["serve", "--port", str(emulator.port)], capture_output=True,
                              text=True, timeout=30, stdin=subprocess.DEVNULL)
    assert done.returncode == 1 and done.stderr.count("\n") == 1
    assert done.stderr.startswith(f"fakegpt: error: FakeGptError: cannot listen on 127.0.0.1:{emulator.port}: ")


def test_serve_max_words_cuts_replies_short():
    process = subprocess.Popen(command("serve", "--port", "0", "--delay", "0", "--max-words", "3"),
                               stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        url = process.stdout.readline().strip()
        with fakegpt.Client(url) as client:
            reply = client.complete([{"role": "user", "content": "hi"}])
        process.send_signal(signal.SIGINT)
        process.communicate(timeout=10)
    finally:
        process.kill()
    assert reply.finish_reason == "max_tokens" and reply.split() == default_responder("hi").split()[:3]


def test_no_stdin_at_all_is_a_usage_error():
    done = subprocess.run(["sh", "-c", 'exec "$@" <&-', "sh"] + console_script() + ["chat", "--emulator"],
                          capture_output=True, text=True, timeout=30)
    assert done.returncode == 2 and "no prompt" in done.stderr


def test_a_closed_stdout_pipe_ends_quietly_with_141():
    process = subprocess.Popen(console_script() + ["chat", "--emulator", "tell me more"], stdin=subprocess.DEVNULL,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        assert process.stdout.read(10) == b"Hello! You"
        process.stdout.close()  # like `| head -c 10`
        err = process.stderr.read()
        process.wait(30)
    finally:
        process.kill()
        process.stderr.close()
    assert process.returncode == 141 and err == b""


def test_started_with_stdout_closed_ends_quietly_before_any_request(fakegpt_emulator):
    done = subprocess.run(["sh", "-c", 'exec "$@" >&-', "sh"] + console_script()
                          + ["chat", "--base-url", fakegpt_emulator.url, "hi"],
                          stdin=subprocess.DEVNULL, stderr=subprocess.PIPE, timeout=30)
    assert done.returncode == 141 and done.stderr == b""
    assert fakegpt_emulator.counts["requests"] == 0


@pytest.mark.skipif(not os.path.exists("/dev/full"), reason="needs /dev/full")
@pytest.mark.parametrize("argv", [["chat", "--emulator", "hi"], ["serve", "--port", "0"], ["chat", "--help"]],
                         ids=["chat", "serve", "help"])
def test_stdout_on_a_full_device_is_one_line_exit_1(argv):
    with open("/dev/full", "w") as full:
        done = subprocess.run(console_script() + argv, stdin=subprocess.DEVNULL, stdout=full,
                              stderr=subprocess.PIPE, text=True, timeout=30)
    assert done.returncode == 1
    assert done.stderr == "fakegpt: error: cannot write to standard output: No space left on device\n"
