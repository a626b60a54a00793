"""The conversation protocol: request bodies, prompt flattening, and turning
stream events into reply text (PROTOCOL §2–§4). Pure; no I/O.
"""
from __future__ import annotations

import json
import uuid
from typing import Any, Dict, List, Mapping, Optional, Sequence

from .exceptions import StreamError, one_line

__all__ = ["ReplyDecoder", "conversation_body", "flatten_prompt", "validate_messages", "web_model"]

DEFAULT_MODEL = "gpt-3.5-turbo"
#: Public model names → the web backend's slugs. Anything else passes through.
MODEL_SLUGS = {"gpt-3.5-turbo": "text-davinci-002-render-sha"}
_TEXT_PATH = "/message/content/parts/0"


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
    model: str,
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


class ReplyDecoder:
    """Stream events → new reply text, for both stream formats.

    Feed every SSE event to :meth:`feed`; it returns the text that event
    added to the assistant's reply (often ``""``). The format is recognised
    from the stream itself: cumulative events (format A, ``parts[0]`` is the
    whole text so far) or delta-encoding v1 (format B, JSON-pointer ops).
    Both are reduced to one rule: the reply of each assistant message is its
    ``parts[0]``, and only what lies beyond the part already delivered is new.

    After the stream, the attributes describe the reply: :attr:`done` (saw
    ``[DONE]``), :attr:`finished` (saw a finished assistant message),
    :attr:`conversation_id`, :attr:`message_id`, :attr:`model`,
    :attr:`finish_reason`; :attr:`text` is the whole reply.
    """

    def __init__(self, *, resume: Optional[Mapping[str, str]] = None) -> None:
        """:param resume: ``{message_id: text already delivered}``, so a
        continued message yields only what the continuation adds."""
        self.done = False
        self.finished = False
        self.conversation_id: Optional[str] = None
        self.message_id: Optional[str] = None
        self.model: Optional[str] = None
        self.finish_reason: Optional[str] = None
        self.parts: List[str] = []  # every delta, in order
        self._delivered: Dict[Any, int] = {k: len(v) for k, v in (resume or {}).items()}
        self._docs: Dict[Any, Dict[str, Any]] = {}  # format B: channel → message document
        self._channel: Any = 0
        self._op: Optional[str] = None  # format B: the sticky op and path
        self._path: Optional[str] = None
        self._fast: Optional[Dict[str, Any]] = None  # the doc whose text a sticky append extends
        self._fast_parts: List[Any] = []  # ... and its content.parts
        self._queued: List[str] = []  # fast appends not yet applied to that document

    @property
    def text(self) -> str:
        """The reply text delivered so far."""
        return "".join(self.parts)

    def feed(self, event: str, data: bytes) -> str:
        """Decode one event; return the reply text it adds."""
        if data[:1] != b"{":  # not an object: [DONE], nothing, or a value to skip
            stripped = data.strip()
            if stripped == b"[DONE]":
                self.done = True
                return ""
            if not stripped or event == "ping":
                return ""
        elif event == "ping":
            return ""
        try:
            obj = json.loads(data.decode("utf-8"))  # (json's own bytes detection is slower)
        except (ValueError, RecursionError) as err:  # ValueError includes UnicodeDecodeError
            if event == "error":
                raise StreamError(f"the server reported an error in the stream: {_error_text(_text(data))}") from None
            raise StreamError(f"unreadable event in the stream: {one_line(_text(data), 80)}") from err
        if event == "error":
            raise StreamError(f"the server reported an error in the stream: {_error_text(obj)}")
        if not isinstance(obj, dict):
            return ""  # e.g. the "v1" announcement of event: delta_encoding
        # Format B fast path: a bare {"v": "text"} extending the reply.
        if self._fast is not None and len(obj) == 1:
            value = obj.get("v")
            if type(value) is str:
                return self._append_fast(value)
        if self._queued:
            self._apply_queued()
        try:
            if "message" in obj:
                if event != "delta":
                    return self._on_envelope(obj)  # format A
                return self._op_event({"p": "", "o": "add", "v": obj})
            if "v" in obj or "o" in obj:
                return self._op_event(obj)
        except (KeyError, IndexError, TypeError, AttributeError, RecursionError) as err:
            # A shape no rule here foresaw: still a fakegpt error, with its cause.
            raise StreamError(f"malformed event in the stream: {one_line(_text(data), 80)}") from err
        if obj.get("type") == "message_stream_complete":
            self.finished = True
        elif obj.get("error"):
            raise StreamError(f"the server reported an error in the stream: {_error_text(obj['error'])}")
        if isinstance(obj.get("conversation_id"), str):
            self.conversation_id = obj["conversation_id"]
        return ""  # moderation, title_generation and other side events

    # -- format A --------------------------------------------------------
    def _on_envelope(self, envelope: Mapping[str, Any]) -> str:
        if isinstance(envelope.get("conversation_id"), str):
            self.conversation_id = envelope["conversation_id"]
        message = envelope.get("message")
        if envelope.get("error") and not isinstance(message, dict):
            raise StreamError(f"the server reported an error in the stream: {_error_text(envelope['error'])}")
        return self._on_message(message) if isinstance(message, dict) else ""

    def _on_message(self, message: Mapping[str, Any]) -> str:
        """Record an assistant message's state; return its undelivered text."""
        author = message.get("author")
        if not isinstance(author, dict) or author.get("role") != "assistant":
            return ""  # the hidden system message, the user's echo, tool output
        if message.get("recipient", "all") not in ("all", None):
            return ""  # a tool call, not reply text
        message_id = message.get("id")
        if type(message_id) not in (str, int):
            message_id = None  # (it keys a dict: an odd id must not break that)
        self.message_id = message_id
        metadata = message.get("metadata")
        if isinstance(metadata, dict):
            if isinstance(metadata.get("model_slug"), str):
                self.model = metadata["model_slug"]
            details = metadata.get("finish_details")
            if isinstance(details, dict) and isinstance(details.get("type"), str):
                self.finish_reason = details["type"]
                self.finished = True
        if message.get("status") == "finished_successfully" or message.get("end_turn") is True:
            self.finished = True
        content = message.get("content")
        parts = content.get("parts") if isinstance(content, dict) else None
        if not isinstance(parts, list) or not parts or type(parts[0]) is not str:
            return ""
        text = parts[0]
        delivered = self._delivered.get(message_id, 0)
        if len(text) <= delivered:
            return ""
        self._delivered[message_id] = len(text)
        delta = text[delivered:]
        self.parts.append(delta)
        return delta

    # -- format B --------------------------------------------------------
    def _append_fast(self, value: str) -> str:
        """A bare ``{"v": "text"}`` extending the assistant message, the commonest
        event of format B: all of it is new text. It is queued, and applied to
        the message document only when another op needs the document."""
        if value:
            self._queued.append(value)
            self.parts.append(value)
        return value

    def _apply_queued(self) -> None:
        parts = self._fast_parts
        parts[0] = parts[0] + "".join(self._queued)
        self._queued = []
        self._delivered[self.message_id] = len(parts[0])

    def _op_event(self, obj: Mapping[str, Any]) -> str:
        if type(obj.get("c")) in (str, int):
            self._channel = obj["c"]
        if "o" not in obj and "p" not in obj and isinstance(obj.get("v"), dict) and "message" in obj["v"]:
            op, path = "add", ""  # a whole new document, op omitted
        else:
            op = obj.get("o", self._op)
            path = obj.get("p", self._path)
            self._op, self._path = op, path
        value = obj.get("v")
        if op == "add" and path == "":
            if not isinstance(value, dict):
                return ""
            self._docs[self._channel] = value
            if value.get("error") and not isinstance(value.get("message"), dict):
                raise StreamError(f"the server reported an error in the stream: {_error_text(value['error'])}")
            doc = value
        else:
            doc = self._docs.get(self._channel)
            if doc is None or not isinstance(path, str):
                return ""
            if op == "patch" and isinstance(value, list):
                for item in value:
                    if isinstance(item, dict):
                        _apply(doc, item.get("p", ""), item.get("o", "replace"), item.get("v"))
            else:
                _apply(doc, path, op, value)
        if isinstance(doc.get("conversation_id"), str):
            self.conversation_id = doc["conversation_id"]
        message = doc.get("message")
        if not isinstance(message, dict):
            return ""
        delta = self._on_message(message)
        self._fast = None
        # The fast path starts where all of the text so far has been delivered.
        if op == "append" and path == _TEXT_PATH and self.message_id == message.get("id") and delta:
            self._fast, self._fast_parts = doc, message["content"]["parts"]
        return delta


