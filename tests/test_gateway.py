"""The gateway (fakegpt.gateway.Upstream behind the emulator) against a hand-written
paced, faulty OpenAI-compatible server on loopback: real sockets on both sides."""
import asyncio
import dataclasses
import json
import logging
import socket
import threading

import pytest
import requests

import fakegpt
from fakegpt.emulator import GATEWAY_LIMITS, Emulator, HangUp
from fakegpt.gateway import CONTINUE_PROMPT, Upstream

from .upstream_kit import MODEL, PacedUpstream, expected_reply

HI = [{"role": "user", "content": "hi there"}]
KEY = "sk-upstream-secret-4f7d2c9a1b"


@pytest.fixture
def upstream():
    with PacedUpstream() as server:
        yield server


@pytest.fixture
def gateway(upstream):
    client_side = Upstream(upstream.url, timeout=(5.0, 60.0))  # (a hang-up must not wait for a read timeout)
    with Emulator(upstream=client_side) as emulator:
        yield emulator
    client_side.close()


def client(gateway, **kwargs):
    kwargs.setdefault("max_retries", 0)
    return fakegpt.Client(gateway.url, **kwargs)


# -- replies ------------------------------------------------------------------------------
@pytest.mark.parametrize("v1", [False, True])
def test_exact_text_through_in_both_formats(upstream, gateway, v1):
    gateway.format = "v1" if v1 else "cumulative"
    with client(gateway) as c:
        reply = c.complete(HI)
    assert reply == expected_reply("hi there")
    assert reply.finish_reason == "stop"
    assert upstream.bodies[-1]["model"] == MODEL and upstream.bodies[-1]["stream"] is True


@pytest.mark.parametrize("v1", [False, True])
def test_the_first_delta_arrives_before_the_upstream_sends_the_second(upstream, gateway, v1):
    gateway.format = "v1" if v1 else "cumulative"
    upstream.gate = threading.Event()  # the upstream holds its second delta until the test saw the first
    with client(gateway) as c:
        stream = c.stream(HI)
        first = next(iter(stream))
        assert first == "Écho "
        assert upstream.finished == 0
        upstream.gate.set()
        rest = "".join(stream)
    assert first + rest == expected_reply("hi there")


def test_length_becomes_max_tokens_and_continue_sends_the_partial_reply(upstream, gateway):
    upstream.finish_reason = "length"
    with client(gateway) as c:
        conversation = c.conversation()
        first = conversation.complete("tell me")
        assert first.finish_reason == "max_tokens"
        upstream.finish_reason = "stop"
        more = "".join(conversation.continue_reply())
    assert first == expected_reply("tell me")
    assert more == expected_reply(CONTINUE_PROMPT)
    assert upstream.bodies[-1]["messages"] == [
        {"role": "user", "content": "tell me"},
        {"role": "assistant", "content": first},
        {"role": "user", "content": CONTINUE_PROMPT},
    ]


@pytest.mark.parametrize("v1", [False, True])
def test_a_reply_past_the_cap_ends_with_max_tokens_hangs_up_and_continue_goes_on(v1):
    def reply(messages):
        if messages[-1]["content"] == CONTINUE_PROMPT:
            return ["z" * 10]
        return ["x" * 1500, "y" * 10]  # the first delta alone goes past the cap

    with PacedUpstream(reply=reply) as upstream:
        upstream.gate = threading.Event()  # the model server holds its second delta until it sees the hang-up
        side = Upstream(upstream.url, timeout=(5.0, 60.0))
        limits = dataclasses.replace(GATEWAY_LIMITS, reply_chars=1000)
        with Emulator(upstream=side, limits=limits, format="v1" if v1 else "cumulative") as gateway, \
                client(gateway) as c:
            conversation = c.conversation()
            first = conversation.complete("tell me")
            assert first == "x" * 1000 and first.finish_reason == "max_tokens"
            assert upstream.wait(lambda u: u.hangups == 1), "the model server's request was not hung up"
            upstream.gate = None
            more = "".join(conversation.continue_reply())
        side.close()
    assert more == "z" * 10
    assert upstream.bodies[-1]["messages"] == [
        {"role": "user", "content": "tell me"},
        {"role": "assistant", "content": "x" * 1000},
        {"role": "user", "content": CONTINUE_PROMPT},
    ]


def test_the_gateway_caps_replies_at_64_ki_characters():
    assert GATEWAY_LIMITS.reply_chars == 65536


@pytest.mark.parametrize("finish, expected", [("stop", "stop"), ("length", "max_tokens")])
def test_a_server_answering_whole_json_is_one_delta(upstream, gateway, finish, expected):
    upstream.fault("whole", status=finish)
    with client(gateway) as c:
        reply = c.complete(HI)
    assert reply == expected_reply("hi there") and reply.finish_reason == expected


