"""Chunked transfer coding (RFC 9112 §7.1), decoded incrementally. Pure; no I/O.

Why not http.client's decoder: it returns at most one chunk per read, each
through four Python-level calls. A stream of small events (format B sends a
~35-byte chunk per event) spent more time there than decoding the events.
Here one read of whatever the socket buffer holds (often dozens of chunks)
is decoded in one call, and the payload goes to the SSE decoder as one piece.

Lenient where real servers are: a bare ``\\n`` ends a line as ``\\r\\n`` does,
and chunk extensions and trailers are skipped.
"""
from __future__ import annotations

import re
from typing import List, Tuple

__all__ = ["ChunkedDecoder", "ChunkedError"]

# A whole size line: hex digits, optional extensions, the line end.
_SIZE_LINE = re.compile(rb"([0-9A-Fa-f]{1,16})[ \t]*(?:;[^\n]*)?\r?\n")
_SIZE_FIELD = re.compile(rb"[ \t]*([0-9A-Fa-f]{1,16})[ \t]*(?:;.*)?")
_MAX_LINE = 8192


class ChunkedError(ValueError):
    """The body is not valid chunked transfer coding."""


class ChunkedDecoder:
    """Feed it the raw body as it arrives; it returns the payload bytes.

    >>> decoder = ChunkedDecoder()
    >>> decoder.feed(b"5\\r\\nHel"), decoder.feed(b"lo\\r\\n0\\r\\n\\r\\n"), decoder.finished
    (b'Hel', b'lo', True)
    """

    __slots__ = ("_left", "_line", "_after_data", "_in_trailers", "finished", "overflow")

    def __init__(self) -> None:
        self._left = 0  # payload bytes still to come in the current chunk
        self._line = b""  # an unfinished size, data-end or trailer line
        self._after_data = False  # the next line ends a chunk's data (it must be empty)
        self._in_trailers = False
        self.finished = False  # the last chunk and the trailers have been read
        self.overflow = False  # bytes came after the end of the body

    def feed(self, data: bytes) -> bytes:
        """Decode *data*; return the payload it carries (possibly ``b""``)."""
        if self.finished:
            self.overflow = self.overflow or bool(data)
            return b""
        pieces: List[bytes] = []
        size, pos, left = len(data), 0, self._left
        match = _SIZE_LINE.match
        while pos < size:
            if left:  # inside a chunk's payload
                end = pos + left
                if end >= size:
                    pieces.append(data[pos:] if pos else data)
                    left = end - size
                    self._after_data = left == 0
                    break
                pieces.append(data[pos:end])
                pos, left = end, 0
                self._after_data = True
                # fall through: the data's line end usually follows at once
            if self._after_data and not self._line and data[pos:pos + 2] == b"\r\n":
                pos += 2
                self._after_data = False
                continue
            if not (self._after_data or self._in_trailers or self._line):
                whole = match(data, pos)
                if whole is not None:  # the common case: a whole size line
                    left = int(whole.group(1), 16)
                    pos = whole.end()
                    if left == 0:
                        self._in_trailers = True
                    continue
            pos, left = self._line_step(data, pos)
            if pos < 0:
                break
        self._left = left
        return pieces[0] if len(pieces) == 1 else b"".join(pieces)

    def _line_step(self, data: bytes, pos: int) -> Tuple[int, int]:
        """Consume one (possibly split) line: a size line, a data end or a trailer.
        Returns the position after it (-1 when the line is not complete yet, or
        the body ended) and the payload bytes the line announces."""
        end = data.find(b"\n", pos)
        if end < 0:
            self._line += data[pos:]
            if len(self._line) > _MAX_LINE:
                raise ChunkedError("a chunked-coding line is too long")
            return -1, 0
        line = self._line + data[pos:end]
        self._line = b""
        if line[-1:] == b"\r":
            line = line[:-1]
        if self._after_data:
            if line:
                raise ChunkedError("a chunk's data is not followed by its line end")
            self._after_data = False
        elif self._in_trailers:
            if not line:
                self.finished = True
                self.overflow = end + 1 < len(data)
                return -1, 0
        else:
            field = _SIZE_FIELD.fullmatch(line)
            if field is None:
                raise ChunkedError(f"bad chunk size line {line[:40]!r}")
            left = int(field.group(1), 16)
            self._in_trailers = left == 0
            return end + 1, left
        return end + 1, 0
