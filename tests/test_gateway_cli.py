"""``fakegpt serve --upstream URL`` as a real process, in front of real OpenAI-compatible
server processes: llm-katan's echo backend (Python 3.10+) and the paced test server."""
import argparse
import asyncio
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time

import pytest
import requests

import fakegpt
from fakegpt.cli import _serve
from fakegpt.emulator import Emulator

from .cli_helpers import command, run
from .upstream_kit import PacedUpstream, expected_reply

KEY = "sk-gateway-test-7c1e9b0d55aa"
HI = [{"role": "user", "content": "hi there, Ünïcode ✓"}]


def free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def llm_katan(tmp_path_factory):
    """llm-katan's echo backend on a free loopback port; its OpenAI base URL."""
    pytest.importorskip("llm_katan", reason="llm-katan needs Python 3.10+")
    executable = shutil.which("llm-katan", path=os.path.dirname(sys.executable)) or shutil.which("llm-katan")
    port = free_port()
    process = subprocess.Popen(
        [executable, "--model", "echo-model", "--backend", "echo", "--host", "127.0.0.1", "--port", str(port),
         "--stats-file", str(tmp_path_factory.mktemp("katan") / "stats.json"), "--log-level", "warning"],
        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}/v1"
    try:
        deadline = time.monotonic() + 60
        while True:  # ready when it answers (it needs a key, any key)
            try:
                if requests.get(url + "/models", headers={"Authorization": "Bearer x"}, timeout=2).ok:
                    break
            except requests.ConnectionError:
                pass
            assert process.poll() is None and time.monotonic() < deadline, "llm-katan did not start"
            time.sleep(0.1)
        yield url
    finally:
        process.terminate()
        process.wait(10)


class Gateway:
    """A ``fakegpt serve`` process; :attr:`url` is the first line of its stdout."""

    def __init__(self, *args, env=None):
        self.process = subprocess.Popen(
            command("serve", "--port", "0", *args), stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
            stderr=subprocess.PIPE, text=True, env={**os.environ, "FAKEGPT_UPSTREAM_API_KEY": KEY, **(env or {})})
        self.url = self.process.stdout.readline().strip()
        self.out = self.err = ""

    def stop(self):
        self.process.send_signal(signal.SIGINT)
        out, err = self.process.communicate(timeout=15)
        self.out, self.err = self.url + "\n" + out, err
        return self.process.returncode


def echoed(text, prompt, messages):
    pattern = (r"\[echo\] model=echo-model host=\S+ time=\S+ messages=" + str(messages)
               + r" max_tokens=\d+ temperature=[0-9.]+\nUser: " + re.escape(prompt))
    return re.fullmatch(pattern, text) is not None


def test_exact_echo_through_the_gateway_with_history_and_the_key_never_shown(llm_katan):
    gateway = Gateway("--upstream", llm_katan)
    try:
        assert gateway.url.startswith("http://localhost:")
        with fakegpt.Client(gateway.url, max_retries=0) as client:
            one_shot = client.complete(HI)
            conversation = client.conversation()
            first = conversation.complete("first")
            second = "".join(conversation.stream("second ✓"))
    finally:
        assert gateway.stop() == 0
    assert echoed(one_shot, HI[0]["content"], 1), one_shot
    assert echoed(first, "first", 1) and echoed(second, "second ✓", 3), (first, second)  # the history went up
    assert "gateway serving on" in gateway.err and "Traceback" not in gateway.err
    assert KEY not in gateway.out + gateway.err


def test_gpt4free_0_2_0_9s_own_fakegpt_through_the_gateway_process(llm_katan, monkeypatch, gpt4free_fakegpt):
    Original = gpt4free_fakegpt
    gateway = Gateway("--upstream", llm_katan)
    try:
        monkeypatch.setattr(Original, "url", gateway.url)
        monkeypatch.setattr(Original, "_access_token", None)  # it keeps its login in the class
        monkeypatch.setattr(Original, "_cookie_jar", None)

        async def collect():
            return "".join([d async for d in Original.create_async_generator("gpt-3.5-turbo", HI)])

        text = asyncio.run(collect())
    finally:
        gateway.stop()
    assert echoed(text, HI[0]["content"], 1), text


def test_errors_and_keys_through_the_gateway_process(tmp_path):
    keys = tmp_path / "keys.txt"
    keys.write_text("# the team's keys\nkey-alpha\n\nkey-beta\n")
    with PacedUpstream(api_key=KEY) as upstream:
        gateway = Gateway("--upstream", upstream.url, "--upstream-model", "paced", "--tokens", str(keys))
        try:
            loads = requests.get(gateway.url + "/api/loads", timeout=10).json()["loads"]
            assert [entry["token_id"] for entry in loads] == ["key-alpha", "key-beta"]
            with fakegpt.Client(gateway.url, max_retries=0) as client:
                assert client.complete(HI) == expected_reply(HI[0]["content"])
                upstream.fault("status", status=500, body={"error": {"message": f"key {KEY} exploded"}})
                with pytest.raises(fakegpt.APIStatusError) as raised:
                    client.complete(HI)
                assert raised.value.status_code == 502 and KEY not in str(raised.value)
                upstream.fault("cut", after=2)
                with pytest.raises(fakegpt.StreamError) as cut:
                    client.complete(HI)
                assert cut.value.partial_text == "Écho ✓ "
                assert client.complete(HI) == expected_reply(HI[0]["content"])  # still serving
        finally:
            assert gateway.stop() == 0
    assert upstream.headers[0]["Authorization"] == f"Bearer {KEY}" and upstream.bodies[0]["model"] == "paced"
    assert KEY not in gateway.out + gateway.err and "key-alpha" not in gateway.err  # given keys are not printed


def test_generated_token_keys_are_printed_on_stderr():
    with PacedUpstream() as upstream:
        gateway = Gateway("--upstream", upstream.url)
        try:
            loads = requests.get(gateway.url + "/api/loads", timeout=10).json()["loads"]
        finally:
            gateway.stop()
    assert len(loads) == 3 and all(f"  {entry['token_id']}\n" in gateway.err for entry in loads)


@pytest.mark.parametrize("argv, said", [
    (["--upstream-model", "m"], "--upstream-model needs --upstream"),
    (["--upstream", "localhost:11434/v1"], "--upstream: the upstream must be an http:// or https:// URL"),
    (["--upstream", "http://127.0.0.1:9/v1", "--tokens", "/nonexistent/keys"], "--tokens: cannot read"),
])
def test_usage_errors(capsys, argv, said):
    status, out, err = run(["serve", "--port", "0"] + argv, capsys)
    assert status == 2 and said in err and out == ""


def test_an_empty_tokens_file_is_a_usage_error(capsys, tmp_path):
    keys = tmp_path / "keys"
    keys.write_text("\n# nothing\n")
    status, _, err = run(["serve", "--port", "0", "--tokens", str(keys)], capsys)
    assert status == 2 and "holds no token key" in err


@pytest.mark.parametrize("host, warned", [("127.0.0.1", False), ("localhost", False), ("::1", False),
                                          ("0.0.0.0", True), ("192.0.2.7", True)])
def test_a_host_beyond_loopback_is_warned_about(capsys, host, warned):
    with Emulator() as emulator:  # (the warning only: nothing listens on *host* here)
        _serve._announce(emulator, argparse.Namespace(host=host, upstream_model=None), generated=True)
    err = capsys.readouterr().err
    assert ("warning: listening on" in err and "nothing protects this server" in err
            and "reverse proxy with TLS and authentication" in err) == warned
    assert "token keys protect" not in err and "all that protects" not in err  # /api/loads lists them to anyone
