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


# -- item: abort() hangs up only the call's own connection ------------------------
@pytest.mark.parametrize("abort_first", [False, True], ids=["abort-while-the-other-streams", "abort-before"])
def test_an_abort_after_a_login_leaves_alone_the_connection_another_call_took_from_the_pool(abort_first):
    # The first call's login ends; before that call goes on (here: held where the
    # session cache would be written), a second call takes the login's
    # connection from the pool and streams on it. Aborting the first call then
    # must not hang up the second's stream. (Aborted before the second call
    # starts, the first call hangs up the idle connection: the second connects afresh.)
    with Emulator(delay=0.01) as emulator, fakegpt.Client(emulator.url, max_retries=0) as client:
        logged_in, release = threading.Event(), threading.Event()

        def hold(token):
            logged_in.set()
            assert release.wait(30)

        client._token._on_new_token = hold
        first = client.stream(MESSAGES)
        leader, first_outcome = run_in_thread(lambda: "".join(first))
        assert logged_in.wait(30)
        if abort_first:
            first.abort()
        second = client.stream(MESSAGES)
        deltas = [next(second)]  # the POST went out on the connection the login used
        assert emulator.counts["conversations"] == 1
        first.abort()
        release.set()
        deltas.extend(second)
        leader.join(30)
    assert not leader.is_alive() and first_outcome == [""]  # the aborted call ended quietly, sending nothing
    assert "".join(deltas) == EXPECTED and second.finish_reason == "stop"
    assert emulator.counts["conversations"] == 1 and emulator.counts["logins"] == 1


def test_an_abort_during_a_login_ends_only_that_call():
    # The second call waits for the first call's login; the first is aborted
    # while its login request is in flight: the second logs in itself and streams.
    with Emulator() as emulator, fakegpt.Client(emulator.url, max_retries=0) as client:
        in_login, release = threading.Event(), threading.Event()
        real_login = client._token._login

        def slow_login():
            in_login.set()
            assert release.wait(30)
            return real_login()

        client._token._login = slow_login
        first = client.stream(MESSAGES)
        leader, first_outcome = run_in_thread(lambda: "".join(first))
        assert in_login.wait(30)
        second = client.stream(MESSAGES)
        follower, second_outcome = run_in_thread(lambda: "".join(second))
        first.abort()
        release.set()
        leader.join(30)
        follower.join(30)
    assert first_outcome == [""] and second_outcome == [EXPECTED]


# -- item: the provider's client is pinned for the call's life ------------------
class _PushingOut(dict):
    """A message whose reading (between FakeGpt._client() and the start of the
    call) pushes the call's client out of the provider's registry."""

    pushed = False

    def __getitem__(self, key):
        if not _PushingOut.pushed:
            _PushingOut.pushed = True
            for i in range(provider_module._MAX_CLIENTS):
                FakeGpt.create_completion("gpt-3.5-turbo", HI, proxy=f"http://127.0.0.1:{i + 1}").close()
        return super().__getitem__(key)


def test_a_client_pushed_out_of_the_registry_before_its_call_starts_is_not_closed(emulator):
    _PushingOut.pushed = False
    stream = FakeGpt.create_completion("gpt-3.5-turbo", [_PushingOut(role="user", content="Hi")])
    assert _PushingOut.pushed and stream._client not in provider_module._clients.values()
    assert not stream._client._closed  # pinned by the call
    assert "".join(stream) == default_responder("Hi")
    assert stream._client._closed  # closed when its last call ended
    assert emulator.counts["conversations"] == 1


def test_bad_input_releases_the_client_it_was_lent(emulator):
    with pytest.raises(ValueError):
        FakeGpt.create_completion("gpt-3.5-turbo", [])
    assert not provider_module._in_use


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


# -- item: Stream.text from another thread is a consistent prefix ---------------------
@pytest.mark.parametrize("fmt", ["cumulative", "v1"])
def test_text_read_from_another_thread_is_always_a_prefix_of_the_final_text(fmt):
    words = [f"w{i} " for i in range(6000)]  # many deltas: the decoder joins its parts in place, often
    with Emulator(format=fmt, responder=lambda prompt: "".join(words)) as emulator:
        with fakegpt.Client(emulator.url) as client:
            stream = client.stream(MESSAGES)
            done, samples = threading.Event(), []

            def sample():
                while not done.is_set():
                    samples.append(stream.text)

            reader = threading.Thread(target=sample, daemon=True)
            reader.start()
            try:
                final = "".join(stream)
            finally:
                done.set()
                reader.join(30)
    assert final == "".join(words) and stream.text == final
    assert len(samples) > 1
    previous = ""
    for text in samples:
        assert final.startswith(text), f"not a prefix: ...{text[-40:]!r}"
        assert text.startswith(previous), "a later sample lost text an earlier one had"
        previous = text
