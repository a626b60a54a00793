"""Reading a body that is not a stream, bounded (:data:`MAX_BODY`). Pure.

A server, or anything between it and the client, can answer a small request
(the token list, a login, an error) with gigabytes; the client reads no
further than the bound and fails with a clear error::

    >>> read_capped([b'{"loads": ', b"[]}"], limit=64)
    b'{"loads": []}'
"""
from __future__ import annotations

from typing import Iterable, List

from ._constants import MAX_BODY
from .exceptions import APIStatusError

__all__ = ["read_capped"]


def read_capped(chunks: Iterable[bytes], limit: int = MAX_BODY, *, what: str = "the answer",
                status_code: int = 0) -> bytes:
    """The body from *chunks* (e.g. ``response.iter_content(65536)``), whole.

    Stops reading as soon as more than *limit* bytes came (the caller then
    closes the response: its connection is not reusable).

    :param what: what answered, for the message, e.g. ``"GET /api/loads"``.
    :param status_code: the answer's status, kept on the error.
    :raises APIStatusError: the body is larger than *limit* bytes.
    """
    pieces: List[bytes] = []
    size = 0
    for chunk in chunks:
        size += len(chunk)
        if size > limit:
            raise APIStatusError(
                f"{what} answered HTTP {status_code} with a body larger than {limit:,} bytes; not read further",
                status_code=status_code,
            )
        pieces.append(chunk)
    return b"".join(pieces)
