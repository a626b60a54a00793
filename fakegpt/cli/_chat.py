"""``fakegpt chat``: one question, a conversation resumed from its ids, or an interactive chat."""
from __future__ import annotations

import argparse
import contextlib
import sys
import traceback
from typing import Any, Callable, Dict, Iterator, List, Optional

from .._constants import DEFAULT_BASE_URL
from .._conversation import Conversation
from .._protocol import flatten_prompt
from ..client import Client
from ..exceptions import APIConnectionError, APIStatusError, FakeGptError
from ._output import OutputGone, print_stream

__all__ = ["DEMO_DELAY", "Run", "UsageError", "chat"]

#: Seconds between words when ``--emulator`` serves a reply: slow enough to see it stream.
DEMO_DELAY = 0.02

_CACHE_NOTE = ("note: to go on with a conversation in a later run, use --session-cache 1 (or "
               "FAKEGPT_SESSION_CACHE=1) in every run: the server keeps conversations per login")


class UsageError(Exception):
    """A bad combination of options or input: a usage error, exit status 2."""


class Run:
    """What one run has learned, for the hints printed after its reply or its error."""

    def __init__(self) -> None:
        self.default_url = False  # the client talks to the original service
        self.resumed = False  # --conversation-id was given
        self.cache: Optional[str] = None  # the session cache file in use
        self.notes: List[str] = []  # lines for stderr once the run is over

    def explain(self, error: FakeGptError) -> Optional[str]:
        """A line that tells what *error* means here and what to try, if there is more to say."""
        if isinstance(error, APIConnectionError) and self.default_url:
            return (f"hint: the default server, {DEFAULT_BASE_URL} (the original service), has been offline "
                    "since 2024: try fakegpt with --emulator, or name a server with --base-url URL or "
                    "FAKEGPT_BASE_URL")
        if isinstance(error, APIStatusError) and error.status_code == 404 and self.resumed:
            if self.cache is None:
                return ("hint: the server keeps conversations per login, and this run logged in afresh (no "
                        "session cache), so it cannot see that conversation; use --session-cache 1 (or "
                        "FAKEGPT_SESSION_CACHE=1) in every run, the one that began the conversation too")
            return (f"hint: the server does not know that conversation under the login kept in {self.cache}: "
                    "check the ids, and that the conversation began on this server with this session cache")
        return None

    def report(self, error: FakeGptError, *, debug: bool) -> None:
        """The error as one line on stderr (after its traceback with --debug), then what it means."""
        if debug:
            cause = error.cause  # a call's error is raised from None: its cause is printed first, as Python would
            if cause is not None:
                traceback.print_exception(type(cause), cause, cause.__traceback__)
                print("\nThe above exception (error.cause) was the direct cause of the following exception:\n",
                      file=sys.stderr)
            traceback.print_exception(type(error), error, error.__traceback__)
        print(f"fakegpt: error: {type(error).__name__}: {error}", file=sys.stderr)
        hint = self.explain(error)
        if hint:
            print(hint, file=sys.stderr)

    def print_notes(self) -> None:
        for note in self.notes:
            print(note, file=sys.stderr)
        self.notes.clear()


def chat(args: argparse.Namespace, run: Run) -> int:
    """Run ``fakegpt chat``; returns the exit status."""
    if args.emulator:
        for given, option in ((args.base_url, "--base-url"), (args.proxy, "--proxy"),
                              (args.session_cache, "--session-cache")):
            if given is not None:
                raise UsageError(f"--emulator and {option} exclude each other (the embedded emulator is on "
                                 "loopback, with no proxy, and ends with the run)")
    if (args.conversation_id is None) != (args.parent_id is None):
        raise UsageError("--conversation-id and --parent-id go together")
    if sys.stdout is None:  # started with stdout closed: nobody would see the reply
        raise OutputGone()
    prompt = " ".join(args.prompt)
    stdin = sys.stdin  # None when the process was started without one
    interactive = not prompt and stdin is not None and stdin.isatty()
    if not prompt and not interactive:
        prompt = stdin.read().strip() if stdin is not None else ""
        if not prompt:
            raise UsageError("no prompt: give one as an argument or on standard input")
    run.resumed = args.conversation_id is not None
    with _server(args) as base_url:
        try:
            client = Client(**_client_options(args, base_url))
        except (TypeError, ValueError) as error:
            raise UsageError(str(error)) from None
        run.default_url = client.base_url == DEFAULT_BASE_URL
        run.cache = client.session_cache
        with client:
            if interactive:
                return _interactive(client, args, run)
            if args.conversation_id is None:  # one question: the whole prompt in one message
                stream = client.stream(_messages(args.system, prompt), model=args.model)
                print_stream(stream)
                if stream.finish_reason == "max_tokens":
                    run.notes.append("note: the reply stopped at the server's length limit (finish reason "
                                     "max_tokens), so it is cut short; an interactive chat, or a conversation "
                                     "resumed with --conversation-id, continues long replies")
                return 0
            conversation = _conversation(client, args)
            try:
                print_stream(conversation.stream(_first_turn(args.system, prompt)))
            finally:
                _resume_hint(conversation, client, args, run)
    return 0


