"""Client behaviour against a mocked server (`responses`)."""
import collections.abc
import json
import logging

import pytest
import requests

import fakegpt
from fakegpt import Client

from .conftest import ACCESS, BASE, MESSAGES, assistant, reply_body, sse


# -- construction and bad input ---------------------------------------------
@pytest.mark.parametrize(
    "kwargs, error, text",
    [
        ({"base_url": 5}, TypeError, "base_url must be a str"),
        ({"base_url": "chat.example.com"}, ValueError, "http"),
        ({"base_url": "ftp://x"}, ValueError, "http"),
        ({"base_url": "https://x/?q=1"}, ValueError, "query"),
        ({"proxy": 8080}, TypeError, "proxy must be a str"),
        ({"proxy": "localhost:8080"}, ValueError, "proxy must be a URL"),
        ({"timeout": "10"}, TypeError, "timeout must be a number"),
        ({"timeout": 0}, ValueError, "positive"),
        ({"timeout": -1}, ValueError, "positive"),
        ({"timeout": float("inf")}, ValueError, "finite"),
        ({"timeout": True}, TypeError, "timeout"),
        ({"timeout": (1, 2, 3)}, ValueError, "pair"),
        ({"timeout": (1, "x")}, TypeError, "read timeout"),
        ({"max_retries": -1}, ValueError, "0 or more"),
        ({"max_retries": 1.5}, TypeError, "max_retries must be an int"),
        ({"max_retries": True}, TypeError, "max_retries"),
        ({"session_password": 123}, TypeError, "session_password must be a str"),
        ({"session_password": ""}, ValueError, "must not be empty"),
        ({"access_token": "  "}, ValueError, "access_token must not be empty"),
    ],
)
def test_bad_settings_are_rejected_at_construction(kwargs, error, text):
    base = kwargs.pop("base_url", BASE)
    with pytest.raises(error, match=text):
        Client(base, **kwargs)


def test_settings_are_normalised():
    client = Client("https://chat.test/prefix/", timeout=[3, None], proxy="")
    assert client.base_url == "https://chat.test/prefix" and client.timeout == (3.0, None) and client.proxy is None
    assert Client(BASE, timeout=7).timeout == 7.0 and Client(BASE).timeout == (10.0, 120.0)
    assert Client().base_url == "https://chat-shared2.zhile.io" and Client().max_retries == 2


@pytest.mark.parametrize(
    "messages, model, error",
    [
        ("hi", "gpt-3.5-turbo", TypeError),
        ([], "gpt-3.5-turbo", ValueError),
        ([{"role": "user"}], "gpt-3.5-turbo", ValueError),
        ([{"role": "user", "content": b"hi"}], "gpt-3.5-turbo", TypeError),
        ([{"role": "user", "content": "   "}], "gpt-3.5-turbo", ValueError),
        (MESSAGES, 35, TypeError),
    ],
)
def test_bad_input_fails_before_any_request(server, client, messages, model, error):
    with pytest.raises(error):
        client.stream(messages, model=model)
    with pytest.raises(error):
        client.complete(messages, model=model)
    assert len(server.rsps.calls) == 0


def test_closed_client_refuses_calls(server):
    client = Client(BASE)
    client.close()
    with pytest.raises(ValueError, match="closed"):
        client.stream(MESSAGES)
    assert "closed" in repr(client) and len(server.rsps.calls) == 0


# -- the conversation call --------------------------------------------------
def test_request_body_headers_and_settings(server):
    server.conversation()
    with Client(BASE, access_token=ACCESS, timeout=(3, 4), proxy="http://proxy.test:3128") as client:
        assert client.complete([{"role": "system", "content": "Be brief."}, {"role": "user", "content": "hi"}],
                               model="gpt-4o-mini") == "Hello world"
    (call,) = server.rsps.calls
    request = call.request
    body = json.loads(request.body)
    assert body["messages"][0]["content"]["parts"] == ["System: Be brief.\nUser: hi\nAssistant:"]
    assert body["model"] == "gpt-4o-mini" and body["action"] == "next"
    assert request.headers["Content-Type"] == "application/json"
    assert request.headers["Accept"] == "text/event-stream"
    assert request.headers["X-Authorization"] == f"Bearer {ACCESS}"
    assert request.req_kwargs["timeout"] == (3.0, 4.0)
    assert request.req_kwargs["proxies"] == {"http": "http://proxy.test:3128", "https": "http://proxy.test:3128"}
    assert request.req_kwargs["stream"] is True


