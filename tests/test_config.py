"""Settings from the environment: each variable, arguments beating it, bad values, logging."""
import logging
import os
import subprocess
import sys

import pytest
import responses

import fakegpt
from fakegpt._config import _Redact
from fakegpt._constants import DEFAULT_BASE_URL, DEFAULT_MAX_RETRIES, DEFAULT_TIMEOUT


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch):
    for name in ("FAKEGPT_BASE_URL", "FAKEGPT_PROXY", "FAKEGPT_TIMEOUT", "FAKEGPT_MAX_RETRIES",
                 "FAKEGPT_SESSION_CACHE", "FAKEGPT_LOG"):
        monkeypatch.delenv(name, raising=False)


def test_defaults_without_the_environment():
    with fakegpt.Client() as client:
        assert (client.base_url, client.proxy, client.timeout, client.max_retries) == (
            DEFAULT_BASE_URL, None, DEFAULT_TIMEOUT, DEFAULT_MAX_RETRIES)


def test_each_variable_is_read(monkeypatch):
    monkeypatch.setenv("FAKEGPT_BASE_URL", "http://self-hosted.test:8080/")
    monkeypatch.setenv("FAKEGPT_PROXY", "http://proxy.test:3128")
    monkeypatch.setenv("FAKEGPT_TIMEOUT", "3, 30")
    monkeypatch.setenv("FAKEGPT_MAX_RETRIES", "5")
    with fakegpt.Client() as client:
        assert (client.base_url, client.proxy, client.timeout, client.max_retries) == (
            "http://self-hosted.test:8080", "http://proxy.test:3128", (3.0, 30.0), 5)
    monkeypatch.setenv("FAKEGPT_TIMEOUT", "7.5")
    with fakegpt.Client() as client:
        assert client.timeout == 7.5


def test_arguments_beat_the_environment(monkeypatch):
    monkeypatch.setenv("FAKEGPT_BASE_URL", "http://from-env.test")
    monkeypatch.setenv("FAKEGPT_PROXY", "http://proxy.test:3128")
    monkeypatch.setenv("FAKEGPT_TIMEOUT", "3")
    monkeypatch.setenv("FAKEGPT_MAX_RETRIES", "5")
    with fakegpt.Client("http://argument.test", proxy="http://other.test:1", timeout=(1, 2), max_retries=0) as client:
        assert (client.base_url, client.proxy, client.timeout, client.max_retries) == (
            "http://argument.test", "http://other.test:1", (1.0, 2.0), 0)
    with fakegpt.Client(proxy="") as client:  # "" = no proxy, whatever the environment says
        assert client.proxy is None and client._http.proxies is None


def test_an_empty_variable_counts_as_unset(monkeypatch):
    for name in ("FAKEGPT_BASE_URL", "FAKEGPT_PROXY", "FAKEGPT_TIMEOUT", "FAKEGPT_MAX_RETRIES"):
        monkeypatch.setenv(name, "  ")
    with fakegpt.Client() as client:
        assert (client.base_url, client.proxy, client.timeout, client.max_retries) == (
            DEFAULT_BASE_URL, None, DEFAULT_TIMEOUT, DEFAULT_MAX_RETRIES)


@pytest.mark.parametrize(
    "name, value, error, text",
    [
        ("FAKEGPT_TIMEOUT", "soon", ValueError, "FAKEGPT_TIMEOUT must be seconds or 'connect,read' seconds, not 'soon'"),
        ("FAKEGPT_TIMEOUT", "0", ValueError, "FAKEGPT_TIMEOUT must be"),
        ("FAKEGPT_TIMEOUT", "1,2,3", ValueError, "FAKEGPT_TIMEOUT must be"),
        ("FAKEGPT_TIMEOUT", "inf", ValueError, "FAKEGPT_TIMEOUT must be"),
        ("FAKEGPT_MAX_RETRIES", "-1", ValueError, "FAKEGPT_MAX_RETRIES must be a whole number, 0 or more, not '-1'"),
        ("FAKEGPT_MAX_RETRIES", "two", ValueError, "FAKEGPT_MAX_RETRIES must be a whole number"),
        ("FAKEGPT_BASE_URL", "chat.test", ValueError, "base_url must be an http"),
        ("FAKEGPT_PROXY", "nonsense", ValueError, "proxy must be a URL"),
    ],
)
def test_a_bad_variable_fails_before_any_request(monkeypatch, name, value, error, text):
    monkeypatch.setenv(name, value)
    with responses.RequestsMock() as mocked:  # any request would fail the test: nothing is registered
        with pytest.raises(error, match=text.replace("(", r"\(")):
            fakegpt.Client()
        assert len(mocked.calls) == 0


