"""The gateway: the shared-account protocol in front of any OpenAI-compatible
model server (Ollama, the llama.cpp server, vLLM, LiteLLM, OpenAI), so every
client of the protocol gets a real model's replies::

    from fakegpt.emulator import Emulator
    from fakegpt.gateway import Upstream

    upstream = Upstream("http://127.0.0.1:11434/v1", model="llama3.2")
    with Emulator(upstream=upstream, port=8787) as gateway:
        ...  # point fakegpt.Client, gpt4free's FakeGpt, ... at gateway.url

Each reply is one streamed ``POST {base}/chat/completions`` carrying the
conversation's whole path; each delta reaches the client as one event at
once; a client hanging up closes the request to the model server. The
command line runs the same: ``fakegpt serve --upstream URL``. See the
"Run your own server" page of the documentation.
"""
from __future__ import annotations

from ._messages import CONTINUE_PROMPT, chat_messages, unflatten
from ._reply import UpstreamReply
from ._upstream import API_KEY_VARIABLES, Upstream

__all__ = ["API_KEY_VARIABLES", "CONTINUE_PROMPT", "Upstream", "UpstreamReply", "chat_messages", "unflatten"]
