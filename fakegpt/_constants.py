"""Every tunable number and fixed header of the client, in one place."""
from __future__ import annotations

from typing import Dict, Tuple

DEFAULT_BASE_URL = "https://chat-shared2.zhile.io"
#: (connect, read) seconds. The read timeout bounds the wait between two reads,
#: so it also bounds a stream that stalls mid-reply.
DEFAULT_TIMEOUT: Tuple[float, float] = (10.0, 120.0)
DEFAULT_MAX_RETRIES = 2
#: (connect, read) seconds for the small requests of the login: a server
#: that accepts and never answers fails the login quickly.
LOGIN_TIMEOUT: Tuple[float, float] = (10.0, 20.0)

#: Backoff between retries: INITIAL * 2**n seconds, capped, with up to
#: JITTER of it taken off at random so clients do not retry in lockstep.
INITIAL_BACKOFF = 0.5
MAX_BACKOFF = 8.0
BACKOFF_JITTER = 0.25
#: A Retry-After longer than this is not waited out: the error is raised
#: at once with its ``retry_after`` so the caller can decide.
MAX_RETRY_AFTER = 60.0

#: At most this many shared tokens are tried in one login round.
MAX_TOKENS_PER_LOGIN = 5
#: Length of a generated session (isolation) password.
SESSION_PASSWORD_LENGTH = 10

#: Largest single read from the socket while streaming.
READ_SIZE = 65536
#: After [DONE], how long to wait at most for the end of the body (the
#: chunked terminator) so the connection can be reused. A server that holds
#: the stream open, or keeps writing, costs at most this.
DRAIN_GRACE = 0.02
#: Connections kept per host: enough for many concurrent streams to reuse theirs.
POOL_MAXSIZE = 64

#: What a desktop Chrome sends; the service was built for browsers.
BROWSER_HEADERS: Dict[str, str] = {
    "Accept-Language": "en-US",
    "User-Agent": (
        "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) "
        "Chrome/117.0.0.0 Safari/537.36"
    ),
    "sec-ch-ua": '"Google Chrome";v="117", "Not;A=Brand";v="8", "Chromium";v="117"',
    "sec-ch-ua-platform": '"Linux"',
    "sec-ch-ua-mobile": "?0",
}
