"""The emulator's event streams: a reply rendered as SSE frames, in the
cumulative format (A) or delta-encoding v1 (B), as PROTOCOL §3–§4 describe.

Frames are ``bytes`` with ``\\n`` line ends; the server swaps line ends and
chunking when a test asks. JSON escaping is per character, so the escaped
text of a prefix is the prefix of the escaped text: the cumulative frames are
built by concatenating pre-escaped words, not by re-encoding the whole text
for every event.
"""
from __future__ import annotations

import json
import re
import time
from dataclasses import dataclass, field
from typing import Any, Dict, Generator, Iterator, List, Optional, Sequence, Tuple

__all__ = ["META", "WORD", "Turn", "error_frame", "render", "split_words"]

META, WORD = "meta", "word"
Frame = Tuple[str, bytes]

_WORDS = re.compile(r"\s*\S+\s*|\s+")


def split_words(text: str) -> List[str]:
    """Split *text* into the pieces one event each adds (a word and its spaces)."""
    return _WORDS.findall(text)


@dataclass
class Turn:
    """Everything one streamed reply needs."""

    conversation_id: str
    user_message_id: str
    user_text: str
    assistant_id: str
    model: str
    words: Sequence[str]  # the pieces to stream now
    before: str = ""  # text of the same message already sent (a continued reply)
    finish: str = "stop"  # "stop" or "max_tokens" (a streamed reply sets it when its deltas end)
    title: Optional[str] = None
    ids: Dict[str, str] = field(default_factory=dict)
    #: A streamed reply: its deltas, each sent as it comes (``words`` is then empty).
    stream: Optional[Iterator[str]] = None


def _dumps(obj: Any) -> str:
    return json.dumps(obj, ensure_ascii=False, separators=(", ", ": "))


def _frame(data: str, event: Optional[str] = None) -> bytes:
    head = f"event: {event}\n" if event else ""
    return f"{head}data: {data}\n\n".encode("utf-8")


def _message(turn: Turn, role: str, message_id: str, text: str, status: str, **extra: Any) -> Dict[str, Any]:
    metadata: Dict[str, Any] = {}
    if role == "assistant":
        metadata = {"message_type": "next", "model_slug": turn.model, "citations": [], "timestamp_": "absolute"}
    elif role == "system":
        metadata = {"is_visually_hidden_from_conversation": True}
    return {
        "id": message_id,
        "author": {"role": role, "name": None, "metadata": {}},
        "create_time": time.time(),
        "update_time": None,
        "content": {"content_type": "text", "parts": [text]},
        "status": status,
        "end_turn": extra.pop("end_turn", None),
        "weight": 1.0 if role != "system" else 0.0,
        "metadata": metadata,
        "recipient": "all",
        **extra,
    }


def _finish_details(turn: Turn) -> Dict[str, Any]:
    if turn.finish == "max_tokens":
        return {"type": "max_tokens"}
    return {"type": "stop", "stop_tokens": [100260]}


def _side_frames(turn: Turn) -> Iterator[Frame]:
    yield META, _frame(_dumps({
        "conversation_id": turn.conversation_id,
        "message_id": turn.user_message_id,
        "is_completion": False,
        "moderation_response": {"flagged": False, "blocked": False, "moderation_id": "modr-emulator"},
    }))
    yield META, b": ping - " + time.strftime("%Y-%m-%d %H:%M:%S").encode() + b"\n\n"


def render(turn: Turn, fmt: str = "cumulative") -> Generator[Frame, None, None]:
    """The ``(kind, frame)`` pairs of one reply, ``[DONE]`` last; *kind* is
    :data:`WORD` for a frame that adds reply text, else :data:`META`."""
    if fmt == "v1":
        yield from _render_v1(turn)
    else:
        yield from _render_cumulative(turn)
    yield META, b"data: [DONE]\n\n"


def _envelope(turn: Turn, message: Optional[Dict[str, Any]], error: Any = None) -> str:
    return _dumps({"message": message, "conversation_id": turn.conversation_id, "error": error})


