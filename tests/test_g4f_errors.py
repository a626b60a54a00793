"""Once registered, FakeGpt's authentication and rate-limit errors are gpt4free's too;
fakegpt.g4f_api gives them their HTTP status; unknown keyword arguments are logged once.

gpt4free is a fake package written to tmp_path (its ``errors`` module shaped
like 0.5.x's or 8.x's); the real releases run in noxfile.py's g4f-api sessions.
"""
import asyncio
import logging
import pickle
import uuid

import pytest

import fakegpt
from fakegpt import FakeGpt
from fakegpt._g4f_errors import failures
from fakegpt.g4f_api import FailureStatus

from .cli_helpers import run
from .conftest import BASE, MESSAGES
from .test_g4f_hooks import OLD_STYLE, package  # noqa: F401 (a fixture)

ERRORS_05 = """
class MissingAuthError(Exception):
    ...
class ResponseStatusError(Exception):
    ...
class RateLimitError(ResponseStatusError):
    ...
"""
ERRORS_8 = """
class G4FError(Exception):
    pass
class MissingAuthError(G4FError):
    pass
class ResponseError(G4FError):
    pass
class ResponseStatusError(ResponseError):
    pass
class RateLimitError(ResponseStatusError):
    pass
"""
ERRORS_WITHOUT_RATE_LIMIT = """
class MissingAuthError(Exception):
    pass
"""


@pytest.fixture
def registered(package):
    """A FakeGpt subclass registered in a fake gpt4free with the given errors module; (class, errors)."""
    import sys

    def make(errors_text):
        name = package({**OLD_STYLE, "errors.py": errors_text})

        class Provider(FakeGpt):
            pass
        Provider.__name__ = "FakeGpt"
        Provider.url = BASE
        Provider.register(package=name)
        return Provider, sys.modules[f"{name}.errors"]
    return make


def dead_token_list(server):
    server.loads(tokens=[])


def persistent_rate_limit(server):
    server.logged_in()
    server.conversation(body=b'{"detail": "Too many requests in 1 hour."}', status=429,
                        content_type="application/json", headers={"Retry-After": "120"})


def sync_call(provider):
    return "".join(provider.create_completion("gpt-3.5-turbo", MESSAGES))


def async_call(provider):
    return asyncio.run(provider.create_async("gpt-3.5-turbo", MESSAGES))


@pytest.mark.parametrize("errors_text", [ERRORS_05, ERRORS_8], ids=["0.5.x", "8.x"])
@pytest.mark.parametrize("call", [sync_call, async_call], ids=["create_completion", "create_async_generator"])
def test_an_authentication_failure_is_missing_auth_error_too(server, registered, errors_text, call):
    provider, errors = registered(errors_text)
    dead_token_list(server)
    with pytest.raises(fakegpt.AuthenticationError) as caught:
        call(provider)
    error = caught.value
    assert isinstance(error, errors.MissingAuthError) and not isinstance(error, errors.RateLimitError)
    assert type(error).__name__ == "AuthenticationError"  # what g4f's API server prints before the message
    assert type(error).__mro__[1] is fakegpt.AuthenticationError
    assert "token list (/api/loads) is empty" in str(error) and isinstance(error, RuntimeError)


@pytest.mark.parametrize("errors_text", [ERRORS_05, ERRORS_8], ids=["0.5.x", "8.x"])
@pytest.mark.parametrize("call", [sync_call, async_call], ids=["create_completion", "create_async_generator"])
def test_a_rate_limit_is_g4f_rate_limit_error_too_with_its_retry_after(server, registered, errors_text, call):
    provider, errors = registered(errors_text)
    persistent_rate_limit(server)
    with pytest.raises(fakegpt.RateLimitError) as caught:
        call(provider)
    error = caught.value
    assert isinstance(error, errors.RateLimitError) and isinstance(error, errors.ResponseStatusError)
    assert not isinstance(error, errors.MissingAuthError)
    assert (error.status_code, error.retry_after) == (429, 120.0)
    assert "Too many requests in 1 hour" in str(error) and error.detail == "Too many requests in 1 hour."
    assert len(server.calls("/api/conversation")) == 1  # a Retry-After past the cap is not waited out


def test_an_unregistered_provider_raises_fakegpt_errors_only(server, registered):
    registered(ERRORS_8)  # a registered sibling class changes nothing for FakeGpt itself
    FakeGpt.url = BASE
    dead_token_list(server)
    with pytest.raises(fakegpt.AuthenticationError) as caught:
        sync_call(FakeGpt)
    assert type(caught.value) is fakegpt.AuthenticationError


