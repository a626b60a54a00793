"""Server-sent events: bytes → lines → events. Pure; no I/O.

Lines are split on ``\\r\\n``, ``\\n`` or ``\\r`` *as bytes*, before any
decoding (PROTOCOL §5): a multi-byte UTF-8 character can be split across
network reads, and JSON strings may contain raw U+2028/U+2029/U+0085, which
``str.splitlines()`` would wrongly treat as line breaks. A ``\\r\\n`` pair
split across two reads is one line break, not two.

Event data stays ``bytes``: ``json.loads`` reads UTF-8 bytes directly, which
saves a decode and a copy per event.

Every line and every event is bounded (:data:`MAX_EVENT`): a body that never
ends its line, or an event that never ends, is a :class:`StreamError` once
it passes the bound, not a process that grows until it is killed. The bound
holds for memory too: a line that arrives a byte per read grows one buffer
(not an object per read), and an event may have at most one data line per
:data:`_BYTES_PER_DATA_LINE` bytes of the bound (each line is an object).
"""
from __future__ import annotations

import re
from typing import List, Optional, Tuple

from ._constants import MAX_EVENT
from .exceptions import StreamError

__all__ = ["Event", "SSEDecoder"]

#: ``(event type, data)``; the type is ``"message"`` when the server named none.
Event = Tuple[str, bytes]

_LINE_BREAK = re.compile(rb"\r\n|\r|\n")
_BOM = b"\xef\xbb\xbf"
_EVENT_HEAD = re.compile(rb"(?:event:([^\n]*)\n)?data: ?")
_EVENT_NAMES = {b"delta": "delta", b"ping": "ping", b"delta_encoding": "delta_encoding", b"error": "error"}
_CR = 13  # (``13 in chunk`` is a memchr; ``b"\r" in chunk`` costs ten times as much, through the buffer protocol)
_OTHER_FIELDS = (b"id", b"retry", b"event", b"data")
#: How much longer than the largest event data a line may be ("data: " and spaces).
_LINE_ROOM = 64
#: An event may have one data line per this many bytes of its bound: a line
#: costs about 40 bytes of memory beyond its data, so 16 MiB of one-byte lines
#: would take 40 times the bound.
_BYTES_PER_DATA_LINE = 64


