"""The bytes of a streamed body, as soon as they arrive, through urllib3's public API.

* urllib3 2.x: ``HTTPResponse.read1(amt, decode_content=True)``: whatever
  has arrived (at most one HTTP chunk of a chunked body, never waiting for
  more), decompressed (gzip, deflate; brotli and zstd when their decoders
  are installed, as urllib3 decides). Each event reaches the caller as soon
  as its bytes do, on chunked and on close-delimited bodies.
* urllib3 1.26 (no ``read1``): a chunked body with ``read_chunked()``, one
  HTTP chunk at a time (no delay); a close-delimited body with
  ``stream(amt)``, which waits until *amt* bytes or the end of the body
  have arrived, so there an event can wait for
  :data:`LEGACY_CLOSE_DELIMITED_READ` more bytes (see docs/performance.rst).

A connection goes back to the pool when the body has been read to its end
(urllib3 does that itself); after ``[DONE]``, :meth:`Body.drain` waits a
moment (:data:`~fakegpt._constants.DRAIN_GRACE`) for the end of the body.
"""
from __future__ import annotations

import select
import socket
from typing import Any, Callable, Iterator, Optional

import requests
from urllib3.exceptions import DecodeError, ProtocolError, ReadTimeoutError

from ._constants import DRAIN_GRACE, READ_SIZE
from .exceptions import APITimeoutError, FakeGptError, IncompleteStreamError, StreamError, one_line

__all__ = ["Body", "LEGACY_CLOSE_DELIMITED_READ", "body_error"]

#: urllib3 1.26 only: the read size for a close-delimited body (see above).
LEGACY_CLOSE_DELIMITED_READ = 1024


def body_error(error: BaseException) -> FakeGptError:
    """The fakegpt error for a failure while reading the body."""
    if isinstance(error, (ReadTimeoutError, socket.timeout, TimeoutError)) or "timed out" in str(error):
        return APITimeoutError("the stream stalled: no data arrived within the read timeout (the connection was dropped)")
    if isinstance(error, DecodeError):
        return StreamError(f"could not decode the stream ({one_line(str(error).split(',')[0], 120)})")
    if isinstance(error, (ProtocolError, requests.exceptions.RequestException, OSError)):
        return IncompleteStreamError("the connection was lost mid-stream, before the end of the body")
    return StreamError(f"could not read the stream: {type(error).__name__}")


class Body:
    """Reads one response's body. Not thread-safe, except :meth:`ready`."""

    def __init__(self, response: requests.Response) -> None:
        self.response = response
        raw = response.raw
        self._raw = raw
        self.chunked = bool(getattr(raw, "chunked", False))
        self._read1: Optional[Callable[[int], bytes]] = None
        self._legacy: Optional[Iterator[bytes]] = None
        read1 = getattr(raw, "read1", None)
        if read1 is not None:
            self._read1 = lambda size: read1(size, decode_content=True)
        elif self.chunked:
            self._legacy = raw.read_chunked(decode_content=True)
        else:
            self._legacy = raw.stream(LEGACY_CLOSE_DELIMITED_READ, decode_content=True)
        self.ended = False  # the body was read to its end

    @property
    def connection(self) -> Any:
        """The urllib3 connection the body arrives on (``None`` once released)."""
        return getattr(self._raw, "connection", None)

    def read(self) -> bytes:
        """The next bytes of the body; ``b""`` at its end. Raises the raw error."""
        if self.ended:
            return b""
        if self._read1 is not None:
            data = self._read1(READ_SIZE)
        else:
            data = next(self._legacy, b"")  # type: ignore[arg-type]
        if not data:
            self.ended = True
        return data

    def ready(self) -> bool:
        """Whether a :meth:`read` would return at once (``False`` when unsure)."""
        sock = getattr(self.connection, "sock", None)
        if sock is None:
            return False
        try:
            pending = getattr(sock, "pending", None)
            if pending is not None and pending():  # TLS bytes decrypted already
                return True
            return bool(select.select([sock], [], [], 0)[0])
        except (OSError, ValueError, TypeError):
            return False

    def drain(self) -> bool:
        """After ``[DONE]``: read what is left of the body if it comes within
        :data:`DRAIN_GRACE`, so the connection can serve the next call.
        True when the body ended cleanly."""
        if not self.chunked and getattr(self._raw, "length_remaining", None) is None:
            return False  # close-delimited: the connection cannot be reused anyway
        sock = getattr(self.connection, "sock", None)
        if sock is None:
            return False
        try:
            # urllib3 sets the connection's timeout again when it is next used.
            sock.settimeout(DRAIN_GRACE)
            while not self.ended:
                if self.read().strip():
                    return False  # more than the end of the body: not worth waiting for
        except Exception:  # noqa: BLE001 - not there in time: the connection is dropped
            return False
        return True

    def close(self) -> None:
        self.response.close()
