"""FakeGpt's contract: class attributes, signatures, input checks, proxies (mocked HTTP)."""
import collections.abc
import inspect

import pytest

import fakegpt
from fakegpt import FakeGpt

from .conftest import ACCESS, BASE, MESSAGES


def test_class_attributes_of_the_original():
    assert FakeGpt.url == "https://chat-shared2.zhile.io"
    assert FakeGpt.working is True and FakeGpt.supports_stream is True and FakeGpt.supports_gpt_35_turbo is True
    assert FakeGpt.supports_message_history is False and FakeGpt.needs_auth is False
    assert FakeGpt._access_token is None and FakeGpt._cookie_jar is None
    assert FakeGpt.__name__ == "FakeGpt" and FakeGpt.__module__ == "fakegpt"


def test_params_is_g4f_multi_line_format():
    assert FakeGpt.params == (
        "g4f.Provider.FakeGpt supports: (\n"
        '    model: str = "gpt-3.5-turbo",\n'
        "    messages: Messages,\n"
        "    stream: bool = True,\n"
        "    proxy: str = None,\n"
        "    timeout: float | tuple[float, float] = (10.0, 120.0),\n"
        "    max_retries: int = 2,\n"
        ")"
    )
    assert FakeGpt.get_params() == FakeGpt.params


def test_url_defaults_to_the_environment_read_at_call_time(server, monkeypatch):
    monkeypatch.delattr(FakeGpt, "url")  # the suite pins it; without an assignment the default applies
    assert FakeGpt.url == "https://chat-shared2.zhile.io"
    monkeypatch.setenv("FAKEGPT_BASE_URL", BASE)  # set after import: still read
    assert FakeGpt.url == BASE and FakeGpt.get_dict()["url"] == BASE
    server.logged_in()
    server.conversation()
    assert "".join(FakeGpt.create_completion("gpt-3.5-turbo", MESSAGES)) == "Hello world"
    assert {c.request.url.split("/api")[0].split("/auth")[0] for c in server.rsps.calls} == {BASE}


def test_an_assigned_url_beats_the_environment(server, monkeypatch):
    monkeypatch.setenv("FAKEGPT_BASE_URL", "http://unused.test")
    FakeGpt.url = BASE
    server.logged_in()
    server.conversation()
    assert "".join(FakeGpt.create_completion("gpt-3.5-turbo", MESSAGES)) == "Hello world"
    assert len(server.rsps.calls) == 4 and all(c.request.url.startswith(BASE) for c in server.rsps.calls)
    del FakeGpt.url
    assert FakeGpt.url == "http://unused.test"  # the default again

    class Subclass(FakeGpt):
        url = BASE
    assert Subclass.url == BASE


def test_signatures():
    assert inspect.isasyncgenfunction(FakeGpt.create_async_generator.__func__)
    assert inspect.iscoroutinefunction(FakeGpt.create_async.__func__)
    parameters = list(inspect.signature(FakeGpt.create_async_generator).parameters)
    assert parameters == ["model", "messages", "proxy", "kwargs"]
    assert list(inspect.signature(FakeGpt.create_completion).parameters) == [
        "model", "messages", "stream", "proxy", "kwargs"]


@pytest.mark.parametrize("messages, error", [("hi", TypeError), ([], ValueError), ([{"role": "user"}], ValueError)])
def test_bad_input_before_any_request(server, messages, error):
    with pytest.raises(error):
        FakeGpt.create_completion("gpt-3.5-turbo", messages)
    with pytest.raises(TypeError, match="model must be a str"):
        FakeGpt.create_completion(42, MESSAGES)
    assert len(server.rsps.calls) == 0


def test_create_completion_is_a_plain_generator(server):
    FakeGpt.url = BASE
    server.logged_in()
    server.conversation()
    result = FakeGpt.create_completion("gpt-3.5-turbo", MESSAGES, stream=True, unknown_option=1)
    assert isinstance(result, collections.abc.Generator) and iter(result) is result
    assert next(result) == "Hello" and list(result) == [" world"]
    assert FakeGpt._access_token == ACCESS and FakeGpt._cookie_jar.get("credential") == "cred"


def test_proxy_reaches_every_request_of_the_call(server):
    FakeGpt.url = BASE
    server.logged_in()
    server.conversation()
    text = "".join(FakeGpt.create_completion("gpt-3.5-turbo", MESSAGES, proxy="http://proxy.test:3128"))
    assert text == "Hello world" and len(server.rsps.calls) == 4
    assert {c.request.req_kwargs["proxies"]["https"] for c in server.rsps.calls} == {"http://proxy.test:3128"}


def test_timeout_and_max_retries_reach_the_client(server):
    FakeGpt.url = BASE
    server.logged_in()
    server.conversation(status=500, body="down")
    with pytest.raises(fakegpt.APIStatusError):
        list(FakeGpt.create_completion("gpt-3.5-turbo", MESSAGES, timeout=(1, 2), max_retries=0))
    conversation = server.calls("/api/conversation")
    assert len(conversation) == 1 and conversation[0].request.req_kwargs["timeout"] == (1.0, 2.0)


def test_a_bad_proxy_is_a_value_error():
    with pytest.raises(ValueError, match="proxy"):
        FakeGpt.create_completion("gpt-3.5-turbo", MESSAGES, proxy="not a url")


def test_no_valid_response_is_still_a_runtime_error(server):
    FakeGpt.url = BASE
    server.logged_in()
    server.conversation(body=b"data: [DONE]\n\n")
    with pytest.raises(RuntimeError, match="no valid response") as info:
        list(FakeGpt.create_completion("gpt-3.5-turbo", MESSAGES))
    assert type(info.value) is fakegpt.NoValidResponseError


def test_a_long_replys_repr_cuts_outside_the_quotes():
    reply = fakegpt.Reply("x" * 100, finish_reason="stop")
    assert repr(reply).startswith("Reply('" + "x" * 60 + "' … +40 chars, ")
    assert repr(fakegpt.Reply("short")).startswith("Reply('short', ")