def test_history_is_sent_upstream_in_order_and_an_earlier_parent_branches(upstream, gateway):
    with client(gateway) as c:
        conversation = c.conversation()
        one = conversation.complete("one")
        branch_point = conversation.parent_message_id
        two = conversation.complete("two")
        assert upstream.bodies[-1]["messages"] == [
            {"role": "user", "content": "one"}, {"role": "assistant", "content": one},
            {"role": "user", "content": "two"}]
        other = c.conversation(conversation_id=conversation.conversation_id, parent_message_id=branch_point)
        other.complete("three")
    assert two == expected_reply("two")
    assert upstream.bodies[-1]["messages"] == [
        {"role": "user", "content": "one"}, {"role": "assistant", "content": one},
        {"role": "user", "content": "three"}]


def test_a_flattened_message_list_goes_up_as_messages(upstream, gateway):
    messages = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "first"},
                {"role": "assistant", "content": "ok"}, {"role": "user", "content": "line 1\nline 2"}]
    with client(gateway) as c:
        assert c.complete(messages) == expected_reply("line 1\nline 2")
    assert upstream.bodies[-1]["messages"] == messages


def test_replies_reuse_the_connection_to_the_model_server(upstream, gateway):
    with client(gateway) as c:
        for _ in range(3):
            assert c.complete(HI) == expected_reply("hi there")
    assert len(upstream.bodies) == 3 and upstream.connections == 1 and upstream.hangups == 0


def test_the_model_is_the_one_given_or_the_first_listed_asked_once(upstream):
    named = Upstream(upstream.url, model="my-model")
    with Emulator(upstream=named) as emulator, client(emulator) as c:
        c.complete(HI)
    assert upstream.bodies[-1]["model"] == "my-model"
    listed = Upstream(upstream.url)
    with Emulator(upstream=listed) as emulator, client(emulator) as c:
        c.complete(HI)
        c.complete(HI)
    assert upstream.bodies[-1]["model"] == MODEL
    assert upstream.paths == ["POST /v1/chat/completions", "GET /v1/models"] + ["POST /v1/chat/completions"] * 2


def test_a_server_that_lists_no_models_is_a_502_asking_for_a_model(upstream):
    upstream.fault("list", status=404)
    with Emulator(upstream=Upstream(upstream.url)) as emulator:
        answer = _post(emulator)
        assert answer.status_code == 502
        assert "HTTP 404 listing its models" in answer.json()["detail"] and "--upstream-model" in answer.json()["detail"]
        assert _post(emulator).status_code == 200  # asked again, and then kept
    assert upstream.paths == ["GET /v1/models", "GET /v1/models", "POST /v1/chat/completions"]


