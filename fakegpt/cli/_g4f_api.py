"""``fakegpt g4f-api``: gpt4free's OpenAI-compatible API server, FakeGpt registered in every worker.

The workers are uvicorn's: each imports :func:`fakegpt.g4f_api.create_app`,
which registers FakeGpt before it builds g4f's app. Settings reach the
workers as environment variables (``FAKEGPT_BASE_URL``, ``FAKEGPT_G4F_OFFLINE``),
which they inherit.
"""
from __future__ import annotations

import argparse
import importlib
import os
import sys
from typing import Any

from ..exceptions import FakeGptError
from ._args import whole_number

__all__ = ["add_parser", "g4f_api"]

_APP = "fakegpt.g4f_api:create_app"


def add_parser(commands: "argparse._SubParsersAction[argparse.ArgumentParser]",
               debug: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Add ``g4f-api`` to *commands*; returns its parser."""
    parser = commands.add_parser(
        "g4f-api", help="run gpt4free's OpenAI-compatible API server with FakeGpt registered", parents=[debug],
        description="Run gpt4free's API server (g4f.api, served by uvicorn) with FakeGpt registered in every "
                    "worker process, until Ctrl-C. Point the openai client at http://HOST:PORT/v1 and ask for "
                    "provider FakeGpt. Needs g4f's API extras: pip install 'g4f[api]'.",
    )
    parser.add_argument("--host", default="127.0.0.1", help="interface to listen on (default: %(default)s)")
    parser.add_argument("--port", type=whole_number(1, 65535), default=1337,
                        help="port, 1 to 65535 (default: %(default)s)")
    parser.add_argument("--workers", type=whole_number(1, 256), default=1, metavar="N",
                        help="worker processes (default: %(default)s)")
    parser.add_argument("--base-url", metavar="URL",
                        help="the shared-account server FakeGpt calls (default: $FAKEGPT_BASE_URL)")
    parser.add_argument("--offline", action="store_true",
                        help="g4f 8.x: start without fetching g4f's provider registry from g4f.dev "
                             "(as $FAKEGPT_G4F_OFFLINE=1)")
    return parser


def _import(name: str) -> Any:
    try:
        return importlib.import_module(name)
    except ImportError as error:
        raise FakeGptError(f"fakegpt g4f-api needs gpt4free's API server ({error}): "
                           "pip install 'g4f[api]'") from None


def g4f_api(args: argparse.Namespace) -> int:
    """Serve until interrupted; returns the exit status (0 once stopped).

    :raises FakeGptError: g4f or uvicorn is missing (one line, exit 1).
    """
    uvicorn = _import("uvicorn")
    _import("g4f")
    if args.base_url:
        os.environ["FAKEGPT_BASE_URL"] = args.base_url  # the workers inherit it
    if args.offline:
        os.environ["FAKEGPT_G4F_OFFLINE"] = "1"
    print(f"fakegpt g4f-api: gpt4free's API server with FakeGpt on http://{args.host}:{args.port}/v1 "
          f"({args.workers} worker{'s' if args.workers > 1 else ''}; Ctrl-C to stop)", file=sys.stderr, flush=True)
    try:
        uvicorn.run(_APP, factory=True, host=args.host, port=args.port, workers=args.workers,
                    log_level="debug" if getattr(args, "debug", False) else "info")
    except KeyboardInterrupt:
        pass
    return 0
