"""The conversation call's request side (PROTOCOL §2): checking the messages,
flattening them into one prompt, the model slug, and the JSON body. Pure.
"""
from __future__ import annotations

import uuid
from typing import Any, Dict, List, Mapping, Optional, Sequence

__all__ = ["DEFAULT_MODEL", "MODEL_SLUGS", "conversation_body", "flatten_prompt", "validate_messages", "web_model"]

DEFAULT_MODEL = "gpt-3.5-turbo"
#: Public model names → the web backend's slugs. Anything else passes through.
MODEL_SLUGS = {"gpt-3.5-turbo": "text-davinci-002-render-sha"}


def validate_messages(messages: Any) -> List[Mapping[str, str]]:
    """Check *messages* is a non-empty list of ``{"role": str, "content": str}``.

    :raises TypeError: not a list, or a message / role / content of the wrong type.
    :raises ValueError: an empty list, or a message without ``role`` or ``content``.
    """
    if not isinstance(messages, (list, tuple)):
        raise TypeError(f"messages must be a list of {{'role', 'content'}} dicts, not {type(messages).__name__}")
    if not messages:
        raise ValueError("messages is empty: give at least one {'role': ..., 'content': ...} dict")
    for index, message in enumerate(messages):
        if not isinstance(message, Mapping):
            raise TypeError(f"messages[{index}] must be a dict, not {type(message).__name__}")
        for key in ("role", "content"):
            if key not in message:
                raise ValueError(f"messages[{index}] has no {key!r}")
            if not isinstance(message[key], str):
                raise TypeError(f"messages[{index}][{key!r}] must be a str, not {type(message[key]).__name__}")
        if not message["role"].strip():
            raise ValueError(f"messages[{index}]['role'] is empty")
    return list(messages)


def flatten_prompt(messages: Sequence[Mapping[str, str]]) -> str:
    """Flatten a message list into one user turn, as the original provider did.

    One message → its content verbatim; several → ``Role: content`` lines
    (role capitalised) followed by ``Assistant:``::

        >>> flatten_prompt([{"role": "system", "content": "Be brief."},
        ...                 {"role": "user", "content": "hi"}])
        'System: Be brief.\\nUser: hi\\nAssistant:'
    """
    if len(messages) == 1:
        return messages[0]["content"]
    lines = "\n".join(f"{m['role'].capitalize()}: {m['content']}" for m in messages)
    return f"{lines}\nAssistant:"


def web_model(model: Optional[str]) -> str:
    """The backend slug for *model* (``None`` or ``""`` means the default model)."""
    if model is None or model == "":
        model = DEFAULT_MODEL
    if not isinstance(model, str):
        raise TypeError(f"model must be a str, not {type(model).__name__}")
    return MODEL_SLUGS.get(model, model)


def conversation_body(
    prompt: Optional[str],
    model: Optional[str],
    *,
    action: str = "next",
    conversation_id: Optional[str] = None,
    parent_message_id: Optional[str] = None,
    message_id: Optional[str] = None,
    keep_history: Optional[bool] = None,
) -> Dict[str, Any]:
    """The JSON body of ``POST /api/conversation``.

    A one-shot call (no *conversation_id*) sends a fresh random parent id and
    disables history, like the original; a call inside a conversation sends
    the server's ids and keeps history (*keep_history* says so for the first
    turn of a new conversation). ``action="continue"`` carries no message
    (*prompt* is ``None``).
    """
    if keep_history is None:
        keep_history = conversation_id is not None or action != "next"
    body: Dict[str, Any] = {"action": action}
    if prompt is not None:
        body["messages"] = [
            {
                "id": message_id or str(uuid.uuid4()),
                "author": {"role": "user"},
                "content": {"content_type": "text", "parts": [prompt]},
                "metadata": {},
            }
        ]
    if conversation_id is not None:
        body["conversation_id"] = conversation_id
    body["parent_message_id"] = parent_message_id or str(uuid.uuid4())
    body.update(
        model=web_model(model),
        plugin_ids=[],
        timezone_offset_min=-120,
        suggestions=[],
        history_and_training_disabled=not keep_history,
        arkose_token="",
        force_paragen=False,
    )
    return body
