"""The command line: stdout, stderr and exit status, in-process and as real processes."""
import io
import os
import pty
import re
import select
import shutil
import signal
import subprocess
import sys
import time

import pytest

import fakegpt
from fakegpt import cli
from fakegpt.emulator import Emulator, default_responder


def run(argv, capsys, stdin=""):
    """main() in-process with a non-terminal stdin; returns (status, stdout, stderr)."""
    old = sys.stdin
    sys.stdin = io.StringIO(stdin)
    try:
        try:
            status = cli.main(argv)
        except SystemExit as exit_:
            status = exit_.code
    finally:
        sys.stdin = old
    out, err = capsys.readouterr()
    return status, out, err


def test_chat_with_the_embedded_emulator(capsys):
    status, out, err = run(["chat", "--emulator", "Say", "hello"], capsys)
    assert (status, err) == (0, "")
    assert out == default_responder("Say hello") + "\n"


def test_the_embedded_emulator_leaves_nothing_in_the_session_cache(capsys, monkeypatch, tmp_path):
    monkeypatch.setenv("FAKEGPT_SESSION_CACHE", str(tmp_path / "cache.json"))
    status, out, err = run(["chat", "--emulator", "hi"], capsys)
    assert (status, err) == (0, "") and out.startswith("Hello!")
    assert not (tmp_path / "cache.json").exists()


def test_prompt_from_stdin_and_a_system_message(capsys, fakegpt_emulator):
    status, out, err = run(["chat", "--base-url", fakegpt_emulator.url, "--system", "Be brief."], capsys,
                           stdin="  from stdin \n")
    assert (status, err) == (0, "")
    prompt = "System: Be brief.\nUser: from stdin\nAssistant:"
    assert out == default_responder(prompt) + "\n"
    body = fakegpt_emulator.requests[-1].body.decode()
    assert "System: Be brief.\\nUser: from stdin\\nAssistant:" in body


def test_base_url_from_the_environment_and_model(capsys, fakegpt_emulator, monkeypatch):
    monkeypatch.setenv("FAKEGPT_BASE_URL", fakegpt_emulator.url)
    status, out, _ = run(["chat", "--model", "gpt-4o-mini", "--timeout", "5", "hi"], capsys)
    assert status == 0 and out.startswith("Hello!")
    assert b'"model": "gpt-4o-mini"' in fakegpt_emulator.requests[-1].body


@pytest.mark.parametrize(
    "argv, stdin, text",
    [
        (["chat", "--emulator", "--base-url", "http://x", "hi"], "", "exclude each other"),
        (["chat", "--emulator"], "   ", "no prompt"),
        (["chat", "--emulator", "--timeout", "-1", "hi"], "", "timeout must be a positive"),
        (["chat", "--emulator", "--proxy", "nonsense", "hi"], "", "proxy must be a URL"),
        (["chat", "--timeout", "soon", "hi"], "", "invalid float value"),
        (["frobnicate"], "", "invalid choice"),
        ([], "", "required"),
        (["serve", "--delay", "-1"], "", "--delay must be 0 or more"),
        (["serve", "--max-words", "0"], "", "--max-words must be 1 or more"),
        (["chat", "--emulator", "--conversation-id", "c1", "hi"], "", "--conversation-id and --parent-id go together"),
        (["chat", "--emulator", "--parent-id", "p1", "hi"], "", "--conversation-id and --parent-id go together"),
    ],
)
def test_usage_errors_exit_2(capsys, argv, stdin, text):
    status, out, err = run(argv, capsys, stdin)
    assert status == 2 and out == "" and text in err and "usage:" in err


def test_a_failing_call_is_one_line_on_stderr_and_exit_1(capsys, fakegpt_emulator):
    fakegpt_emulator.clear_tokens()
    status, out, err = run(["chat", "--base-url", fakegpt_emulator.url, "hi"], capsys)
    assert status == 1 and out == ""
    assert err.count("\n") == 1 and err.startswith("fakegpt: error: AuthenticationError: no shared token")
    assert "Traceback" not in err


def test_debug_shows_the_traceback_and_the_flow_without_secrets(capsys, fakegpt_emulator):
    fakegpt_emulator.fail_next(400, {"detail": "bad request"})
    status, out, err = run(["chat", "--base-url", fakegpt_emulator.url, "hi", "--debug"], capsys)
    assert status == 1 and "Traceback" in err and "APIStatusError: POST /api/conversation failed: HTTP 400" in err
    assert "GET /api/auth/session: HTTP 200" in err
    assert "emu-" not in err  # the emulator's access tokens start with emu-


