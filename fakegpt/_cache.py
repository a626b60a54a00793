"""A login cache shared across processes: the access token and cookies per server.

One JSON file (mode 0600, in a 0700 directory). Every write replaces the
file atomically (a temporary file renamed over it), under an advisory lock
where the platform has one, so a reader never sees a torn file and
concurrent writers do not drop each other's servers. A file that is corrupt,
owned by someone else, or open to others is ignored with a
:class:`SessionCacheWarning`, never a crash; the next login rewrites it. A
path that is not a regular file (a directory, a FIFO, a device) is never
waited on nor replaced: it is ignored with a warning, and the client goes
on without the cache. So is a cache directory that belongs to another user
or that others may write to, and a lock file or cache file that is a
symbolic link (both are opened with ``O_NOFOLLOW``: a planted link makes
nothing where it points). The lock is waited on for at most
:attr:`SessionCache.lock_timeout` seconds: past that (another process holds
it), a ``fakegpt`` logging warning says so and this cache object goes on
without the file. Temporary files that a killed writer left (each holds a
token) are removed by the next writer, under the lock. The file is only
written when there is something to save: a login, a password claimed for
one, a dead token; reading it creates nothing.

An entry, per server: ``{"access_token", "session_password", "cookies":
[{"name", "value", "domain", "path", "secure", "expires"}], "saved_at",
"dead_tokens": {token_id: until}}``. ``dead_tokens`` (added later, and
optional: older files and older readers work without it) lists the shared
tokens whose login was rejected, until when (Unix time) the logins of every
process skip them; a malformed ``dead_tokens`` is only ignored.
"""
from __future__ import annotations

import contextlib
import json
import logging
import os
import sys
import tempfile
import time
import warnings
from typing import Any, Callable, Dict, Iterable, Mapping, Optional

from requests.cookies import RequestsCookieJar, create_cookie

from ._cache_checks import (
    SECRET,
    dead_tokens_of,
    directory_problem,
    entry_problem,
    newest,
    not_replaceable,
    read_at_most,
    sweep_temporary_files,
    untrusted,
)
from ._cache_lock import Unusable, locked
from ._secrets import redact_url

__all__ = ["SessionCache", "SessionCacheWarning", "default_cache_path"]

