"""One streamed reply: reading the body, and the public :class:`Stream` and
:class:`Reply` objects.

The body is read with ``read1`` (whatever the socket has, up to a limit), not
``iter_lines``/``iter_content``: those wait to fill a chunk before yielding,
which delays every event on bodies that are not chunk-encoded (PROTOCOL §5).
"""
from __future__ import annotations

import collections.abc
import functools
import http.client
import select
import socket
import threading
from typing import Any, Callable, Iterator, List, Optional

import requests
from urllib3.exceptions import DecodeError, ProtocolError, ReadTimeoutError

from ._constants import DRAIN_GRACE, DRAIN_LIMIT, READ_SIZE
from ._protocol import ReplyDecoder
from ._sse import SSEDecoder
from .exceptions import APITimeoutError, FakeGptError, IncompleteStreamError, StreamError, one_line

__all__ = ["Reply", "Stream"]


def _socket_of(raw: Any) -> Optional[socket.socket]:
    connection = getattr(raw, "connection", None) or getattr(raw, "_connection", None)
    return getattr(connection, "sock", None)


def _ready(sock: Optional[socket.socket]) -> bool:
    """Whether a read of *sock* would return at once (False when unsure)."""
    if sock is None:
        return False
    try:
        if getattr(sock, "pending", None) is not None and sock.pending():  # TLS bytes already decrypted
            return True
        return bool(select.select([sock], [], [], 0)[0])
    except (OSError, ValueError):  # closed, or a descriptor select cannot take
        return False


def _read1_of(raw: Any) -> Callable[[int], bytes]:
    read1 = getattr(raw, "read1", None)
    if read1 is not None:  # urllib3 >= 2
        return read1
    return raw._fp.read1  # urllib3 1.26: http.client's read1 (no content decoding)


def _body_error(error: BaseException) -> FakeGptError:
    """Map a failure while reading the body to the error that describes it."""
    if isinstance(error, (ReadTimeoutError, socket.timeout, TimeoutError)):
        return APITimeoutError(
            "the stream stalled: no data arrived within the read timeout (the connection was dropped)"
        )
    if isinstance(error, DecodeError):
        return StreamError(f"could not decode the stream: {error}")
    if isinstance(error, (ProtocolError, http.client.HTTPException, OSError)):
        return IncompleteStreamError(f"the connection was lost mid-stream ({one_line(str(error), 120)})")
    return StreamError(f"could not read the stream: {type(error).__name__}: {error}")


class _Reader:
    """Reads one conversation response into reply deltas."""

    def __init__(self, response: requests.Response, decoder: ReplyDecoder) -> None:
        self.response = response
        self.decoder = decoder
        self.aborted = False
        #: Called before each read with a probe, ``data_ready() -> bool``
        #: (whether the read would return at once); the asyncio bridge hands
        #: its queued deltas to the loop when the read may wait.
        self.on_wait: Optional[Callable[[Callable[[], bool]], None]] = None
        self._closed = False
        self._lock = threading.Lock()
        raw = response.raw
        self._sock = _socket_of(raw)
        # A chunked body is read an HTTP chunk at a time (one urllib3 generator
        # for the whole body: no per-read setup); anything else with read1.
        self._chunks: Optional[Iterator[bytes]] = None
        if getattr(raw, "chunked", False) and raw.supports_chunked_reads():
            self._chunks = raw.read_chunked(decode_content=True)
            #: The next piece of the body; b"" (or None) at its end.
            self._read_raw: Callable[[], Optional[bytes]] = functools.partial(next, self._chunks, b"")
        else:
            self._read_raw = functools.partial(_read1_of(raw), READ_SIZE)

    def deltas(self) -> Iterator[str]:
        """The reply text, delta by delta; closes the response when done."""
        decoder = self.decoder
        sse = SSEDecoder()
        read = self._read
        try:
            while True:
                chunk = read()
                if not chunk:
                    break
                for event, data in sse.feed(chunk):
                    delta = decoder.feed(event, data)
                    if delta:
                        yield delta
                    if decoder.done:
                        self._drain()
                        return
            try:
                for event, data in sse.close():
                    delta = decoder.feed(event, data)
                    if delta:
                        yield delta
            except StreamError as error:
                if not isinstance(error.__cause__, ValueError):
                    raise  # an error event, whole; not a cut one
                # Otherwise the body ended inside an event: that is a cut stream.
            if not (decoder.done or decoder.finished or self.aborted):
                message = "the stream ended before [DONE] and before the reply was finished"
                if sse.stray is not None and not decoder.parts:
                    message += f"; the body is not an event stream: {sse.stray.decode('utf-8', 'replace')}"
                raise IncompleteStreamError(message)
        finally:
            self.close()

    def _data_ready(self) -> bool:
        return _ready(self._sock)

    def _read(self) -> Optional[bytes]:
        if self.on_wait is not None:
            self.on_wait(self._data_ready)
        try:
            return self._read_raw()
        except Exception as error:
            if self.aborted:
                return b""
            raise _body_error(error) from error

    def _drain(self) -> None:
        """After [DONE], read the end of a finished body that is already here, so
        the connection goes back to the pool; a server that holds the stream
        open costs at most DRAIN_GRACE, then the connection is dropped."""
        if self.on_wait is not None:
            self.on_wait(lambda: False)  # the reply is complete: hand everything over now
        raw = self.response.raw
        if raw.closed or (not getattr(raw, "chunked", False) and getattr(raw, "length_remaining", None) is None):
            return  # complete already, or close-delimited (never reusable)
        sock = _socket_of(raw)
        if sock is None:
            return
        try:
            # urllib3 sets the socket timeout again on the connection's next use.
            sock.settimeout(DRAIN_GRACE)
            left = DRAIN_LIMIT
            while left > 0 and not raw.closed:
                data = self._read_raw()
                if not data:
                    break
                left -= len(data)
        except Exception:  # not there in time: close() drops the connection
            pass

    def abort(self) -> None:
        """Interrupt a read blocked in another thread, and hang up (thread-safe)."""
        with self._lock:
            if self._closed:
                return
            self.aborted = True
            sock = _socket_of(self.response.raw)
            if sock is not None:
                try:
                    sock.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def close(self) -> None:
        with self._lock:
            if not self._closed:
                self._closed = True
                if self._chunks is not None:
                    self._chunks.close()  # type: ignore[attr-defined]  # a generator
                self.response.close()