def test_partial_text_ends_with_a_newline_before_the_error(capsys, fakegpt_emulator):
    fakegpt_emulator.stream_fault("truncate", after_words=2)
    status, out, err = run(["chat", "--base-url", fakegpt_emulator.url, "hi"], capsys)
    assert status == 1 and out == "Hello! You \n" and "IncompleteStreamError" in err


def test_version_and_help(capsys):
    status, out, _ = run(["--version"], capsys)
    assert status == 0 and out.strip() == f"fakegpt {fakegpt.__version__}"
    status, out, _ = run(["--help"], capsys)
    assert status == 0 and "examples:" in out and "fakegpt chat --emulator" in out
    assert "FAKEGPT_SESSION_CACHE" in out and "FAKEGPT_LOG" in out
    status, out, _ = run(["chat", "--help"], capsys)
    assert status == 0 and "--emulator" in out and "--system TEXT" in out
    status, out, _ = run(["serve", "--help"], capsys)
    assert status == 0 and "--format {cumulative,v1}" in out


def test_spinner_draws_until_stopped_and_erases_itself(monkeypatch):
    err = io.StringIO()
    monkeypatch.setattr(sys, "stderr", err)
    spinner = cli._Spinner()
    time.sleep(0.2)
    spinner.stop()
    assert "⠋" in err.getvalue() and err.getvalue().endswith("\r  \r")


# -- as real processes --------------------------------------------------------------------
def console_script():
    found = shutil.which("fakegpt", path=os.path.dirname(sys.executable))
    return [found] if found else [sys.executable, "-m", "fakegpt"]


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