def test_proxy_reaches_the_login_requests_too(server):
    server.logged_in()
    server.conversation()
    with Client(BASE, proxy="http://proxy.test:3128") as client:
        client.complete(MESSAGES)
    assert len(server.rsps.calls) == 4
    assert all(c.request.req_kwargs["proxies"]["https"] == "http://proxy.test:3128" for c in server.rsps.calls)


def test_stream_is_lazy_and_yields_non_empty_deltas(server, client):
    server.logged_in()
    server.conversation(body=reply_body("Hel", "", "lo", " there"))
    stream = client.stream(MESSAGES)
    assert len(server.rsps.calls) == 0 and stream.text == "" and stream.conversation_id is None
    assert iter(stream) is stream and isinstance(stream, collections.abc.Generator)
    assert list(stream) == ["Hel", "lo", " there"]
    assert (stream.text, stream.conversation_id, stream.message_id, stream.finish_reason) == (
        "Hello there", "c1", "m1", "stop")
    assert stream.model == "text-davinci-002-render-sha"


def test_closing_an_unstarted_stream_sends_nothing(server, client):
    stream = client.stream(MESSAGES)
    stream.close()
    assert list(stream) == [] and len(server.rsps.calls) == 0


def test_complete_returns_a_reply_with_metadata(server, client):
    server.logged_in()
    server.conversation()
    reply = client.complete(MESSAGES)
    assert isinstance(reply, str) and isinstance(reply, fakegpt.Reply)
    assert reply == "Hello world" and reply.text == "Hello world" and type(reply.text) is str
    assert (reply.conversation_id, reply.message_id, reply.finish_reason) == ("c1", "m1", "stop")
    assert "Reply('Hello world'" in repr(reply)


def test_no_assistant_text_is_no_valid_response(server, client):
    server.logged_in()
    user_echo = {"message": {"id": "u", "author": {"role": "user"}, "content": {"parts": ["Hi"]}},
                 "conversation_id": "c1", "error": None}
    server.conversation(body=sse(user_echo))
    with pytest.raises(fakegpt.NoValidResponseError, match="No valid response|no valid response") as info:
        client.complete(MESSAGES)
    assert isinstance(info.value, RuntimeError) and client.waits == []


def test_truncated_body_raises_after_the_text_that_arrived(server, client):
    server.logged_in()
    server.conversation(body=sse(assistant("Hello"), assistant("Hello wor"), done=False))
    stream = client.stream(MESSAGES)
    received = []
    with pytest.raises(fakegpt.IncompleteStreamError, match="before \\[DONE\\]") as info:
        for delta in stream:
            received.append(delta)
    assert received == ["Hello", " wor"] and info.value.partial_text == "Hello wor"
    assert len(server.calls("/api/conversation")) == 1  # nothing retried after text


def test_finished_reply_without_done_is_complete(server, client):
    server.logged_in()
    server.conversation(body=reply_body("All", " here", done=False))
    assert client.complete(MESSAGES) == "All here"


def test_in_stream_error_keeps_the_partial_text(server, client):
    server.logged_in()
    server.conversation(body=sse(assistant("Part"), {"message": None, "conversation_id": "c1",
                                                     "error": "Something went wrong"}))
    with pytest.raises(fakegpt.StreamError, match="Something went wrong") as info:
        client.complete(MESSAGES)
    assert type(info.value) is fakegpt.StreamError and info.value.partial_text == "Part"


@pytest.mark.parametrize(
    "content_type, body, text",
    [
        ("text/html", "<html><title>Just a moment...</title></html>", "got text/html: HTML page: Just a moment"),
        ("application/json", '{"detail": "model not found"}', "got application/json: model not found"),
    ],
)
def test_a_2xx_that_is_not_an_event_stream(server, client, content_type, body, text):
    server.logged_in()
    server.conversation(body=body, content_type=content_type)
    with pytest.raises(fakegpt.StreamError, match=text):
        client.complete(MESSAGES)


def test_redirect_on_the_conversation_is_not_followed(server, client):
    server.logged_in()
    server.conversation(status=302, body="", headers={"Location": "https://evil.test/steal"})
    with pytest.raises(fakegpt.APIStatusError, match="redirected \\(HTTP 302 to evil.test\\); not followed") as info:
        client.complete(MESSAGES)
    assert info.value.status_code == 302
    assert all("evil.test" not in c.request.url for c in server.rsps.calls)