def test_other_errors_stay_fakegpt_errors(server, registered):
    provider, errors = registered(ERRORS_8)
    server.logged_in()
    server.conversation(body=b'{"detail": "bad"}', status=400, content_type="application/json")
    with pytest.raises(fakegpt.APIStatusError) as caught:
        sync_call(provider)
    assert type(caught.value) is fakegpt.APIStatusError and not isinstance(caught.value, errors.G4FError)


def test_a_release_without_a_class_keeps_that_error_fakegpt_only(server, registered):
    provider, errors = registered(ERRORS_WITHOUT_RATE_LIMIT)
    persistent_rate_limit(server)
    with pytest.raises(fakegpt.RateLimitError) as caught:
        sync_call(provider)
    assert type(caught.value) is fakegpt.RateLimitError
    server.rsps.reset()
    provider._access_token = None
    dead_token_list(server)
    with pytest.raises(errors.MissingAuthError):
        sync_call(provider)


def test_the_errors_pickle_as_both_and_as_fakegpt_where_g4f_is_missing(server, registered, monkeypatch):
    import sys

    provider, errors = registered(ERRORS_8)
    persistent_rate_limit(server)
    with pytest.raises(fakegpt.RateLimitError) as caught:
        sync_call(provider)
    copy = pickle.loads(pickle.dumps(caught.value))
    assert type(copy) is type(caught.value) and isinstance(copy, errors.RateLimitError)
    assert (copy.retry_after, copy.status_code, str(copy)) == (120.0, 429, str(caught.value))
    package = errors.__name__.split(".")[0]
    data = pickle.dumps(caught.value)
    from fakegpt import _g4f_errors

    monkeypatch.setattr(_g4f_errors, "_variants", {})  # a process that has not registered ...
    monkeypatch.setitem(sys.modules, f"{package}.errors", None)  # ... and cannot import that g4f
    plain = pickle.loads(data)
    assert type(plain) is fakegpt.RateLimitError and plain.retry_after == 120.0