class SSEDecoder:
    """Incremental SSE decoder.

    Feed it the body as it arrives; it returns every event completed by that
    piece, in order::

        >>> decoder = SSEDecoder()
        >>> decoder.feed(b'event: ping\\r\\ndata: {"a"')
        []
        >>> decoder.feed(b': 1}\\r')
        []
        >>> decoder.feed(b'\\n\\r\\n')
        [('ping', b'{"a": 1}')]

    Beyond the SSE specification it is lenient in two ways seen in the wild:
    trailing white space on a line is ignored (so a line of spaces ends an
    event), and :meth:`close` dispatches an event whose blank line never came.

    :param max_event: the largest event data, in bytes (a line may be up to
        :data:`_LINE_ROOM` bytes longer: its field name and spaces); past it
        :meth:`feed` raises :class:`~fakegpt.StreamError`.
    """

    __slots__ = ("_partial", "_skip_lf", "pending", "_data_size", "_event", "_head", "_idle",
                 "_max", "_max_line", "_max_lines", "stray")

    def __init__(self, max_event: int = MAX_EVENT) -> None:
        self._max = max_event
        self._max_line = max_event + _LINE_ROOM
        self._max_lines = max(1, max_event // _BYTES_PER_DATA_LINE)
        self._partial = bytearray()  # the line not yet ended
        self._data_size = 0  # bytes in self.pending
        self._skip_lf = False  # the last piece ended with \r: a leading \n is its pair
        #: The data lines of the event not yet ended by its blank line.
        self.pending: List[bytes] = []
        self._event = "message"
        self._head: Optional[bytes] = b""  # the first bytes, until a BOM is ruled out
        self._idle = False  # between events, nothing held: the next chunk may take the fast path
        #: The first line that is not SSE at all (e.g. a raw JSON error), for error messages.
        self.stray: Optional[bytes] = None

    def feed(self, chunk: bytes) -> List[Event]:
        """Consume *chunk*; return the events it completes."""
        if self._idle and chunk[-2:] == b"\n\n" and _CR not in chunk:
            # The commonest chunk by far (a server flushes each event as one
            # chunk): one whole event, [event: NAME\n]data: PAYLOAD\n\n, and
            # nothing held from before. A few C calls; no regex, no state.
            last = len(chunk) - 2
            end = chunk.find(b"\n")
            if end == last:
                if chunk[:6] == b"data: ":
                    return [("message", self._value(chunk, 6, end))]
            elif chunk[:6] == b"event:" and chunk.startswith(b"data: ", end + 1):
                begin = end + 7
                if chunk.find(b"\n", begin) == last:
                    name = chunk[6:end].strip()
                    return [(_EVENT_NAMES.get(name) or name.decode("utf-8", "replace") or "message",
                             self._value(chunk, begin, last))]
        events = self._feed(chunk)
        self._idle = (self._head is None and not self._skip_lf and not self._partial and not self.pending
                      and self._event == "message")
        return events

    def _value(self, chunk: bytes, begin: int, end: int) -> bytes:
        """The data of a whole event, ``chunk[begin:end]``, bounded and stripped."""
        if end - begin > self._max:
            self._too_large("an event", self._max)
        value = chunk[begin:end]
        # (A line holds no \r or \n: rstrip() strips only the spaces and tabs
        # SSE lets a value end with, and returns the value itself when there are none.)
        return value.rstrip()

    def _feed(self, chunk: bytes) -> List[Event]:
        if self._head is not None:
            chunk = self._head + chunk
            if len(chunk) < 3 and _BOM.startswith(chunk):
                self._head = chunk
                return []
            self._head = None
            if chunk[:3] == _BOM:  # the SSE spec ignores one leading byte order mark
                chunk = chunk[3:]
        if self._skip_lf:
            self._skip_lf = False
            if chunk[:1] == b"\n":
                chunk = chunk[1:]
        if _CR in chunk:
            # A trailing \r ends its line now (no waiting for the next read to
            # learn whether \n follows); remember to swallow that \n.
            self._skip_lf = chunk[-1:] == b"\r"
            chunk = _LINE_BREAK.sub(b"\n", chunk)
        events: List[Event] = []
        find, head = chunk.find, _EVENT_HEAD.match
        size, start = len(chunk), 0
        while start < size:
            if not self.pending and not self._partial:
                # The common shape, whole: [event: NAME\n]data: PAYLOAD\n\n. The
                # regex reads only the heads; find() (memchr) locates the payload's
                # end, so a long payload is never scanned in Python.
                match = head(chunk, start)
                if match is not None:
                    begin = match.end()
                    end = find(b"\n", begin)
                    if 0 <= end < size - 1 and chunk[end + 1] == 10:  # the next line is blank
                        name = match.group(1)
                        if name is not None:
                            name = name.strip()
                            name = _EVENT_NAMES.get(name) or name.decode("utf-8", "replace") or "message"
                        else:
                            name = self._event
                        events.append((name, self._value(chunk, begin, end)))
                        self._event = "message"
                        start = end + 2
                        continue
            # Anything else: one line at a time.
            end = find(b"\n", start)
            if end < 0:
                if len(self._partial) + size - start > self._max_line:
                    self._too_large("a line", self._max_line)
                self._partial += chunk[start:] if start else chunk
                break
            line = chunk[start:end]
            if self._partial:
                if len(self._partial) + len(line) > self._max_line:
                    self._too_large("a line", self._max_line)
                line = bytes(self._partial) + line
                self._partial.clear()
            elif len(line) > self._max_line:
                self._too_large("a line", self._max_line)
            self._line(line, events)
            start = end + 1
        return events

    def _too_large(self, what: str, limit: int) -> None:
        self._refuse(f"{what} of the event stream is larger than {limit:,} bytes")

    def _refuse(self, problem: str) -> None:
        self._partial, self.pending, self._data_size = bytearray(), [], 0
        self._idle = False
        raise StreamError(f"{problem}: not a stream fakegpt can read (the connection was dropped)")

    def close(self) -> List[Event]:
        """The body ended: finish a line and an event left open, if any."""
        events: List[Event] = []
        if self._partial:
            line = bytes(self._partial)
            self._partial.clear()
            self._line(line, events)
        self._line(b"", events)
        return events

    def _line(self, line: bytes, events: List[Event]) -> None:
        if line[:5] == b"data:":
            value = line[6:] if line[5:6] == b" " else line[5:]
            self._data_size += len(value) + 1
            if self._data_size > self._max + 1:
                self._too_large("an event", self._max)
            if len(self.pending) >= self._max_lines:
                self._refuse(f"an event of the event stream has more than {self._max_lines:,} data lines")
            self.pending.append(value.rstrip())
            return
        line = line.rstrip()
        if not line:
            if self.pending:
                data = self.pending[0] if len(self.pending) == 1 else b"\n".join(self.pending)
                events.append((self._event, data))
                self.pending, self._data_size = [], 0
            self._event = "message"
        elif line[:6] == b"event:":
            name = line[6:].strip()
            self._event = _EVENT_NAMES.get(name) or name.decode("utf-8", "replace") or "message"
        elif self.stray is None and line[:1] != b":" and line.split(b":", 1)[0] not in _OTHER_FIELDS:
            self.stray = line[:200]
        # Anything else is a comment (":"), or a field we do not use (id, retry).
