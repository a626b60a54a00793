"""The errors fakegpt raises, and the mapping from an HTTP answer to one of them.

Every error is a :class:`FakeGptError`, which subclasses :class:`RuntimeError`
so code written for gpt4free's original provider (``except RuntimeError``)
keeps working::

    RuntimeError
    └── FakeGptError
        ├── AuthenticationError        no usable shared token / token rejected
        ├── APIStatusError             a non-2xx answer (.status_code, .detail)
        │   └── RateLimitError         429 or a rate-limit detail (.retry_after)
        ├── APIConnectionError         could not reach the server / connection lost
        │   └── APITimeoutError        connect or read timeout, a stalled stream
        ├── StreamError                an in-stream error or an unreadable stream
        │   └── IncompleteStreamError  the body ended before [DONE]
        └── NoValidResponseError       a complete stream without assistant text

Messages are one line, never contain the access token, and errors raised
while a reply was streaming carry the text received so far in
:attr:`FakeGptError.partial_text`.
"""
from __future__ import annotations

import json
import re
from typing import Any, Iterable, Mapping, Optional

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
_WHITESPACE = re.compile(r"\s+")
# Phrases the web backend uses for rate limits on statuses other than 429.
_RATE_LIMIT_HINTS = ("too many requests", "only one message at a time", "rate limit", "rate_limit")


def one_line(text: str, limit: int = _MAX_MESSAGE) -> str:
    """Collapse white space (newlines included) and cut *text* to *limit* characters."""
    text = _WHITESPACE.sub(" ", str(text)).strip()
    return text if len(text) <= limit else text[: limit - 1] + "…"


class FakeGptError(RuntimeError):
    """Base class of every fakegpt error.

    :ivar partial_text: the reply text delivered before the failure (empty when
        the failure happened before any text arrived).
    """

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


def _rebuild(cls: type, args: tuple, state: dict) -> FakeGptError:
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
    """

    def __init__(self, message: str, *, status_code: int, detail: str = "", partial_text: str = "") -> None:
        super().__init__(message, partial_text=partial_text)
        self.status_code = status_code
        self.detail = detail


class RateLimitError(APIStatusError):
    """Rate limited (429, or a rate-limit detail on 400/403) after the retries.

    :ivar retry_after: seconds the server asked to wait, if it said.
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
        super().__init__(message, status_code=status_code, detail=detail, partial_text=partial_text)
        self.retry_after = retry_after


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
    start of the text.
    """
    text = body.decode("utf-8", "replace").strip()
    if not text:
        return ""
    if "html" in content_type.lower() or text[:15].lower().startswith(("<!doctype", "<html")):
        title = re.search(r"<title[^>]*>(.*?)</title>", text, re.I | re.S)
        return one_line("HTML page: " + (title.group(1) if title else text[:80]), 200)
    try:
        data = json.loads(text)
    except ValueError:
        return one_line(text, 200)
    return one_line(_describe_json(data), 200)


def _describe_json(data: Any) -> str:
    if isinstance(data, Mapping):
        for key in ("detail", "error", "message"):
            value = data.get(key)
            if value:
                return _describe_json(value)
        code = data.get("code")
        return str(code) if code else str(data)
    if isinstance(data, list) and data:
        return _describe_json(data[0])
    return str(data)


def _detail_code(body: bytes) -> str:
    """The machine-readable ``code`` of a JSON error body, if any."""
    try:
        data = json.loads(body)
    except ValueError:
        return ""
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
    :param retry_after: the parsed ``Retry-After`` header, if any.
    """
    detail = detail_from_body(body, content_type)
    message = f"{what} failed: HTTP {status_code}" + (f": {detail}" if detail else "")
    if is_rate_limit(status_code, detail) or _detail_code(body) == "rate_limit_exceeded":
        if retry_after is not None:
            message += f" (retry after {retry_after:g}s)"
        return RateLimitError(message, status_code=status_code, detail=detail, retry_after=retry_after)
    if status_code == 401:
        return AuthenticationError(message, status_code=status_code)
    return APIStatusError(message, status_code=status_code, detail=detail)


def redact(error: FakeGptError, secrets: Iterable[Optional[str]]) -> FakeGptError:
    """Replace every secret found in *error*'s message and detail with ``***``."""
    words = [s for s in secrets if s and len(s) >= 4]
    if not words:
        return error
    pattern = re.compile("|".join(re.escape(word) for word in words))
    if error.args:
        error.args = (pattern.sub("***", str(error.args[0])),) + error.args[1:]
    detail = getattr(error, "detail", None)
    if isinstance(detail, str):
        error.detail = pattern.sub("***", detail)  # type: ignore[attr-defined]
    return error
