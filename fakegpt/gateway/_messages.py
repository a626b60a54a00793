"""The chat-completions messages for a reply: the conversation's path, as
OpenAI-compatible servers take it. Pure."""
from __future__ import annotations

import re
from typing import Dict, List, Optional, Sequence, Tuple

__all__ = ["CONTINUE_PROMPT", "chat_messages", "unflatten"]

#: Sent after the partial reply to ask the model to go on (``action: "continue"``).
CONTINUE_PROMPT = "Continue your last answer exactly where it stopped, without repeating any of it."

_ROLE_LINE = re.compile(r"(System|User|Assistant): ?(.*)")

Message = Dict[str, str]


def unflatten(prompt: str) -> List[Message]:
    """The messages a flattened prompt was made of (``fakegpt`` and
    gpt4free's FakeGpt send a message list as ``Role: content`` lines ending
    with ``Assistant:``), or the prompt as one user message::

        >>> unflatten("System: Be brief.\\nUser: hi\\nAssistant:")
        [{'role': 'system', 'content': 'Be brief.'}, {'role': 'user', 'content': 'hi'}]
        >>> unflatten("hi")
        [{'role': 'user', 'content': 'hi'}]
    """
    lines = prompt.split("\n")
    if len(lines) < 2 or lines[-1] != "Assistant:" or not _ROLE_LINE.fullmatch(lines[0]):
        return [{"role": "user", "content": prompt}]
    messages: List[Message] = []
    for line in lines[:-1]:
        match = _ROLE_LINE.fullmatch(line)
        if match:
            messages.append({"role": match.group(1).lower(), "content": match.group(2)})
        else:  # a message of several lines
            messages[-1]["content"] += "\n" + line
    return messages


def chat_messages(prompt: str, history: Sequence[Tuple[str, str]], partial: Optional[str] = None) -> List[Message]:
    """The whole path of a reply: the earlier turns in order (system, user,
    assistant), then the new user message; to continue a reply, its text so
    far as an assistant message and :data:`CONTINUE_PROMPT`::

        >>> chat_messages("And 3?", [("user", "1+1?"), ("assistant", "2")])  # doctest: +NORMALIZE_WHITESPACE
        [{'role': 'user', 'content': '1+1?'}, {'role': 'assistant', 'content': '2'},
         {'role': 'user', 'content': 'And 3?'}]
    """
    messages: List[Message] = []
    for role, text in history:
        if role == "user":
            messages += unflatten(text)
        elif role in ("assistant", "system") and text:
            messages.append({"role": role, "content": text})
    messages += unflatten(prompt)
    if partial is not None:
        messages += [{"role": "assistant", "content": partial}, {"role": "user", "content": CONTINUE_PROMPT}]
    return messages
