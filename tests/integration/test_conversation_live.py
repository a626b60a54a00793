"""Conversations the server keeps, over loopback."""
import json

import pytest

import fakegpt
from fakegpt.emulator import Emulator, default_responder


def bodies(emulator):
    return [json.loads(r.body) for r in emulator.requests if r.path == "/api/conversation"]


@pytest.fixture
def client(fakegpt_emulator):
    with fakegpt.Client(fakegpt_emulator.url) as client:
        yield client


def test_each_turn_sends_only_the_new_message_with_the_servers_ids(fakegpt_emulator, client):
    conversation = client.conversation()
    first = conversation.complete("My name is Ada.")
    second = conversation.complete("What is my name?")
    third = conversation.complete("Thanks!")
    sent = bodies(fakegpt_emulator)
    assert [b["messages"][0]["content"]["parts"] for b in sent] == [["My name is Ada."], ["What is my name?"],
                                                                      ["Thanks!"]]
    assert all(b["history_and_training_disabled"] is False for b in sent)
    assert "conversation_id" not in sent[0]
    assert sent[1]["conversation_id"] == sent[2]["conversation_id"] == first.conversation_id
    assert sent[1]["parent_message_id"] == first.message_id and sent[2]["parent_message_id"] == second.message_id
    assert first.conversation_id == second.conversation_id == third.conversation_id
    # The server used its history: the reply names the earlier message.
    assert 'Earlier you said "My name is Ada."' in second
    assert 'Earlier you said "What is my name?"' in third
    assert conversation.conversation_id == first.conversation_id and conversation.parent_message_id == third.message_id


def test_one_shot_calls_still_flatten_and_disable_history(fakegpt_emulator, client):
    client.complete([{"role": "system", "content": "Be brief."}, {"role": "user", "content": "hi"}])
    (body,) = bodies(fakegpt_emulator)
    assert body["history_and_training_disabled"] is True and "conversation_id" not in body


def test_resume_from_saved_ids_in_another_client(fakegpt_emulator):
    with fakegpt.Client(fakegpt_emulator.url, session_password="my-history") as one:
        conversation = one.conversation()
        conversation.complete("Remember the number 42.")
        saved = conversation.conversation_id, conversation.parent_message_id
    # The isolation password is what gives access to the history again.
    with fakegpt.Client(fakegpt_emulator.url, session_password="my-history") as two:
        resumed = two.conversation(conversation_id=saved[0], parent_message_id=saved[1])
        reply = resumed.complete("What number?")
    assert reply.conversation_id == saved[0] and 'Earlier you said "Remember the number 42."' in reply


def test_unknown_conversation_is_a_clear_404(fakegpt_emulator, client):
    conversation = client.conversation(conversation_id="0" * 36, parent_message_id="p")
    with pytest.raises(fakegpt.APIStatusError, match="HTTP 404: Conversation not found") as info:
        conversation.complete("hello?")
    assert info.value.status_code == 404 and type(info.value) is fakegpt.APIStatusError
    assert fakegpt_emulator.counts["conversations"] == 1  # not retried


def test_an_unknown_parent_is_refused(fakegpt_emulator, client):
    conversation = client.conversation()
    conversation.complete("one")
    conversation.parent_message_id = "not-a-message"
    with pytest.raises(fakegpt.APIStatusError, match="HTTP 400: parent_message_id"):
        conversation.complete("two")


@pytest.mark.parametrize("fmt", ["cumulative", "v1"])
def test_continue_reply_streams_only_the_new_text(fmt):
    with Emulator(max_words=6, format=fmt) as emulator, fakegpt.Client(emulator.url) as client:
        conversation = client.conversation()
        first = conversation.complete("Tell me about continuing")
        assert first.finish_reason == "max_tokens" and conversation.finish_reason == "max_tokens"
        stream = conversation.continue_reply()
        more = list(stream)
        assert more and "".join(more) and all(more)
        whole = first + "".join(more)
        assert default_responder("Tell me about continuing").startswith(whole)
        assert stream.message_id == first.message_id  # the same message, continued
        body = bodies(emulator)[-1]
        assert body["action"] == "continue" and "messages" not in body
        assert body["parent_message_id"] == first.message_id


