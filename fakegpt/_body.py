"""The bytes of a streamed body, as they arrive, through urllib3's public API.

* A chunked body (what event-stream servers send, flushing each event as
  one chunk): ``HTTPResponse.read_chunked(READ_SIZE)``, one HTTP chunk as
  soon as it is complete (a chunk larger than ``READ_SIZE`` in pieces): the path ``requests``' own ``iter_content`` takes, and the
  cheapest public one (``read1`` costs about 1.5x the CPU on a fast
  stream: a call per piece of a chunk, not per chunk). Events inside one
  chunk wait for its end; a chunk cut short is lost with the connection.
* A close-delimited body, urllib3 2.x: ``read1(amt)``, whatever has
  arrived, never waiting for more: each event as soon as its bytes arrive.
* A close-delimited body, urllib3 1.26 (no ``read1``): ``stream(amt)``, which
  waits until *amt* bytes or the end of the body have arrived, so there an
  event can wait for up to :data:`LEGACY_CLOSE_DELIMITED_READ` more bytes.

A compressed body is decoded on every path (gzip, deflate; brotli and zstd
when their decoders are installed, as urllib3 decides); an identity body
skips urllib3's decoding machinery. A connection goes back to the pool
when the body has been read to its end (urllib3 does that itself); after
``[DONE]``, :meth:`Body.drain` waits a moment
(:data:`~fakegpt._constants.DRAIN_GRACE`, in all) for the end of the body.

Before any of that, :func:`check_stream_response` refuses what is not a
readable event stream: a redirect, an HTML or JSON page, a
``Content-Encoding`` this urllib3 cannot decode.
"""
from __future__ import annotations

import functools
import socket
import time
from typing import Any, Callable, Optional

import requests
from urllib3.exceptions import DecodeError, ProtocolError, ReadTimeoutError

from ._constants import DRAIN_GRACE, READ_SIZE
from ._http import MAX_ERROR_BODY, host_of, read_capped
from ._transport import socket_of
from .exceptions import (
    APIStatusError, APITimeoutError, FakeGptError, IncompleteStreamError, StreamError, detail_from_body, one_line,
)

__all__ = ["Body", "LEGACY_CLOSE_DELIMITED_READ", "body_error", "check_stream_response", "undecodable"]

#: urllib3 1.26 only: the read size for a close-delimited body (see above).
LEGACY_CLOSE_DELIMITED_READ = 1024


def body_error(error: BaseException) -> FakeGptError:
    """The fakegpt error for a failure while reading the body."""
    if isinstance(error, (ReadTimeoutError, socket.timeout, TimeoutError)) or "timed out" in str(error):
        return APITimeoutError("the stream stalled: no data arrived within the read timeout (the connection was dropped)")
    if isinstance(error, DecodeError):
        # urllib3's message first ("Received response with content-encoding: gzip, but failed to decode it."),
        # then the decoder's own error, which says nothing more to a caller.
        said = str(error.args[0]) if error.args else "the body does not match its Content-Encoding"
        return StreamError(f"could not decode the stream: {one_line(said[:1].lower() + said[1:].rstrip('.'), 120)}")
    if isinstance(error, (ProtocolError, requests.exceptions.RequestException, OSError)):
        return IncompleteStreamError("the connection was lost mid-stream, before the end of the body")
    return StreamError(f"could not read the stream: {type(error).__name__}")


#: The content codings IANA registers (each transforms the bytes), but identity.
_CODINGS = frozenset({"aes128gcm", "br", "compress", "dcb", "dcz", "deflate", "exi", "gzip", "pack200-gzip",
                      "x-compress", "x-gzip", "zstd"})


def undecodable(response: requests.Response) -> Optional[str]:
    """Why *response*'s body cannot be read here, from its ``Content-Encoding``,
    or ``None``. urllib3 decodes the codings it knows; a header naming none
    of them leaves the body as it is, which is right for a label that is no
    compression (``none``, ``utf-8``) and wrong for one this urllib3 cannot
    decode (``br`` without a brotli package, ``compress``): that is refused
    here, before reading, rather than fed to the event decoder as noise. A
    list mixing known and unknown codings is refused too: urllib3 takes an
    unknown one for deflate (even ``identity``, in ``gzip, identity``)."""
    header = response.headers.get("Content-Encoding", "")
    known = getattr(response.raw, "CONTENT_DECODERS", None)
    codings = [coding.strip() for coding in header.lower().split(",") if coding.strip()]
    if known is None or not codings:
        return None
    decoded = [coding in known for coding in codings]
    if all(decoded) or (not any(decoded) and not any(coding in _CODINGS for coding in codings)):
        return None
    return (f"the server sent the stream with Content-Encoding: {one_line(header, 60)}, which cannot be decoded "
            f"here (this urllib3 decodes {', '.join(known)})")


