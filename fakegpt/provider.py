"""``FakeGpt``: the gpt4free/hypotez provider, a drop-in for the original class.

Used without instances, like the original::

    async for delta in FakeGpt.create_async_generator("gpt-3.5-turbo", messages):
        print(delta, end="")

    text = "".join(FakeGpt.create_completion("gpt-3.5-turbo", messages))   # no event loop involved

**Threads.** ``create_completion`` is a plain generator over the blocking
client: no event loop, so it works inside a running one (Jupyter, async
apps) without ``nest_asyncio``. ``create_async_generator`` runs that same
generator in a worker thread of its own (a daemon thread per stream, see
:mod:`fakegpt._bridge`) and hands deltas to the loop in batches; leaving the ``async for`` early, ``aclose()`` or cancelling the
task aborts the stream at once, even a read blocked on the socket.

**Shared state.** As in the original, the login is shared by every call in
the process: after a call, :attr:`_access_token` holds the token and
:attr:`_cookie_jar` the cookies; setting ``FakeGpt._access_token = None``
forces a fresh login on the next call. Calls with the same ``url``, proxy
and settings share one :class:`~fakegpt.Client`, and so one
``requests.Session``. Sharing it between threads is safe: urllib3's
connection pool and the cookie jar lock internally, each call builds its own
request, and the client's token is obtained once under a lock (32
concurrent cold calls log in once).
"""
from __future__ import annotations

import asyncio
import collections.abc
import functools
import logging
import threading
import weakref
from collections import OrderedDict
from typing import Any, AsyncGenerator, Dict, Iterator, Mapping, Optional, Sequence, Tuple

from ._bridge import Channel, hang_up_soon, pump, start_worker
from ._fork import reset_in_child
from ._constants import DEFAULT_BASE_URL  # noqa: F401 (the default of FakeGpt.url)
from ._g4f import ProviderHooks, log_ignored
from ._g4f_errors import as_g4f
from ._stream import Stream
from .client import Client
from .exceptions import FakeGptError

__all__ = ["FakeGpt"]

logger = logging.getLogger("fakegpt")

Messages = Sequence[Mapping[str, str]]
_CLIENT_OPTIONS = ("timeout", "max_retries", "deadline")
_MAX_CLIENTS = 16
_registry_lock = threading.Lock()