# -- fakegpt.g4f_api.FailureStatus: the status of the answer ---------------------------------
def g4f_like_app(provider):
    """An ASGI app that answers as g4f's API server does: the provider's reply,
    or a 500 with the error's message; the call runs in a task of its own (as
    behind g4f's BaseHTTPMiddleware)."""
    async def app(scope, receive, send):
        async def call():
            return await provider.create_async("gpt-3.5-turbo", MESSAGES)
        try:
            body, status = (await asyncio.ensure_future(call())).encode(), 200
        except Exception as error:  # g4f catches everything and answers 500
            body, status = f'{{"error": {{"message": "{type(error).__name__}: x"}}}}'.encode(), 500
        await send({"type": "http.response.start", "status": status,
                    "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]})
        await send({"type": "http.response.body", "body": body})
    return app


def request(app, scope_type="http"):
    sent = []

    async def receive():
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message):
        sent.append(message)

    asyncio.run(app({"type": scope_type}, receive, send))
    return sent


def test_failure_status_answers_401_for_an_authentication_failure(server, registered):
    provider, _ = registered(ERRORS_05)
    dead_token_list(server)
    start, body = request(FailureStatus(g4f_like_app(provider)))
    assert start["status"] == 401
    assert not any(name == b"retry-after" for name, _ in start["headers"])
    assert body["body"] == b'{"error": {"message": "AuthenticationError: x"}}'  # the body is g4f's


def test_failure_status_answers_429_with_retry_after_for_a_rate_limit(server, registered):
    provider, _ = registered(ERRORS_05)
    persistent_rate_limit(server)
    start, body = request(FailureStatus(g4f_like_app(provider)))
    assert start["status"] == 429
    assert (b"retry-after", b"120") in start["headers"] and (b"content-type", b"application/json") in start["headers"]
    assert body["body"] == b'{"error": {"message": "RateLimitError: x"}}'


def test_failure_status_keeps_other_answers(server, registered):
    provider, _ = registered(ERRORS_8)
    server.logged_in()
    server.conversation(body=b'{"detail": "bad"}', status=400, content_type="application/json")
    assert request(FailureStatus(g4f_like_app(provider)))[0]["status"] == 500  # not an auth or rate failure
    server.rsps.reset()
    server.logged_in()
    server.conversation()
    start, body = request(FailureStatus(g4f_like_app(provider)))
    assert (start["status"], body["body"]) == (200, b"Hello world")


def test_failure_status_never_changes_a_success():
    async def app(scope, receive, send):
        noted = failures.get()
        noted.append(fakegpt.RateLimitError("late", status_code=429, retry_after=3.0))  # e.g. mid-stream
        await send({"type": "http.response.start", "status": 200, "headers": []})
    assert request(FailureStatus(app))[0] == {"type": "http.response.start", "status": 200, "headers": []}


def test_failure_status_notes_per_request_and_passes_other_scopes():
    seen = []

    async def app(scope, receive, send):
        seen.append(failures.get())
        await send({"type": "lifespan.startup.complete"})
    request(FailureStatus(app))
    request(FailureStatus(app))
    assert request(FailureStatus(app), scope_type="lifespan") == [{"type": "lifespan.startup.complete"}]
    assert seen[0] == [] and seen[1] == [] and seen[0] is not seen[1] and seen[2] is None
    assert failures.get() is None  # reset after each request


# -- unknown keyword arguments ---------------------------------------------------------------
def test_unknown_keyword_arguments_are_logged_once_each_at_debug(server, debug_log):
    FakeGpt.url = BASE
    typo, other = f"timout_{uuid.uuid4().hex[:6]}", f"temperature_{uuid.uuid4().hex[:6]}"
    for _ in range(3):
        FakeGpt.create_completion("gpt-3.5-turbo", MESSAGES, **{typo: 1, other: 0.5}).close()
    FakeGpt.create_completion("gpt-3.5-turbo", MESSAGES, timeout=5, max_retries=0, deadline=9).close()
    lines = [r.getMessage() for r in debug_log.records if r.name == "fakegpt" and "ignores" in r.getMessage()]
    assert lines == [f"FakeGpt ignores the keyword argument {other!r} (logged once)",
                     f"FakeGpt ignores the keyword argument {typo!r} (logged once)"]
    assert all(r.levelno == logging.DEBUG for r in debug_log.records if "ignores" in r.getMessage())
    assert server.paths() == []  # nothing was sent


def test_unknown_keyword_arguments_of_the_async_path_are_logged_too(server, debug_log):
    FakeGpt.url = BASE
    server.logged_in()
    server.conversation()
    name = f"max_tokens_{uuid.uuid4().hex[:6]}"
    assert asyncio.run(FakeGpt.create_async("gpt-3.5-turbo", MESSAGES, **{name: 5, "stream": True})) == "Hello world"
    lines = [r.getMessage() for r in debug_log.records if "ignores" in r.getMessage()]
    assert lines == [f"FakeGpt ignores the keyword argument {name!r} (logged once)"]


# -- fakegpt g4f-api ----------------------------------------------------------------------------
def test_g4f_api_without_uvicorn_is_one_line_and_exit_1(capsys, monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "uvicorn", None)
    status, out, err = run(["g4f-api", "--port", "8000"], capsys)
    assert (status, out) == (1, "")
    assert err.count("\n") == 1 and "fakegpt g4f-api needs gpt4free's API server" in err
    assert "pip install 'g4f[api]'" in err


@pytest.mark.parametrize("argv, text", [
    (["g4f-api", "--port", "0"], "argument --port: must be a whole number from 1 to 65535, not '0'"),
    (["g4f-api", "--workers", "0"], "argument --workers: must be a whole number from 1 to 256, not '0'"),
])
def test_g4f_api_usage_errors_exit_2(capsys, argv, text):
    status, out, err = run(argv, capsys)
    assert (status, out) == (2, "") and text in err and "usage: fakegpt g4f-api" in err


def test_seed_offline_registry_writes_todays_registry_once(tmp_path, monkeypatch):
    import datetime
    import json
    import sys
    import types

    from fakegpt.g4f_api import OFFLINE_BASE_URL, seed_offline_registry

    monkeypatch.setitem(sys.modules, "g4f.config", types.SimpleNamespace(get_cache_dir=lambda: str(tmp_path)))
    written = seed_offline_registry()
    assert written == str(tmp_path / ".models" / datetime.date.today().strftime("%Y-%m-%d") / "providers.json")
    written = tmp_path / written
    registry = json.loads(written.read_text())
    assert registry == {"providers": {"default": {"baseUrl": OFFLINE_BASE_URL}}, "defaultModels": {"default": ""}}
    assert seed_offline_registry() is None  # today's file is there: left alone
    written.write_text('{"providers": {"x": {}}}')
    assert seed_offline_registry() is None and json.loads(written.read_text()) == {"providers": {"x": {}}}
    monkeypatch.setitem(sys.modules, "g4f.config", types.SimpleNamespace())  # 0.x: no such registry
    assert seed_offline_registry() is None
