"""``fakegpt serve``: the embedded emulator, or (``--upstream``) the gateway
to a model server, until Ctrl-C or SIGTERM."""
from __future__ import annotations

import argparse
import contextlib
import logging
import signal
import sys
import threading
from typing import Any, Iterator, List, Optional

from .._secrets import redact_url
from .._transport import is_loopback
from ..exceptions import FakeGptError
from ._chat import UsageError
from ._output import OutputGone, silence_stdout, write_out

__all__ = ["serve"]


def serve(args: argparse.Namespace) -> int:
    """Run the emulator (or the gateway) until interrupted; returns the exit status (0 once stopped)."""
    from ..emulator import Emulator

    upstream = _upstream(args)
    keys = _token_keys(args.tokens) if args.tokens else None
    try:
        emulator = Emulator(host=args.host, port=args.port, delay=0.0 if upstream else args.delay,
                            format=args.format, max_words=args.max_words, upstream=upstream,
                            token_keys=keys).start()
    except OSError as error:
        raise FakeGptError(f"cannot listen on {args.host}:{args.port}: {error.strerror or error}") from None
    try:
        stop = threading.Event()
        signal.signal(signal.SIGTERM, lambda *_: stop.set())
        try:
            write_out(emulator.url + "\n")  # for other programs: the first line of stdout
        except OutputGone:  # nobody reads stdout: the URL is on stderr too
            silence_stdout()
        _announce(emulator, args, generated=keys is None)
        try:
            with _request_lines(quiet=args.quiet):
                while not stop.wait(0.5):
                    pass
        except KeyboardInterrupt:
            print(file=sys.stderr)  # the shell's prompt then starts on a line of its own, after "^C"
    finally:
        emulator.stop()
        if upstream is not None:
            upstream.close()
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


def _upstream(args: argparse.Namespace) -> Any:
    if args.upstream is None:
        if args.upstream_model is not None:
            raise UsageError("--upstream-model needs --upstream URL")
        return None
    from ..gateway import Upstream

    try:
        return Upstream(args.upstream, model=args.upstream_model)
    except ValueError as error:
        raise UsageError(f"--upstream: {error}") from None


def _token_keys(path: str) -> List[str]:
    """The token keys of a ``--tokens`` file: one per line; blank lines and ``#`` comments skipped."""
    try:
        with open(path, encoding="utf-8") as file:
            lines = file.read(1 << 20).splitlines()
    except (OSError, UnicodeDecodeError) as error:
        raise UsageError(f"--tokens: cannot read {path}: {getattr(error, 'strerror', None) or error}") from None
    keys = list(dict.fromkeys(line.strip() for line in lines if line.strip() and not line.lstrip().startswith("#")))
    if not keys:
        raise UsageError(f"--tokens: {path} holds no token key (one per line)")
    return keys


def _announce(emulator: Any, args: argparse.Namespace, *, generated: bool) -> None:
    def say(text: str) -> None:
        print(text, file=sys.stderr, flush=True)

    upstream: Optional[Any] = emulator.upstream
    if upstream is None:
        say(f"fakegpt emulator serving on {emulator.url} (Ctrl-C to stop)")
    else:
        model = args.upstream_model or "the first model it lists"
        say(f"fakegpt gateway serving on {emulator.url}, answering with {redact_url(upstream.base_url)} "
            f"(model: {model}) (Ctrl-C to stop)")
        if generated:
            say("token keys (clients pick one from /api/loads, which lists them to anyone: they protect nothing):")
            for key in emulator.tokens:
                say(f"  {key}")
    if not is_loopback(f"http://[{args.host}]" if ":" in args.host else f"http://{args.host}"):
        say(f"warning: listening on {args.host}, beyond this machine: nothing protects this server (its "
            "/api/loads lists every token key to anyone, as the protocol has it), and it speaks unencrypted http. "
            "Keep it on loopback, or put it behind a reverse proxy with TLS and authentication (fakegpt.Client "
            "sends the credentials of a base_url such as https://user:pw@host as HTTP Basic auth)")