_POINTERS: Dict[str, List[str]] = {}


def _pointer(path: str) -> List[str]:
    """Parse a JSON pointer (RFC 6901) into its keys, with a cache."""
    keys = _POINTERS.get(path)
    if keys is None:
        keys = [k.replace("~1", "/").replace("~0", "~") for k in path.split("/")[1:]]
        if len(_POINTERS) < 256:
            _POINTERS[path] = keys
    return keys


def _apply(doc: Dict[str, Any], path: str, op: Optional[str], value: Any) -> None:
    """Apply one delta op to *doc*; ops that do not fit the document are ignored."""
    if not isinstance(path, str):
        return
    keys = _pointer(path)
    if not keys:
        return
    parent: Any = doc
    try:
        for key in keys[:-1]:
            parent = parent[int(key)] if isinstance(parent, list) else parent[key]
        last: Any = keys[-1]
        if isinstance(parent, list):
            last = len(parent) if last == "-" else int(last)
        if op == "append":
            current = parent[last]
            if isinstance(current, list):
                current.extend(value if isinstance(value, list) else [value])
            elif isinstance(current, dict):
                current.update(value)  # e.g. finish_details appended to /message/metadata
            else:
                parent[last] = current + value
        elif op in ("replace", "add"):
            if isinstance(parent, list) and op == "add":
                parent.insert(last, value)
            else:
                parent[last] = value
        elif op == "truncate":
            parent[last] = parent[last][:value]
        elif op == "remove":
            del parent[last]
    except (KeyError, IndexError, TypeError, ValueError):
        pass


def _text(data: bytes) -> str:
    return data.decode("utf-8", "replace")


def _error_text(error: Any) -> str:
    if isinstance(error, dict):
        return one_line(str(error.get("message") or error.get("detail") or error.get("code") or error), 200)
    return one_line(str(error), 200)
