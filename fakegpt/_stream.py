"""The public objects of one streamed reply: :class:`Stream` and :class:`Reply`."""
from __future__ import annotations

import collections.abc
from typing import Any, Callable, Generator, Optional

from ._call import Call
from .exceptions import FakeGptError, public_error

__all__ = ["Reply", "Stream", "drain"]


class Reply(str):
    """A finished reply: the text itself (a ``str``), plus what the server said about it.

    The ids of a one-shot reply (``Client.complete``) cannot be resumed: the
    server keeps no history for those calls. Use ``Client.conversation()``.

    >>> reply = Reply("Hi!", conversation_id="c1", finish_reason="stop")
    >>> reply == "Hi!", reply.finish_reason
    (True, 'stop')
    """

    conversation_id: Optional[str]
    message_id: Optional[str]
    model: Optional[str]
    finish_reason: Optional[str]

    def __new__(
        cls,
        text: str = "",
        *,
        conversation_id: Optional[str] = None,
        message_id: Optional[str] = None,
        model: Optional[str] = None,
        finish_reason: Optional[str] = None,
    ) -> "Reply":
        self = super().__new__(cls, text)
        self.conversation_id = conversation_id
        self.message_id = message_id
        self.model = model
        self.finish_reason = finish_reason
        return self

    @property
    def text(self) -> str:
        """The reply as a plain ``str``."""
        return str.__str__(self)

    def __repr__(self) -> str:
        # A long text is cut outside the quotes, so the cut cannot pass for the text itself.
        text = str.__repr__(self.text) if len(self) <= 60 else f"{self.text[:60]!r} … +{len(self) - 60} chars"
        return (
            f"Reply({text}, conversation_id={self.conversation_id!r}, message_id={self.message_id!r}, "
            f"model={self.model!r}, finish_reason={self.finish_reason!r})"
        )


class Stream(collections.abc.Generator[str, None, None]):
    """The reply to one call, as it streams: a generator of non-empty ``str`` deltas.

    Iterate it (or call ``next()``); nothing is sent until the first item is
    asked for. ``close()``, leaving a ``with`` block, or abandoning it (a
    ``break``, dropping the last reference) closes the HTTP response at once.
    :meth:`abort` ends it from another thread. While and after streaming,
    :attr:`text`, :attr:`conversation_id`, :attr:`message_id`, :attr:`model`
    and :attr:`finish_reason` describe the reply so far (``None`` until known).
    """

    def __init__(self, call: Call, generate: Callable[[Call], Generator[str, None, None]]) -> None:
        """:param call: the call this stream reads (see :mod:`fakegpt._call`).
        :param generate: makes the generator of deltas from the call."""
        self._call = call
        self._gen = generate(call)

    # -- the generator protocol ------------------------------------------
    def __next__(self) -> str:
        if self._call.aborted:
            self.close()
            raise StopIteration
        try:
            return next(self._gen)
        except StopIteration:
            raise
        except Exception as error:  # noqa: BLE001 - nothing but a fakegpt error leaves a call
            # Bad input was refused before the stream existed: this is the
            # call's failure. Its traceback: the error and the caller's frames.
            raise public_error(error) from None

    def send(self, value: Any) -> str:
        if value is not None:
            raise TypeError("a Stream only accepts send(None)")
        return self.__next__()

    def throw(self, *args: Any) -> str:
        try:
            return self._gen.throw(*args)
        except StopIteration:
            raise
        except FakeGptError as error:
            raise public_error(error) from None
        finally:
            if self._call.aborted:
                self.close()

    def close(self) -> None:
        """Stop streaming and close the HTTP response."""
        try:
            self._gen.close()
        finally:
            self._call.close()

    def __del__(self) -> None:
        # Whatever still refers to the generator (a traceback, a debugger),
        # an abandoned stream's response is closed now.
        call = getattr(self, "_call", None)
        if call is not None:
            call.close()

    def __enter__(self) -> "Stream":
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self.close()

    def abort(self, hang_up: bool = True) -> None:
        """End the stream from *another* thread, at once: a read or wait in
        progress returns, the server sees the connection end, no further
        delta is yielded and the iteration ends quietly (thread-safe).

        :param hang_up: ``False`` only marks the stream aborted (no further
            delta, at once, with no system call); the connection is shut down
            by the reading thread at its next event, or by a later
            ``abort()``. For a thread that must stay responsive, such as an
            event loop cancelling many streams at once.
        """
        self._call.abort(hang_up)

    @property
    def aborted(self) -> bool:
        """Whether :meth:`abort` was called."""
        return self._call.aborted

    # -- what is known about the reply -----------------------------------
    @property
    def text(self) -> str:
        """All text delivered so far."""
        return self._call.text

    @property
    def conversation_id(self) -> Optional[str]:
        return self._call.last("conversation_id")

    @property
    def message_id(self) -> Optional[str]:
        return self._call.last("message_id")

    @property
    def model(self) -> Optional[str]:
        """The model slug the server reported."""
        return self._call.last("model")

    @property
    def finish_reason(self) -> Optional[str]:
        """``"stop"``, ``"max_tokens"``, … once the server said."""
        decoders = self._call.decoders
        return decoders[-1].finish_reason if decoders else None

    def reply(self) -> Reply:
        """What has been received, as a :class:`Reply`."""
        return Reply(
            self.text,
            conversation_id=self.conversation_id,
            message_id=self.message_id,
            model=self.model,
            finish_reason=self.finish_reason,
        )

    def __repr__(self) -> str:
        state = "aborted" if self.aborted else f"{len(self.text)} chars"
        return f"<fakegpt.Stream {state} conversation_id={self.conversation_id!r}>"


def drain(stream: Stream) -> Reply:
    """Read *stream* to its end; what it delivered, as a :class:`Reply`."""
    with stream:
        for _ in stream:
            pass
    return stream.reply()
