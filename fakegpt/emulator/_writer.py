"""How the emulator writes a streamed body: HTTP chunks or raw bytes,
optionally compressed, with the line ends and splitting a test asked for."""
from __future__ import annotations

import zlib
from typing import Any, Optional

__all__ = ["Hangup", "Writer"]


class Hangup(Exception):
    """The client went away mid-stream."""


class Writer:
    """Writes frames as HTTP chunks (or raw, when close-delimited), with the
    line ends and splitting a test asked for; batches writes when it can."""

    def __init__(self, handler: Any, chunked: bool, newline: str, split: Optional[int],
                 compress: Optional[str] = None) -> None:
        self._sock = handler.connection
        self._chunked = chunked
        # gzip or deflate (zlib format), flushed at every write so each event can be decoded on arrival.
        self._zlib = zlib.compressobj(wbits=31 if compress == "gzip" else 15) if compress else None
        self._plain = bytearray()
        self._newline = newline.encode()
        self._split = split
        self._buffer = bytearray()
        self.hold = False  # keep everything until finish()

    def send(self, frame: bytes) -> None:
        if self._newline != b"\n":
            frame = frame.replace(b"\n", self._newline)
        pieces = [frame]
        if self._split:
            pieces = [frame[i:i + self._split] for i in range(0, len(frame), self._split)]
        for piece in pieces:
            if self._zlib is not None:
                self._plain += piece
            else:
                self._frame(piece)
            if self._split:
                self.flush()
        if len(self._buffer) + len(self._plain) >= 65536 and not self.hold:
            self.flush()

    def _frame(self, piece: bytes) -> None:
        if piece:
            self._buffer += b"%x\r\n%s\r\n" % (len(piece), piece) if self._chunked else piece

    def _compress(self, final: bool = False) -> None:
        if self._zlib is not None and (self._plain or final):
            data = self._zlib.compress(bytes(self._plain))
            data += self._zlib.flush(zlib.Z_FINISH if final else zlib.Z_SYNC_FLUSH)
            self._plain.clear()
            self._frame(data)

    def flush(self) -> None:
        self._compress()
        if self._buffer:
            try:
                self._sock.sendall(self._buffer)
            except OSError:
                raise Hangup() from None
            self._buffer.clear()

    def finish(self) -> None:
        self._compress(final=True)
        if self._chunked:
            self._buffer += b"0\r\n\r\n"
        self.flush()
