"""The ``fakegpt`` command: ``fakegpt chat`` and ``fakegpt serve``.

Exit status: 0 on success, 1 when the call fails (one line on stderr; the
traceback too with ``--debug``), 2 on a usage error, 130 on Ctrl-C, 141 when
the reader of stdout goes away (``| head``).
"""
from __future__ import annotations

import argparse
import contextlib
import itertools
import logging
import os
import signal
import sys
import threading
import traceback
from typing import Dict, Iterator, List, Optional, Sequence, TextIO, Tuple

from . import __version__
from ._conversation import Conversation
from ._protocol import flatten_prompt
from ._stream import Stream
from .client import Client
from .exceptions import FakeGptError

__all__ = ["main"]

#: Seconds between words when ``--emulator`` serves a reply: slow enough to see it stream.
DEMO_DELAY = 0.02

_EXAMPLES = """\
examples:
  fakegpt chat --emulator "Say hello"            a reply from the embedded emulator
  fakegpt chat --base-url http://localhost:8787 "What is SSE?"
  echo "Summarise: ..." | fakegpt chat --system "Be brief." --base-url URL
  fakegpt chat --emulator                        an interactive chat (on a terminal)
  fakegpt chat --base-url URL --conversation-id ID --parent-id ID "And then?"
  fakegpt serve --port 8787 --delay 0.05         run the emulator for other programs

environment (an option beats its variable):
  FAKEGPT_BASE_URL, FAKEGPT_PROXY, FAKEGPT_TIMEOUT (seconds or connect,read),
  FAKEGPT_MAX_RETRIES, FAKEGPT_SESSION_CACHE (1 or a file: keep the login, and
  so the conversations, for later runs), FAKEGPT_LOG (debug or info)
"""


class _UsageError(Exception):
    pass


def _parser() -> Tuple[argparse.ArgumentParser, Dict[str, argparse.ArgumentParser]]:
    """The parser, and each command's own parser (for usage errors)."""
    parser = argparse.ArgumentParser(
        prog="fakegpt",
        description="Stream chat replies from a ChatGPT-web shared-account server, or run the embedded emulator.",
        epilog=_EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"fakegpt {__version__}")
    debug = argparse.ArgumentParser(add_help=False)
    # SUPPRESS: a subcommand's default must not undo "fakegpt --debug chat".
    debug.add_argument("--debug", action="store_true", default=argparse.SUPPRESS,
                       help="log the HTTP flow (secrets redacted) and show tracebacks")
    parser.add_argument("--debug", action="store_true", help="log the HTTP flow (secrets redacted) and show tracebacks")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    commands.required = True

    chat = commands.add_parser(
        "chat", help="stream a reply to stdout", epilog=_EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter,
        parents=[debug],
        description="Stream the reply to PROMPT (or to standard input) as it arrives. "
                    "With no prompt on a terminal, chat interactively (Ctrl-D or 'exit' quits).",
    )
    chat.add_argument("prompt", nargs="*", help="the prompt (words are joined with spaces)")
    chat.add_argument("--system", metavar="TEXT", help="a system message sent before the prompt")
    chat.add_argument("--model", default="gpt-3.5-turbo", help="model name or backend slug (default: %(default)s)")
    chat.add_argument("--base-url", metavar="URL", default=os.environ.get("FAKEGPT_BASE_URL"),
                      help="the server (default: $FAKEGPT_BASE_URL, else the original service)")
    chat.add_argument("--proxy", metavar="URL", help="http(s) or socks5 proxy for every request")
    chat.add_argument("--timeout", metavar="SECONDS", type=float, help="connect and read timeout")
    chat.add_argument("--emulator", action="store_true", help="start the embedded emulator for this run and use it")
    chat.add_argument("--conversation-id", metavar="ID",
                      help="go on with a conversation the server keeps (with --parent-id)")
    chat.add_argument("--parent-id", metavar="ID", help="the id of the reply to go on from")

    serve = commands.add_parser(
        "serve", help="run the embedded emulator until interrupted", parents=[debug],
        description="Run the embedded emulator and print its URL; Ctrl-C stops it.",
    )
    serve.add_argument("--host", default="127.0.0.1", help="interface to listen on (default: %(default)s)")
    serve.add_argument("--port", type=int, default=8787, help="port; 0 picks a free one (default: %(default)s)")
    serve.add_argument("--delay", type=float, default=0.05, metavar="SECONDS",
                       help="pause between streamed words (default: %(default)s)")
    serve.add_argument("--format", choices=("cumulative", "v1"), default="cumulative",
                       help="stream format when the client does not ask for one (default: %(default)s)")
    serve.add_argument("--max-words", type=int, metavar="N",
                       help="stop replies after N words with finish reason max_tokens (to try 'continue')")
    return parser, {"chat": chat, "serve": serve}


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Run the command line; returns the exit status."""
    parser, commands = _parser()
    args = parser.parse_args(argv)
    with _debug_logging(args.debug):
        return _run(args, commands[args.command])


@contextlib.contextmanager
def _debug_logging(enabled: bool) -> Iterator[None]:
    """With --debug, the fakegpt logger's DEBUG records go to stderr (secrets are never logged)."""
    if not enabled:
        yield
        return
    logger = logging.getLogger("fakegpt")
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(name)s: %(message)s"))
    level = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    try:
        yield
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)