def _render_cumulative(turn: Turn) -> Iterator[Frame]:
    system = _message(turn, "system", turn.ids.get("system", "sys-" + turn.assistant_id), "", "finished_successfully",
                      end_turn=True)
    user = _message(turn, "user", turn.user_message_id, turn.user_text, "finished_successfully")
    if not turn.before:  # a continued reply does not repeat the setup
        yield META, _frame(_envelope(turn, system))
        yield META, _frame(_envelope(turn, user))
        yield from _side_frames(turn)
    # The text goes where the placeholder is: prefix + escaped text + suffix.
    marker = "\u0000TEXT\u0000"
    template = _envelope(turn, _message(turn, "assistant", turn.assistant_id, marker, "in_progress"))
    prefix, suffix = (s.encode("utf-8") for s in template.split(json.dumps(marker, ensure_ascii=False)[1:-1]))
    prefix = b"data: " + prefix
    suffix += b"\n\n"
    escaped = json.dumps(turn.before, ensure_ascii=False)[1:-1].encode("utf-8")
    sent: List[str] = []
    for index, word in enumerate(turn.words if turn.stream is None else turn.stream):
        sent.append(word)
        escaped += json.dumps(word, ensure_ascii=False)[1:-1].encode("utf-8")
        yield WORD, prefix + escaped + suffix
        if index == 2:
            yield META, b"event: ping\ndata: {}\n\n"
    text = turn.before + "".join(sent)
    final = _message(turn, "assistant", turn.assistant_id, text, "finished_successfully", end_turn=turn.finish == "stop")
    final["metadata"].update(finish_details=_finish_details(turn), is_complete=True)
    yield META, _frame(_envelope(turn, final))


def _render_v1(turn: Turn) -> Iterator[Frame]:
    yield META, _frame('"v1"', "delta_encoding")
    user = _message(turn, "user", turn.user_message_id, turn.user_text, "finished_successfully")
    if not turn.before:
        yield META, _frame(_dumps({"p": "", "o": "add", "v": {"message": user, "conversation_id": turn.conversation_id,
                                                                "error": None}, "c": 0}), "delta")
        yield from _side_frames(turn)
    assistant = _message(turn, "assistant", turn.assistant_id, turn.before, "in_progress")
    yield META, _frame(_dumps({"v": {"message": assistant, "conversation_id": turn.conversation_id, "error": None},
                               "c": 1}), "delta")
    # A streamed reply's deltas are sent as they come; a planned reply's last
    # word goes in the closing patch, as the service sends it.
    words: Sequence[str] = turn.words if turn.stream is None else ()
    deltas = iter(words[:-1]) if turn.stream is None else turn.stream
    for index, word in enumerate(deltas):
        if index == 0:
            yield WORD, _frame(_dumps({"p": "/message/content/parts/0", "o": "append", "v": word}), "delta")
        else:
            yield WORD, _frame(_dumps({"v": word}), "delta")
        if index == 2:
            yield META, b"event: ping\ndata: {}\n\n"
    ops: List[Dict[str, Any]] = []
    if words:
        ops.append({"p": "/message/content/parts/0", "o": "append", "v": words[-1]})
    ops += [
        {"p": "/message/status", "o": "replace", "v": "finished_successfully"},
        {"p": "/message/end_turn", "o": "replace", "v": turn.finish == "stop"},
        {"p": "/message/metadata", "o": "append", "v": {"is_complete": True, "finish_details": _finish_details(turn)}},
    ]
    yield (WORD if words else META), _frame(_dumps({"p": "", "o": "patch", "v": ops}), "delta")
    yield META, _frame(_dumps({"type": "message_stream_complete", "conversation_id": turn.conversation_id}))
    if turn.title:
        yield META, _frame(_dumps({"type": "title_generation", "title": turn.title, "conversation_id": turn.conversation_id}))


def error_frame(turn: Turn, message: str, fmt: str = "cumulative") -> bytes:
    """An in-stream failure event."""
    if fmt == "v1":
        return _frame(_dumps({"p": "", "o": "add", "v": {"message": None, "conversation_id": turn.conversation_id,
                                                        "error": message}, "c": 2}), "delta")
    return _frame(_envelope(turn, None, message))