# -- retries ------------------------------------------------------------------
def test_401_logs_in_again_and_retries_once(server, client):
    server.logged_in()
    server.conversation(status=401, body='{"detail": {"code": "token_expired", "message": "expired"}}',
                        content_type="application/json")
    server.conversation()
    assert client.complete(MESSAGES) == "Hello world"
    assert server.paths() == ["/api/loads", "/auth/login", "/api/auth/session", "/api/conversation"] * 2
    assert client.waits == []


def test_401_surviving_a_fresh_login(server, client):
    server.logged_in()
    server.conversation(status=401, body='{"detail": "Unauthorized"}', content_type="application/json")
    with pytest.raises(fakegpt.AuthenticationError, match="rejected the access token even after a fresh login") as info:
        client.complete(MESSAGES)
    assert type(info.value) is fakegpt.AuthenticationError and info.value.status_code == 401
    assert server.paths().count("/api/conversation") == 2 and server.paths().count("/auth/login") == 2


def test_401_with_a_given_access_token_does_not_log_in(server):
    server.conversation(status=401, body='{"detail": "Unauthorized"}', content_type="application/json")
    with Client(BASE, access_token=ACCESS) as client:
        with pytest.raises(fakegpt.AuthenticationError, match="rejected the access token \\("):
            client.complete(MESSAGES)
    assert server.paths() == ["/api/conversation"]


def test_429_waits_for_retry_after(server, client):
    server.logged_in()
    server.conversation(status=429, body='{"detail": "Too many requests"}', content_type="application/json",
                        headers={"Retry-After": "2"})
    server.conversation()
    assert client.complete(MESSAGES) == "Hello world"
    assert client.waits == [2.0]


def test_429_with_a_long_retry_after_is_raised_at_once(server, client):
    server.logged_in()
    server.conversation(status=429, body='{"detail": "Too many requests"}', content_type="application/json",
                        headers={"Retry-After": "3600"})
    with pytest.raises(fakegpt.RateLimitError) as info:
        client.complete(MESSAGES)
    assert info.value.retry_after == 3600.0 and client.waits == []
    assert server.paths().count("/api/conversation") == 1


def test_rate_limit_after_all_retries(server, client):
    server.logged_in()
    server.conversation(status=429, body='{"detail": "Too many requests in 1 hour"}', content_type="application/json")
    with pytest.raises(fakegpt.RateLimitError, match="HTTP 429: Too many requests in 1 hour") as info:
        client.complete(MESSAGES)
    assert type(info.value) is fakegpt.RateLimitError and info.value.retry_after is None
    assert server.paths().count("/api/conversation") == 3 and len(client.waits) == 2
    assert client.waits[1] > client.waits[0] > 0


@pytest.mark.parametrize("status", [500, 502, 503])
def test_5xx_is_retried(server, client, status):
    server.logged_in()
    server.conversation(status=status, body='{"detail": "upstream"}', content_type="application/json")
    server.conversation()
    assert client.complete(MESSAGES) == "Hello world" and len(client.waits) == 1


def test_5xx_after_all_retries(server, client):
    server.logged_in()
    server.conversation(status=503, body="busy", content_type="text/plain")
    with pytest.raises(fakegpt.APIStatusError, match="HTTP 503: busy") as info:
        client.complete(MESSAGES)
    assert type(info.value) is fakegpt.APIStatusError and info.value.status_code == 503
    assert server.paths().count("/api/conversation") == 3


@pytest.mark.parametrize("status", [400, 403, 404, 422])
def test_other_4xx_are_not_retried(server, client, status):
    server.logged_in()
    server.conversation(status=status, body='{"detail": "nope"}', content_type="application/json")
    with pytest.raises(fakegpt.APIStatusError, match=f"HTTP {status}: nope") as info:
        client.complete(MESSAGES)
    assert type(info.value) is fakegpt.APIStatusError and info.value.detail == "nope"
    assert server.paths().count("/api/conversation") == 1 and client.waits == []


def test_max_retries_zero(server):
    server.logged_in()
    server.conversation(status=500, body="x")
    with Client(BASE, max_retries=0) as client:
        with pytest.raises(fakegpt.APIStatusError):
            client.complete(MESSAGES)
    assert server.paths().count("/api/conversation") == 1


