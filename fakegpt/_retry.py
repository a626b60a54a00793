"""Which failures are retried, and how long to wait between tries (tenacity).

Retried: connection failures and timeouts (never a TLS verification
failure), 429 and rate-limit details, and 5xx. Not retried: other 4xx,
in-stream errors, and anything once reply text has been delivered (the
client retries the call that *opens* a stream, never its iteration).
The wait is the server's ``Retry-After`` when it sent one (on a 429 or a
rate-limit detail, and on 503 and any other 5xx), otherwise jittered
exponential backoff; a ``Retry-After`` over :data:`MAX_RETRY_AFTER` is not
waited out, the error is raised at once with its ``retry_after``.
"""
from __future__ import annotations

import email.utils
import logging
import math
import random
import ssl
import time
from datetime import timezone
from typing import Callable, List, Optional

import requests
import tenacity
import urllib3

from ._constants import BACKOFF_JITTER, INITIAL_BACKOFF, MAX_BACKOFF, MAX_RETRY_AFTER
from .exceptions import APIConnectionError, APIStatusError, RateLimitError

__all__ = ["backoff_seconds", "is_retryable", "make_retrying", "retry_after_seconds", "wait_seconds"]

logger = logging.getLogger("fakegpt")


def retry_after_seconds(value: Optional[str], now: Optional[float] = None) -> Optional[float]:
    """Parse a ``Retry-After`` header (delay-seconds or an HTTP date) into seconds.

    >>> retry_after_seconds("2.5")
    2.5
    >>> retry_after_seconds("Wed, 21 Oct 2015 07:28:00 GMT", now=1445412470.0)
    10.0
    >>> retry_after_seconds("soon") is None
    True

    A negative delay and a date no clock can hold (year 999999999999) are
    ignored (``None``), like any other value that is not a delay.
    """
    if value is None:
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError, IndexError, OverflowError):
            return None
        if when is None:  # Python < 3.10 returns None for garbage
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=timezone.utc)
        try:
            seconds = when.timestamp() - (time.time() if now is None else now)
        except (OverflowError, ValueError, OSError):
            return None
        return None if math.isinf(seconds) else max(0.0, seconds)  # a date in the past: retry now
    if math.isnan(seconds) or math.isinf(seconds) or seconds < 0:
        return None
    return seconds


def backoff_seconds(attempt: int, rand: Callable[[], float] = random.random) -> float:
    """The wait before retry number *attempt* (1-based) when the server gave none."""
    base = min(INITIAL_BACKOFF * 2 ** (attempt - 1), MAX_BACKOFF)
    return float(base * (1.0 - BACKOFF_JITTER * rand()))


def is_retryable(error: BaseException) -> bool:
    """Whether a failed try is worth another."""
    if isinstance(error, APIStatusError):
        if error.retry_after is not None and error.retry_after > MAX_RETRY_AFTER:
            return False  # the caller decides whether to wait that long
        return isinstance(error, RateLimitError) or error.status_code >= 500
    if isinstance(error, APIConnectionError):
        # A certificate that fails verification will fail the same way again,
        # wherever requests wrapped it (an https proxy's is inside a ProxyError).
        return not any(isinstance(link, _TLS_ERRORS) for link in causes(error))
    return False


_TLS_ERRORS = (ssl.SSLError, requests.exceptions.SSLError, urllib3.exceptions.SSLError)


def causes(error: BaseException) -> List[BaseException]:
    """*error* and every error it wraps: its cause and context, urllib3's
    ``reason``, and exceptions among its ``args`` (requests puts urllib3's
    error there), depth first, each once."""
    seen: List[BaseException] = []
    pending = [error]
    while pending and len(seen) < 32:
        current = pending.pop()
        if any(current is known for known in seen):
            continue
        seen.append(current)
        inner = [current.__cause__, current.__context__, getattr(current, "reason", None), *current.args]
        pending.extend(link for link in inner if isinstance(link, BaseException))
    return seen


def wait_seconds(error: Optional[BaseException], attempt: int) -> float:
    """The wait before retrying after *error* (try number *attempt* failed):
    the server's ``Retry-After`` (429, 503, ...), capped, else the backoff."""
    retry_after = error.retry_after if isinstance(error, APIStatusError) else None
    if retry_after is not None:
        return min(float(retry_after), MAX_RETRY_AFTER)
    return backoff_seconds(attempt)


def _wait(retry_state: tenacity.RetryCallState) -> float:
    error = retry_state.outcome.exception() if retry_state.outcome else None
    return wait_seconds(error, retry_state.attempt_number)


def _log_retry(retry_state: tenacity.RetryCallState) -> None:
    error = retry_state.outcome.exception() if retry_state.outcome else None
    wait = retry_state.next_action.sleep if retry_state.next_action else 0.0
    logger.info("retrying in %.2fs after try %d: %s: %s", wait, retry_state.attempt_number, type(error).__name__, error)


def make_retrying(max_retries: int, sleep: Callable[[float], None] = time.sleep) -> tenacity.Retrying:
    """A tenacity ``Retrying`` for up to *max_retries* retries after the first try.

    ``reraise=True``: when the tries run out, the caller sees the last
    fakegpt error itself, not tenacity's ``RetryError``.
    """
    return tenacity.Retrying(
        stop=tenacity.stop_after_attempt(max_retries + 1),
        wait=_wait,
        retry=tenacity.retry_if_exception(is_retryable),
        reraise=True,
        sleep=sleep,
        before_sleep=_log_retry,
    )