def test_a_bad_variable_is_ignored_when_the_argument_is_given(monkeypatch):
    monkeypatch.setenv("FAKEGPT_TIMEOUT", "soon")
    monkeypatch.setenv("FAKEGPT_MAX_RETRIES", "two")
    with fakegpt.Client(timeout=5, max_retries=1) as client:
        assert (client.timeout, client.max_retries) == (5.0, 1)


def test_the_proxy_from_the_environment_carries_every_request(monkeypatch, fakegpt_emulator):
    """A proxy that refuses connections proves the requests went to it, not to the server."""
    monkeypatch.setenv("FAKEGPT_PROXY", "http://127.0.0.1:9")
    with fakegpt.Client(fakegpt_emulator.url, max_retries=0) as client:
        with pytest.raises(fakegpt.APIConnectionError, match="GET /api/loads .* failed"):
            client.complete([{"role": "user", "content": "hi"}])
    assert fakegpt_emulator.counts["requests"] == 0


# -- FAKEGPT_LOG --------------------------------------------------------------------------
SCRIPT = """
import sys, fakegpt
with fakegpt.Client(sys.argv[1], session_password="password-SECRET") as client:
    print(client.complete([{"role": "user", "content": "hi"}]))
"""


def run_logged(url, level):
    env = {k: v for k, v in os.environ.items() if not k.startswith("FAKEGPT_")}
    return subprocess.run([sys.executable, "-c", SCRIPT, url], capture_output=True, text=True, timeout=60,
                          env={**env, "FAKEGPT_LOG": level})


def test_log_debug_shows_the_flow_on_stderr_without_secrets(fakegpt_emulator):
    done = run_logged(fakegpt_emulator.url, "debug")
    assert done.returncode == 0 and done.stdout.startswith("Hello!")
    for step in ("GET /api/loads: HTTP 200", "POST /auth/login with token", "GET /api/auth/session: HTTP 200",
                 "POST /api/conversation: HTTP 200"):
        assert step in done.stderr
    assert " fakegpt DEBUG " in done.stderr
    assert "emu-" not in done.stderr and "password-SECRET" not in done.stderr
    for token_id in fakegpt_emulator.tokens:  # the shared tokens are shortened too
        assert token_id not in done.stderr


def test_log_info_is_quiet_on_success(fakegpt_emulator):
    done = run_logged(fakegpt_emulator.url, "INFO")
    assert done.returncode == 0 and "DEBUG" not in done.stderr


def test_a_bad_log_level_is_a_warning_not_a_crash(fakegpt_emulator):
    done = run_logged(fakegpt_emulator.url, "loud")
    assert done.returncode == 0 and done.stdout.startswith("Hello!")
    assert "FAKEGPT_LOG must be 'debug' or 'info', not 'loud': ignored" in done.stderr


@pytest.mark.parametrize(
    "message, args",
    [
        ("sent Authorization: Bearer %s", ("eyJhbGciOi.secret",)),
        ("body %s", ('{"accessToken": "eyJhbGciOi.secret"}',)),
        ("form token_key=abc&session_password=%s&x=1", ("eyJhbGciOi.secret",)),
    ],
)
def test_the_log_filter_hides_anything_shaped_like_a_secret(message, args):
    record = logging.LogRecord("fakegpt", logging.DEBUG, __file__, 1, message, args, None)
    assert _Redact().filter(record) is True
    assert "eyJhbGciOi.secret" not in record.getMessage() and "***" in record.getMessage()