@pytest.mark.parametrize("fmt", ["cumulative", "v1"])
def test_auto_continue_yields_one_seamless_reply(fmt):
    expected = default_responder("Tell me a long story")
    with Emulator(max_words=8, format=fmt) as emulator, fakegpt.Client(emulator.url) as client:
        conversation = client.conversation(auto_continue=True)
        stream = conversation.stream("Tell me a long story")
        text = "".join(stream)
        assert text == expected and stream.finish_reason == "stop" and conversation.finish_reason == "stop"
        words = len(expected.split())
        assert emulator.counts["conversations"] == -(-words // 8)  # one call per eight words
        follow_up = conversation.complete("And then?")
        assert 'Earlier you said "Tell me a long story"' in follow_up and follow_up.finish_reason == "stop"


def test_auto_continue_is_bounded():
    with Emulator(max_words=1) as emulator, fakegpt.Client(emulator.url) as client:
        text = client.conversation(auto_continue=True).complete("Tell me a very long story please")
    assert emulator.counts["conversations"] == 1 + fakegpt._conversation.MAX_CONTINUES
    assert text.finish_reason == "max_tokens"


@pytest.mark.parametrize("status, body, headers, error", [
    (200, "<html><body>gate</body></html>", None, fakegpt.StreamError),
    (200, {"detail": "not a stream"}, None, fakegpt.StreamError),
    (302, "", {"Location": "/elsewhere"}, fakegpt.APIStatusError),
])
def test_a_continuation_answered_with_a_page_or_a_redirect_leaves_the_reply_where_it_stopped(
        status, body, headers, error):
    prompt = "Tell me a long story about pages"
    with Emulator(max_words=3) as emulator, fakegpt.Client(emulator.url) as client:
        conversation = client.conversation(auto_continue=True)
        stream = conversation.stream(prompt)
        deltas = iter(stream)
        first = "".join(next(deltas) for _ in range(3))
        emulator.fail_next(status, body, headers=headers)  # the continuation's answer
        with pytest.raises(error) as raised:
            list(deltas)
        assert raised.value.partial_text == first
        assert stream.finish_reason == conversation.finish_reason == "max_tokens"
        assert stream.message_id == conversation.parent_message_id is not None
        more = "".join(conversation.continue_reply())  # nothing was lost: the reply goes on
        assert default_responder(prompt).startswith(first + more) and more


def test_a_reply_stopped_early_is_where_the_next_turn_goes_on(fakegpt_emulator, client):
    conversation = client.conversation()
    stream = conversation.stream("first")
    next(stream)
    stream.close()
    assert conversation.parent_message_id == stream.message_id is not None
    conversation.complete("second")
    assert bodies(fakegpt_emulator)[-1]["parent_message_id"] == stream.message_id


def test_a_failed_turn_keeps_what_it_learned(fakegpt_emulator, client):
    conversation = client.conversation()
    conversation.complete("first")
    before = conversation.parent_message_id
    fakegpt_emulator.fail_next(500, times=3)
    with pytest.raises(fakegpt.APIStatusError):
        conversation.complete("second")
    assert conversation.parent_message_id == before  # no reply began: nothing moved


def test_reply_metadata_is_known_while_streaming(fakegpt_emulator, client):
    stream = client.conversation().stream("hello")
    assert stream.conversation_id is None and stream.message_id is None
    next(stream)
    assert stream.conversation_id and stream.message_id and stream.model == "text-davinci-002-render-sha"
    assert stream.finish_reason is None
    rest = "".join(stream)
    assert stream.finish_reason == "stop" and stream.text.endswith(rest)
    reply = stream.reply()
    assert reply == stream.text and reply.message_id == stream.message_id


@pytest.mark.parametrize(
    "kwargs, error",
    [
        ({"conversation_id": "c"}, ValueError),
        ({"parent_message_id": "p"}, ValueError),
        ({"conversation_id": 5, "parent_message_id": "p"}, TypeError),
        ({"conversation_id": " ", "parent_message_id": "p"}, ValueError),
        ({"auto_continue": "yes"}, TypeError),
        ({"model": 3}, TypeError),
    ],
)
def test_bad_conversation_settings(client, kwargs, error):
    with pytest.raises(error):
        client.conversation(**kwargs)


def test_bad_turns_fail_before_any_request(fakegpt_emulator, client):
    conversation = client.conversation()
    with pytest.raises(TypeError):
        conversation.stream(42)
    with pytest.raises(ValueError):
        conversation.complete("   ")
    with pytest.raises(ValueError, match="nothing to continue"):
        conversation.continue_reply()
    assert fakegpt_emulator.counts["requests"] == 0