def test_ctrl_c_mid_stream_exits_130_cleanly():
    with Emulator(delay=0.2) as emulator:
        process = subprocess.Popen(console_script() + ["chat", "--base-url", emulator.url, "tell me a story"],
                                   stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        try:
            assert process.stdout.read(3)  # streaming has begun
            process.send_signal(signal.SIGINT)
            out, err = process.communicate(timeout=10)
        finally:
            process.kill()
        assert process.returncode == 130 and b"Traceback" not in err
        assert emulator.wait_until(lambda e: e.counts["disconnects"] == 1, timeout=2)


def test_serve_prints_its_url_serves_and_stops_on_ctrl_c_and_sigterm():
    for stop in (signal.SIGINT, signal.SIGTERM):
        process = subprocess.Popen(console_script() + ["serve", "--port", "0", "--delay", "0", "--format", "v1"],
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


def test_serve_on_a_busy_port_is_one_line_exit_1():
    with Emulator() as emulator:
        done = subprocess.run(console_script() + ["serve", "--port", str(emulator.port)], capture_output=True,
                              text=True, timeout=30, stdin=subprocess.DEVNULL)
    assert done.returncode == 1 and done.stderr.startswith("fakegpt: error: FakeGptError: cannot listen on")


def read_until(fd, marker: bytes, timeout=10.0) -> bytes:
    data, deadline = b"", time.monotonic() + timeout
    while marker not in data:
        ready, _, _ = select.select([fd], [], [], max(0.0, deadline - time.monotonic()))
        if not ready:
            raise AssertionError(f"timed out waiting for {marker!r}; got {data!r}")
        data += os.read(fd, 4096)
    return data


def chat_on_a_terminal(argv, typed, env=None):
    """Run ``fakegpt chat`` with stdin and stderr on a pseudo-terminal, typing
    each of *typed* at a ``you>`` prompt; returns (status, stdout, terminal)."""
    master, slave = pty.openpty()
    process = subprocess.Popen(console_script() + ["chat"] + argv, stdin=slave, stdout=subprocess.PIPE,
                               stderr=slave, env=env)
    os.close(slave)
    try:
        for keys in typed:
            read_until(master, b"you> ")
            os.write(master, keys)
        out, _ = process.communicate(timeout=10)
        terminal = drain(master)
    finally:
        process.kill()
        os.close(master)
    return process.returncode, out.decode(), terminal


def drain(fd) -> bytes:
    """What is left to read on a terminal whose other side has exited."""
    data = b""
    while select.select([fd], [], [], 0.5)[0]:
        try:
            chunk = os.read(fd, 4096)
        except OSError:  # the other side of the terminal is gone
            break
        if not chunk:
            break
        data += chunk
    return data


@pytest.mark.parametrize("quit_with", [b"exit\n", b"\x04"], ids=["exit", "ctrl-d"])
def test_interactive_chat_on_a_terminal(quit_with):
    status, out, _ = chat_on_a_terminal(["--emulator"], [b"first question\n", b"second one\n", quit_with])
    assert status == 0
    lines = out.splitlines()
    assert lines[0] == default_responder("first question")
    # One conversation the server keeps: the second reply knows the first question.
    assert len(lines) == 2 and lines[1].startswith('Hello! You said "second one".')
    assert 'Earlier you said "first question"' in lines[1]


def test_interactive_chat_prints_how_to_go_on(tmp_path):
    """Against a server that outlives the run, with the session cache on, the
    chat ends with the ids a later run resumes from."""
    with Emulator() as emulator:
        status, _, terminal = chat_on_a_terminal(
            ["--base-url", emulator.url], [b"remember the word teapot\n", b"exit\n"],
            env={**os.environ, "FAKEGPT_SESSION_CACHE": str(tmp_path / "cache.json")})
        assert status == 0
        ids = re.search(rb"to go on: --conversation-id (\S+) --parent-id (\S+)", terminal)
        assert ids, terminal
        with fakegpt.Client(emulator.url, session_cache=tmp_path / "cache.json") as client:
            reply = client.conversation(conversation_id=ids[1].decode(), parent_message_id=ids[2].decode()).complete(
                "which word?")
        assert 'Earlier you said "remember the word teapot"' in reply


def test_no_stdin_at_all_is_a_usage_error():
    done = subprocess.run(console_script() + ["chat", "--emulator"], capture_output=True, text=True, timeout=30,
                          stdin=subprocess.DEVNULL, preexec_fn=lambda: os.close(0))
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


# -- conversations across runs ------------------------------------------------------------
def test_one_shot_resume_goes_on_and_prints_the_next_ids(capsys, fakegpt_emulator, monkeypatch, tmp_path):
    monkeypatch.setenv("FAKEGPT_SESSION_CACHE", str(tmp_path / "cache.json"))
    with fakegpt.Client(fakegpt_emulator.url) as client:  # an earlier run, sharing the login through the cache
        conversation = client.conversation()
        conversation.complete("first question")
    status, out, err = run(["chat", "--base-url", fakegpt_emulator.url, "--conversation-id",
                            conversation.conversation_id, "--parent-id", conversation.parent_message_id,
                            "second question"], capsys)
    assert status == 0 and 'Earlier you said "first question"' in out
    ids = re.fullmatch(r"to go on: --conversation-id (\S+) --parent-id (\S+)\n", err)
    assert ids and ids[1] == conversation.conversation_id and ids[2] != conversation.parent_message_id
    status, out, err = run(["chat", "--base-url", fakegpt_emulator.url, "--conversation-id", ids[1],
                            "--parent-id", ids[2], "third question"], capsys)
    assert status == 0 and 'Earlier you said "second question"' in out
    assert fakegpt_emulator.counts["logins"] == 1


def test_resume_without_a_shared_login_is_a_clear_404(capsys, fakegpt_emulator, monkeypatch):
    monkeypatch.delenv("FAKEGPT_SESSION_CACHE", raising=False)
    with fakegpt.Client(fakegpt_emulator.url) as client:
        conversation = client.conversation()
        conversation.complete("first question")
    status, out, err = run(["chat", "--base-url", fakegpt_emulator.url, "--conversation-id",
                            conversation.conversation_id, "--parent-id", conversation.parent_message_id, "again"],
                           capsys)
    assert status == 1 and out == ""
    note, error = err.splitlines()
    assert note.startswith("note: to go on with a conversation in a later run, set FAKEGPT_SESSION_CACHE=1")
    assert error == "fakegpt: error: APIStatusError: POST /api/conversation failed: HTTP 404: Conversation not found"


def test_a_resumed_reply_cut_short_is_continued_seamlessly(capsys, monkeypatch, tmp_path):
    monkeypatch.setenv("FAKEGPT_SESSION_CACHE", str(tmp_path / "cache.json"))
    with Emulator(max_words=4) as emulator:
        with fakegpt.Client(emulator.url) as client:
            conversation = client.conversation(auto_continue=True)
            whole = conversation.complete("tell me about continuing")
        status, out, _ = run(["chat", "--base-url", emulator.url, "--conversation-id", conversation.conversation_id,
                              "--parent-id", conversation.parent_message_id, "and more"], capsys)
    assert len(whole.split()) > 4 and status == 0
    assert out.startswith('Hello! You said "and more".') and len(out.split()) > 4
    assert 'Earlier you said "tell me about continuing"' in out


def test_serve_max_words_cuts_replies_short():
    process = subprocess.Popen(console_script() + ["serve", "--port", "0", "--delay", "0", "--max-words", "3"],
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