def _run(args: argparse.Namespace, usage: argparse.ArgumentParser) -> int:
    try:
        if args.command == "serve":
            return _serve(args)
        return _chat(args)
    except _UsageError as error:
        usage.error(str(error))  # exits 2
    except KeyboardInterrupt:
        print(file=sys.stderr)
        return 130
    except BrokenPipeError:
        # The reader went away (`| head`): stop quietly, as SIGPIPE would have.
        # Later writes, the interpreter's last flush included, go to devnull.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141
    except FakeGptError as error:
        if args.debug:
            traceback.print_exc()
        print(f"fakegpt: error: {type(error).__name__}: {error}", file=sys.stderr)
        return 1
    return 0  # pragma: no cover - parser.error does not return


# -- chat ----------------------------------------------------------------------
def _chat(args: argparse.Namespace) -> int:
    if args.emulator and args.base_url:
        raise _UsageError("--emulator and --base-url exclude each other")
    if (args.conversation_id is None) != (args.parent_id is None):
        raise _UsageError("--conversation-id and --parent-id go together")
    prompt = " ".join(args.prompt)
    stdin = sys.stdin  # None when the process was started without one
    interactive = not prompt and stdin is not None and stdin.isatty()
    if not prompt and not interactive:
        prompt = stdin.read().strip() if stdin is not None else ""
        if not prompt:
            raise _UsageError("no prompt: give one as an argument or on standard input")
    with _server(args) as base_url:
        try:
            client = Client(**_client_options(args, base_url))
        except (TypeError, ValueError) as error:
            raise _UsageError(str(error)) from None
        with client:
            if interactive:
                return _interactive(client, args)
            if args.conversation_id is None:  # one question: the whole prompt in one message
                _print_stream(client.stream(_messages(args.system, prompt), model=args.model))
                return 0
            conversation = client.conversation(conversation_id=args.conversation_id,
                                               parent_message_id=args.parent_id, model=args.model,
                                               auto_continue=True)
            try:
                _print_stream(conversation.stream(_first_turn(args.system, prompt)))
            finally:
                _resume_hint(conversation, client, args)
    return 0


@contextlib.contextmanager
def _server(args: argparse.Namespace) -> Iterator[Optional[str]]:
    if not args.emulator:
        yield args.base_url
        return
    from .emulator import Emulator

    with Emulator(delay=DEMO_DELAY) as emulator:
        yield emulator.url


