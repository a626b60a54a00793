"""A call touches only its own connection, client and text (over real loopback sockets)."""
import threading

import pytest

import fakegpt
from fakegpt import FakeGpt
from fakegpt import provider as provider_module
from fakegpt.emulator import Emulator, default_responder

MESSAGES = [{"role": "user", "content": "Tell me about streams"}]
EXPECTED = default_responder("Tell me about streams")
HI = [{"role": "user", "content": "Hi"}]


@pytest.fixture
def emulator(fakegpt_emulator):
    FakeGpt.url = fakegpt_emulator.url
    return fakegpt_emulator


def run_in_thread(target):
    """Start *target* in a daemon thread; the thread and a list that gets its outcome."""
    outcome = []

    def run():
        try:
            outcome.append(target())
        except BaseException as error:  # reported to the test
            outcome.append(error)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread, outcome


# -- item: a Conversation of a closed client sends nothing ---------------------------
def test_a_conversation_of_a_closed_client_refuses_every_call_before_any_request(emulator):
    client = fakegpt.Client(emulator.url)
    conversation = client.conversation()
    assert conversation.complete("My name is Ada.")
    posts = emulator.counts["requests"]
    client.close()
    for call in (lambda: conversation.stream("again"), lambda: conversation.complete("again"),
                 lambda: conversation.continue_reply()):
        with pytest.raises(ValueError, match="^this Client is closed$"):
            call()
    with pytest.raises(ValueError, match="^this Client is closed$"):
        client.conversation()
    assert emulator.counts["requests"] == posts