class Reply(str):
    """A finished reply: the text itself (a ``str``), plus what the server said about it.

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
        text = str.__repr__(self.text if len(self) <= 40 else self.text[:39] + "…")
        return (
            f"Reply({text}, conversation_id={self.conversation_id!r}, message_id={self.message_id!r}, "
            f"model={self.model!r}, finish_reason={self.finish_reason!r})"
        )


class StreamState:
    """What one call knows while it streams: the response being read (so
    another thread can abort it) and every decoder that fed the reply.

    The generator behind a :class:`Stream` holds this, never the
    :class:`Stream` itself: no reference cycle, so dropping the Stream (a
    ``break`` out of a ``for`` loop) finalizes the generator at once and its
    response is closed promptly, not when the cyclic GC runs.
    """

    def __init__(self) -> None:
        self.decoders: List[ReplyDecoder] = []
        #: The decoder of the response opened last (``None`` until one opens).
        self.current: Optional[ReplyDecoder] = None
        #: Given to every reader of this call (see :attr:`_Reader.on_wait`).
        self.on_wait: Optional[Callable[[Callable[[], bool]], None]] = None
        self._reader: Optional[_Reader] = None
        self._abort_event = threading.Event()
        self._lock = threading.Lock()

    @property
    def aborted(self) -> bool:
        return self._abort_event.is_set()

    def wait(self, seconds: float) -> None:
        """Sleep between retries, waking up early on :meth:`abort`."""
        self._abort_event.wait(seconds)

    def abort(self) -> None:
        with self._lock:
            self._abort_event.set()
            reader = self._reader
        if reader is not None:
            reader.abort()

    def attach(self, reader: _Reader) -> None:
        """The client opened a response for this call."""
        reader.on_wait = self.on_wait
        with self._lock:
            self._reader = reader
            self.current = reader.decoder
            if self.decoders and not self.decoders[-1].parts:
                self.decoders[-1] = reader.decoder  # a failed try delivered nothing: forget it
            else:
                self.decoders.append(reader.decoder)
            aborted = self.aborted
        if aborted:
            reader.abort()

    def last(self, name: str) -> Any:
        for decoder in reversed(self.decoders):
            value = getattr(decoder, name)
            if value is not None:
                return value
        return None

    @property
    def text(self) -> str:
        return "".join(part for decoder in self.decoders for part in decoder.parts)


class Stream(collections.abc.Generator):
    """The reply to one call, as it streams: a generator of non-empty ``str`` deltas.

    Iterate it (or call ``next()``); nothing is sent until the first item is
    asked for. ``close()``, leaving a ``with`` block, or abandoning it (a
    ``break``) closes the HTTP response. While and after streaming,
    :attr:`text`, :attr:`conversation_id`, :attr:`message_id`, :attr:`model`
    and :attr:`finish_reason` describe the reply so far (``None`` until known).
    """

    def __init__(
        self,
        generate: Callable[[StreamState], Iterator[str]],
        scrub: Callable[[FakeGptError], Any] = lambda error: error,
    ) -> None:
        """:param scrub: removes secrets from every error before it leaves the stream."""
        self._state = StreamState()
        self._scrub = scrub
        self._gen = generate(self._state)

    # -- the generator protocol ------------------------------------------
    def __next__(self) -> str:
        return self.send(None)

    def send(self, value: Any) -> str:
        try:
            return self._gen.send(value)
        except FakeGptError as error:
            if not error.partial_text:
                error.partial_text = self.text
            self._scrub(error)  # whatever the server echoed, the token does not leave
            raise

    def throw(self, *args: Any) -> str:  # type: ignore[override]
        return self._gen.throw(*args)

    def close(self) -> None:
        """Stop streaming and close the HTTP response."""
        self._gen.close()

    def __enter__(self) -> "Stream":
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self.close()

    def abort(self) -> None:
        """Stop the stream from *another* thread: a read blocked on the socket
        returns at once and the iteration ends quietly (thread-safe)."""
        self._state.abort()

    @property
    def aborted(self) -> bool:
        """Whether :meth:`abort` was called."""
        return self._state.aborted

    # -- what is known about the reply -----------------------------------
    @property
    def text(self) -> str:
        """All text delivered so far."""
        return self._state.text

    @property
    def conversation_id(self) -> Optional[str]:
        return self._state.last("conversation_id")

    @property
    def message_id(self) -> Optional[str]:
        return self._state.last("message_id")

    @property
    def model(self) -> Optional[str]:
        """The model slug the server reported."""
        return self._state.last("model")

    @property
    def finish_reason(self) -> Optional[str]:
        """``"stop"``, ``"max_tokens"``, … once the server said."""
        decoders = self._state.decoders
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
