"""The command line's parser, and the checks of its values (a bad value is a usage error, exit 2)."""
from __future__ import annotations

import argparse
import math
from typing import Callable, Dict, Tuple, Union

from .. import __version__
from .._config import _FALSE, _TRUE

__all__ = ["build_parser"]

_EXAMPLES = """\
examples:
  fakegpt chat --emulator "Say hello"            a reply from the embedded emulator
  fakegpt chat --base-url http://localhost:8787 "What is SSE?"
  echo "Summarise: ..." | fakegpt chat --system "Be brief." --base-url URL
  fakegpt chat --emulator                        an interactive chat (on a terminal)
  fakegpt chat --base-url URL --session-cache 1 --conversation-id ID --parent-id ID "And then?"
  fakegpt serve --port 8787 --delay 0.05         run the emulator for other programs
  fakegpt serve --upstream http://127.0.0.1:11434/v1 --upstream-model llama3.2
                                                 a gateway to a model server (Ollama, llama.cpp, vLLM, ...)
  fakegpt g4f-api --base-url URL --workers 4     gpt4free's OpenAI-compatible API server with FakeGpt

environment (an option beats its variable):
  FAKEGPT_BASE_URL, FAKEGPT_PROXY, FAKEGPT_TIMEOUT (seconds or connect,read),
  FAKEGPT_MAX_RETRIES, FAKEGPT_SESSION_CACHE (1 or a file: keep the login, and
  so the conversations, for later runs), FAKEGPT_LOG (debug or info),
  FAKEGPT_UPSTREAM_API_KEY, else OPENAI_API_KEY (serve --upstream: the model server's key)
"""


def timeout_value(text: str) -> Union[float, Tuple[float, float]]:
    """``--timeout``: seconds, or ``connect,read`` seconds (as ``FAKEGPT_TIMEOUT``)."""
    try:
        numbers = [float(part) for part in text.split(",")]
    except ValueError:
        numbers = []
    if len(numbers) not in (1, 2) or not all(n > 0 and math.isfinite(n) for n in numbers):
        raise argparse.ArgumentTypeError(f"must be positive seconds, or 'connect,read' seconds, not {text!r}")
    return numbers[0] if len(numbers) == 1 else (numbers[0], numbers[1])


def whole_number(least: int, most: int = 2**31) -> Callable[[str], int]:
    """A converter to ``int`` that accepts *least* to *most* only."""

    def convert(text: str) -> int:
        try:
            number = int(text)
        except ValueError:
            number = least - 1
        if not least <= number <= most:
            limit = f"from {least} to {most}" if most < 2**31 else f"{least} or more"
            raise argparse.ArgumentTypeError(f"must be a whole number {limit}, not {text!r}")
        return number

    return convert


def seconds_value(text: str) -> float:
    """``--delay``: finite seconds, 0 or more."""
    try:
        number = float(text)
    except ValueError:
        number = -1.0
    if not (number >= 0 and math.isfinite(number)):
        raise argparse.ArgumentTypeError(f"must be seconds, 0 or more, not {text!r}")
    return number


def cache_value(text: str) -> Union[bool, str]:
    """``--session-cache``: as ``FAKEGPT_SESSION_CACHE``: 1/true for the per-user file, 0/false for none, or a path."""
    value = text.strip()
    if value.lower() in _TRUE:
        return True
    if value.lower() in _FALSE:
        return False
    return value


def build_parser() -> Tuple[argparse.ArgumentParser, Dict[str, argparse.ArgumentParser]]:
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
    parsers = {"chat": _chat_parser(commands, debug), "serve": _serve_parser(commands, debug)}
    from ._g4f_api import add_parser as g4f_api_parser  # here: that module uses this one's converters

    parsers["g4f-api"] = g4f_api_parser(commands, debug)
    return parser, parsers


def _chat_parser(commands: "argparse._SubParsersAction[argparse.ArgumentParser]",
                 debug: argparse.ArgumentParser) -> argparse.ArgumentParser:
    chat = commands.add_parser(
        "chat", help="stream a reply to stdout", epilog=_EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter,
        parents=[debug],
        description="Stream the reply to PROMPT (or to standard input) as it arrives. With no prompt on a "
                    "terminal, chat interactively: Ctrl-C stops a reply; Ctrl-D, Ctrl-C at the prompt or "
                    "'exit' quits.",
    )
    chat.add_argument("prompt", nargs="*", help="the prompt (words are joined with spaces)")
    chat.add_argument("--system", metavar="TEXT", help="a system message sent before the prompt")
    chat.add_argument("--model", default="gpt-3.5-turbo", help="model name or backend slug (default: %(default)s)")
    chat.add_argument("--base-url", metavar="URL",
                      help="the server (default: $FAKEGPT_BASE_URL, else the original service, offline since 2024)")
    chat.add_argument("--emulator", action="store_true",
                      help="start the embedded emulator for this run and use it (beats $FAKEGPT_BASE_URL)")
    chat.add_argument("--proxy", metavar="URL", help="http(s) or socks5 proxy for every request")
    chat.add_argument("--timeout", metavar="SECONDS", type=timeout_value,
                      help="seconds, or connect,read seconds (default: 10,120)")
    chat.add_argument("--max-retries", metavar="N", type=whole_number(0),
                      help="retries of a failed call after the first try (default: 2)")
    chat.add_argument("--session-cache", metavar="FILE", type=cache_value,
                      help="keep the login, and so the conversations, for later runs: 1 for the per-user "
                           "file, 0 for none, or a file (default: $FAKEGPT_SESSION_CACHE, else none)")
    chat.add_argument("--conversation-id", metavar="ID",
                      help="go on with a conversation the server keeps (with --parent-id)")
    chat.add_argument("--parent-id", metavar="ID", help="the id of the reply to go on from")
    return chat


def _serve_parser(commands: "argparse._SubParsersAction[argparse.ArgumentParser]",
                  debug: argparse.ArgumentParser) -> argparse.ArgumentParser:
    serve = commands.add_parser(
        "serve", help="run the embedded emulator until interrupted", parents=[debug],
        description="Run the embedded emulator and print its URL; Ctrl-C or SIGTERM stops it (exit status 0).",
    )
    serve.add_argument("--host", default="127.0.0.1", help="interface to listen on (default: %(default)s)")
    serve.add_argument("--port", type=whole_number(0, 65535), default=8787,
                       help="port, 0 to 65535; 0 picks a free one (default: %(default)s)")
    serve.add_argument("--delay", type=seconds_value, default=0.05, metavar="SECONDS",
                       help="pause between streamed words (default: %(default)s)")
    serve.add_argument("--format", choices=("cumulative", "v1"), default="cumulative",
                       help="stream format when the client does not ask for one (default: %(default)s)")
    serve.add_argument("--max-words", type=whole_number(1), metavar="N",
                       help="stop replies after N words with finish reason max_tokens (to try 'continue')")
    serve.add_argument("--quiet", action="store_true", help="no line on stderr for each request")
    serve.add_argument("--upstream", metavar="URL",
                       help="answer with an OpenAI-compatible model server, e.g. http://127.0.0.1:11434/v1 "
                            "(its key: $FAKEGPT_UPSTREAM_API_KEY, else $OPENAI_API_KEY)")
    serve.add_argument("--upstream-model", metavar="NAME",
                       help="the model asked of --upstream (default: the first model it lists)")
    serve.add_argument("--tokens", metavar="FILE",
                       help="the shared token keys to list, one per line (default: 3 random ones, "
                            "printed on stderr with --upstream)")
    return serve