class FakeGpt(ProviderHooks):
    """The provider class: class attributes and classmethods, no instances.

    ``url`` defaults to ``FAKEGPT_BASE_URL`` (read at each call), else the
    original service; assigning ``FakeGpt.url`` wins. gpt4free's hooks
    (``get_create_function``, ``get_dict``, ``params``, ``register()``, ...)
    come from ``fakegpt._g4f.ProviderHooks``.
    """

    working: bool = True
    supports_stream: bool = True
    supports_gpt_35_turbo: bool = True
    supports_gpt_4: bool = False
    supports_message_history: bool = False
    needs_auth: bool = False
    #: The shared access token (a secret); ``None`` forces a login on the next call.
    _access_token: Optional[str] = None
    #: The cookies of the shared login (a ``requests`` cookie jar).
    _cookie_jar: Any = None
    #: Calls of :meth:`create_async_generator` streaming at once, per event
    #: loop (a thread each); more wait for a turn, on the loop.
    max_concurrency: int = 1024
    # Set on the first call: the token last applied to the clients, and the server it came from.
    _told_token: Optional[str]
    _token_url: Optional[str]

    @classmethod
    async def create_async_generator(
        cls, model: str, messages: Messages, proxy: Optional[str] = None, **kwargs: Any
    ) -> AsyncGenerator[str, None]:
        """An async generator of the reply's text deltas.

        Unknown keyword arguments (``stream=``, ...) are accepted and
        ignored, as the original did (each name is logged once at DEBUG);
        ``timeout``, ``max_retries`` and ``deadline`` set the client's.

        At most ``FakeGpt.max_concurrency`` calls stream at once per event loop;
        the others wait for their turn on the loop, so cancelling one that
        waits starts no thread and sends no request.
        """
        stream = cls.create_completion(model, messages, proxy=proxy, **kwargs)
        loop = asyncio.get_running_loop()
        started = False
        try:
            async with _turns(loop, cls.max_concurrency):
                channel = Channel(loop)
                # The worker closes the stream when done (or _no_worker does, if none can start).
                start_worker(pump, stream.deltas(), channel,
                             on_failure=functools.partial(_no_worker, stream, channel))
                started = True
                ended = False  # the stream ended or failed: the worker (or _no_worker) has closed it
                try:
                    while True:
                        batch, ended, error = await channel.get()
                        for delta in batch:
                            yield delta
                        if error is not None:
                            raise as_g4f(error, cls._g4f_package)
                        if ended:
                            return
                finally:
                    if not ended:  # left early: break, aclose(), cancellation, a consumer's error
                        channel.abandon()
                        # No delta more, at once; the socket is shut down off the loop
                        # (a storm of cancels must not have the loop wait on each one).
                        stream.abort(hang_up=False)
                        hang_up_soon(stream.abort)
        finally:
            if not started:  # cancelled while waiting for a turn: nothing was sent
                stream.close()

    @classmethod
    def create_completion(
        cls, model: str, messages: Messages, stream: bool = True, proxy: Optional[str] = None, **kwargs: Any
    ) -> "_ProviderStream":
        """A plain generator of text deltas from the blocking client (no event loop).

        With ``stream=False`` it still yields deltas; gpt4free's driver joins them.
        :raises TypeError, ValueError: bad input, at once, before any request.
        """
        options = {name: kwargs.pop(name) for name in _CLIENT_OPTIONS if name in kwargs}
        if kwargs:
            log_ignored(kwargs)
        client = cls._client(proxy, options)  # leased: never closed while this call may use it
        try:
            deltas = client.stream(messages, model=model or None)
        except BaseException:
            _release(client)
            raise
        return _ProviderStream(cls, client, deltas)

    @classmethod
    async def create_async(cls, model: str, messages: Messages, proxy: Optional[str] = None, **kwargs: Any) -> str:
        """The whole reply, awaited."""
        return "".join([delta async for delta in cls.create_async_generator(model, messages, proxy=proxy, **kwargs)])

    # -- shared state ----------------------------------------------------------
    @classmethod
    def _client(cls, proxy: Optional[str], options: Dict[str, Any]) -> Client:
        """The client for this url, proxy and settings, with the class's login
        state, leased to the caller (see :func:`_lease`): it is not closed,
        even when pushed out of the registry, before :func:`_release`."""
        key = (cls, cls.url, proxy or None, tuple(sorted((k, repr(v)) for k, v in options.items())))
        with _registry_lock:
            client = _clients.get(key)
            if client is None:
                client = Client(cls.url, proxy=proxy, **options)
                if cls._cookie_jar is not None:
                    client.cookies.update(cls._cookie_jar)
                _clients[key] = client
            _clients.move_to_end(key)
            while len(_clients) > _MAX_CLIENTS:
                _, evicted = _clients.popitem(last=False)
                if evicted not in _in_use:  # else closed when its last call ends
                    evicted.close()
            cls._apply_token(client)
            _lease(client)  # in the same step as the lookup: no eviction comes in between
        return client

    @classmethod
    def _apply_token(cls, client: Client) -> None:
        """Give *client* the class's token (the caller holds ``_registry_lock``)."""
        told = getattr(cls, "_told_token", None)
        if cls._access_token != told:  # changed from outside: None forces a login, a token is used
            client.access_token = cls._access_token
            cls._told_token, cls._token_url = cls._access_token, client.base_url
        elif (client.access_token is None and cls._access_token is not None
              and getattr(cls, "_token_url", None) == client.base_url):
            client.access_token = cls._access_token  # another client of the class logged in there

    @classmethod
    def _remember(cls, client: Client) -> None:
        with _registry_lock:
            if cls._access_token != getattr(cls, "_told_token", None):
                return  # set from outside since: the next call applies that, it is not undone here
            token = client.access_token
            if token is not None and token != cls._access_token:
                cls._access_token = cls._told_token = token
                cls._token_url = client.base_url
            cls._cookie_jar = client.cookies


