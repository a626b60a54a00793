"""What the session cache accepts: the checks of its file and of each entry.

Everything read from the cache file could have been planted by someone else
or broken by a crash, so each value is checked against what it will be used
for (a header, a cookie, a time) before the client uses it.
"""
from __future__ import annotations

import contextlib
import fnmatch
import os
import re
import stat
from typing import Any, Dict, Optional

from ._constants import MAX_DEAD_TOKENS

__all__ = [
    "SECRET", "dead_tokens_of", "directory_problem", "entry_problem", "newest", "not_replaceable", "read_at_most",
    "sweep_temporary_files", "untrusted",
]

# What may go into a header: printable ASCII, no white space, a sane length.
SECRET = re.compile(r"[\x21-\x7e]{1,16384}\Z")
_COOKIE_NAME = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]{1,256}\Z")
# A cookie value may hold spaces, commas, quotes (servers set such values): only
# what would break the Cookie header is refused (CR, LF, NUL, other controls, non-ASCII).
_COOKIE_VALUE = re.compile(r"[\x20-\x7e]{0,4096}\Z")
_COOKIE_PLACE = re.compile(r"[\x21-\x7e]{0,1024}\Z")


def entry_problem(raw: Any) -> Optional[str]:
    """What makes a cache entry unusable, or ``None``."""
    if not isinstance(raw, dict):
        return "not an object"
    for field, what in (("access_token", "the access token"), ("session_password", "the session password")):
        value = raw.get(field)
        if value is not None and not (isinstance(value, str) and SECRET.match(value)):
            return f"{what} is not a printable ASCII string"
    cookies = raw.get("cookies")
    if cookies is None:
        return None
    if not isinstance(cookies, list) or len(cookies) > 64:
        return "the cookies are not a short list"
    for cookie in cookies:
        if not isinstance(cookie, dict) or not isinstance(cookie.get("name"), str) or not _COOKIE_NAME.match(
                cookie["name"]):
            return "a cookie has no valid name"
        for field, pattern in (("value", _COOKIE_VALUE), ("domain", _COOKIE_PLACE), ("path", _COOKIE_PLACE)):
            value = cookie.get(field, "")
            if not isinstance(value, str) or not pattern.match(value):
                return f"a cookie's {field} is not valid"
        expires = cookie.get("expires")
        if expires is not None and (type(expires) is not int or not 0 <= expires < 2 ** 40):
            return "a cookie's expiry is not a time"
    return None


_TOKEN_ID = re.compile(r"[\x21-\x7e]{1,256}\Z")


def dead_tokens_of(raw: Any, now: float) -> Dict[str, float]:
    """The valid, unexpired dead tokens of a raw entry (anything malformed is dropped)."""
    dead = raw.get("dead_tokens") if isinstance(raw, dict) else None
    if not isinstance(dead, dict):
        return {}
    return newest({
        token_id: float(until) for token_id, until in dead.items()
        if isinstance(token_id, str) and _TOKEN_ID.match(token_id) and type(until) in (int, float)
        and now < until < now + 10 ** 9
    })


def newest(dead: Dict[str, float]) -> Dict[str, float]:
    """At most MAX_DEAD_TOKENS of *dead*, those remembered longest kept."""
    if len(dead) <= MAX_DEAD_TOKENS:
        return dead
    return dict(sorted(dead.items(), key=lambda item: item[1], reverse=True)[:MAX_DEAD_TOKENS])


def read_at_most(descriptor: int, limit: int) -> bytes:
    """The whole file behind *descriptor*; :class:`OSError` past *limit* bytes."""
    pieces, size = [], 0
    while size <= limit:
        piece = os.read(descriptor, 1 << 16)
        if not piece:
            break
        pieces.append(piece)
        size += len(piece)
    if size > limit:
        raise OSError(0, f"larger than {limit} bytes")
    return b"".join(pieces)


def not_replaceable(path: str) -> Optional[str]:
    """Why the file at *path* must not be replaced by a write, or ``None``."""
    try:
        info = os.lstat(path)
    except FileNotFoundError:
        return None
    if stat.S_ISREG(info.st_mode) or stat.S_ISLNK(info.st_mode):
        return None  # (a symbolic link is replaced, never followed)
    return "is not a regular file"


def untrusted(info: os.stat_result) -> Optional[str]:
    """Why a cache file must not be trusted, or ``None``."""
    if not stat.S_ISREG(info.st_mode):
        return "is not a regular file"
    if hasattr(os, "getuid") and info.st_uid != os.getuid():
        return "belongs to another user"
    if hasattr(os, "getuid") and info.st_mode & 0o077:
        return f"is open to other users (mode {stat.S_IMODE(info.st_mode):o}, expected 600)"
    return None



def directory_problem(directory: str) -> Optional[str]:
    """Why the cache directory must not be used, or ``None``: another user's,
    or one that others may write to (they could plant or swap files in it)."""
    if not hasattr(os, "getuid"):  # pragma: no cover - Windows: no owner and mode bits to check
        return None
    info = os.stat(directory)
    if info.st_uid != os.getuid():
        return f"belongs to another user (uid {info.st_uid})"
    if info.st_mode & 0o022:
        return f"is writable by other users (mode {stat.S_IMODE(info.st_mode):o}, expected 700)"
    return None


def sweep_temporary_files(directory: str) -> None:
    """Remove the temporary files (``.sessions-*.tmp``) of writers killed before
    they renamed theirs; call it holding the lock, when no writer is at work."""
    for name in os.listdir(directory):
        if fnmatch.fnmatchcase(name, ".sessions-*.tmp"):
            with contextlib.suppress(OSError):
                os.unlink(os.path.join(directory, name))
