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
import re
import stat
import sys
import tempfile
import time
import warnings
from typing import Any, Callable, Dict, Iterator, Optional

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
        """The saved login for *base_url*: ``{"access_token", "session_password",
        "cookies"}`` (checked: each value is safe to send), or ``None``."""
        entry = self._entry(self._read().get(base_url), base_url, quiet=False)
        if entry is None or entry["access_token"] is None:
            return None
        return entry

    def claim_password(self, base_url: str, proposed: str) -> str:
        """The isolation password every process using this cache shares for
        *base_url*: the saved one, else *proposed*, saved now (under the lock,
        so two processes starting at once agree on one). The server keeps
        conversations per password: sharing one keeps each process's
        conversations reachable from the next, whichever of them logged in."""
        password = proposed

        def adopt_or_claim(sessions: Dict[str, Any]) -> bool:
            nonlocal password
            raw = sessions.get(base_url)
            entry = self._entry(raw, base_url, quiet=True)
            if entry is not None and entry["session_password"] is not None:
                password = entry["session_password"]
                return False
            sessions[base_url] = {**(raw if entry is not None else {}), "session_password": proposed}
            return True

        self._update(adopt_or_claim)
        return password

    def cookies(self, entry: Dict[str, Any]) -> RequestsCookieJar:
        """The cookies of a loaded entry, as a cookie jar."""
        jar = RequestsCookieJar()
        for cookie in entry["cookies"]:
            jar.set_cookie(create_cookie(
                cookie["name"], cookie["value"], domain=cookie["domain"], path=cookie["path"],
                secure=cookie["secure"], expires=cookie["expires"],
            ))
        return jar

    def _entry(self, raw: Any, base_url: str, quiet: bool) -> Optional[Dict[str, Any]]:
        """*raw* checked, with only the fields fakegpt uses; ``None`` (and a
        warning) for an entry a hostile or broken file could have planted."""
        if raw is None:
            return None
        problem = _entry_problem(raw)
        if problem:
            self._ignore(f"has an unusable entry for {base_url} ({problem})", quiet)
            return None
        cookies = [
            {"name": c["name"], "value": c.get("value", ""), "domain": c.get("domain", ""), "path": c.get("path", "/"),
             "secure": bool(c.get("secure")), "expires": c.get("expires")}
            for c in raw.get("cookies") or []
        ]
        return {"access_token": raw.get("access_token"), "session_password": raw.get("session_password"),
                "cookies": cookies}

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
        def store(sessions: Dict[str, Any]) -> bool:
            sessions[base_url] = entry
            return True

        if self._update(store):
            logger.debug("session cache: saved the login for %s in %s", base_url, self.path)

    def _update(self, change: Callable[[Dict[str, Any]], bool]) -> bool:
        """Under the lock, let *change* edit the servers' entries, and write them
        back when it returns true. ``False`` (and a warning) when the file could
        not be written: the cache is then only an optimisation lost."""
        directory = os.path.dirname(self.path)
        try:
            os.makedirs(directory, mode=0o700, exist_ok=True)
            with self._locked(directory):
                sessions = self._read(quiet=True)
                if change(sessions):
                    self._write({"format": _FORMAT, "sessions": sessions}, directory)
        except OSError as error:
            warnings.warn(f"could not write the session cache {self.path}: {error}", SessionCacheWarning,
                          stacklevel=4)
            return False
        return True

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


# What may go into a header: printable ASCII, no white space, a sane length.
_SECRET = re.compile(r"[\x21-\x7e]{1,16384}\Z")
_COOKIE_NAME = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]{1,256}\Z")
_COOKIE_VALUE = re.compile(r"[\x21-\x2b\x2d-\x3a\x3c-\x5b\x5d-\x7e]{0,4096}\Z")  # no ; , \\
_COOKIE_PLACE = re.compile(r"[\x21-\x7e]{0,1024}\Z")


def _entry_problem(raw: Any) -> Optional[str]:
    """What makes a cache entry unusable, or ``None``."""
    if not isinstance(raw, dict):
        return "not an object"
    for field, what in (("access_token", "the access token"), ("session_password", "the session password")):
        value = raw.get(field)
        if value is not None and not (isinstance(value, str) and _SECRET.match(value)):
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


def _untrusted(info: os.stat_result) -> Optional[str]:
    """Why a cache file must not be trusted, or ``None``."""
    if not stat.S_ISREG(info.st_mode):
        return "is not a regular file"
    if hasattr(os, "getuid") and info.st_uid != os.getuid():
        return "belongs to another user"
    if hasattr(os, "getuid") and info.st_mode & 0o077:
        return f"is open to other users (mode {stat.S_IMODE(info.st_mode):o}, expected 600)"
    return None