def _client_options(args: argparse.Namespace, base_url: Optional[str]) -> dict:
    options: dict = {"proxy": args.proxy}
    if args.emulator:
        options["session_cache"] = False  # the emulator, and any login to it, ends with this run
    if base_url:
        options["base_url"] = base_url
    if args.timeout is not None:
        options["timeout"] = args.timeout
    return options


def _messages(system: Optional[str], prompt: str) -> List[dict]:
    messages = [{"role": "system", "content": system}] if system else []
    return messages + [{"role": "user", "content": prompt}]


def _first_turn(system: Optional[str], text: str) -> str:
    """A conversation has no system role: the first message carries it, flattened."""
    return flatten_prompt(_messages(system, text)) if system else text


def _resume_hint(conversation: Conversation, client: Client, args: argparse.Namespace) -> None:
    """How to go on with *conversation* in a later run (one line on stderr)."""
    if args.emulator or not (conversation.conversation_id and conversation.parent_message_id):
        return  # the embedded emulator, and its conversations, end with this run
    if client.session_cache is None:  # the server keeps conversations per login, and this one is not kept
        print("note: to go on with a conversation in a later run, set FAKEGPT_SESSION_CACHE=1 "
              "(the server keeps conversations per login)", file=sys.stderr)
        return
    print(f"to go on: --conversation-id {conversation.conversation_id} --parent-id {conversation.parent_message_id}",
          file=sys.stderr)


def _print_stream(stream: Stream, out: Optional[TextIO] = None) -> str:
    out = out or sys.stdout
    spinner = _Spinner() if sys.stderr.isatty() else None
    try:
        with stream:
            for delta in stream:
                if spinner:
                    spinner.stop()
                    spinner = None
                out.write(delta)
                out.flush()
    finally:
        if spinner:
            spinner.stop()
        if stream.text:
            out.write("\n")
            out.flush()
    return stream.text


def _interactive(client: Client, args: argparse.Namespace) -> int:
    """A conversation the server keeps: each line goes as the next message."""
    conversation = client.conversation(conversation_id=args.conversation_id, parent_message_id=args.parent_id,
                                       model=args.model, auto_continue=True)
    system = args.system if args.conversation_id is None else None
    print("fakegpt chat: type a message; Ctrl-D or 'exit' quits.", file=sys.stderr)
    try:
        while True:
            sys.stderr.write("you> ")  # prompts go to stderr: stdout carries only replies
            sys.stderr.flush()
            line = sys.stdin.readline()
            if not line:  # Ctrl-D
                print(file=sys.stderr)
                return 0
            if line.strip() in ("exit", "quit"):
                return 0
            if not line.strip():
                continue
            try:
                _print_stream(conversation.stream(_first_turn(system, line.strip())))
                system = None
            except FakeGptError as error:
                print(f"fakegpt: error: {type(error).__name__}: {error}", file=sys.stderr)
    finally:
        _resume_hint(conversation, client, args)


class _Spinner:
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
        self._done.set()
        self._thread.join()


# -- serve ---------------------------------------------------------------------
def _serve(args: argparse.Namespace) -> int:
    from .emulator import Emulator

    if args.delay < 0:
        raise _UsageError("--delay must be 0 or more")
    if args.max_words is not None and args.max_words < 1:
        raise _UsageError("--max-words must be 1 or more")
    try:
        emulator = Emulator(host=args.host, port=args.port, delay=args.delay, format=args.format,
                            max_words=args.max_words).start()
    except OSError as error:
        raise FakeGptError(f"cannot listen on {args.host}:{args.port}: {error.strerror or error}") from error
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    print(emulator.url, flush=True)
    print(f"fakegpt emulator serving on {emulator.url} (Ctrl-C to stop)", file=sys.stderr, flush=True)
    try:
        while not stop.wait(0.5):
            pass
    except KeyboardInterrupt:
        pass
    finally:
        emulator.stop()
    return 0
