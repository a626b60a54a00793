"""One response's body → reply deltas: :class:`~fakegpt._body.Body` bytes
through the SSE decoder and the protocol decoder. Pure logic over a body;
the I/O is the body's."""
from __future__ import annotations

from time import monotonic
from typing import Iterator, Optional, Protocol

from ._body import Body, body_error
from ._protocol import ReplyDecoder
from ._sse import SSEDecoder
from .exceptions import APITimeoutError, IncompleteStreamError, StreamError

__all__ = ["Control", "ReplyReader"]


class Control(Protocol):
    """What the reader needs from the call it reads for."""

    #: The call was aborted: stop at once, yield nothing more.
    aborted: bool
    #: Why the call was ended for taking too long, or ``None``.
    expired: Optional[str]
    #: When the last event arrived.
    progress_at: Optional[float]
    #: When the last bytes arrived.
    read_at: Optional[float]

    def ended(self) -> bool:
        """Aborted or expired: asked after every read."""


def _stop(control: Control, decoder: ReplyDecoder) -> None:
    """The call ended while its body was read: quietly if it was aborted or
    its reply is finished (only the ``[DONE]`` is missing), else with its timeout."""
    if not (control.aborted or decoder.finished) and control.expired is not None:
        raise APITimeoutError(control.expired) from None


class ReplyReader:
    """Reads one conversation response into reply deltas."""

    def __init__(self, body: Body, decoder: ReplyDecoder, control: Control) -> None:
        self.body = body
        self.decoder = decoder
        self._control = control

    def deltas(self) -> Iterator[str]:
        """The reply text, delta by delta; closes the response when done.

        "Has the call ended?" is asked after every read of the body, not
        only per event: a compressed body can yield comments, or pieces of
        one endless event, for minutes without a complete event."""
        body, decoder, control, sse = self.body, self.decoder, self._control, SSEDecoder()
        feed, read, ended = sse.feed, body.read, control.ended
        try:
            while True:  # the hot loop: kept flat on purpose
                try:
                    chunk = read()
                except Exception as error:  # noqa: BLE001 - mapped to a fakegpt error, or the end
                    if ended():
                        _stop(control, decoder)
                        return
                    if decoder.finished:
                        # The reply is complete; only its [DONE] never came (a stall, or a drop).
                        yield from _held(decoder)
                        return
                    raise body_error(error) from error
                if ended():
                    _stop(control, decoder)
                    return
                if not chunk:
                    break
                control.read_at = now = monotonic()
                for event, data in feed(chunk):
                    if ended():  # before decoding: the text kept is the text delivered
                        _stop(control, decoder)
                        return
                    control.progress_at = now
                    delta = decoder.feed(event, data)
                    if delta:
                        yield delta
                    if decoder.done:
                        body.drain()  # keep the connection if the body ends now
                        return
                pending = sse.pending
                if pending and pending[0] == b"[DONE]" and len(pending) == 1:
                    decoder.done = True  # its blank line may never come: it is final already
                    yield from _held(decoder)
                    body.drain()
                    return
            if ended():
                _stop(control, decoder)
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
            yield from _held(decoder)
            if not (decoder.done or decoder.finished):
                message = "the stream ended before [DONE] and before the reply was finished"
                if sse.stray is not None and not decoder.parts:
                    message += f"; the body is not an event stream: {sse.stray.decode('utf-8', 'replace')}"
                raise IncompleteStreamError(message)
        finally:
            body.close()


def _held(decoder: ReplyDecoder) -> Iterator[str]:
    """The text the decoder still holds back, at the end of the stream."""
    held = decoder.flush()
    if held:
        yield held