@contextlib.contextmanager
def _server(args: argparse.Namespace) -> Iterator[Optional[str]]:
    if not args.emulator:
        yield args.base_url  # None: the Client reads FAKEGPT_BASE_URL, else the default
        return
    from ..emulator import Emulator

    with Emulator(delay=DEMO_DELAY) as emulator:
        yield emulator.url


def _client_options(args: argparse.Namespace, base_url: Optional[str]) -> Dict[str, Any]:
    options: Dict[str, Any] = {"base_url": base_url}
    if args.emulator:
        # The embedded emulator is on loopback: no proxy, whatever FAKEGPT_PROXY says,
        # and no session cache (the emulator, and any login to it, ends with this run).
        options.update(proxy="", session_cache=False)
    else:
        options.update(proxy=args.proxy, session_cache=args.session_cache)
    if args.timeout is not None:
        options["timeout"] = args.timeout
    if args.max_retries is not None:
        options["max_retries"] = args.max_retries
    return options


def _conversation(client: Client, args: argparse.Namespace) -> Conversation:
    return client.conversation(conversation_id=args.conversation_id, parent_message_id=args.parent_id,
                               model=args.model, auto_continue=True)


def _messages(system: Optional[str], prompt: str) -> List[Dict[str, str]]:
    messages = [{"role": "system", "content": system}] if system else []
    return messages + [{"role": "user", "content": prompt}]


def _first_turn(system: Optional[str], text: str) -> str:
    """A conversation has no system role: the first message carries it, flattened."""
    return flatten_prompt(_messages(system, text)) if system else text


def _resume_hint(conversation: Conversation, client: Client, args: argparse.Namespace, run: Run) -> None:
    """How to go on with *conversation* in a later run (a line on stderr once the run is over)."""
    if args.emulator:
        return  # the embedded emulator, and its conversations, end with this run
    if not conversation.parent_message_id or conversation.parent_message_id == args.parent_id:
        return  # no reply in this run: the ids to go on from are the ones given, if any
    if client.session_cache is None:  # the server keeps conversations per login, and this one is not kept
        run.notes.append(_CACHE_NOTE)
        return
    run.notes.append(f"to go on: --conversation-id {conversation.conversation_id} "
                     f"--parent-id {conversation.parent_message_id}")


def _interactive(client: Client, args: argparse.Namespace, run: Run) -> int:
    """A conversation the server keeps: each line goes as the next message."""
    conversation = _conversation(client, args)
    read = _line_reader()
    print("fakegpt chat: type a message; Ctrl-C stops a reply; Ctrl-D or 'exit' quits.", file=sys.stderr)
    try:
        while True:
            try:
                line = read("you> ")
            except EOFError:  # Ctrl-D
                print(file=sys.stderr)
                return 0
            except KeyboardInterrupt:  # Ctrl-C at the prompt
                print(file=sys.stderr)
                return 130
            text = line.strip()
            if text in ("exit", "quit"):
                return 0
            if not text:
                continue
            system = args.system if conversation.conversation_id is None else None
            try:
                print_stream(conversation.stream(_first_turn(system, text)))
            except KeyboardInterrupt:  # Ctrl-C during a reply: stop it, back to the prompt
                print("(reply stopped)", file=sys.stderr)
            except FakeGptError as error:
                run.report(error, debug=args.debug)
    finally:
        _resume_hint(conversation, client, args, run)


def _line_reader() -> Callable[[str], str]:
    """``read(prompt)``: the next line typed, ``EOFError`` at the end.

    With standard output on the terminal too, ``input()`` shows the prompt
    there, with line editing and history (``readline``, where present).
    Otherwise the prompt goes to stderr, so that stdout carries replies only.
    """
    if sys.stdout is not None and sys.stdout.isatty():
        with contextlib.suppress(ImportError):
            import readline  # noqa: F401  (importing it gives input() line editing and history)
        return input

    def read(prompt: str) -> str:
        sys.stderr.write(prompt)
        sys.stderr.flush()
        line = sys.stdin.readline()
        if not line:
            raise EOFError
        return line

    return read