def check_stream_response(response: requests.Response) -> None:
    """Raise if *response* (a 2xx) is not an event stream this client can read:
    a redirect, an HTML page, a JSON error, an encoding urllib3 cannot decode."""
    status = response.status_code
    if 300 <= status < 400:
        response.close()
        location = response.headers.get("Location", "")
        where = host_of(location) if "//" in location else "elsewhere"
        raise APIStatusError(
            f"POST /api/conversation was redirected (HTTP {status} to {where}); not followed, "
            "because the access token would go along",
            status_code=status,
        )
    content_type = response.headers.get("Content-Type", "").lower()
    if "html" in content_type or "json" in content_type:
        detail = detail_from_body(read_capped(response, MAX_ERROR_BODY, "POST /api/conversation", truncate=True),
                                  content_type)
        raise StreamError(f"expected an event stream, got {content_type.split(';')[0]}: {detail or 'empty body'}")
    problem = undecodable(response)
    if problem is not None:
        response.close()
        raise StreamError(problem)


class Body:
    """Reads one response's body (from one thread)."""

    def __init__(self, response: requests.Response) -> None:
        self.response = response
        raw = response.raw
        self._raw = raw
        self.chunked = bool(getattr(raw, "chunked", False))
        #: ``read() -> bytes``: the next bytes of the body, ``b""`` at its end
        #: (raises urllib3's or the socket's error).
        self.read: Callable[[], bytes]
        read1 = getattr(raw, "read1", None)
        # Decoding only when the body is encoded: urllib3's decoding path
        # (decoder, buffer) costs as much per read as the rest of the read.
        encoded = response.headers.get("Content-Encoding", "identity").strip().lower() not in ("", "identity")
        if self.chunked:
            # At most READ_SIZE bytes of a chunk per read: a chunk declared a
            # gigabyte long must not be read whole into memory (an event's
            # chunk is smaller and costs one read, as with no bound).
            self.read = functools.partial(next, raw.read_chunked(READ_SIZE, decode_content=encoded), b"")
        elif read1 is not None:
            self.read = functools.partial(read1, READ_SIZE, decode_content=encoded)
        else:
            self.read = functools.partial(next, raw.stream(LEGACY_CLOSE_DELIMITED_READ, decode_content=encoded), b"")

    @property
    def connection(self) -> Any:
        """The urllib3 connection the body arrives on (``None`` once released)."""
        return getattr(self._raw, "connection", None)

    def untimed_reads(self) -> None:
        """Let the socket block without a timeout from now on, for a caller
        that times the reads itself (:mod:`fakegpt._watchdog` ends a call
        that goes a read timeout without a complete event, which covers a
        stall too). Python polls before every read of a socket that has a
        timeout: a system call more per read, about 4% of the CPU of a large
        stream. urllib3 sets the timeout again when the connection is next used."""
        sock = socket_of(self.connection)
        if sock is not None:
            try:
                sock.settimeout(None)
            except OSError:  # closed already: the next read says so
                pass

    def drain(self) -> bool:
        """After ``[DONE]``: read what is left of the body if it comes within
        :data:`DRAIN_GRACE` in all (a server trickling bytes gets no more), so
        the connection can serve the next call. True when the body ended cleanly."""
        if not self.chunked and getattr(self._raw, "length_remaining", None) is None:
            return False  # close-delimited: the connection cannot be reused anyway
        sock = socket_of(self.connection)
        if sock is None:
            return False
        deadline = time.monotonic() + DRAIN_GRACE
        try:
            while True:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                # urllib3 sets the connection's timeout again when it is next used.
                sock.settimeout(left)
                data = self.read()
                if not data:
                    return True
                if data.strip():
                    return False  # more than the end of the body: not worth waiting for
        except Exception:  # noqa: BLE001 - not there in time: the connection is dropped
            return False

    def close(self) -> None:
        self.response.close()
