"""``fakegpt serve``: the embedded emulator, until Ctrl-C or SIGTERM."""
from __future__ import annotations

import argparse
import contextlib
import logging
import signal
import sys
import threading
from typing import Iterator

from ..exceptions import FakeGptError
from ._output import OutputGone, silence_stdout, write_out

__all__ = ["serve"]


def serve(args: argparse.Namespace) -> int:
    """Run the emulator until interrupted; returns the exit status (0 once stopped)."""
    from ..emulator import Emulator

    try:
        emulator = Emulator(host=args.host, port=args.port, delay=args.delay, format=args.format,
                            max_words=args.max_words).start()
    except OSError as error:
        raise FakeGptError(f"cannot listen on {args.host}:{args.port}: {error.strerror or error}") from None
    try:
        stop = threading.Event()
        signal.signal(signal.SIGTERM, lambda *_: stop.set())
        try:
            write_out(emulator.url + "\n")  # for other programs: the first line of stdout
        except OutputGone:  # nobody reads stdout: the URL is on stderr too
            silence_stdout()
        print(f"fakegpt emulator serving on {emulator.url} (Ctrl-C to stop)", file=sys.stderr, flush=True)
        try:
            with _request_lines(quiet=args.quiet):
                while not stop.wait(0.5):
                    pass
        except KeyboardInterrupt:
            print(file=sys.stderr)  # the shell's prompt then starts on a line of its own, after "^C"
    finally:
        emulator.stop()
    return 0


@contextlib.contextmanager
def _request_lines(quiet: bool) -> Iterator[None]:
    """One line per request on stderr (the emulator's access log), unless *quiet*."""
    if quiet:
        yield
        return
    access = logging.getLogger("fakegpt.emulator.access")
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(message)s"))
    level, propagate = access.level, access.propagate
    access.addHandler(handler)
    access.setLevel(logging.INFO)
    access.propagate = False  # printed once, whatever FAKEGPT_LOG or --debug set up on the fakegpt logger
    try:
        yield
    finally:
        access.removeHandler(handler)
        access.setLevel(level)
        access.propagate = propagate
