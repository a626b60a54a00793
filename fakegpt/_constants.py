"""Every tunable number and fixed header of the client, in one place."""
from __future__ import annotations

from typing import Dict, Tuple

DEFAULT_BASE_URL = "https://chat-shared2.zhile.io"
#: (connect, read) seconds. The read timeout bounds the wait between two reads,
#: so it also bounds a stream that stalls mid-reply.
DEFAULT_TIMEOUT: Tuple[float, float] = (10.0, 120.0)
DEFAULT_MAX_RETRIES = 2
#: (connect, read) seconds for the login's small requests (``/api/loads``,
#: ``/auth/login``, ``/api/auth/session``) and other calls that are not a
#: stream: a server that accepts and never answers costs 20 s a try, not 120.
LOGIN_TIMEOUT: Tuple[float, float] = (10.0, 20.0)

#: Backoff between retries: INITIAL * 2**n seconds, capped, with up to
#: JITTER of it taken off at random so clients do not retry in lockstep.
INITIAL_BACKOFF = 0.5
MAX_BACKOFF = 8.0
BACKOFF_JITTER = 0.25
#: A Retry-After longer than this is not waited out: the error is raised
#: at once with its ``retry_after`` so the caller can decide.
MAX_RETRY_AFTER = 60.0

#: A login tries the listed shared tokens one after the other until one works
#: or every one was tried; no further token is tried once this many seconds
#: have passed since the login began (the try under way is not cut short).
LOGIN_BUDGET = 60.0
#: A shared token whose login was rejected is tried last (after every other
#: listed token) for this many seconds, by this client and, through the
#: session cache, by every process sharing it.
DEAD_TOKEN_TTL = 600.0
#: Dead tokens remembered per server at most (the oldest are forgotten first).
MAX_DEAD_TOKENS = 256
#: Length of a generated session (isolation) password.
SESSION_PASSWORD_LENGTH = 10

#: Largest single read from the socket while streaming.
READ_SIZE = 65536
#: Largest single line or event of an event stream (real ones stay far
#: below: a whole long reply in one cumulative event is a few hundred KB).
MAX_EVENT = 16 * 1024 * 1024
#: Largest body of an answer that is not a stream (the token list, a login
#: or error page): read no further, and fail with a clear error past it.
MAX_BODY = 4 * 1024 * 1024
#: After [DONE], how long to wait at most for the end of the body (the
#: chunked terminator) so the connection can be reused. A server that holds
#: the stream open, or keeps writing, costs at most this.
DRAIN_GRACE = 0.02
#: Connections kept per host: enough for many concurrent streams to reuse theirs.
POOL_MAXSIZE = 1024

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