def test_connection_errors_are_retried_and_mapped(server, client):
    server.logged_in()
    server.conversation(body=requests.exceptions.ConnectionError("connection reset by peer"))
    with pytest.raises(fakegpt.APIConnectionError, match="POST /api/conversation to chat.test failed: connection reset") as info:
        client.complete(MESSAGES)
    assert type(info.value) is fakegpt.APIConnectionError and len(client.waits) == 2
    assert isinstance(info.value.cause, requests.exceptions.ConnectionError)  # kept, not chained
    assert info.value.__cause__ is None and info.value.cause.request is None  # its headers would hold the token


def test_timeouts_are_retried_and_mapped(server, client):
    server.logged_in()
    server.conversation(body=requests.exceptions.ReadTimeout("read timed out"))
    server.conversation()
    assert client.complete(MESSAGES) == "Hello world" and len(client.waits) == 1
    server.rsps.reset()
    server.conversation(body=requests.exceptions.ConnectTimeout("connect timed out"))
    with pytest.raises(fakegpt.APITimeoutError, match="timed out connecting"):
        client.complete(MESSAGES)


def test_tls_failures_are_not_retried(server, client):
    server.logged_in()
    server.conversation(body=requests.exceptions.SSLError("certificate verify failed"))
    with pytest.raises(fakegpt.APIConnectionError, match="certificate verify failed"):
        client.complete(MESSAGES)
    assert client.waits == [] and server.paths().count("/api/conversation") == 1


# -- secrets ------------------------------------------------------------------
def test_token_never_in_errors_reprs_or_logs(server, client, debug_log):
    server.logged_in()
    server.conversation(status=400, body=json.dumps({"detail": f"bad token {ACCESS}"}),
                        content_type="application/json")
    with pytest.raises(fakegpt.APIStatusError) as info:
        client.complete(MESSAGES)
    password = client._password
    assert ACCESS not in str(info.value) and "***" in str(info.value) and ACCESS not in info.value.detail
    assert ACCESS not in repr(client) and "logged in" in repr(client)
    records = [r.getMessage() for r in debug_log.records]
    assert any("/api/auth/session" in m for m in records)  # DEBUG shows the flow
    assert not any(ACCESS in m or password in m for m in records)


def test_retry_log_lines_carry_no_token(server, client, caplog):
    caplog.set_level(logging.INFO, logger="fakegpt")
    server.logged_in()
    server.conversation(status=503, body=json.dumps({"detail": f"echo {ACCESS}"}), content_type="application/json")
    server.conversation()
    client.complete(MESSAGES)
    retry_lines = [r.getMessage() for r in caplog.records if "retrying" in r.getMessage()]
    assert retry_lines and not any(ACCESS in line for line in retry_lines)


def test_access_token_property_can_be_replaced(server, client):
    server.conversation()
    client.access_token = "given-token"
    client.complete(MESSAGES)
    assert server.rsps.calls[0].request.headers["X-Authorization"] == "Bearer given-token"
    with pytest.raises(TypeError):
        client.access_token = 5


def test_body_cut_inside_an_event_is_incomplete_not_unreadable(server, client):
    server.logged_in()
    cut = sse(assistant("Hello"), done=False) + b'data: {"message": {"id": "m1", "auth'
    server.conversation(body=cut)
    with pytest.raises(fakegpt.IncompleteStreamError) as info:
        client.complete(MESSAGES)
    assert info.value.partial_text == "Hello"


def test_a_body_that_is_not_sse_says_what_it_was(server, client):
    server.logged_in()
    server.conversation(body=b'{"detail": "upstream said no"}\n')
    with pytest.raises(fakegpt.IncompleteStreamError, match='not an event stream: {"detail": "upstream said no"}'):
        client.complete(MESSAGES)


@pytest.mark.parametrize(
    "body, content_type, error",
    [
        (json.dumps({"detail": f"no access for {ACCESS}"}), "application/json", fakegpt.StreamError),
        (sse({"message": None, "conversation_id": "c", "error": f"token {ACCESS} expired"}), "text/event-stream",
         fakegpt.StreamError),
        (f"token={ACCESS}\n", "text/event-stream", fakegpt.IncompleteStreamError),
        (sse(b"data: {" + ACCESS.encode() + b"\n\n"), "text/event-stream", fakegpt.StreamError),
    ],
)
def test_a_token_echoed_in_a_2xx_body_is_redacted(server, client, body, content_type, error):
    server.logged_in()
    server.conversation(body=body, content_type=content_type)
    with pytest.raises(error) as info:
        client.complete(MESSAGES)
    assert ACCESS not in str(info.value) and "***" in str(info.value)
