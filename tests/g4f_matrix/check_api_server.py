"""gpt4free's OpenAI-compatible API server with FakeGpt, driven by the official ``openai`` client.

Run by noxfile.py (sessions ``g4f-api-<release>``) in a venv holding one g4f
release, uvicorn and openai::

    python tests/g4f_matrix/check_api_server.py

It starts the emulator in this process and ``fakegpt g4f-api --workers 2
--offline`` as a child process on a free loopback port (FAKEGPT_BASE_URL
pointing at the emulator), then checks: the model lists, a plain and a
streamed reply, every call answered by FakeGpt whichever worker takes it,
401 for a dead token list, 429 with ``Retry-After`` for a rate limit the
server keeps up, and an error mid-stream. The openai client never retries
(``max_retries=0``): each case is one request. Prints PASS/FAIL per case;
exits 1 if any failed.
"""
import os
import socket
import subprocess
import sys
import tempfile
import time

import openai
import requests

from fakegpt.emulator import Emulator

from _common import Results, expected, g4f_version, messages, responder

WORKERS = 2
MODEL = "gpt-3.5-turbo"
EXTRA = {"provider": "FakeGpt"}


def free_port():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def start_server(emulator, port, log):
    env = dict(os.environ, FAKEGPT_BASE_URL=emulator.url, G4F_CACHE_DIR=tempfile.mkdtemp(prefix="g4f-cache-"))
    command = [sys.executable, "-m", "fakegpt", "g4f-api", "--port", str(port), "--workers", str(WORKERS),
               "--offline"]
    process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env)
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"fakegpt g4f-api exited with {process.returncode} before answering")
        try:
            if requests.get(f"http://127.0.0.1:{port}/v1/models", timeout=5).status_code == 200:
                return process
        except requests.RequestException:
            pass
        time.sleep(0.2)
    process.kill()
    raise RuntimeError("fakegpt g4f-api did not answer within 180 s")


def client(port):
    return openai.OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key="unused", max_retries=0, timeout=60)


def ask(port, prompt, **options):
    return client(port).chat.completions.create(model=MODEL, messages=messages(prompt), extra_body=EXTRA,
                                                **options)


def main():
    (major, _), version = g4f_version()
    results = Results(version)
    emulator = Emulator(responder=responder, delay=0.01).start()
    port = free_port()
    log = tempfile.TemporaryFile()
    try:
        process = start_server(emulator, port, log)
    except RuntimeError as error:
        log.seek(0)
        print(log.read().decode("utf-8", "replace")[-4000:])
        results.run("server starts", "api", lambda: (_ for _ in ()).throw(error))
        results.finish("api-server")
    try:
        run_cases(results, emulator, port, major)
    finally:
        process.terminate()
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            process.kill()
        if results.failed():
            log.seek(0)
            print("--- the server's output (last 6000 characters) ---")
            print(log.read().decode("utf-8", "replace")[-6000:])
        emulator.stop()
    results.finish("api-server")


def run_cases(results, emulator, port, major):
    def models():
        listed = client(port).models.list()
        assert len(listed.data) > 0, "no models listed"
    results.run("GET /v1/models", "api", models)

    def provider_models():
        answer = requests.get(f"http://127.0.0.1:{port}/api/FakeGpt/models", timeout=30)
        assert answer.status_code == 200, answer.text[:300]
        ids = [model["id"] for model in answer.json()["data"]]
        assert "gpt-3.5-turbo" in ids, ids
    results.run("GET /api/FakeGpt/models", "api", provider_models)

    def plain():
        prompt = "plain through the API"
        answer = ask(port, prompt)
        assert answer.choices[0].message.content == expected(prompt), answer.choices[0].message.content
    results.run("plain reply", "api", plain)

    def streamed():
        prompt = "streamed through the API"
        chunks = [chunk.choices[0].delta.content or "" for chunk in ask(port, prompt, stream=True) if chunk.choices]
        assert "".join(chunks) == expected(prompt), chunks
        assert len([c for c in chunks if c]) > 3, f"not streamed: {chunks}"
    results.run("streamed reply", "api", streamed)

    def every_worker():
        # A fresh client (a new connection) per call: the workers share the socket, any may take it.
        for i in range(4 * WORKERS):
            prompt = f"worker call {i}"
            answer = ask(port, prompt)
            assert answer.choices[0].message.content == expected(prompt), f"call {i}: {answer}"
        assert 1 <= emulator.counts["logins"] <= WORKERS, emulator.counts  # one login per worker at most
    results.run(f"{4 * WORKERS} calls, {WORKERS} workers, all FakeGpt", "api", every_worker)

    def unauthorized():
        emulator.expire_access_tokens()
        emulator.clear_tokens()  # a dead token list: the fresh login finds no usable token
        try:
            ask(port, "no token left")
        except openai.AuthenticationError as error:
            assert error.status_code == 401, error
            shown = "AuthenticationError" if major < 8 else "MissingAuthError: Authentication required"
            assert shown in str(error), f"message lost: {error}"
            if major < 8:
                assert "token list" in str(error), f"message lost: {error}"
        else:
            raise AssertionError("no 401")
        finally:
            for _ in range(3):
                emulator.add_token()
    results.run("401 for a dead token list", "api", unauthorized)

    def after_401():
        prompt = "tokens are back"
        assert ask(port, prompt).choices[0].message.content == expected(prompt)
    results.run("a reply once tokens are back", "api", after_401)

    def rate_limited():
        before = emulator.counts["conversations"]
        emulator.fail_next(429, headers={"Retry-After": "120"}, times=4)  # longer than fakegpt waits out
        try:
            ask(port, "rate limited")
        except openai.RateLimitError as error:
            assert error.status_code == 429, error
            assert error.response.headers.get("retry-after") == "120", dict(error.response.headers)
            shown = "RateLimitError" if major < 8 else "Request execution failed"
            assert shown in str(error), f"message lost: {error}"
        else:
            raise AssertionError("no 429")
        finally:
            sent = emulator.counts["conversations"] - before
            emulator.reset()  # the rate limits not used up (and the logins: the next call logs in again)
        assert sent == 1, f"{sent} conversation requests for one call (sent again?)"
    results.run("429 with Retry-After for a persistent rate limit", "api", rate_limited)

    def mid_stream():
        prompt = "broken mid-stream"
        emulator.stream_fault("error", after_words=3, message="the model broke down")
        received = []
        try:
            for chunk in ask(port, prompt, stream=True):
                if chunk.choices:
                    received.append(chunk.choices[0].delta.content or "")
        except openai.APIError as error:
            assert "the model broke down" in str(error) or major >= 8, f"message lost: {error}"
        else:
            raise AssertionError(f"no error after {''.join(received)!r}")
        assert expected(prompt).startswith("".join(received)) and "".join(received), received
    results.run("an error mid-stream", "api", mid_stream)


if __name__ == "__main__":
    main()
