"""One streamed reply of the model server: its deltas read with fakegpt's own
body reader and SSE decoder, every event bounded, and the request hung up at
once, from any thread, when the gateway's client goes away."""
from __future__ import annotations

import json
import threading
from typing import TYPE_CHECKING, Any, Dict, Generator, Iterator, Mapping, Optional

import requests

from .._body import Body, body_error
from .._sse import SSEDecoder
from .._transport import hang_up, hang_up_owned
from ..emulator import ReplyFailed, RequestError
from ..exceptions import APITimeoutError, FakeGptError, detail_from_body

if TYPE_CHECKING:  # pragma: no cover
    from ._upstream import Upstream

__all__ = ["MAX_UPSTREAM_EVENT", "UpstreamReply"]

#: The largest event of the model server's stream (a delta is a few bytes).
MAX_UPSTREAM_EVENT = 1 << 20


class _Cancel:
    """The connection of one upstream request, and hanging it up from any thread
    (fakegpt's transport reports each connection a request uses)."""

    def __init__(self) -> None:
        self.cancelled = False
        self._lock = threading.Lock()
        self._connection: Any = None

    def connection_used(self, connection: Any) -> None:
        with self._lock:
            self._connection = connection
            cancelled = self.cancelled
        if cancelled:
            hang_up(connection)
            raise FakeGptError("the client hung up")

    def pause(self, seconds: float) -> None:  # pragma: no cover - the gateway does not retry
        """(No retries here.)"""

    def cancel(self) -> None:
        with self._lock:
            if self._connection is not False:
                self.cancelled = True
            if self._connection:
                # A thread blocked reading it returns at once; the server sees the end. Only while this
                # request was the last one sent on it (the transport records this object as its owner,
                # see watching()): once read whole, the connection may be back in the pool, another's.
                hang_up_owned(self._connection, self)

    def done(self) -> None:
        """The request is over: its connection may serve another, which a late cancel() must not touch."""
        with self._lock:
            self._connection = False


class UpstreamReply:
    """The deltas of one streamed reply (iterate it once); its ``finish``
    attribute is the model server's ``finish_reason`` once known (``None``
    before). :meth:`cancel` is safe from any thread."""

    def __init__(self, upstream: "Upstream", response: requests.Response, cancel: _Cancel) -> None:
        self.finish: Optional[str] = None
        self._upstream, self._response, self._cancel = upstream, response, cancel
        self._deltas = self._read()

    def __iter__(self) -> Iterator[str]:
        return self

    def __next__(self) -> str:
        return next(self._deltas)

    def cancel(self) -> None:
        """Hang up the request now (the model server sees its connection end)."""
        self._cancel.cancel()

    def close(self) -> None:
        """Hang up the request (if not finished) and release it (from the reading thread)."""
        self._cancel.cancel()
        self._deltas.close()
        self._response.close()

    def _read(self) -> Generator[str, None, None]:
        response, cancel = self._response, self._cancel
        try:
            if "json" in response.headers.get("Content-Type", "").lower():  # a server that ignored stream=true
                try:
                    answer = self._upstream._json(response)
                except RequestError as error:
                    raise ReplyFailed(str(error.detail)) from None
                finally:
                    cancel.done()  # read whole: the connection may serve another request from now on
                choice = _choice(answer if isinstance(answer, dict) else {})
                self.finish = str(choice.get("finish_reason") or "stop")
                message = choice.get("message")
                text = message.get("content") if isinstance(message, dict) else None
                if isinstance(text, str) and text:
                    yield text
                return
            body, sse = Body(response), SSEDecoder(MAX_UPSTREAM_EVENT)
            while not cancel.cancelled:  # asked per read: a hang-up stops the reply at once
                try:
                    chunk = body.read()
                    events = sse.feed(chunk) if chunk else sse.close()
                except FakeGptError as error:  # an event past the bound
                    raise ReplyFailed(f"the model server's stream cannot be read: {error}") from None
                except Exception as error:  # noqa: BLE001 - mapped to one line, or the end of a cancelled reply
                    if cancel.cancelled:
                        return
                    raise ReplyFailed(self._broken(error)) from None
                for _, data in events:
                    if data == b"[DONE]":
                        body.drain()  # the end of the body, if it comes at once: the connection is kept for reuse
                        return
                    delta = self._delta(data)
                    if delta:
                        yield delta
                if not chunk:
                    if self.finish is None:
                        raise ReplyFailed(f"the model server ({self._upstream.where}) ended its stream mid-reply")
                    return  # a finish_reason came: a server that sends no [DONE]
        finally:
            cancel.done()
            response.close()

    def _delta(self, data: bytes) -> str:
        try:
            event = json.loads(data)
        except ValueError:
            raise ReplyFailed("the model server sent an event that is not JSON") from None
        if not isinstance(event, dict):
            return ""
        if event.get("error"):
            detail = detail_from_body(json.dumps({"error": event["error"]}).encode(), "application/json")
            raise ReplyFailed(self._upstream.redact(f"the model server failed mid-reply: {detail}"))
        choice = _choice(event)  # (a last chunk with usage only has no choices)
        if choice.get("finish_reason"):
            self.finish = str(choice["finish_reason"])
        delta = choice.get("delta")
        content = delta.get("content") if isinstance(delta, dict) else None
        return content if isinstance(content, str) else ""

    def _broken(self, error: BaseException) -> str:
        failure = body_error(error)
        if isinstance(failure, APITimeoutError):
            return f"the model server ({self._upstream.where}) went silent mid-reply (no data within the read timeout)"
        return self._upstream.redact(f"the model server's stream broke off: {failure}")


def _choice(event: Mapping[str, Any]) -> Dict[str, Any]:
    choices = event.get("choices")
    first = choices[0] if isinstance(choices, list) and choices else None
    return first if isinstance(first, dict) else {}