logger = logging.getLogger("fakegpt")
_FORMAT = "fakegpt-session-cache/1"
#: A cache file larger than this is not read (a real one holds a few KB per server).
_MAX_FILE = 8 * 1024 * 1024

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

    #: Seconds to wait for the lock that another process holds, before going on without the cache.
    lock_timeout: float = 10.0

    def __init__(self, path: "os.PathLike[str] | str") -> None:
        self.path = os.path.abspath(os.fspath(path))
        self._unusable: Optional[str] = None  # why this cache is not used any more (said once)

    def __repr__(self) -> str:
        return f"<fakegpt SessionCache {self.path!r}>"

    def load(self, base_url: str) -> Optional[Dict[str, Any]]:
        """The saved login for *base_url*: ``{"access_token", "session_password",
        "cookies"}`` (checked: each value is safe to send), or ``None``."""
        entry = self._entry(self._read().get(base_url), base_url, quiet=False)
        if entry is None or entry["access_token"] is None:
            return None
        return entry

    def saved_password(self, base_url: str) -> Optional[str]:
        """The isolation password saved for *base_url*, if a valid one is (reading only)."""
        raw = self._read(quiet=True).get(base_url)
        saved = raw.get("session_password") if isinstance(raw, dict) else None
        return saved if isinstance(saved, str) and SECRET.match(saved) else None

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
            saved = raw.get("session_password") if isinstance(raw, dict) else None
            if isinstance(saved, str) and SECRET.match(saved):
                # Even when another field of the entry is unusable: replacing the
                # password would make every earlier conversation unreachable.
                password = saved
                return False
            usable = self._entry(raw, base_url, quiet=True) is not None
            sessions[base_url] = {**(raw if usable and isinstance(raw, dict) else {}), "session_password": proposed}
            return True

        self._update(adopt_or_claim)
        return password

    def cookies(self, entry: Dict[str, Any]) -> RequestsCookieJar:
        """The cookies of a loaded entry, as a cookie jar."""
        jar = RequestsCookieJar()
        for cookie in entry["cookies"]:
            jar.set_cookie(create_cookie(  # type: ignore[no-untyped-call]
                cookie["name"], cookie["value"], domain=cookie["domain"], path=cookie["path"],
                secure=cookie["secure"], expires=cookie["expires"],
            ))
        return jar

    def _entry(self, raw: Any, base_url: str, quiet: bool) -> Optional[Dict[str, Any]]:
        """*raw* checked, with only the fields fakegpt uses; ``None`` (and a
        warning) for an entry a hostile or broken file could have planted."""
        if raw is None:
            return None
        problem = entry_problem(raw)
        if problem:
            self._ignore(f"has an unusable entry for {redact_url(base_url)} ({problem})", quiet)
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
            dead = dead_tokens_of(sessions.get(base_url), time.time())
            sessions[base_url] = {**entry, "dead_tokens": dead} if dead else entry
            return True

        if self._update(store):
            logger.debug("session cache: saved the login for %s in %s", redact_url(base_url), self.path)

    def dead_tokens(self, base_url: str) -> Dict[str, float]:
        """The shared tokens of *base_url* whose login failed lately:
        ``{token_id: until}`` (Unix time), the expired ones left out."""
        return dead_tokens_of(self._read(quiet=True).get(base_url), time.time())

    def update_dead_tokens(self, base_url: str, dead: Mapping[str, float], revived: Iterable[str] = ()) -> None:
        """Add *dead* (``{token_id: until}``) to the dead tokens of *base_url*
        and forget *revived* (they logged in again); the rest of the entry is kept."""
        revived = set(revived)

        def change(sessions: Dict[str, Any]) -> bool:
            raw = sessions.get(base_url)
            before = dead_tokens_of(raw, time.time())
            after = {**before, **dead}
            for token_id in revived:
                after.pop(token_id, None)
            after = newest(after)
            if after == before:
                return False
            sessions[base_url] = {**(raw if isinstance(raw, dict) else {}), "dead_tokens": after}
            return True

        self._update(change)

    def _update(self, change: Callable[[Dict[str, Any]], bool]) -> bool:
        """Under the lock, let *change* edit the servers' entries, and write them
        back when it returns true. ``False`` (and a warning) when the file could
        not be written: the cache is then only an optimisation lost."""
        if self._unusable is not None:
            return False
        directory = os.path.dirname(self.path)
        try:
            os.makedirs(directory, mode=0o700, exist_ok=True)
            self._check_directory()
            with locked(directory, self.lock_timeout):
                problem = not_replaceable(self.path)
                if problem:
                    warnings.warn(f"could not write the session cache {self.path}: it {problem}",
                                  SessionCacheWarning, stacklevel=4)
                    return False
                sweep_temporary_files(directory)  # a killed writer's, each holding a token
                sessions = self._read(quiet=True)
                if change(sessions):
                    self._write({"format": _FORMAT, "sessions": sessions}, directory)
        except Unusable as unusable:
            self._give_up(unusable)
            return False
        except OSError as error:
            warnings.warn(f"could not write the session cache {self.path}: {error}", SessionCacheWarning,
                          stacklevel=4)
            return False
        return True

    def _check_directory(self) -> None:
        """Raise :class:`Unusable` if the directory is not safe to use."""
        problem = directory_problem(os.path.dirname(self.path))
        if problem:
            raise Unusable(f"its directory {problem}")

    def _give_up(self, unusable: Unusable) -> None:
        """Stop using this cache, and say why (once)."""
        if self._unusable is not None:
            return
        self._unusable = why = str(unusable)
        if unusable.busy:  # not a misconfiguration: another process is slow, or stuck
            logger.warning("not using the session cache %s: %s; going on without it", self.path, why)
        else:
            warnings.warn(f"not using the session cache {self.path}: {why}", SessionCacheWarning, stacklevel=5)

    # -- the file ------------------------------------------------------------------
    def _read(self, quiet: bool = False) -> Dict[str, Any]:
        # O_NONBLOCK: opening a FIFO must not wait for a writer. The type is
        # checked on the descriptor itself, before any read, and the
        # descriptor is closed whatever happens.
        if self._unusable is not None:
            return {}
        flags = os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_BINARY", 0)
        try:
            if os.path.lexists(self.path):
                self._check_directory()
            descriptor = os.open(self.path, flags)
        except Unusable as unusable:
            self._give_up(unusable)
            return {}
        except FileNotFoundError:
            return {}
        except OSError as error:
            return self._ignore(f"cannot be read ({error.strerror})", quiet)
        try:
            info = os.fstat(descriptor)
            problem = untrusted(info) or (f"is too large ({info.st_size} bytes)" if info.st_size > _MAX_FILE else None)
            if problem:
                return self._ignore(problem, quiet)
            content = read_at_most(descriptor, _MAX_FILE)
        except OSError as error:
            return self._ignore(f"cannot be read ({error.strerror})", quiet)
        finally:
            os.close(descriptor)
        try:
            data = json.loads(content)
        except (ValueError, RecursionError):
            return self._ignore("is not valid JSON", quiet)
        if not isinstance(data, dict) or data.get("format") != _FORMAT or not isinstance(data.get("sessions"), dict):
            return self._ignore("is not a fakegpt session cache", quiet)
        sessions: Dict[str, Any] = data["sessions"]
        return sessions

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
