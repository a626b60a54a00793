"""The command line goes on with conversations across runs, and its hints say how (after any error)."""
import re

import fakegpt
from fakegpt.emulator import Emulator

from .cli_helpers import run


def first_turn(url, **options):
    """An earlier run's conversation: one question asked, its ids known."""
    with fakegpt.Client(url, **options) as client:
        conversation = client.conversation()
        conversation.complete("first question")
    return conversation


def resume(url, conversation, text, *extra):
    return ["chat", "--base-url", url, "--conversation-id", conversation.conversation_id,
            "--parent-id", conversation.parent_message_id, *extra, text]


def test_one_shot_resume_goes_on_and_prints_the_next_ids(capsys, fakegpt_emulator, monkeypatch, tmp_path):
    monkeypatch.setenv("FAKEGPT_SESSION_CACHE", str(tmp_path / "cache.json"))
    conversation = first_turn(fakegpt_emulator.url)  # an earlier run, sharing the login through the cache
    status, out, err = run(resume(fakegpt_emulator.url, conversation, "second question"), capsys)
    assert status == 0 and 'Earlier you said "first question"' in out
    ids = re.fullmatch(r"to go on: --conversation-id (\S+) --parent-id (\S+)\n", err)
    assert ids and ids[1] == conversation.conversation_id and ids[2] != conversation.parent_message_id
    status, out, err = run(["chat", "--base-url", fakegpt_emulator.url, "--conversation-id", ids[1],
                            "--parent-id", ids[2], "third question"], capsys)
    assert status == 0 and 'Earlier you said "second question"' in out
    assert fakegpt_emulator.counts["logins"] == 1


def test_resume_with_the_session_cache_option(capsys, fakegpt_emulator, tmp_path):
    cache = tmp_path / "cache.json"
    conversation = first_turn(fakegpt_emulator.url, session_cache=cache)
    status, out, err = run(resume(fakegpt_emulator.url, conversation, "again", "--session-cache", str(cache)), capsys)
    assert status == 0 and 'Earlier you said "first question"' in out and err.startswith("to go on: ")


def test_resume_without_a_shared_login_explains_the_404_after_it(capsys, fakegpt_emulator):
    conversation = first_turn(fakegpt_emulator.url)  # no session cache: this run logs in afresh
    status, out, err = run(resume(fakegpt_emulator.url, conversation, "again"), capsys)
    assert status == 1 and out == ""
    error, hint = err.splitlines()
    assert error == "fakegpt: error: APIStatusError: POST /api/conversation failed: HTTP 404: Conversation not found"
    assert hint.startswith("hint: the server keeps conversations per login, and this run logged in afresh (no "
                           "session cache), so it cannot see that conversation")
    assert "--session-cache 1" in hint and "FAKEGPT_SESSION_CACHE=1" in hint


def test_resume_of_an_unknown_conversation_with_a_cache_explains_the_404(capsys, fakegpt_emulator, tmp_path):
    cache = tmp_path / "cache.json"
    conversation = first_turn(fakegpt_emulator.url)  # begun under another login than the cached one
    status, out, err = run(resume(fakegpt_emulator.url, conversation, "again", "--session-cache", str(cache)), capsys)
    assert status == 1 and out == ""
    error, hint = err.splitlines()
    assert error.endswith("HTTP 404: Conversation not found")
    assert hint == (f"hint: the server does not know that conversation under the login kept in {cache}: check "
                    "the ids, and that the conversation began on this server with this session cache")


def test_the_hint_to_go_on_comes_after_the_error(capsys, fakegpt_emulator, monkeypatch, tmp_path):
    monkeypatch.setenv("FAKEGPT_SESSION_CACHE", str(tmp_path / "cache.json"))
    conversation = first_turn(fakegpt_emulator.url)
    fakegpt_emulator.stream_fault("truncate", after_words=3)
    status, out, err = run(resume(fakegpt_emulator.url, conversation, "second question"), capsys)
    assert status == 1 and out.endswith("\n")
    error, hint = err.splitlines()
    assert error.startswith("fakegpt: error: IncompleteStreamError:")
    assert re.fullmatch(r"to go on: --conversation-id \S+ --parent-id \S+", hint)


def test_a_resumed_reply_cut_short_is_continued_seamlessly(capsys, monkeypatch, tmp_path):
    monkeypatch.setenv("FAKEGPT_SESSION_CACHE", str(tmp_path / "cache.json"))
    with Emulator(max_words=4) as emulator:
        with fakegpt.Client(emulator.url) as client:
            conversation = client.conversation(auto_continue=True)
            whole = conversation.complete("tell me about continuing")
        status, out, err = run(resume(emulator.url, conversation, "and more"), capsys)
    assert len(whole.split()) > 4 and status == 0
    assert out.startswith('Hello! You said "and more".') and len(out.split()) > 4
    assert 'Earlier you said "tell me about continuing"' in out and "length limit" not in err
