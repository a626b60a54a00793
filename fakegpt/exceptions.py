"""The errors fakegpt raises, and the mapping from an HTTP answer to one of them.

Every error is a :class:`FakeGptError`, which subclasses :class:`RuntimeError`
so code written for gpt4free's original provider (``except RuntimeError``)
keeps working::

    RuntimeError
    └── FakeGptError
        ├── AuthenticationError        no usable shared token / token rejected
        ├── APIStatusError             a non-2xx answer (.status_code, .detail, .retry_after)
        │   └── RateLimitError         429 or a rate-limit detail
        ├── APIConnectionError         could not reach the server (connect, proxy, TLS)
        │   └── APITimeoutError        connect or read timeout, a stalled stream
        ├── StreamError                an in-stream error or an unreadable stream
        │   └── IncompleteStreamError  the body ended before [DONE]
        └── NoValidResponseError       a complete stream without assistant text

Messages are one line and never contain a secret: every message is
redacted (see ``fakegpt._secrets``) before it is cut to length. Errors
raised while a reply was streaming carry the text received so far in
:attr:`FakeGptError.partial_text`.
"""
from __future__ import annotations

import json
import re
from typing import Any, Dict, Iterable, Mapping, Optional, Tuple

from ._secrets import redact_error, redact_text

__all__ = [
    "APIConnectionError",
    "APIStatusError",
    "APITimeoutError",
    "AuthenticationError",
    "FakeGptError",
    "IncompleteStreamError",
    "NoValidResponseError",
    "RateLimitError",
    "StreamError",
]

_MAX_MESSAGE = 300
_MAX_DETAIL = 200
#: Error bodies are read this far (the client caps them below this anyway).
_MAX_SCANNED = 1 << 20
#: How far :func:`describe_json` follows ``detail``/``error``/``message`` down.
_MAX_DEPTH = 16
_WHITESPACE = re.compile(r"\s+")
# Phrases the web backend uses for rate limits on statuses other than 429.
_RATE_LIMIT_HINTS = ("too many requests", "only one message at a time", "rate limit", "rate_limit")


def one_line(text: str, limit: int = _MAX_MESSAGE) -> str:
    """Collapse white space (newlines included), hide every secret, then cut
    *text* to *limit* characters (in that order: a secret cut first would
    leave its beginning behind)."""
    text = redact_text(_WHITESPACE.sub(" ", str(text)).strip())
    return text if len(text) <= limit else text[: limit - 1] + "…"


class FakeGptError(RuntimeError):
    """Base class of every fakegpt error.

    :ivar partial_text: the reply text delivered before the failure (empty when
        the failure happened before any text arrived).
    :ivar cause: the exception behind the failure (from ``requests``,
        ``urllib3``, the socket, ...), with its own traceback, or ``None``.
        A call's error is raised ``from None``, so that its traceback shows
        the error and your code only; the rest is here.
    """

    #: The underlying exception, or ``None`` (see the class docstring).
    cause: Optional[BaseException] = None

    def __init__(self, message: str, *, partial_text: str = "") -> None:
        super().__init__(one_line(message))
        self.partial_text = partial_text

    @property
    def message(self) -> str:
        """The one-line message."""
        return str(self.args[0]) if self.args else ""

    def __reduce__(self) -> Any:
        # Pickle and copy with every attribute (the default would call
        # __init__ with the message only, which some subclasses refuse).
        return _rebuild, (type(self), self.args, self.__dict__)


def public_error(error: BaseException) -> FakeGptError:
    """*error* as a public call raises it: a :class:`FakeGptError` (any other
    exception is wrapped in one) whose traceback starts where it is raised
    again, with the exception behind it kept in :attr:`~FakeGptError.cause`
    rather than chained (``raise public_error(error) from None``)."""
    if not isinstance(error, FakeGptError):
        wrapped = FakeGptError(f"the call failed unexpectedly: {type(error).__name__}: {error}")
        wrapped.cause = redact_error(error)  # (the message above is redacted as every message is)
        return wrapped
    if error.cause is None:
        error.cause = error.__cause__ if error.__cause__ is not None else (
            None if error.__suppress_context__ else error.__context__)
    error.__traceback__ = None
    return error


def _rebuild(cls: "type[FakeGptError]", args: Tuple[Any, ...], state: Dict[str, Any]) -> FakeGptError:
    error = cls.__new__(cls)
    error.args = args
    error.__dict__.update(state)
    return error


class AuthenticationError(FakeGptError):
    """No usable shared token: an empty token list, every tried token dead,
    an empty ``{}`` session, or an access token rejected (401) even after a
    fresh login.

    :ivar status_code: the HTTP status behind the failure, when there was one.
    """

    def __init__(self, message: str, *, status_code: Optional[int] = None, partial_text: str = "") -> None:
        super().__init__(message, partial_text=partial_text)
        self.status_code = status_code


class APIStatusError(FakeGptError):
    """The server answered with a non-2xx status.

    :ivar status_code: the HTTP status.
    :ivar detail: the server's explanation (its ``detail``, or the page title).
    :ivar retry_after: seconds the server asked to wait (its ``Retry-After``,
        e.g. on 429 or 503), if it said.
    """

    def __init__(
        self,
        message: str,
        *,
        status_code: int,
        detail: str = "",
        retry_after: Optional[float] = None,
        partial_text: str = "",
    ) -> None:
        super().__init__(message, partial_text=partial_text)
        self.status_code = status_code
        self.detail = redact_text(detail)
        self.retry_after = retry_after


