"""A login cache shared across processes: the access token and cookies per server.

One JSON file (mode 0600, in a 0700 directory). Every write replaces the
file atomically (a temporary file renamed over it), under an advisory lock
where the platform has one, so a reader never sees a torn file and
concurrent writers do not drop each other's servers. A file that is corrupt,
owned by someone else, or open to others is ignored with a
:class:`SessionCacheWarning`, never a crash; the next login rewrites it.
"""
from __future__ import annotations

import contextlib
import json
import logging
import os
import stat
import sys
import tempfile
import time
import warnings
from typing import Any, Dict, Iterator, Optional

from requests.cookies import RequestsCookieJar, create_cookie

__all__ = ["SessionCache", "SessionCacheWarning", "default_cache_path"]

logger = logging.getLogger("fakegpt")
_FORMAT = "fakegpt-session-cache/1"

try:  # POSIX
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None  # type: ignore[assignment]


class SessionCacheWarning(UserWarning):
    """The session cache file could not be used (it is then ignored)."""


def default_cache_path() -> str:
    """The per-user cache file: ``$XDG_CACHE_HOME/fakegpt/sessions.json`` (or the
    platform's cache folder)."""
    if sys.platform == "win32":  # pragma: no cover
        base = os.environ.get("LOCALAPPDATA") or os.path.expanduser("~\\AppData\\Local")
    elif sys.platform == "darwin":  # pragma: no cover
        base = os.path.expanduser("~/Library/Caches")
    else:
        base = os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache")
    return os.path.join(base, "fakegpt", "sessions.json")


class SessionCache:
    """The cache file at *path* (see the module's description)."""

    def __init__(self, path: "os.PathLike[str] | str") -> None:
        self.path = os.path.abspath(os.fspath(path))

    def __repr__(self) -> str:
        return f"<fakegpt SessionCache {self.path!r}>"

    def load(self, base_url: str) -> Optional[Dict[str, Any]]:
        """The saved login for *base_url*: ``{"access_token", "cookies",
        "session_password"}``, or ``None``."""
        entry = self._read().get(base_url)
        if not isinstance(entry, dict) or not isinstance(entry.get("access_token"), str) or not entry["access_token"]:
            return None
        if not isinstance(entry.get("session_password"), str):
            entry["session_password"] = None
        return entry

    def cookies(self, entry: Dict[str, Any]) -> RequestsCookieJar:
        """The cookies of a loaded entry, as a cookie jar."""
        jar = RequestsCookieJar()
        cookies = entry.get("cookies")
        for cookie in cookies if isinstance(cookies, list) else []:
            if isinstance(cookie, dict) and isinstance(cookie.get("name"), str):
                jar.set_cookie(create_cookie(
                    cookie["name"], str(cookie.get("value", "")), domain=str(cookie.get("domain", "")),
                    path=str(cookie.get("path", "/")), secure=bool(cookie.get("secure")),
                    expires=cookie.get("expires") if isinstance(cookie.get("expires"), int) else None,
                ))
        return jar

    def save(self, base_url: str, access_token: str, cookies: RequestsCookieJar,
             session_password: Optional[str] = None) -> None:
        """Store the login for *base_url* (the other servers' entries are kept).

        The isolation password goes along: the server keeps conversations under
        it, so a later process that logs in again with it finds them again.
        """
        entry = {
            "access_token": access_token,
            "session_password": session_password,
            "cookies": [
                {"name": c.name, "value": c.value, "domain": c.domain, "path": c.path, "secure": c.secure,
                 "expires": c.expires}
                for c in cookies
            ],
            "saved_at": int(time.time()),
        }
        directory = os.path.dirname(self.path)
        try:
            os.makedirs(directory, mode=0o700, exist_ok=True)
            with self._locked(directory):
                sessions = self._read(quiet=True)
                sessions[base_url] = entry
                self._write({"format": _FORMAT, "sessions": sessions}, directory)
        except OSError as error:
            warnings.warn(f"could not write the session cache {self.path}: {error}", SessionCacheWarning,
                          stacklevel=3)
            return
        logger.debug("session cache: saved the login for %s in %s", base_url, self.path)

    # -- the file ------------------------------------------------------------------
    def _read(self, quiet: bool = False) -> Dict[str, Any]:
        try:
            descriptor = os.open(self.path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
        except FileNotFoundError:
            return {}
        except OSError as error:
            return self._ignore(f"cannot be read ({error.strerror})", quiet)
        with os.fdopen(descriptor, "rb") as file:
            problem = _untrusted(os.fstat(file.fileno()))
            if problem:
                return self._ignore(problem, quiet)
            try:
                data = json.loads(file.read())
            except (ValueError, RecursionError):
                return self._ignore("is not valid JSON", quiet)
        if not isinstance(data, dict) or data.get("format") != _FORMAT or not isinstance(data.get("sessions"), dict):
            return self._ignore("is not a fakegpt session cache", quiet)
        return data["sessions"]

    def _ignore(self, problem: str, quiet: bool) -> Dict[str, Any]:
        if not quiet:
            warnings.warn(f"ignoring the session cache {self.path}: it {problem}", SessionCacheWarning, stacklevel=4)
        return {}

    def _write(self, data: Dict[str, Any], directory: str) -> None:
        descriptor, temporary = tempfile.mkstemp(prefix=".sessions-", suffix=".tmp", dir=directory)  # mode 0600
        try:
            with os.fdopen(descriptor, "w", encoding="utf-8") as file:
                json.dump(data, file)
                file.flush()
                os.fsync(file.fileno())
            os.replace(temporary, self.path)  # atomic: readers see the old file or the new one
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(temporary)
            raise

    @contextlib.contextmanager
    def _locked(self, directory: str) -> Iterator[None]:
        if fcntl is None:  # pragma: no cover - no advisory locks: replace() still keeps the file whole
            yield
            return
        descriptor = os.open(os.path.join(directory, ".sessions.lock"), os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(descriptor, fcntl.LOCK_EX)
            yield
        finally:
            os.close(descriptor)  # releases the lock


def _untrusted(info: os.stat_result) -> Optional[str]:
    """Why a cache file must not be trusted, or ``None``."""
    if not stat.S_ISREG(info.st_mode):
        return "is not a regular file"
    if hasattr(os, "getuid") and info.st_uid != os.getuid():
        return "belongs to another user"
    if hasattr(os, "getuid") and info.st_mode & 0o077:
        return f"is open to other users (mode {stat.S_IMODE(info.st_mode):o}, expected 600)"
    return None

