"""Turning conversation stream events into reply text, for both stream formats
(PROTOCOL §3–§4); the request side lives in :mod:`fakegpt._request` and is
re-exported here. Pure; no I/O.
"""
from __future__ import annotations

import json
import re
from typing import Any, Dict, List, Mapping, Optional

from ._json_ops import apply_op
from ._request import DEFAULT_MODEL, MODEL_SLUGS, conversation_body, flatten_prompt, validate_messages, web_model
from .exceptions import StreamError, describe_json, one_line

__all__ = [
    "DEFAULT_MODEL", "MODEL_SLUGS", "ReplyDecoder", "conversation_body", "flatten_prompt", "validate_messages",
    "web_model",
]

_TEXT_PATH = "/message/content/parts/0"
#: Deltas kept as separate strings before they are joined into one: a long
#: reply costs its text, not an object per delta (about 90 bytes each).
_BLOCK = 256
_SURROGATE = re.compile("[\ud800-\udfff]")
_raw_decode = json.JSONDecoder().raw_decode
_JSON_SPACE = " \t\n\r"


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

    The text is always valid Unicode: a proxy that cuts a UTF-16 surrogate
    pair between two events (``"\\ud83d"`` in one, ``"\\ude00"`` in the
    next, as JavaScript and Go string slicing can) gets its halves joined;
    a trailing high half is held back until the next event, and a half that
    never finds its pair becomes U+FFFD (at the latest on ``[DONE]``, or
    :meth:`flush`).
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
        self.parts: List[str] = []  # every delta, in order (runs of _BLOCK joined into one string)
        self._blocks = 0  # how many strings at the head of parts are joined runs
        self._delivered: Dict[Any, int] = {k: len(v) for k, v in (resume or {}).items()}
        self._docs: Dict[Any, Dict[str, Any]] = {}  # format B: channel → message document
        self._channel: Any = 0
        self._op: Optional[str] = None  # format B: the sticky op and path
        self._path: Optional[str] = None
        self._fast: Optional[Dict[str, Any]] = None  # the doc whose text a sticky append extends
        self._fast_parts: List[Any] = []  # ... and its content.parts
        self._queued: List[str] = []  # fast appends not yet applied to that document (joined as parts are)
        self._queued_blocks = 0
        self._high = ""  # a high surrogate held back (not counted as delivered), awaiting its pair
        self._high_owner: Any = None  # ... in the text of this message

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
                return self.flush()
            if not stripped or event == "ping":
                return ""
        elif event == "ping":
            return ""
        try:
            text = data.decode("utf-8")  # (json's own bytes detection is slower)
            if data[:1] == b"{":
                # json.loads costs about a microsecond more per call than the
                # decoding itself: the commonest small events pay it twice over.
                obj, end = _raw_decode(text)
                if end != len(text) and text[end:].strip(_JSON_SPACE):
                    raise ValueError(f"extra data after the JSON object at character {end}")
            else:
                obj = json.loads(text)
        except (ValueError, RecursionError) as err:  # ValueError includes UnicodeDecodeError
            if event == "error":
                raise StreamError(f"the server reported an error in the stream: {_error_text(_text(data))}") from None
            # (a RecursionError is no cause to show: its traceback is a thousand frames of nothing)
            raise StreamError(f"unreadable event in the stream: {one_line(_text(data), 80)}") from (
                err if isinstance(err, ValueError) else ValueError("JSON nested too deep"))
        if event == "error":
            raise StreamError(f"the server reported an error in the stream: {_error_text(obj, data)}")
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
            raise StreamError(f"the server reported an error in the stream: {_error_text(obj['error'], data)}")
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
        ended = False  # this message is complete
        metadata = message.get("metadata")
        if isinstance(metadata, dict):
            if isinstance(metadata.get("model_slug"), str):
                self.model = metadata["model_slug"]
            details = metadata.get("finish_details")
            if isinstance(details, dict) and isinstance(details.get("type"), str):
                self.finish_reason = details["type"]
                self.finished = ended = True
        if message.get("status") == "finished_successfully" or message.get("end_turn") is True:
            self.finished = ended = True
        content = message.get("content")
        parts = content.get("parts") if isinstance(content, dict) else None
        if not isinstance(parts, list) or not parts or type(parts[0]) is not str:
            return ""
        text = parts[0]
        delivered = self._delivered.get(message_id, 0)
        if len(text) <= delivered:
            return ""
        # A held half is in text[delivered:] again (it was not counted as delivered),
        # unless it belongs to another message: then it never found its pair.
        orphan = "\ufffd" if self._high and self._high_owner != message_id else ""
        self._high = ""
        delta = orphan + self._settle(text[delivered:], message_id)
        if ended and self._high:
            delta += "\ufffd"  # the message is complete: its last half has no pair to come
            self._high = ""
        self._delivered[message_id] = len(text) - len(self._high)
        if delta:
            self._deliver(delta)
        return delta

    def _deliver(self, delta: str) -> None:
        parts = self.parts
        parts.append(delta)
        if len(parts) - self._blocks >= _BLOCK:
            self._blocks = _join_tail(parts, self._blocks)

    def _settle(self, text: str, message_id: Any) -> str:
        """*text* as it may be yielded: surrogate pairs joined, a trailing high
        surrogate held back for the next event, a lone half made U+FFFD."""
        if text.isascii() or not _SURROGATE.search(text):
            return text
        if "\ud800" <= text[-1] <= "\udbff":
            self._high, self._high_owner = text[-1], message_id
            text = text[:-1]
        return text.encode("utf-16-le", "surrogatepass").decode("utf-16-le", "replace")

    def flush(self) -> str:
        """The stream is over: the text still held back (a lone surrogate half, as U+FFFD)."""
        if not self._high:
            return ""
        self._high = ""
        if self._high_owner in self._delivered:
            self._delivered[self._high_owner] += 1
        self._deliver("\ufffd")
        return "\ufffd"

    # -- format B --------------------------------------------------------
    def _append_fast(self, value: str) -> str:
        """A bare ``{"v": "text"}`` extending the assistant message, the commonest
        event of format B: all of it is new text. It is queued, and applied to
        the message document only when another op needs the document."""
        if not value:
            return value
        queued = self._queued
        queued.append(value)
        if len(queued) - self._queued_blocks >= _BLOCK:
            self._queued_blocks = _join_tail(queued, self._queued_blocks)
        if self._high or not value.isascii():
            held, self._high = self._high, ""
            value = self._settle(held + value, self.message_id)
            if not value:
                return value
        self._deliver(value)
        return value

    def _apply_queued(self) -> None:
        parts = self._fast_parts
        parts[0] = parts[0] + "".join(self._queued)
        self._queued, self._queued_blocks = [], 0
        self._delivered[self.message_id] = len(parts[0]) - len(self._high)

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
            found = self._docs.get(self._channel)
            if found is None or not isinstance(path, str):
                return ""
            doc = found
            if op == "patch" and isinstance(value, list):
                for item in value:
                    if isinstance(item, dict):
                        apply_op(doc, item.get("p", ""), item.get("o", "replace"), item.get("v"))
            else:
                apply_op(doc, path, op, value)
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


def _join_tail(pieces: List[str], blocks: int) -> int:
    """Join the strings of *pieces* after its first *blocks* into one; the new
    count of joined runs. (Each string is copied once: linear in the text.)"""
    pieces[blocks:] = ["".join(pieces[blocks:])]
    return blocks + 1


def _text(data: bytes) -> str:
    return data.decode("utf-8", "replace")


def _error_text(error: Any, raw: bytes = b"") -> str:
    """The text of an in-stream error value (its message, detail or code), one
    line, secrets hidden; *raw* (the event) when the value is too deep to show."""
    if isinstance(error, dict):
        error = error.get("message") or error.get("detail") or error.get("code") or error
    return one_line(describe_json(error, fallback=_text(raw[:4096])), 200)



