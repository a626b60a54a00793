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
import time
from typing import Any, Callable, Generator, Iterator, List, Optional

import requests
from urllib3.exceptions import DecodeError, ProtocolError, ReadTimeoutError

from ._chunked import ChunkedDecoder
from ._constants import DRAIN_GRACE, READ_SIZE
from ._protocol import ReplyDecoder
from ._sse import SSEDecoder
from .exceptions import APITimeoutError, FakeGptError, IncompleteStreamError, StreamError, one_line

__all__ = ["Reply", "Stream"]


def _socket_of(raw: Any) -> Optional[socket.socket]:
    connection = getattr(raw, "connection", None) or getattr(raw, "_connection", None)
    return getattr(connection, "sock", None)


def _hang_up(connection: Any) -> None:
    """Shut a connection's socket down: a thread blocked reading it returns, the server sees FIN."""
    sock = getattr(connection, "sock", None)
    if sock is not None:
        try:
            sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass


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
        fp = getattr(raw, "_fp", None)
        encoded = response.headers.get("Content-Encoding", "identity").lower() not in ("", "identity")
        self._chunked: Optional[ChunkedDecoder] = None
        self._http: Optional[http.client.HTTPResponse] = None
        #: The next piece of the body, as soon as any has arrived; b"" (or None) at its end.
        self._read_raw: Callable[[], Optional[bytes]]
        if isinstance(fp, http.client.HTTPResponse) and not encoded:
            # Read below urllib3 (its per-read wrapper cost as much as decoding),
            # whatever part of the body has arrived: an event is never held back
            # until its chunk completes, nor lost with it.
            self._http = fp
            if fp.chunked and fp.chunk_left is None and hasattr(fp.fp, "read1"):
                self._chunked = ChunkedDecoder()  # many chunks per read, not one
                self._read_raw = self._read_chunked
            else:
                self._read_raw = functools.partial(fp.read1, READ_SIZE)
        else:  # compressed, or not over http.client
            self._read_raw = functools.partial(_read1_of(raw), READ_SIZE)

    def _watch_socket_reads(self) -> bool:
        """Call :attr:`on_wait` only when a read reaches the socket (http.client's
        buffer is empty), not on every read. The response's SocketIO is its own
        (``sock.makefile`` per response), so the watch ends with the response."""
        socket_io = getattr(getattr(self._http, "fp", None), "raw", None)
        if self.on_wait is None or not hasattr(socket_io, "__dict__"):
            return False
        readinto, on_wait, data_ready = socket_io.readinto, self.on_wait, self._data_ready

        def watched_readinto(buffer: Any) -> Optional[int]:
            on_wait(data_ready)
            return readinto(buffer)

        socket_io.readinto = watched_readinto
        return True

    def deltas(self) -> Iterator[str]:
        """The reply text, delta by delta; closes the response when done."""
        decoder, sse = self.decoder, SSEDecoder()
        on_wait, data_ready, read_raw, feed = self.on_wait, self._data_ready, self._read_raw, sse.feed
        if self._watch_socket_reads():
            on_wait = None  # the socket reads call it
        try:
            while True:  # the hot loop: kept flat on purpose
                if on_wait is not None:
                    on_wait(data_ready)
                try:
                    chunk = read_raw()
                except Exception as error:
                    chunk = self._read_failed(error)
                if not chunk:
                    self._keep_connection()
                    break
                for event, data in feed(chunk):
                    delta = decoder.feed(event, data)
                    if delta:
                        yield delta
                    if decoder.done:
                        self._drain()
                        return
                pending = sse.pending
                if pending and pending[0] == b"[DONE]" and len(pending) == 1:
                    decoder.done = True  # its blank line may never come: it is final already
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
                if self._chunked is not None and not self._chunked.finished:
                    message = "the connection was lost mid-stream, before the end of the body"
                else:
                    message = "the stream ended before [DONE] and before the reply was finished"
                if sse.stray is not None and not decoder.parts:
                    message += f"; the body is not an event stream: {sse.stray.decode('utf-8', 'replace')}"
                raise IncompleteStreamError(message)
        finally:
            self.close()

    def _data_ready(self) -> bool:
        return _ready(self._sock)

    def _read_failed(self, error: Exception) -> bytes:
        """A read failed: the end of an aborted or finished stream (b""), or a fakegpt error."""
        if self.aborted:
            return b""
        if self.decoder.finished and isinstance(error, (ReadTimeoutError, socket.timeout, TimeoutError)):
            return b""  # the reply is complete; only [DONE] never came
        raise _body_error(error) from error

    def _read_chunked(self) -> bytes:
        """Whatever the socket has (up to READ_SIZE), chunked framing removed."""
        read1, decoder = self._http.fp.read1, self._chunked  # type: ignore[union-attr]
        if decoder.finished:  # type: ignore[union-attr]
            return b""  # the last read brought the end of the body already
        while True:
            data = read1(READ_SIZE)
            if not data:
                return b""  # the connection ended: the body is complete or cut
            payload = decoder.feed(data)  # type: ignore[union-attr]
            if payload or decoder.finished:  # type: ignore[union-attr]
                return payload

    def _body_done(self) -> bool:
        """Whether the whole body has been read (so the connection can serve again)."""
        if self._chunked is not None:
            return self._chunked.finished and not self._chunked.overflow
        fp = self._http
        return fp is not None and (fp.isclosed() if fp.chunked else fp.length == 0)

    def _keep_connection(self) -> None:
        """The body ended: if it ended cleanly, return the connection to the pool."""
        fp = self._http
        if fp is None:  # urllib3 read it and releases it itself
            return
        if self._body_done() and not fp.will_close:
            fp.close()
            self.response.raw.release_conn()

    def _drain(self) -> None:
        """After [DONE]: if only the end of the body is left and it is already
        here (DRAIN_GRACE at most), read it so the connection is reused;
        anything else, or nothing in time, and the connection is dropped."""
        if self.on_wait is not None:
            self.on_wait(lambda: False)  # the reply is complete: hand everything over now
        fp, sock = self._http, self._sock
        if fp is None or sock is None or (not fp.chunked and fp.length is None):
            return  # not ours to drain, or close-delimited (never reusable)
        deadline = time.monotonic() + DRAIN_GRACE
        try:
            while not self._body_done():
                left = deadline - time.monotonic()
                if left <= 0:
                    return
                # urllib3 sets the socket timeout again on the connection's next use.
                sock.settimeout(left)
                data = self._read_raw()
                if not data:
                    break
                if data.strip():
                    return  # more than the end of the body: not worth waiting for
        except Exception:  # not there in time: close() drops the connection
            return
        self._keep_connection()

    def abort(self) -> None:
        """Interrupt a read blocked in another thread, and hang up (thread-safe)."""
        with self._lock:
            if self._closed:
                return
            self.aborted = True
            _hang_up(getattr(self.response.raw, "connection", None) or getattr(self.response.raw, "_connection", None))

    def close(self) -> None:
        with self._lock:
            if not self._closed:
                self._closed = True
                self.response.close()


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
        self._connection: Any = None  # of the request in flight, before its answer
        self._abort_event = threading.Event()
        self._lock = threading.Lock()

    @property
    def aborted(self) -> bool:
        return self._abort_event.is_set()

    def watch(self, connection: Any) -> None:
        """The connection a request of this call is using (see :mod:`fakegpt._transport`)."""
        with self._lock:
            self._connection = connection
            aborted = self.aborted
        if aborted:
            _hang_up(connection)

    def wait(self, seconds: float) -> None:
        """Sleep between retries, waking up early on :meth:`abort`."""
        self._abort_event.wait(seconds)

    def abort(self) -> None:
        with self._lock:
            self._abort_event.set()
            reader, connection = self._reader, self._connection
        if reader is not None:
            reader.abort()
        elif connection is not None:  # still waiting for the answer's headers
            _hang_up(connection)

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

    def __init__(self, generate: Callable[[StreamState], Generator[str, None, None]]) -> None:
        """:param generate: makes the generator of deltas; it annotates its own
        errors (``partial_text``, secrets redacted)."""
        self._state = StreamState()
        self._gen = generate(self._state)

    # -- the generator protocol ------------------------------------------
    def __next__(self) -> str:
        return self._gen.send(None)

    def send(self, value: Any) -> str:
        return self._gen.send(value)

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
