"""The ``fakegpt`` command: ``fakegpt chat``, ``fakegpt serve`` and ``fakegpt g4f-api``.

Exit status: 0 on success (``serve`` stopped by Ctrl-C or SIGTERM included),
1 when the call fails or standard output cannot take the reply (one line on
stderr; the traceback too with ``--debug``), 2 on a usage error, 130 on Ctrl-C
(in an interactive chat: Ctrl-C at the prompt), 141 when nobody reads stdout
(``| head``, or started with stdout closed).
"""
from __future__ import annotations

import argparse
import contextlib
import logging
import sys
from typing import Dict, Iterator, Optional, Sequence, Tuple

from .._config import setting_problems
from ..exceptions import FakeGptError
from ._args import build_parser
from ._chat import Run, UsageError, chat
from ._g4f_api import g4f_api
from ._output import OutputError, OutputGone, output_failure, silence_stdout, write_out
from ._serve import serve

__all__ = ["main"]


def _parser() -> Tuple[argparse.ArgumentParser, Dict[str, argparse.ArgumentParser]]:
    """The parser, and each command's own parser (the documentation shows their ``--help``)."""
    return build_parser()


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Run the command line; returns the exit status."""
    for problem in setting_problems():  # FAKEGPT_LOG=bogus: one line, not a Python warning
        print(f"fakegpt: warning: {problem}", file=sys.stderr)
    parser, commands = build_parser()
    try:
        args, unknown = parser.parse_known_args(argv)
        if unknown:  # reported with the usage of the command they were given to
            commands[args.command].error(f"unrecognized arguments: {' '.join(unknown)}")
    except SystemExit as done:  # --help, --version, or a usage error (on stderr)
        if done.code == 0:
            return _flushed()
        raise
    except OSError as error:  # Python 3.9's argparse lets a failed write of --help through
        return _output_failed(output_failure(error))
    with _debug_logging(args.debug):
        return _run(args, commands[args.command])


@contextlib.contextmanager
def _debug_logging(enabled: bool) -> Iterator[None]:
    """With --debug, the fakegpt logger's DEBUG records go to stderr (secrets are never logged).

    When ``FAKEGPT_LOG`` has already set up a handler on stderr, that one is
    used at the DEBUG level: each record is printed once.
    """
    if not enabled:
        yield
        return
    logger = logging.getLogger("fakegpt")
    handler: Optional[logging.Handler] = None
    if not any(_on_stderr(existing) for existing in logger.handlers):
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(name)s: %(message)s"))
        logger.addHandler(handler)
    level = logger.level
    logger.setLevel(logging.DEBUG)
    try:
        yield
    finally:
        if handler is not None:
            logger.removeHandler(handler)
        logger.setLevel(level)


def _on_stderr(handler: logging.Handler) -> bool:
    return (isinstance(handler, logging.StreamHandler) and not isinstance(handler, logging.FileHandler)
            and handler.stream in (sys.stderr, sys.__stderr__))


def _flushed() -> int:
    """After ``--help`` or ``--version``: 0 once stdout has taken the text, else as for a reply."""
    try:
        write_out("")
    except (OutputGone, OutputError) as error:
        return _output_failed(error)
    return 0


def _output_failed(error: Exception) -> int:
    """stdout is gone (141, quietly, as SIGPIPE would end it) or failing (one line, 1)."""
    silence_stdout()
    if isinstance(error, OutputGone):
        return 141
    print(f"fakegpt: error: {error}", file=sys.stderr)
    return 1


def _run(args: argparse.Namespace, usage: argparse.ArgumentParser) -> int:
    run = Run()
    try:
        if args.command == "g4f-api":
            status = g4f_api(args)
        else:
            status = serve(args) if args.command == "serve" else chat(args, run)
    except UsageError as error:
        usage.error(str(error))  # exits 2
    except KeyboardInterrupt:
        print(file=sys.stderr)
        status = 130
    except (OutputGone, OutputError) as error:  # the reader went away (`| head`), or stdout fails
        return _output_failed(error)
    except FakeGptError as error:
        run.report(error, debug=args.debug)
        status = 1
    run.print_notes()  # after the reply or the error they relate to
    return status
