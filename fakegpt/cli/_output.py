"""Standard output and the terminal: the reply as it streams, the spinner, and
what happens when standard output cannot take the reply."""
from __future__ import annotations

import itertools
import os
import sys
import threading
from typing import Optional

from .._stream import Stream

__all__ = ["OutputError", "OutputGone", "Spinner", "output_failure", "print_stream", "silence_stdout", "write_out"]


class OutputGone(Exception):
    """Nobody reads standard output any more (a closed pipe, ``| head``, or ``>&-``): stop quietly."""


class OutputError(Exception):
    """Standard output failed (``> /dev/full``, a disk error, an unencodable character): one line, exit 1."""


def write_out(text: str) -> None:
    """Write *text* to standard output and flush it, turning a failure into
    :class:`OutputGone` or :class:`OutputError` (never a traceback)."""
    out = sys.stdout
    if out is None:  # started with stdout closed
        raise OutputGone()
    try:
        out.write(text)
        out.flush()
    except UnicodeEncodeError as error:
        encoding = getattr(out, "encoding", None) or "its encoding"
        raise OutputError(f"standard output ({encoding}) cannot show {error.object[error.start:error.end]!a}; "
                          "try PYTHONIOENCODING=utf-8") from None
    except OSError as error:
        raise output_failure(error) from None


def output_failure(error: OSError) -> Exception:
    """What a failed write to standard output means: :class:`OutputGone` or :class:`OutputError`."""
    if isinstance(error, BrokenPipeError):
        return OutputGone()
    return OutputError(f"cannot write to standard output: {error.strerror or error}")


def silence_stdout() -> None:
    """Point standard output at the null device, so that later writes, the
    interpreter's last flush included, neither fail nor print a traceback."""
    out = sys.stdout
    if out is None:
        return  # descriptor 1 may belong to something else now: leave it alone
    try:
        fd = out.fileno()
    except (OSError, ValueError):
        return
    null = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(null, fd)
    finally:
        os.close(null)


def print_stream(stream: Stream) -> str:
    """Print *stream*'s deltas as they arrive (a spinner on a terminal until
    the first), then a newline; returns the text."""
    spinner = Spinner() if _is_terminal(sys.stderr) else None
    output_failed = False
    try:
        with stream:
            for delta in stream:
                if spinner:
                    spinner.stop()
                    spinner = None
                write_out(delta)
    except (OutputGone, OutputError):
        output_failed = True
        raise
    finally:
        if spinner:
            spinner.stop()
        if stream.text and not output_failed:
            write_out("\n")  # partial text too: the error line starts on a line of its own
    return stream.text


def _is_terminal(stream: Optional[object]) -> bool:
    isatty = getattr(stream, "isatty", None)
    try:
        return bool(isatty and isatty())
    except (OSError, ValueError):
        return False


class Spinner:
    """A small spinner on stderr until the first token arrives."""

    def __init__(self) -> None:
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._spin, daemon=True)
        self._thread.start()

    def _spin(self) -> None:
        for frame in itertools.cycle("⠋⠙⠹⠸⠼⠴⠦⠧⠇⠏"):
            sys.stderr.write(f"\r{frame} ")
            sys.stderr.flush()
            if self._done.wait(0.08):
                break
        sys.stderr.write("\r  \r")
        sys.stderr.flush()

    def stop(self) -> None:
        """Erase the spinner; returns once it is gone."""
        self._done.set()
        self._thread.join()
