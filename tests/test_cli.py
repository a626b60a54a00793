"""The command line in-process: options, stdout, stderr, exit status and hints."""
import io
import socket
import sys
import time

import pytest
import requests
import responses

import fakegpt
from fakegpt import cli
from fakegpt._constants import DEFAULT_BASE_URL
from fakegpt.cli._output import Spinner
from fakegpt.emulator import Emulator, default_responder

from .cli_helpers import run


def closed_port():
    """A loopback port nothing listens on (connections to it are refused)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_chat_with_the_embedded_emulator(capsys):
    status, out, err = run(["chat", "--emulator", "Say", "hello"], capsys)
    assert (status, err) == (0, "")
    assert out == default_responder("Say hello") + "\n"


def test_the_embedded_emulator_leaves_nothing_in_the_session_cache(capsys, monkeypatch, tmp_path):
    monkeypatch.setenv("FAKEGPT_SESSION_CACHE", str(tmp_path / "cache.json"))
    status, out, err = run(["chat", "--emulator", "hi"], capsys)
    assert (status, err) == (0, "") and out.startswith("Hello!")
    assert not (tmp_path / "cache.json").exists()


def test_emulator_beats_fakegpt_base_url_in_the_environment(capsys, monkeypatch):
    monkeypatch.setenv("FAKEGPT_BASE_URL", f"http://127.0.0.1:{closed_port()}")
    status, out, err = run(["chat", "--emulator", "Say hello"], capsys)
    assert (status, err) == (0, "") and out == default_responder("Say hello") + "\n"


def test_the_embedded_emulator_ignores_fakegpt_proxy(capsys, monkeypatch):
    monkeypatch.setenv("FAKEGPT_PROXY", f"http://127.0.0.1:{closed_port()}")  # a proxy that refuses everything
    status, out, err = run(["chat", "--emulator", "hi"], capsys)
    assert (status, err) == (0, "") and out == default_responder("hi") + "\n"


def test_the_embedded_emulator_ignores_http_proxy(capsys, monkeypatch):
    for name in ("NO_PROXY", "no_proxy", "ALL_PROXY", "all_proxy"):
        monkeypatch.delenv(name, raising=False)
    dead = f"http://127.0.0.1:{closed_port()}"
    for name in ("HTTP_PROXY", "http_proxy", "HTTPS_PROXY", "https_proxy"):
        monkeypatch.setenv(name, dead)
    status, out, err = run(["chat", "--emulator", "--max-retries", "0", "hi"], capsys)
    assert (status, err) == (0, "") and out == default_responder("hi") + "\n"


def test_prompt_from_stdin_and_a_system_message(capsys, fakegpt_emulator):
    status, out, err = run(["chat", "--base-url", fakegpt_emulator.url, "--system", "Be brief."], capsys,
                           stdin="  from stdin \n")
    assert (status, err) == (0, "")
    prompt = "System: Be brief.\nUser: from stdin\nAssistant:"
    assert out == default_responder(prompt) + "\n"
    body = fakegpt_emulator.requests[-1].body.decode()
    assert "System: Be brief.\\nUser: from stdin\\nAssistant:" in body


def test_base_url_from_the_environment_and_model(capsys, fakegpt_emulator, monkeypatch):
    monkeypatch.setenv("FAKEGPT_BASE_URL", fakegpt_emulator.url)
    status, out, _ = run(["chat", "--model", "gpt-4o-mini", "--timeout", "5", "hi"], capsys)
    assert status == 0 and out.startswith("Hello!")
    assert b'"model": "gpt-4o-mini"' in fakegpt_emulator.requests[-1].body


@pytest.mark.parametrize(
    "argv, stdin, text",
    [
        (["chat", "--emulator", "--base-url", "http://x", "hi"], "", "--emulator and --base-url exclude each other"),
        (["chat", "--emulator", "--proxy", "http://proxy:3128", "hi"], "", "--emulator and --proxy exclude"),
        (["chat", "--emulator", "--session-cache", "1", "hi"], "", "--emulator and --session-cache exclude"),
        (["chat", "--emulator"], "   ", "no prompt"),
        (["chat", "--emulator", "--timeout", "-1", "hi"], "", "argument --timeout: must be positive seconds"),
        (["chat", "--emulator", "--timeout", "3,0", "hi"], "", "argument --timeout: must be positive seconds"),
        (["chat", "--emulator", "--timeout", "1,2,3", "hi"], "", "argument --timeout"),
        (["chat", "--timeout", "soon", "hi"], "", "not 'soon'"),
        (["chat", "--timeout", "nan", "hi"], "", "argument --timeout"),
        (["chat", "--proxy", "nonsense", "hi"], "", "proxy must be a URL"),
        (["chat", "--max-retries", "-1", "hi"], "", "argument --max-retries: must be a whole number 0 or more"),
        (["chat", "--max-retries", "two", "hi"], "", "argument --max-retries"),
        (["frobnicate"], "", "invalid choice"),
        ([], "", "required"),
        (["serve", "--port", "99999"], "", "argument --port: must be a whole number from 0 to 65535"),
        (["serve", "--port", "-1"], "", "argument --port: must be a whole number from 0 to 65535"),
        (["serve", "--delay", "-1"], "", "argument --delay: must be seconds, 0 or more"),
        (["serve", "--delay", "nan"], "", "argument --delay: must be seconds, 0 or more, not 'nan'"),
        (["serve", "--delay", "inf"], "", "argument --delay: must be seconds, 0 or more, not 'inf'"),
        (["serve", "--max-words", "0"], "", "argument --max-words: must be a whole number 1 or more"),
        (["chat", "--emulator", "--conversation-id", "c1", "hi"], "", "--conversation-id and --parent-id go together"),
        (["chat", "--emulator", "--parent-id", "p1", "hi"], "", "--conversation-id and --parent-id go together"),
    ],
)
def test_usage_errors_exit_2(capsys, argv, stdin, text):
    status, out, err = run(argv, capsys, stdin)
    assert status == 2 and out == "" and text in err and "usage:" in err and "Traceback" not in err


@pytest.mark.parametrize("argv, command, unknown", [
    (["chat", "--emulatr", "hi"], "chat", "--emulatr"),
    (["chat", "hi", "--emulatr"], "chat", "--emulatr"),
    (["serve", "--prot", "8787"], "serve", "--prot 8787"),
])
def test_an_unknown_option_shows_its_commands_usage(capsys, argv, command, unknown):
    status, out, err = run(argv, capsys)
    assert status == 2 and out == ""
    assert err.startswith(f"usage: fakegpt {command} [-h]")
    assert err.endswith(f"\nfakegpt {command}: error: unrecognized arguments: {unknown}\n")


def test_timeout_takes_connect_and_read_seconds(capsys, fakegpt_emulator):
    """``--timeout 5,1``: the read part bounds a stall, as FAKEGPT_TIMEOUT=5,1 does."""
    fakegpt_emulator.stream_fault("stall", after_words=2, seconds=30)
    status, out, err = run(["chat", "--base-url", fakegpt_emulator.url, "--timeout", "5,1", "hi"], capsys)
    # After its 30 s stall the reply would go on to the end: the 1 s read timeout ended it.
    assert status == 1 and out == "Hello! You \n"
    assert err.startswith("fakegpt: error: APITimeoutError:") and err.count("\n") == 1


@pytest.mark.parametrize("retries, status, calls", [("0", 1, 1), ("1", 0, 2)])
def test_max_retries(capsys, fakegpt_emulator, retries, status, calls):
    fakegpt_emulator.fail_next(500, {"detail": "busy"})
    got, out, err = run(["chat", "--base-url", fakegpt_emulator.url, "--max-retries", retries, "hi"], capsys)
    assert got == status and fakegpt_emulator.counts["conversations"] == calls
    assert out == ("" if status else default_responder("hi") + "\n")
    assert ("HTTP 500: busy" in err) == bool(status)


def test_session_cache_option_keeps_the_login_for_the_next_run(capsys, fakegpt_emulator, tmp_path):
    cache = tmp_path / "sessions.json"
    for _ in range(2):
        status, out, err = run(["chat", "--base-url", fakegpt_emulator.url, "--session-cache", str(cache), "hi"],
                               capsys)
        assert (status, err) == (0, "") and out.startswith("Hello!")
    assert cache.exists() and fakegpt_emulator.counts["logins"] == 1


def test_session_cache_0_beats_the_environment(capsys, fakegpt_emulator, monkeypatch, tmp_path):
    monkeypatch.setenv("FAKEGPT_SESSION_CACHE", str(tmp_path / "sessions.json"))
    status, out, _ = run(["chat", "--base-url", fakegpt_emulator.url, "--session-cache", "0", "hi"], capsys)
    assert status == 0 and out.startswith("Hello!") and not (tmp_path / "sessions.json").exists()


def test_a_failing_call_is_one_line_on_stderr_and_exit_1(capsys, fakegpt_emulator):
    fakegpt_emulator.clear_tokens()
    status, out, err = run(["chat", "--base-url", fakegpt_emulator.url, "hi"], capsys)
    assert status == 1 and out == ""
    assert err.count("\n") == 1 and err.startswith("fakegpt: error: AuthenticationError: no shared token")
    assert "Traceback" not in err


def test_the_default_url_unreachable_says_the_service_is_offline(capsys):
    with responses.RequestsMock() as mock:  # no network: the name lookup fails as it does today
        mock.get(f"{DEFAULT_BASE_URL}/api/loads",
                 body=requests.exceptions.ConnectionError("Failed to resolve 'chat-shared2.zhile.io'"))
        status, out, err = run(["chat", "--max-retries", "0", "hi"], capsys)
    assert status == 1 and out == ""
    error, hint = err.splitlines()
    assert error.startswith("fakegpt: error: APIConnectionError: GET /api/loads to chat-shared2.zhile.io failed")
    assert hint.startswith(f"hint: the default server, {DEFAULT_BASE_URL} (the original service), has been offline "
                           "since 2024")
    assert "--emulator" in hint and "--base-url URL" in hint and "FAKEGPT_BASE_URL" in hint


def test_another_url_unreachable_gets_no_offline_hint(capsys):
    status, out, err = run(["chat", "--base-url", f"http://127.0.0.1:{closed_port()}", "--max-retries", "0", "hi"],
                           capsys)
    assert status == 1 and err.count("\n") == 1 and err.startswith("fakegpt: error: APIConnectionError:")


def test_debug_shows_the_traceback_and_the_flow_without_secrets(capsys, fakegpt_emulator):
    fakegpt_emulator.fail_next(400, {"detail": "bad request"})
    status, out, err = run(["chat", "--base-url", fakegpt_emulator.url, "hi", "--debug"], capsys)
    assert status == 1 and "Traceback" in err and "APIStatusError: POST /api/conversation failed: HTTP 400" in err
    assert err.count("GET /api/auth/session: HTTP 200") == 1
    assert "emu-" not in err  # the emulator's access tokens start with emu-
    assert err.rstrip("\n").splitlines()[-1].startswith("fakegpt: error: APIStatusError:")


def test_partial_text_ends_with_a_newline_before_the_error(capsys, fakegpt_emulator):
    fakegpt_emulator.stream_fault("truncate", after_words=2)
    status, out, err = run(["chat", "--base-url", fakegpt_emulator.url, "hi"], capsys)
    assert status == 1 and out == "Hello! You \n" and "IncompleteStreamError" in err


def test_a_one_shot_reply_cut_at_the_length_limit_says_so(capsys):
    with Emulator(max_words=4) as emulator:
        status, out, err = run(["chat", "--base-url", emulator.url, "tell me everything"], capsys)
    assert status == 0 and out.split() == default_responder("tell me everything").split()[:4]
    assert err.startswith("note: the reply stopped at the server's length limit (finish reason max_tokens)")
    assert err.count("\n") == 1


def test_version_and_help(capsys):
    status, out, _ = run(["--version"], capsys)
    assert status == 0 and out.strip() == f"fakegpt {fakegpt.__version__}"
    status, out, _ = run(["--help"], capsys)
    assert status == 0 and "examples:" in out and "fakegpt chat --emulator" in out
    assert "FAKEGPT_SESSION_CACHE" in out and "FAKEGPT_LOG" in out
    status, out, _ = run(["chat", "--help"], capsys)
    assert status == 0 and "--emulator" in out and "--system TEXT" in out
    assert "--max-retries N" in out and "--session-cache FILE" in out
    status, out, _ = run(["serve", "--help"], capsys)
    assert status == 0 and "--format {cumulative,v1}" in out


def test_output_failures_are_one_line(capsys, monkeypatch):
    class Full(io.StringIO):
        def flush(self):
            raise OSError(28, "No space left on device")

    monkeypatch.setattr(sys, "stdout", Full())
    status = cli.main(["chat", "--emulator", "hi"])
    err = capsys.readouterr().err
    assert status == 1 and err == "fakegpt: error: cannot write to standard output: No space left on device\n"


def test_spinner_draws_until_stopped_and_erases_itself(monkeypatch):
    err = io.StringIO()
    monkeypatch.setattr(sys, "stderr", err)
    spinner = Spinner()
    time.sleep(0.2)
    spinner.stop()
    assert "⠋" in err.getvalue() and err.getvalue().endswith("\r  \r")


def test_debug_shows_the_underlying_error_of_a_failed_call_too(capsys):
    status, out, err = run(["chat", "--base-url", f"http://127.0.0.1:{closed_port()}", "--max-retries", "0", "hi",
                            "--debug"], capsys)
    assert status == 1 and "urllib3" in err and "(error.cause) was the direct cause" in err
    assert err.rstrip("\n").splitlines()[-1].startswith("fakegpt: error: APIConnectionError:")
