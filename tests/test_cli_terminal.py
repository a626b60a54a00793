"""The interactive chat on a pseudo-terminal: typed lines, Ctrl-C, Ctrl-D, line editing."""
import os
import re

import pytest

import fakegpt
from fakegpt.emulator import Emulator, default_responder

from .cli_helpers import Terminal, chat_on_a_terminal

CTRL_A, CTRL_C, CTRL_D, CTRL_P = b"\x01", b"\x03", b"\x04", b"\x10"


@pytest.mark.parametrize("quit_with", [b"exit\n", CTRL_D], ids=["exit", "ctrl-d"])
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


def test_ctrl_c_stops_a_reply_and_ctrl_c_at_the_prompt_quits(tmp_path):
    env = {**os.environ, "FAKEGPT_SESSION_CACHE": str(tmp_path / "cache.json")}
    with Emulator(delay=0.1) as emulator:
        terminal = Terminal(["--base-url", emulator.url], env=env)
        try:
            terminal.wait_for(b"you> ")
            terminal.type(b"tell me a long story\n")
            first = os.read(terminal.process.stdout.fileno(), 5)  # the reply has begun
            terminal.type(CTRL_C)
            assert b"(reply stopped)" in terminal.wait_for(b"you> ")  # back at the prompt, still running
            assert emulator.wait_until(lambda e: e.counts["disconnects"] == 1, timeout=5)
            terminal.type(b"and then?\n")
            terminal.wait_for(b"you> ")
            terminal.type(CTRL_C)
        finally:
            status, out, seen = terminal.finish()
    assert status == 130 and b"Traceback" not in seen
    stopped, second = (first.decode() + out).splitlines()
    assert default_responder("tell me a long story").startswith(stopped) and stopped != ""
    # The stopped reply still counts: the next one is in the same conversation.
    assert second.startswith('Hello! You said "and then?".') and 'Earlier you said "tell me a long story"' in second
    assert re.search(rb"to go on: --conversation-id \S+ --parent-id \S+", seen)


def test_line_editing_and_history_with_readline():
    """With stdout on the terminal too, the prompt line is edited with readline:
    Ctrl-A goes to the start of the line, Ctrl-P brings back the previous one."""
    pytest.importorskip("readline")
    terminal = Terminal(["--emulator"], env={**os.environ, "TERM": "xterm"}, stdout_on_terminal=True)
    try:
        terminal.wait_for(b"you> ")
        terminal.type(b"world" + CTRL_A + b"hello \n")
        first = terminal.wait_for(b"you> ")
        terminal.type(CTRL_P + b"\n")
        second = terminal.wait_for(b"you> ")
        terminal.type(CTRL_D)
    finally:
        status, _, _ = terminal.finish()
    assert status == 0
    assert b'Hello! You said "hello world".' in first
    assert b'Hello! You said "hello world".' in second and b'Earlier you said "hello world"' in second
