"""Conversations kept by the server: each turn sends only the new message."""
from __future__ import annotations

from typing import Any, Generator, Mapping, Optional

from ._call import Call
from ._engine import Engine
from ._protocol import DEFAULT_MODEL, ReplyDecoder, conversation_body, web_model
from ._stream import Reply, Stream, drain

__all__ = ["Conversation", "MAX_CONTINUES"]

#: ``auto_continue`` asks the server to go on at most this many times per reply.
MAX_CONTINUES = 10


class Conversation:
    """A conversation the server keeps (PROTOCOL §2).

    Each call sends only the new message, with the server's
    ``conversation_id`` and, as its parent, the id of the previous reply;
    the server supplies the history. Get one from
    :meth:`fakegpt.Client.conversation`::

        conversation = client.conversation()
        conversation.complete("My name is Ada.")
        print(conversation.complete("What is my name?"))  # the server remembers

    Save :attr:`conversation_id` and :attr:`parent_message_id` to resume it
    later, in this process or another.

    The ids advance as soon as a reply is known, so a reply you stop early
    (a ``break``) still counts, like "stop generating" in the web app. One
    conversation takes one turn at a time: do not share it between threads.
    """

    def __init__(
        self,
        engine: Engine,
        *,
        conversation_id: Optional[str] = None,
        parent_message_id: Optional[str] = None,
        model: Optional[str] = DEFAULT_MODEL,
        auto_continue: bool = False,
    ) -> None:
        for name, value in (("conversation_id", conversation_id), ("parent_message_id", parent_message_id)):
            if value is not None and (not isinstance(value, str) or not value.strip()):
                raise (TypeError if not isinstance(value, str) else ValueError)(f"{name} must be a non-empty str")
        if (conversation_id is None) != (parent_message_id is None):
            raise ValueError("to resume a conversation give both conversation_id and parent_message_id")
        if not isinstance(auto_continue, bool):
            raise TypeError("auto_continue must be True or False")
        web_model(model)  # checks its type now, not at the first call
        self._engine = engine
        #: The server's id of this conversation (``None`` until the first reply).
        self.conversation_id = conversation_id
        #: The id of the last reply: the parent of the next message.
        self.parent_message_id = parent_message_id
        self.model = model
        #: Go on automatically while a reply stops at the length limit.
        self.auto_continue = auto_continue
        #: Why the last reply stopped: ``"stop"``, ``"max_tokens"``, ...
        self.finish_reason: Optional[str] = None
        self._text = ""  # the last reply's text, as far as this object has seen it

    def stream(self, text: str, *, model: Optional[str] = None) -> Stream:
        """Send *text* as the next message; stream the reply (see :class:`fakegpt.Stream`)."""
        if not isinstance(text, str):
            raise TypeError(f"text must be a str, not {type(text).__name__}")
        if not text.strip():
            raise ValueError("text is empty")
        body = conversation_body(
            text, model or self.model, conversation_id=self.conversation_id,
            parent_message_id=self.parent_message_id, keep_history=True,
        )
        return Stream(self._engine.new_call(), lambda call: self._turn(call, body, None, True, model))

    def complete(self, text: str, *, model: Optional[str] = None) -> Reply:
        """Send *text*; the whole reply as a :class:`fakegpt.Reply`."""
        return drain(self.stream(text, model=model))

    def continue_reply(self, *, model: Optional[str] = None) -> Stream:
        """Ask the server to go on with the last reply (``action: "continue"``),
        typically one that stopped with ``finish_reason == "max_tokens"``.
        Only the new text is streamed (after resuming from saved ids, the
        client has not seen the reply's beginning, so the server's whole
        message is streamed)."""
        if self.conversation_id is None or self.parent_message_id is None:
            raise ValueError("nothing to continue: this conversation has no reply yet")
        body, resume = self._continue_body(model), self._resume()
        return Stream(self._engine.new_call(), lambda call: self._turn(call, body, resume, False, model))

    def _continue_body(self, model: Optional[str]) -> Mapping[str, Any]:
        return conversation_body(None, model or self.model, action="continue",
                                 conversation_id=self.conversation_id, parent_message_id=self.parent_message_id)

    def _resume(self) -> Mapping[str, str]:
        return {self.parent_message_id: self._text} if self.parent_message_id else {}

    def _turn(self, call: Call, body: Mapping[str, Any], resume: Optional[Mapping[str, str]],
              require_text: bool, model: Optional[str]) -> Generator[str, None, None]:
        """One turn: the request, then (with auto_continue) the continuations."""
        continues = 0
        while True:
            call.current = None
            try:
                yield from call.request(body, resume, require_text=require_text)
            finally:
                self._advance(call.current)
            if call.aborted:
                return
            if not (self.auto_continue and self.finish_reason == "max_tokens" and continues < MAX_CONTINUES):
                return
            continues += 1
            body, resume, require_text = self._continue_body(model), self._resume(), False

    def _advance(self, decoder: Optional[ReplyDecoder]) -> None:
        """What a request taught us: the ids for the next turn, the reply's text."""
        if decoder is None or decoder.message_id is None:
            return  # no reply began: the conversation stays where it was
        self.conversation_id = decoder.conversation_id or self.conversation_id
        if decoder.message_id == self.parent_message_id:  # a continuation of the same reply
            self._text += decoder.text
        else:
            self._text = decoder.text
        self.parent_message_id = str(decoder.message_id)
        self.finish_reason = decoder.finish_reason

    def __repr__(self) -> str:
        return (f"<fakegpt.Conversation conversation_id={self.conversation_id!r} "
                f"parent_message_id={self.parent_message_id!r} finish_reason={self.finish_reason!r}>")
