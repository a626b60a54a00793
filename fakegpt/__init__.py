"""fakegpt: stream chat replies from ChatGPT-web "shared account" servers.

>>> import fakegpt
>>> with fakegpt.Client("http://localhost:8787") as client:      # doctest: +SKIP
...     for delta in client.stream([{"role": "user", "content": "Hi"}]):
...         print(delta, end="", flush=True)
"""
import logging

from ._cache import SessionCacheWarning
from ._config import configure_logging as _configure_logging
from ._conversation import Conversation
from ._stream import Reply, Stream
from .client import Client
from .provider import FakeGpt
from .exceptions import (
    APIConnectionError,
    APIStatusError,
    APITimeoutError,
    AuthenticationError,
    FakeGptError,
    IncompleteStreamError,
    NoValidResponseError,
    RateLimitError,
    StreamError,
)

__version__ = "0.1.0"

__all__ = [
    "APIConnectionError",
    "APIStatusError",
    "APITimeoutError",
    "AuthenticationError",
    "Client",
    "Conversation",
    "FakeGpt",
    "FakeGptError",
    "IncompleteStreamError",
    "NoValidResponseError",
    "RateLimitError",
    "Reply",
    "SessionCacheWarning",
    "Stream",
    "StreamError",
    "__version__",
]

# Public objects read as fakegpt.Client, fakegpt.Stream, ... in reprs and docs.
for _name in __all__:
    _obj = globals()[_name]
    if isinstance(_obj, type):
        _obj.__module__ = "fakegpt"
del _name, _obj

logging.getLogger("fakegpt").addHandler(logging.NullHandler())
_configure_logging()  # FAKEGPT_LOG
