"""Shared fixtures: mocked servers for unit tests, and helpers to build streams."""
import importlib.util
import json
import logging
import threading
from urllib.parse import parse_qs

import pytest
import responses

import fakegpt

BASE = "https://chat.test"
TOKENS = ["a" * 32, "b" * 32, "c" * 32]
ACCESS = "access-token-SECRET-0123456789"


def at_once(call, count):
    """``call(i)`` for i in range(count), each in its own thread, all released
    together; returns each call's result, or the exception it raised, by i."""
    barrier, outcomes = threading.Barrier(count), [None] * count

    def run(i):
        barrier.wait()
        try:
            outcomes[i] = call(i)
        except Exception as error:  # reported to the test as the outcome
            outcomes[i] = error

    threads = [threading.Thread(target=run, args=(i,)) for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    assert not any(thread.is_alive() for thread in threads), "a call did not finish within 10 s"
    return outcomes


def sse(*events, done=True):
    """An event-stream body from JSON-able events (or raw bytes frames)."""
    out = b""
    for event in events:
        out += event if isinstance(event, bytes) else b"data: " + json.dumps(event).encode() + b"\n\n"
    return out + (b"data: [DONE]\n\n" if done else b"")


def assistant(text, *, status="in_progress", mid="m1", finish=None):
    metadata = {"message_type": "next", "model_slug": "text-davinci-002-render-sha"}
    if finish:
        metadata["finish_details"] = {"type": finish}
    return {
        "message": {"id": mid, "author": {"role": "assistant"}, "content": {"content_type": "text", "parts": [text]},
                    "status": status, "end_turn": status == "finished_successfully" or None,
                    "metadata": metadata, "recipient": "all"},
        "conversation_id": "c1",
        "error": None,
    }


def reply_body(*texts, done=True):
    """A cumulative stream spelling *texts*, finished, with [DONE]."""
    events, text = [], ""
    for piece in texts:
        text += piece
        events.append(assistant(text))
    events.append(assistant(text, status="finished_successfully", finish="stop"))
    return sse(*events, done=done)


class MockServer:
    """The protocol on top of `responses`: tokens, login, session, conversation."""

    def __init__(self, rsps, base=BASE):
        self.rsps, self.base = rsps, base

    def loads(self, tokens=TOKENS, counts=None, **kwargs):
        counts = counts or [0] * len(tokens)
        body = {"loads": [{"token_id": t, "count": c} for t, c in zip(tokens, counts)]}
        return self.rsps.get(f"{self.base}/api/loads", json=body, **kwargs)

    def login(self, status=302, **kwargs):
        headers = {"Location": "/?v=2", "Set-Cookie": "credential=cred; Path=/"} if status == 302 else {}
        return self.rsps.post(f"{self.base}/auth/login", status=status, headers=headers, **kwargs)

    def session(self, body=None, **kwargs):
        body = {"user": {}, "expires": "2099-01-01T00:00:00Z", "accessToken": ACCESS} if body is None else body
        return self.rsps.get(f"{self.base}/api/auth/session", json=body, **kwargs)

    def logged_in(self):
        self.loads()
        self.login()
        self.session()

    def conversation(self, body=None, status=200, content_type="text/event-stream", **kwargs):
        body = reply_body("Hello", " world") if body is None else body
        return self.rsps.post(f"{self.base}/api/conversation", body=body, status=status,
                              content_type=content_type, **kwargs)

    def calls(self, path):
        return [c for c in self.rsps.calls if c.request.path_url.split("?")[0] == path]

    def paths(self):
        return [c.request.path_url.split("?")[0] for c in self.rsps.calls]

    def login_tokens(self):
        return [parse_qs(c.request.body)["token_key"][0] for c in self.calls("/auth/login")]


@pytest.fixture
def server():
    with responses.RequestsMock(assert_all_requests_are_fired=False) as rsps:
        yield MockServer(rsps)


@pytest.fixture
def client():
    with fakegpt.Client(BASE, max_retries=2) as client:
        client.waits = []  # the retry waits, recorded instead of slept
        client._engine.sleep = client.waits.append
        yield client


@pytest.fixture
def debug_log(caplog):
    caplog.set_level(logging.DEBUG)
    return caplog


MESSAGES = [{"role": "user", "content": "Hi"}]


@pytest.fixture(autouse=True)
def no_fakegpt_environment(monkeypatch):
    """The suite runs the same whatever FAKEGPT_* settings the user has (a test sets its own)."""
    import os

    for name in [name for name in os.environ if name.startswith("FAKEGPT_")]:
        monkeypatch.delenv(name)


@pytest.fixture(autouse=True)
def fresh_provider_state():
    """FakeGpt keeps its login on the class, like the original: reset it around every test."""
    from fakegpt import provider

    def reset():
        fakegpt.FakeGpt.url = provider.DEFAULT_BASE_URL
        fakegpt.FakeGpt._access_token = None
        fakegpt.FakeGpt._cookie_jar = None
        for name in ("_told_token", "_token_url"):
            if name in vars(fakegpt.FakeGpt):
                delattr(fakegpt.FakeGpt, name)
        with provider._registry_lock:
            clients = list(provider._clients.values())
            provider._clients.clear()
            provider._in_use.clear()
        for client in clients:
            client.close()

    reset()
    yield
    reset()


@pytest.fixture
def gpt4free_fakegpt():
    """gpt4free's own ``FakeGpt`` class (the installed g4f's), loaded afresh
    from its module: a test before may have run ``FakeGpt.register()``, which
    puts fakegpt's class in its place. Skips without g4f."""
    g4f = pytest.importorskip("g4f")
    g4f.debug.version_check = False  # it would ask the package index for its latest version
    spec = importlib.util.find_spec("g4f.Provider.FakeGpt")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert module.FakeGpt.__module__ == "g4f.Provider.FakeGpt"
    return module.FakeGpt