class RateLimitError(APIStatusError):
    """Rate limited (429, or a rate-limit detail on 400/403) after the retries;
    ``retry_after`` says how long the server asked to wait, if it said."""


class APIConnectionError(FakeGptError):
    """The server could not be reached, or the connection failed."""


class APITimeoutError(APIConnectionError):
    """A connect or read timeout, including a stream that stalled mid-reply."""


class StreamError(FakeGptError):
    """The event stream carried an error, or could not be read."""


class IncompleteStreamError(StreamError):
    """The body ended before ``[DONE]`` and before a finished assistant message."""


class NoValidResponseError(FakeGptError):
    """A complete stream that carried no assistant text (the original's
    ``RuntimeError("No valid response")``)."""


def detail_from_body(body: bytes, content_type: str = "") -> str:
    """Extract a short, human explanation from an error body.

    Understands ``{"detail": "..."}``, ``{"detail": {"code", "message"}}``,
    ``{"error": ...}`` and HTML pages (their ``<title>``); falls back to the
    start of the text. Any body is safe: huge, nested without end, not
    UTF-8, echoing a secret (hidden before the text is cut).
    """
    text = body[:_MAX_SCANNED].decode("utf-8", "replace").strip()
    if not text:
        return ""
    if "html" in content_type.lower() or text[:15].lower().startswith(("<!doctype", "<html")):
        title = re.search(r"<title[^>]*>(.*?)</title>", text[:65536], re.I | re.S)
        return one_line("HTML page: " + (title.group(1) if title else text[:4096]), _MAX_DETAIL)
    data = parse_json(text)
    if data is _NOT_JSON:
        return one_line(text[:4096], _MAX_DETAIL)
    return one_line(describe_json(data, fallback=text[:4096]), _MAX_DETAIL)


_NOT_JSON: Any = object()


def parse_json(text: "str | bytes") -> Any:
    """The JSON value of *text*, or :data:`_NOT_JSON` (also for JSON nested
    too deep for the parser: an error body must give an error, not a crash)."""
    try:
        return json.loads(text)
    except (ValueError, RecursionError):
        return _NOT_JSON


def describe_json(data: Any, fallback: str = "") -> str:
    """The human part of an error value: its ``detail``, ``error`` or
    ``message`` (followed down a few levels), else its ``code``, else the
    value itself; *fallback* for a value too deep to print."""
    for _ in range(_MAX_DEPTH):
        if isinstance(data, Mapping):
            value = next((data[key] for key in ("detail", "error", "message") if data.get(key)), None)
            if value is None:
                code = data.get("code")
                data = code if code and isinstance(code, (str, int, float)) else data
                break
            data = value
        elif isinstance(data, list) and data:
            data = data[0]
        else:
            break
    if isinstance(data, str):
        return data
    try:
        return json.dumps(data)[:4096] if isinstance(data, (dict, list)) else str(data)
    except (RecursionError, ValueError):
        return fallback or "(a value nested too deep to show)"


def _detail_code(data: Any) -> str:
    """The machine-readable ``code`` of a parsed JSON error body, if any."""
    detail = data.get("detail") if isinstance(data, dict) else None
    if isinstance(detail, dict):
        return str(detail.get("code") or "")
    return ""


def is_rate_limit(status_code: int, detail: str) -> bool:
    """Whether a status and its detail mean "rate limited"."""
    if status_code == 429:
        return True
    return status_code in (400, 403) and any(hint in detail.lower() for hint in _RATE_LIMIT_HINTS)


def error_for_status(
    status_code: int,
    body: bytes,
    *,
    content_type: str = "",
    what: str = "request",
    retry_after: Optional[float] = None,
) -> FakeGptError:
    """Map a non-2xx answer to the fakegpt error that describes it.

    :param what: what was being done, e.g. ``"POST /api/conversation"``.
    :param retry_after: the parsed ``Retry-After`` header, if any (kept on
        the error whatever the status: the retry policy honours it on 429
        and 5xx alike).
    """
    detail = detail_from_body(body, content_type)
    message = f"{what} failed: HTTP {status_code}" + (f": {detail}" if detail else "")
    if retry_after is not None:
        message += f" (retry after {retry_after:g}s)"
    limited = is_rate_limit(status_code, detail)
    if not limited and b"rate_limit_exceeded" in body[:_MAX_SCANNED]:
        limited = _detail_code(parse_json(body[:_MAX_SCANNED])) == "rate_limit_exceeded"
    if limited:
        return RateLimitError(message, status_code=status_code, detail=detail, retry_after=retry_after)
    if status_code == 401:
        return AuthenticationError(message, status_code=status_code)
    return APIStatusError(message, status_code=status_code, detail=detail, retry_after=retry_after)


def redact(error: Any, secrets: Iterable[Optional[str]] = ()) -> Any:
    """Hide every secret (the registered ones and *secrets*) in *error*'s
    message and detail and in every exception it chains to; returns *error*
    (see :func:`fakegpt._secrets.redact_error`)."""
    return redact_error(error, secrets)
