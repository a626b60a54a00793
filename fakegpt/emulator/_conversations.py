"""The emulator's conversations: the message tree of each conversation, the
responder's calling conventions, and turning a validated request into a
:class:`Turn` (a planned reply, or a streamed one)."""
from __future__ import annotations

import collections
import inspect
import time
import uuid
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, Iterable, Iterator, List, Mapping, Optional, Tuple, Union

from ._render import Turn, split_words
from ._responder import History, clip as _clip, default_responder, question as _question

__all__ = ["Conversations", "ReplyFailed", "RequestError", "default_responder"]

#: What a responder returns: the whole reply, or its deltas as they come.
Reply = Union[str, Iterable[str]]
#: ``respond(prompt, history, partial)``: *partial* is the text so far of a reply to continue, else ``None``.
Respond = Callable[[str, History, Optional[str]], Reply]

def responder_wants_history(responder: Callable[..., Any]) -> bool:
    """Whether *responder* takes ``(prompt, history)`` rather than ``(prompt)``."""
    try:
        signature = inspect.signature(responder)
        signature.bind("prompt", ())
    except (TypeError, ValueError):  # (ValueError: no signature, a builtin: call it with the prompt only)
        return False
    second = [p for p in signature.parameters.values()
              if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD, p.VAR_POSITIONAL)][1:2]
    return not second or second[0].name not in RESPONDER_KEYWORDS


#: The keywords a responder may take besides the prompt and the history.
RESPONDER_KEYWORDS = ("hangup", "partial")


def responder_keywords(responder: Callable[..., Any]) -> Tuple[str, ...]:
    """Which of :data:`RESPONDER_KEYWORDS` *responder* takes."""
    try:
        parameters = inspect.signature(responder).parameters
    except (TypeError, ValueError):
        return ()
    if any(p.kind == p.VAR_KEYWORD for p in parameters.values()):
        return RESPONDER_KEYWORDS
    return tuple(name for name in RESPONDER_KEYWORDS if name in parameters)


class RequestError(Exception):
    """A request the emulator answers with an error status and a JSON ``{"detail": ...}`` body.

    :param headers: extra headers of the answer (e.g. ``Retry-After``).
    """

    def __init__(self, status: int, detail: Any, headers: Optional[Mapping[str, str]] = None) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail
        self.headers = dict(headers or {})


class ReplyFailed(Exception):
    """Raised by a streamed reply's deltas when the reply cannot go on: the
    client gets the message as an in-stream error (the text so far is kept)."""


@dataclass
class _Message:
    role: str
    text: str
    parent: Optional[str]
    planned: str = ""  # assistant: the whole answer; text is what was sent so far
    streamed: bool = False  # assistant: streamed by the responder (planned is unknown)
    finish: str = "stop"  # a streamed reply: how it ended ("max_tokens" can be continued)


@dataclass
class _Conversation:
    owner: Tuple[str, str]
    messages: Dict[str, _Message] = field(default_factory=dict)
    used: float = field(default_factory=time.monotonic)
    size: int = 0  # characters of message text, for Limits.conversation_bytes
    stored: bool = False  # kept in the store (counted in its size)

    def history(self, message_id: Optional[str]) -> List[Tuple[str, str]]:
        """The ``(role, text)`` turns from the root down to *message_id*."""
        turns: List[Tuple[str, str]] = []
        seen = set()
        while message_id in self.messages and message_id not in seen:  # (a cycle must not hang us)
            seen.add(message_id)
            message = self.messages[message_id]
            turns.append((message.role, message.text))
            message_id = message.parent
        return turns[::-1]


def _user_text(body: Mapping[str, Any]) -> Tuple[str, str]:
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages or not isinstance(messages[-1], dict):
        raise RequestError(422, [{"loc": ["body", "messages"], "msg": "field required", "type": "value_error"}])
    message = messages[-1]
    content = message.get("content")
    parts = content.get("parts") if isinstance(content, dict) else None
    if not isinstance(parts, list) or not parts or not all(isinstance(p, str) for p in parts):
        raise RequestError(422, [{"loc": ["body", "messages", 0, "content"], "msg": "parts must be strings",
                                  "type": "type_error"}])
    author = message.get("author")
    if not isinstance(author, dict) or author.get("role") != "user":
        raise RequestError(422, [{"loc": ["body", "messages", 0, "author"], "msg": "author.role must be 'user'",
                                  "type": "value_error"}])
    return str(message.get("id") or uuid.uuid4()), "\n".join(parts)