def _no_worker(stream: "_ProviderStream", channel: Channel, error: BaseException) -> None:
    """No worker thread could be started for *stream*: end the call with a fakegpt error."""
    failure = FakeGptError(f"could not start a worker thread for the stream: {error}")
    failure.__cause__ = error
    try:
        stream.close()
    finally:
        channel.close(failure)  # whatever happens, the consumer hears of it


_loop_turns: "weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, Tuple[int, asyncio.Semaphore]]" = (
    weakref.WeakKeyDictionary())


def _turns(loop: asyncio.AbstractEventLoop, limit: int) -> asyncio.Semaphore:
    """The semaphore bounding the streams of *loop* (a new one when *limit* changed)."""
    if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
        raise ValueError(f"FakeGpt.max_concurrency must be a positive int, not {limit!r}")
    with _registry_lock:
        known = _loop_turns.get(loop)
        if known is None or known[0] != limit:
            known = _loop_turns[loop] = (limit, asyncio.Semaphore(limit))
        return known[1]


_clients: "OrderedDict[Tuple[Any, ...], Client]" = OrderedDict()
_in_use: Dict[Client, int] = {}  # calls running (or not yet started) on each client


@reset_in_child
def _forget_parent_clients() -> None:
    """A forked child makes clients of its own: the parent's pooled connections
    are shared with the parent, and a parent's thread may have held the lock.
    (The class's login, ``FakeGpt._access_token``, is kept: the child uses it.)"""
    global _registry_lock, _clients, _in_use, _loop_turns
    _registry_lock, _clients, _in_use, _loop_turns = threading.Lock(), OrderedDict(), {}, weakref.WeakKeyDictionary()


def _lease(client: Client) -> None:
    """One more call holds *client* (the caller holds ``_registry_lock``)."""
    _in_use[client] = _in_use.get(client, 0) + 1


def _release(client: Client) -> None:
    """A call is done with *client*; the last one closes it once it left the registry."""
    with _registry_lock:
        if client not in _in_use:
            return  # leased before a fork, by the parent: the parent's to close
        left = _in_use.pop(client) - 1
        if left:
            _in_use[client] = left
        evicted = not left and client not in _clients.values()
    if evicted:
        client.close()


class _ProviderStream(collections.abc.Generator[str, None, None]):
    """A client stream (a generator of deltas) that records the class's login
    state as soon as it is known: at the first delta, or when the call ends."""

    def __init__(self, provider: type, client: Client, stream: Stream) -> None:
        self._provider, self._client, self._stream = provider, client, stream
        self._recorded = False
        # FakeGpt._client()'s lease is this object's now: released when the call
        # ends, or when this object is dropped unfinished.
        self._release = weakref.finalize(self, _release, client)

    def deltas(self) -> Iterator[str]:
        """The deltas for the asyncio bridge's worker: the login state is
        recorded at the first one, then the client's own generator runs the
        rest with no Python-level hop per delta (``yield from``)."""
        deltas = self._stream
        try:
            for delta in deltas:
                self._record()
                yield delta
                yield from deltas
        except BaseException as error:
            raise as_g4f(error, self._provider._g4f_package)  # type: ignore[attr-defined]
        finally:
            self.close()

    def send(self, value: Any) -> str:
        try:
            delta = self._stream.send(value)
        except BaseException as error:
            self._end()
            raise as_g4f(error, self._provider._g4f_package)  # type: ignore[attr-defined]
        if not self._recorded:
            self._record()
        return delta

    def throw(self, *args: Any) -> str:
        return self._stream.throw(*args)

    def close(self) -> None:
        self._stream.close()
        self._end()

    def _end(self) -> None:
        self._record()
        self._release()

    def abort(self, hang_up: bool = True) -> None:
        """Interrupt the stream from another thread (see :meth:`fakegpt.Stream.abort`)."""
        self._stream.abort(hang_up)

    def _record(self) -> None:
        self._recorded = True
        self._provider._remember(self._client)  # type: ignore[attr-defined]