def test_64_concurrent_streams_each_exact(upstream, gateway):
    upstream.pace = 0.002
    results = {}

    def one(index):
        with client(gateway) as c:
            results[index] = c.complete([{"role": "user", "content": f"stream {index}"}])

    threads = [threading.Thread(target=one, args=(i,)) for i in range(64)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert {i: str(r) for i, r in results.items()} == {i: expected_reply(f"stream {i}") for i in range(64)}


def test_loads_counts_the_streams_active_per_token(upstream, gateway):
    upstream.gate = threading.Event()
    with client(gateway) as c:
        stream = c.stream(HI)
        next(iter(stream))
        loads = requests.get(gateway.url + "/api/loads", timeout=5).json()["loads"]
        assert sorted(entry["count"] for entry in loads) == [0, 0, 1]
        upstream.gate.set()
        "".join(stream)
    loads = requests.get(gateway.url + "/api/loads", timeout=5).json()["loads"]
    assert [entry["count"] for entry in loads] == [0, 0, 0]


# -- a hang-up reaches the model server ---------------------------------------------------
@pytest.mark.parametrize("how", ["break", "abort"])
def test_a_hang_up_while_the_upstream_is_silent_closes_the_upstream_request(upstream, gateway, how):
    upstream.fault("stall", after=2)  # two deltas, then silence for an hour
    with client(gateway) as c:
        stream = c.stream(HI)
        deltas = iter(stream)
        assert next(deltas) + next(deltas) == "Écho ✓ "
        if how == "abort":
            stream.abort()
        else:
            stream.close()
        # Nothing more is written to the client: only watching its socket can notice.
        assert upstream.wait(lambda u: u.hangups == 1), "the model server never saw the request end"
    with client(gateway) as c:  # and the gateway goes on serving
        assert c.complete(HI) == expected_reply("hi there")


def test_a_hang_up_before_the_upstream_answered_closes_the_upstream_request(upstream, gateway):
    upstream.fault("silent")
    body = json.dumps(fakegpt._protocol.conversation_body("hi", "gpt-3.5-turbo")).encode()
    sock = socket.create_connection(("127.0.0.1", gateway.port))
    sock.sendall(b"POST /api/conversation HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                 b"Authorization: Bearer " + _token(gateway).encode()
                 + b"\r\nContent-Length: %d\r\n\r\n" % len(body) + body)
    assert upstream.wait(lambda u: len(u.bodies) == 1)
    sock.close()
    assert upstream.wait(lambda u: u.hangups == 1), "the model server never saw the request end"
    assert _post(gateway).status_code == 200


def test_a_late_hang_up_of_a_finished_reply_leaves_the_next_reply_on_its_connection_alone(upstream):
    side = Upstream(upstream.url, model="m")
    first_hangup, second_hangup = HangUp(), HangUp()
    assert "".join(side.stream(HI, first_hangup)) == expected_reply("hi there")
    upstream.gate = threading.Event()
    second = side.stream(HI, second_hangup)  # on the connection the first reply used (kept alive)
    assert next(second) == "Écho "
    first_hangup.set()  # e.g. that client closing its connection after its reply
    upstream.gate.set()
    assert "".join(second) == expected_reply("hi there")[len("Écho "):]
    assert len([h for h in upstream.headers]) == 2 and upstream.hangups == 0
    side.close()


def test_a_hang_up_after_a_reply_was_read_whole_leaves_the_next_reply_on_its_connection_alone(upstream):
    # A reply answered as one JSON body is read whole before its text is yielded: its connection is back
    # in the pool (and carrying the next reply) while the first reply's reader is still open.
    side = Upstream(upstream.url, model="m")
    upstream.fault("whole")
    first = side.stream(HI)
    assert next(first) == expected_reply("hi there")
    upstream.gate = threading.Event()
    second = side.stream(HI)  # on the connection the first reply used (kept alive)
    assert next(second) == "Écho "
    first.cancel()  # that client hangs up now: the hang-up watcher calls this
    upstream.gate.set()
    assert "".join(second) == expected_reply("hi there")[len("Écho "):]
    assert upstream.connections == 1 and upstream.hangups == 0 and upstream.finished == 1
    first.close()
    side.close()


# -- errors ------------------------------------------------------------------------------
def test_upstream_429_is_a_429_with_its_retry_after(upstream, gateway):
    upstream.fault("status", status=429, headers={"Retry-After": "7"})
    answer = _post(gateway)
    assert answer.status_code == 429 and answer.headers["Retry-After"] == "7"
    upstream.fault("status", status=429, headers={"Retry-After": "7"})
    with client(gateway) as c, pytest.raises(fakegpt.RateLimitError) as raised:
        c.complete(HI)
    assert raised.value.retry_after == 7.0


@pytest.mark.parametrize("status", [401, 403])
def test_upstream_credentials_refused_is_a_502_naming_them_never_a_401(upstream, gateway, status):
    upstream.fault("status", status=status)
    answer = _post(gateway)
    assert answer.status_code == 502
    assert "credentials" in answer.json()["detail"] and "FAKEGPT_UPSTREAM_API_KEY" in answer.json()["detail"]
    upstream.fault("status", status=status)
    with client(gateway) as c:
        with pytest.raises(fakegpt.APIStatusError) as raised:
            c.complete(HI)
        assert raised.value.status_code == 502
        assert c.complete(HI) == expected_reply("hi there")  # the same login goes on working


@pytest.mark.parametrize("status, expected", [(500, 502), (503, 502), (504, 504), (404, 502)])
def test_upstream_failures_are_502_or_504_with_one_line(upstream, gateway, status, expected):
    upstream.fault("status", status=status, body={"error": {"message": "boom\nsecond line"}})
    answer = _post(gateway)
    assert answer.status_code == expected
    detail = answer.json()["detail"]
    assert "\n" not in detail and f"HTTP {status}" in detail and "boom second line" in detail


def test_a_connection_closed_without_an_answer_is_tried_once_more(upstream, gateway):
    upstream.fault("close")
    with client(gateway) as c:
        assert c.complete(HI) == expected_reply("hi there")
    assert len(upstream.bodies) == 2
    upstream.fault("close")
    upstream.fault("close")
    answer = _post(gateway)
    assert answer.status_code == 502 and "Remote end closed" in answer.json()["detail"]
    assert len(upstream.bodies) == 4


def test_an_html_page_is_a_502_naming_the_api_base(upstream, gateway):
    upstream.fault("html")
    answer = _post(gateway)
    assert answer.status_code == 502 and "HTML page" in answer.json()["detail"] and "/v1" in answer.json()["detail"]
    assert _post(gateway).status_code == 200


def test_an_unreachable_upstream_is_a_502(upstream):
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()
    with Emulator(upstream=Upstream(f"http://127.0.0.1:{port}/v1", model="m")) as emulator:
        answer = _post(emulator)
    assert answer.status_code == 502 and "failed answering" in answer.json()["detail"]


def test_an_upstream_that_never_answers_is_a_504(upstream):
    with Emulator(upstream=Upstream(upstream.url, model="m", timeout=(5.0, 0.5))) as emulator:
        upstream.fault("silent")
        answer = _post(emulator)
        assert answer.status_code == 504 and "timed out" in answer.json()["detail"]
        assert _post(emulator).status_code == 200  # still serving


@pytest.mark.parametrize("kind, sent", [("cut", "Écho ✓ hi "), ("error", "Écho ✓ hi "),
                                        ("no-done", expected_reply("hi there"))])
@pytest.mark.parametrize("v1", [False, True])
def test_a_stream_cut_mid_reply_is_a_stream_error_keeping_the_text(upstream, gateway, kind, sent, v1):
    gateway.format = "v1" if v1 else "cumulative"
    upstream.fault(kind, after=3)
    with client(gateway) as c:
        with pytest.raises(fakegpt.StreamError) as raised:
            "".join(c.stream(HI))
        assert raised.value.partial_text == sent
        assert c.complete(HI) == expected_reply("hi there")


def test_a_silent_upstream_mid_reply_is_a_stream_error_keeping_the_text(upstream):
    with Emulator(upstream=Upstream(upstream.url, model="m", timeout=(5.0, 0.5))) as emulator:
        upstream.fault("stall", after=2)
        with client(emulator) as c, pytest.raises(fakegpt.StreamError) as raised:
            c.complete(HI)
    assert raised.value.partial_text == "Écho ✓ " and "went silent" in str(raised.value)


# -- the API key -------------------------------------------------------------------------
def test_the_key_is_sent_as_bearer_and_never_appears_anywhere(upstream, caplog, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-the-fallback-key-not-used")
    monkeypatch.setenv("FAKEGPT_UPSTREAM_API_KEY", KEY)
    caplog.set_level(logging.DEBUG)
    upstream.api_key = KEY
    side = Upstream(upstream.url)
    seen = [repr(side)]
    with Emulator(upstream=side) as emulator:
        with client(emulator) as c:
            seen.append(str(c.complete(HI)))
            upstream.fault("status", status=500, body={"error": {"message": f"bad key {KEY}"}})
            with pytest.raises(fakegpt.APIStatusError) as raised:
                c.complete(HI)
            seen.append(str(raised.value))
        seen.append(_post(emulator).text)
        seen += [repr(r) for r in emulator.requests]
    assert upstream.headers[0]["Authorization"] == f"Bearer {KEY}"
    seen.append(caplog.text)
    assert all(KEY not in text and KEY[:12] not in text for text in seen)
    assert "***" in seen[2]


def test_the_fallback_key_variable(upstream, monkeypatch):
    monkeypatch.delenv("FAKEGPT_UPSTREAM_API_KEY", raising=False)
    monkeypatch.setenv("OPENAI_API_KEY", KEY)
    upstream.api_key = KEY
    with Emulator(upstream=Upstream(upstream.url)) as emulator, client(emulator) as c:
        assert c.complete(HI) == expected_reply("hi there")


@pytest.mark.parametrize("bad", ["127.0.0.1:8080/v1", "ftp://x/v1", None])
def test_a_bad_upstream_url_is_a_value_error(bad):
    with pytest.raises(ValueError):
        Upstream(bad)


# -- gpt4free 0.2.0.9's own FakeGpt ----------------------------------------------------------
def test_gpt4free_0_2_0_9s_own_fakegpt_through_the_gateway(upstream, gateway, monkeypatch, gpt4free_fakegpt):
    Original = gpt4free_fakegpt
    monkeypatch.setattr(Original, "url", gateway.url)
    monkeypatch.setattr(Original, "_access_token", None)  # it keeps its login in the class: not another server's
    monkeypatch.setattr(Original, "_cookie_jar", None)

    async def collect():
        return "".join([d async for d in Original.create_async_generator("gpt-3.5-turbo", HI)])

    assert asyncio.run(collect()) == expected_reply("hi there")


def _token(emulator):
    """An access token of *emulator*, by its login, as raw HTTP (no conversation call)."""
    session = requests.Session()
    token_id = session.get(emulator.url + "/api/loads", timeout=10).json()["loads"][0]["token_id"]
    session.post(emulator.url + "/auth/login", data={"token_key": token_id, "session_password": "pw"}, timeout=10,
                 allow_redirects=False)
    return session.get(emulator.url + "/api/auth/session", timeout=10).json()["accessToken"]


def _post(emulator, prompt="hi"):
    """One conversation call as raw HTTP, its whole answer read."""
    body = fakegpt._protocol.conversation_body(prompt, "gpt-3.5-turbo")
    return requests.post(emulator.url + "/api/conversation", json=body, timeout=10,
                         headers={"Authorization": f"Bearer {_token(emulator)}"})
