"""Settings from the environment. An argument given to :class:`fakegpt.Client`
always beats the environment, which beats the built-in default.

======================  =========================================================
``FAKEGPT_BASE_URL``    the server (default: the original service)
``FAKEGPT_PROXY``       a proxy for http and https (``HTTP(S)_PROXY`` apply too,
                        as requests always does)
``FAKEGPT_TIMEOUT``     seconds, or ``connect,read`` (default ``10,120``)
``FAKEGPT_MAX_RETRIES`` retries after the first try (default 2)
``FAKEGPT_SESSION_CACHE`` ``1``/``true`` for the per-user cache file, or a path;
                        ``0``/``false``/empty for none (the default)
``FAKEGPT_LOG``         ``debug`` or ``info``: log to stderr (secrets redacted)
======================  =========================================================
"""
from __future__ import annotations

import logging
import math
import os
import re
import sys
from typing import List, Optional, Tuple, Union

__all__ = ["configure_logging", "env_max_retries", "env_session_cache", "env_str", "env_timeout"]

_TRUE, _FALSE = ("1", "true", "yes", "on"), ("0", "false", "no", "off", "")


def env_str(name: str) -> Optional[str]:
    """A variable's value, or ``None`` when it is unset or empty."""
    value = os.environ.get(name, "").strip()
    return value or None


def env_timeout() -> Optional[Union[float, Tuple[float, float]]]:
    value = env_str("FAKEGPT_TIMEOUT")
    if value is None:
        return None
    try:
        numbers = [float(part) for part in value.split(",")]
    except ValueError:
        numbers = []
    if len(numbers) not in (1, 2) or not all(n > 0 and math.isfinite(n) for n in numbers):
        raise ValueError(f"FAKEGPT_TIMEOUT must be seconds or 'connect,read' seconds, not {value!r}")
    return numbers[0] if len(numbers) == 1 else (numbers[0], numbers[1])


def env_max_retries() -> Optional[int]:
    value = env_str("FAKEGPT_MAX_RETRIES")
    if value is None:
        return None
    if not value.isdigit():
        raise ValueError(f"FAKEGPT_MAX_RETRIES must be a whole number, 0 or more, not {value!r}")
    return int(value)


def env_session_cache() -> Union[bool, str]:
    """``False`` (no cache), ``True`` (the default path) or a path."""
    value = os.environ.get("FAKEGPT_SESSION_CACHE", "").strip()
    if value.lower() in _FALSE:
        return False
    if value.lower() in _TRUE:
        return True
    return value


class _Redact(logging.Filter):
    """Belt and braces: fakegpt never logs a secret, but this hides anything shaped like one."""

    _PATTERN = re.compile(r"(Bearer\s+|accessToken['\"]?\s*[:=]\s*['\"]?|session_password=)[^\s'\",&}]+")

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        redacted = self._PATTERN.sub(r"\1***", message)
        if redacted != message:
            record.msg, record.args = redacted, ()
        return True


#: What configure_logging() could not apply, until someone reports it (see :func:`setting_problems`).
_problems: List[str] = []


def setting_problems() -> List[str]:
    """The settings problems not reported yet (each is returned once): the
    command line prints them as ``fakegpt: warning:`` lines, the first
    :class:`~fakegpt.Client` of a program warns (``UserWarning``)."""
    problems = _problems[:]
    del _problems[:len(problems)]
    return problems


def configure_logging() -> None:
    """``FAKEGPT_LOG=debug|info``: the fakegpt logger writes to stderr."""
    value = os.environ.get("FAKEGPT_LOG", "").strip().lower()
    if not value:
        return
    level = {"debug": logging.DEBUG, "info": logging.INFO}.get(value)
    if level is None:
        _problems.append(f"FAKEGPT_LOG must be 'debug' or 'info', not {value!r}: ignored")
        return
    logger = logging.getLogger("fakegpt")
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(name)s %(levelname)s %(message)s"))
    handler.addFilter(_Redact())
    logger.addHandler(handler)
    logger.setLevel(level)