class Conversations:
    """Every conversation the emulator keeps, keyed by id (not thread-safe:
    the emulator calls it under its lock).

    :param limit: keep at most this many conversations (the least recently
        used are forgotten first); ``None``: no limit.
    :param max_age: forget a conversation unused for this many seconds; ``None``: never.
    :param max_size: characters of message text kept in all conversations together; ``None``: no limit.
    """

    def __init__(self, limit: Optional[int] = None, max_age: Optional[float] = None,
                 max_size: Optional[int] = None, reply_chars: Optional[int] = None) -> None:
        self._store: "collections.OrderedDict[str, _Conversation]" = collections.OrderedDict()
        self.limit, self.max_age, self.max_size = limit, max_age, max_size
        self.reply_chars = reply_chars  # of one streamed reply (then max_tokens)
        self._size = 0

    def __len__(self) -> int:
        return len(self._store)

    def _forget_old(self) -> None:
        oldest = time.monotonic() - self.max_age if self.max_age is not None else None
        while self._store and (
                (oldest is not None and next(iter(self._store.values())).used < oldest)
                or (self.limit is not None and len(self._store) > self.limit)
                or (self.max_size is not None and self._size > self.max_size)):
            forgotten = self._store.popitem(last=False)[1]
            forgotten.stored = False
            self._size -= forgotten.size

    def _grow(self, conversation: _Conversation, characters: int) -> None:
        conversation.size += characters
        if conversation.stored:
            self._size += characters

    def plan(
        self,
        owner: Tuple[str, str],
        body: Mapping[str, Any],
        respond: Respond,
        max_words: Optional[int],
        lock: Any,
    ) -> Turn:
        """Validate a conversation request and plan the reply it gets.

        The store is read and written under *lock*; the responder runs
        outside it, so a slow responder does not hold up other requests.
        """
        with lock:
            self._forget_old()
            conversation_id, conversation, action, model, parent = self._open(owner, body)
            if action == "continue":
                assistant = conversation.messages[parent]
                if not assistant.streamed:
                    return self._continue(conversation_id, conversation, parent, model, max_words)
                if assistant.finish != "max_tokens":
                    raise RequestError(400, "nothing to continue: the parent message is not an unfinished reply")
                user_id = assistant.parent or ""
                user = conversation.messages.get(user_id)
                prompt = user.text if user is not None else ""
                history = conversation.history(user.parent if user is not None else None)
                partial: Optional[str] = assistant.text
            else:
                user_id, prompt = _user_text(body)
                if user_id in conversation.messages or user_id == parent:
                    raise RequestError(409, f"message id {user_id!r} already exists in this conversation")
                history = conversation.history(parent)
                partial = None
        planned = respond(prompt, history, partial)
        with lock:
            if partial is not None:
                turn = Turn(conversation_id=conversation_id, user_message_id=user_id, user_text=prompt,
                            assistant_id=parent, model=model, words=[], before=partial)
                turn.stream = self._streamed(planned, assistant, turn, lock, conversation)
                return turn
            conversation.messages[user_id] = _Message("user", prompt, parent)
            self._grow(conversation, len(prompt))
            assistant_id = str(uuid.uuid4())
            title = _clip(_question(prompt), 40) if not history else None
            if isinstance(planned, str):
                self._grow(conversation, len(planned))
                assistant = _Message("assistant", "", user_id, planned)
                conversation.messages[assistant_id] = assistant
                return self._next_words(conversation_id, assistant_id, assistant, user_id, prompt, model, max_words,
                                        title)
            assistant = _Message("assistant", "", user_id, streamed=True)
            conversation.messages[assistant_id] = assistant
            turn = Turn(conversation_id=conversation_id, user_message_id=user_id, user_text=prompt,
                        assistant_id=assistant_id, model=model, words=[], title=title)
            turn.stream = self._streamed(planned, assistant, turn, lock, conversation)
            return turn

    def _streamed(self, reply: Any, assistant: _Message, turn: Turn, lock: Any,
                  conversation: _Conversation) -> Iterator[str]:
        """The deltas of a streamed reply, kept in its message as they pass;
        at their end, how the reply finished (the generator's return value or
        the iterator's ``finish``: ``"length"`` or ``"max_tokens"`` can be continued)."""
        if isinstance(reply, (bytes, bytearray)) or not isinstance(reply, Iterable):
            raise TypeError(f"the responder returned {type(reply).__name__}, not str or an iterable of str")
        deltas = iter(reply)
        result: Any = None
        left = self.reply_chars  # characters this reply may still add

        def run() -> Iterator[str]:
            nonlocal result, left
            try:
                while True:
                    try:
                        delta = next(deltas)
                    except StopIteration as end:
                        result = end.value
                        break
                    if not isinstance(delta, str):
                        raise TypeError(f"the responder yielded {type(delta).__name__}, not str")
                    if left is not None:
                        if len(delta) > left:  # the reply is long enough: the rest comes with continue
                            delta, result = delta[:left], "max_tokens"
                        left -= len(delta)
                    if delta:
                        with lock:
                            assistant.text += delta
                        yield delta
                    if result == "max_tokens":
                        break  # (the finally closes the responder's deltas)
            finally:
                with lock:
                    self._grow(conversation, len(assistant.text) - len(turn.before))
                close = getattr(deltas, "close", None)
                if close is not None:
                    close()
            finish = result if result is not None else getattr(deltas, "finish", None)
            turn.finish = assistant.finish = "max_tokens" if finish in ("length", "max_tokens") else "stop"

        return run()

    def _open(self, owner: Tuple[str, str], body: Mapping[str, Any]) -> Tuple[str, "_Conversation", str, str, str]:
        """Validate the request; find (or start) its conversation."""
        action = body.get("action")
        model = body.get("model")
        parent = body.get("parent_message_id")
        if action not in ("next", "continue"):
            raise RequestError(400, f"unsupported action {action!r}: use 'next' or 'continue'")
        if not isinstance(model, str) or not model:
            raise RequestError(422, [{"loc": ["body", "model"], "msg": "field required", "type": "value_error"}])
        if not isinstance(parent, str) or not parent:
            raise RequestError(422, [{"loc": ["body", "parent_message_id"], "msg": "field required",
                                      "type": "value_error"}])
        conversation_id = body.get("conversation_id")
        if conversation_id is not None:
            conversation = self._store.get(conversation_id) if isinstance(conversation_id, str) else None
            if conversation is None or conversation.owner != owner:
                raise RequestError(404, "Conversation not found")
            conversation.used = time.monotonic()
            self._store.move_to_end(conversation_id)
            if parent not in conversation.messages:
                raise RequestError(400, f"parent_message_id {parent!r} is not a message of this conversation")
        elif action == "continue":
            raise RequestError(400, "action 'continue' needs a conversation_id")
        else:
            conversation_id, conversation = str(uuid.uuid4()), _Conversation(owner)
            if body.get("history_and_training_disabled") is not True:
                self._store[conversation_id] = conversation
                conversation.stored = True
                self._forget_old()
        return conversation_id, conversation, action, model, parent

    def _continue(self, conversation_id: str, conversation: _Conversation, parent: str, model: str,
                  max_words: Optional[int]) -> Turn:
        assistant = conversation.messages[parent]
        if assistant.role != "assistant" or len(assistant.text) >= len(assistant.planned):
            raise RequestError(400, "nothing to continue: the parent message is not an unfinished reply")
        user_id = assistant.parent or ""
        user_text = conversation.messages[user_id].text if user_id in conversation.messages else ""
        return self._next_words(conversation_id, parent, assistant, user_id, user_text, model, max_words, None)

    @staticmethod
    def _next_words(conversation_id: str, assistant_id: str, assistant: _Message, user_id: str, user_text: str,
                    model: str, max_words: Optional[int], title: Optional[str]) -> Turn:
        before = assistant.text
        words = split_words(assistant.planned[len(before):])
        finish = "stop"
        if max_words is not None and len(words) > max_words:
            words, finish = words[:max_words], "max_tokens"
        assistant.text = before + "".join(words)
        return Turn(conversation_id=conversation_id, user_message_id=user_id, user_text=user_text,
                    assistant_id=assistant_id, model=model, words=words, before=before, finish=finish, title=title)
