"""gpt4free's OpenAI-compatible API server with :class:`fakegpt.FakeGpt` registered in every worker.

g4f's own launcher (``g4f api``, ``g4f.api.run_api()``) has uvicorn import
``g4f.api:create_app`` in each worker process, where nothing has called
``FakeGpt.register()``: with ``--workers N`` every worker answers with g4f's
own, deprecated ``FakeGpt``. Here the app factory registers first, in the
process that builds the app, so every worker has it::

    fakegpt g4f-api --port 1337 --workers 4
    uvicorn fakegpt.g4f_api:create_app --factory --port 1337 --workers 4    # the same, by uvicorn's launcher

The app is g4f's (``g4f.api.create_app()``) behind a thin ASGI layer that
gives fakegpt's failures the status gpt4free gives its own: an
authentication failure is a 401, a rate limit a 429 with ``Retry-After``
when the shared-account server said how long to wait (g4f 0.5.x answers 500
for every rate limit, and no release passes ``Retry-After``). Only error
answers are touched; a streamed reply has sent its 200 before the provider
runs, so a failure there is an error event in the stream, as g4f sends it.

gpt4free and uvicorn are not dependencies of fakegpt: ``pip install
"g4f[api]"`` (0.5.x: ``pip install g4f fastapi uvicorn python-multipart``).
"""
from __future__ import annotations

import datetime
import importlib
import json
import math
import os
from pathlib import Path
from typing import Any, Awaitable, Callable, Dict, List, MutableMapping, Optional

from ._g4f_errors import failures
from .exceptions import AuthenticationError, FakeGptError, RateLimitError
from .provider import FakeGpt

__all__ = ["FailureStatus", "create_app", "seed_offline_registry"]

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

#: Set (to anything but empty or "0") to have :func:`create_app` call :func:`seed_offline_registry`.
OFFLINE_VARIABLE = "FAKEGPT_G4F_OFFLINE"
#: Where :func:`seed_offline_registry` points g4f's ``G4FSpace``: a closed loopback port (discard).
OFFLINE_BASE_URL = "http://127.0.0.1:9/v1"


def create_app() -> "FailureStatus":
    """The ASGI app of one worker: ``FakeGpt.register()``, then g4f's
    ``g4f.api.create_app()`` wrapped in :class:`FailureStatus`.

    A uvicorn factory (``fakegpt.g4f_api:create_app``, ``--factory``).
    With ``FAKEGPT_G4F_OFFLINE=1`` it first calls :func:`seed_offline_registry`.

    :raises ImportError: g4f (or its API server's dependencies) is not installed.
    """
    if os.environ.get(OFFLINE_VARIABLE, "") not in ("", "0"):
        seed_offline_registry()
    FakeGpt.register()
    api = importlib.import_module("g4f.api")
    FakeGpt.register()  # again: g4f.api may have imported provider modules that hold the original
    return FailureStatus(api.create_app())


def seed_offline_registry() -> Optional[str]:
    """Let g4f 8.x's API server start without the network.

    ``import g4f.api`` (8.x) builds its ``G4FSpace`` provider from a registry
    it downloads from ``https://g4f.dev/dist/js/providers.json`` once a day,
    into ``<g4f cache dir>/.models/<today>/providers.json`` (the cache
    directory is ``G4F_CACHE_DIR`` when set); offline, the import fails.
    When today's file is missing, this writes one whose only entry is the
    ``default`` that ``G4FSpace`` asks for, aimed at a closed loopback port
    (``http://127.0.0.1:9/v1``): the server starts, and ``G4FSpace`` fails
    fast if something asks for it. Returns the file written, or ``None``
    (a release without that registry, or today's file already there).
    """
    try:
        config = importlib.import_module("g4f.config")
    except ImportError:
        return None
    get_cache_dir = getattr(config, "get_cache_dir", None)
    if get_cache_dir is None:
        return None  # 0.x: no live registry
    path = Path(get_cache_dir()) / ".models" / datetime.date.today().strftime("%Y-%m-%d") / "providers.json"
    if path.exists():
        return None
    path.parent.mkdir(parents=True, exist_ok=True)
    registry = {"providers": {"default": {"baseUrl": OFFLINE_BASE_URL}}, "defaultModels": {"default": ""}}
    path.write_text(json.dumps(registry), encoding="utf-8")
    return str(path)


class FailureStatus:
    """ASGI middleware: an error answer to a request in which FakeGpt failed
    gets the status of that failure (the last one the provider raised).

    * :class:`fakegpt.AuthenticationError` → 401;
    * :class:`fakegpt.RateLimitError` → 429, with ``Retry-After`` (whole
      seconds, rounded up) when the server gave one.

    Answers below 400 (a reply, or a stream already begun) pass untouched,
    and so does the body: the message is what g4f wrote.
    """

    def __init__(self, app: Any) -> None:
        """:param app: the ASGI app to wrap (g4f's)."""
        self.app: Callable[[Scope, Receive, Send], Awaitable[None]] = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope.get("type") != "http":
            await self.app(scope, receive, send)
            return
        noted: List[BaseException] = []
        token = failures.set(noted)  # the provider notes its errors here (a task copies the list, not a new one)

        async def send_status(message: Message) -> None:
            if message.get("type") == "http.response.start" and noted:
                message = _with_status(message, noted[-1])
            await send(message)

        try:
            await self.app(scope, receive, send_status)
        finally:
            failures.reset(token)


def _with_status(message: Message, error: BaseException) -> Message:
    status = int(message.get("status", 200))
    if status < 400 or not isinstance(error, FakeGptError):
        return message
    headers = list(message.get("headers", []))
    if isinstance(error, RateLimitError):
        status = 429
        if error.retry_after is not None and not any(name.lower() == b"retry-after" for name, _ in headers):
            headers.append((b"retry-after", str(max(0, math.ceil(error.retry_after))).encode("ascii")))
    elif isinstance(error, AuthenticationError):
        status = 401
    else:
        return message
    fixed: Dict[str, Any] = dict(message)
    fixed["status"], fixed["headers"] = status, headers
    return fixed
