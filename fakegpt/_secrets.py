"""Secrets, and hiding them wherever text leaves the library.

Whoever holds a secret registers it, tied to itself (the owner)::

    register_secret(self, access_token)     # AccessToken, SharedTokenLogin
    register_url(self, base_url)            # the userinfo of a URL, if any

and it is hidden for as long as the owner lives (a weak reference: a
collected client takes its secrets along). :func:`redact_text` replaces
every registered secret in a text with ``***``, and so does the filter this
module puts on the ``fakegpt`` loggers and on urllib3's (whose warnings can
quote response headers echoing a token), so that no logging call can write
one, whatever handler the application attached. Messages are redacted
*before* they are cut to length (:func:`fakegpt.exceptions.one_line` does
both). Any 8 characters in a row of a secret, in any letter case, are hidden
too: a body cut before it reached fakegpt, or a server echoing a suffix or an
upper-cased token, shows none of it. (The text is scanned once, with a set of
the secrets' 8-character windows built once per registration.) Secrets
shorter than :data:`MIN_SECRET` characters are not searched for in free text
(they would hide ordinary words); :func:`redact_url` still hides them in URLs.
The userinfo of a URL is registered with its HTTP Basic form (base64), which
a proxy's 407 page may echo.
"""
from __future__ import annotations

import base64
import json
import logging
import re
import string
import threading
import weakref
from typing import Any, FrozenSet, Iterable, List, Optional, Tuple
from urllib.parse import quote, quote_plus, unquote, urlsplit

from ._fork import reset_in_child

__all__ = [
    "MIN_SECRET", "SecretFilter", "redact_error", "redact_text", "redact_url", "register_secret", "register_url",
    "without_userinfo",
]

#: Shorter secrets are hidden in URLs only, not searched for in free text.
MIN_SECRET = 4
#: A text holding this many characters in a row of a secret (any letter case) is hiding it.
_WINDOW = 8
#: Secrets kept per owner (the newest): a client replaces its token on every login.
_PER_OWNER = 64
_MASK = "***"
_URL_USERINFO = re.compile(r"(?i)\b([a-z][a-z0-9+.\-]*://)[^\s/?#@\"'<>\\]+@")
_BEARER = re.compile(r"(?i)\b(Bearer\s+)(?!\*\*\*)[^\s'\",;\\]+")
# HTTP Basic credentials: base64 with a digit, "+", "/" or padding (not a word such as "Basic usage").
_BASIC = re.compile(r"(?i)\b(Basic\s+)(?=[A-Za-z0-9+/]*[0-9+/=])[A-Za-z0-9+/]{4,}={0,2}")

_lock = threading.Lock()


@reset_in_child
def _new_lock() -> None:
    """A forked child: a parent's thread may have held the lock (the secrets stay: the child has them too)."""
    global _lock
    _lock = threading.Lock()
_owners: "weakref.WeakKeyDictionary[Any, List[str]]" = weakref.WeakKeyDictionary()
_ASCII_LOWER = str.maketrans(string.ascii_uppercase, string.ascii_lowercase)


def _lower(text: str) -> str:
    """*text* with its ASCII letters lower-cased: the same length, so a window found is where it is."""
    return text.translate(_ASCII_LOWER)


class _Index:
    """What :func:`redact_text` searches for: the short forms whole, and the
    lower-cased 8-character windows of the longer ones (with the characters
    they use, to skip the text that cannot hold one)."""

    def __init__(self, forms: Iterable[str]) -> None:
        forms = set(forms)
        self.short: Tuple[str, ...] = tuple(sorted((f for f in forms if len(f) < _WINDOW), key=len, reverse=True))
        long = [_lower(form) for form in forms if len(form) >= _WINDOW]
        self.windows: FrozenSet[str] = frozenset(
            form[i:i + _WINDOW] for form in long for i in range(len(form) - _WINDOW + 1))
        alphabet = "".join(sorted({c for form in long for c in form}))
        self.runs = re.compile(f"[{re.escape(alphabet)}]{{{_WINDOW},}}") if alphabet else None


_words: Optional[_Index] = _Index(())  # every form of every live secret; None: rebuild


def _on_owner_gone(_: Any = None) -> None:
    global _words
    _words = None


def register_secret(owner: Any, secret: Optional[str]) -> None:
    """Hide *secret* everywhere while *owner* lives (``None`` and ``""`` are ignored)."""
    global _words
    if not isinstance(secret, str) or not secret.strip():
        return
    with _lock:
        held = _owners.get(owner)
        if held is None:
            held = _owners[owner] = []
            weakref.finalize(owner, _on_owner_gone)
        if secret in held:
            return
        held.append(secret)
        del held[:-_PER_OWNER]
        _words = None


def register_url(owner: Any, url: Optional[str]) -> None:
    """Hide the credentials of *url* (``scheme://user:password@host``) while *owner* lives."""
    if not isinstance(url, str):
        return
    netloc = urlsplit(url.strip()).netloc
    if "@" not in netloc:
        return
    userinfo = netloc.rpartition("@")[0]
    user, _, password = userinfo.partition(":")
    basic = f"{unquote(user)}:{unquote(password)}".encode("latin-1", "replace")  # as requests sends it
    for secret in (userinfo, unquote(userinfo), user, unquote(user), password, unquote(password),
                   base64.b64encode(basic).decode("ascii")):
        register_secret(owner, secret)


def redact_url(url: str) -> str:
    """*url* with its userinfo replaced: ``http://alice:pw@host/x`` → ``http://***@host/x``.

    >>> redact_url("http://alice:pw@localhost:8787/?v=2")
    'http://***@localhost:8787/?v=2'
    >>> redact_url("https://chat.test")
    'https://chat.test'
    """
    scheme, sep, rest = url.partition("//")
    if not sep:  # no scheme (``alice:pw@host``): the authority starts the text
        scheme, rest = "", url
    end = min([i for i in (rest.find(c) for c in "/?#") if i >= 0] or [len(rest)])
    authority = rest[:end]
    if "@" not in authority:
        return url
    return f"{scheme}{sep}{_MASK}@{authority.rpartition('@')[2]}{rest[end:]}"


def without_userinfo(url: str) -> str:
    """*url* with no userinfo at all, for a header sent to the server (``Referer``).

    >>> without_userinfo("http://alice:pw@localhost:8787/?v=2")
    'http://localhost:8787/?v=2'
    """
    return redact_url(url).replace(f"//{_MASK}@", "//", 1)


def _forms(secret: str) -> List[str]:
    """The ways *secret* can be written in a body echoing it (JSON, a form, a URL)."""
    forms = {secret, secret.strip(), json.dumps(secret)[1:-1], json.dumps(secret)[1:-1].replace("/", "\\/"),
             quote(secret, safe=""), quote_plus(secret)}
    return [form for form in forms if len(form) >= MIN_SECRET]


def _live_words() -> _Index:
    global _words
    words = _words
    if words is not None:
        return words
    with _lock:
        words = _words = _Index(form for held in list(_owners.values()) for secret in held for form in _forms(secret))
    return words


def _spans(text: str, index: _Index) -> List[Tuple[int, int]]:
    """Where *text* shows a short secret whole, or 8 characters in a row of a longer one."""
    spans: List[Tuple[int, int]] = []
    for word in index.short:
        start = text.find(word)
        while start >= 0:
            spans.append((start, start + len(word)))
            start = text.find(word, start + 1)
    if index.runs is not None:
        lowered, windows = _lower(text), index.windows
        for run in index.runs.finditer(lowered):
            for i in range(run.start(), run.end() - _WINDOW + 1):
                if lowered[i:i + _WINDOW] in windows:
                    spans.append((i, i + _WINDOW))
    return spans


def redact_text(text: str, extra: Iterable[Optional[str]] = ()) -> str:
    """*text* with every registered secret (and every one of *extra*) replaced
    by ``***``, including any 8 characters in a row of one (in any letter
    case), and the userinfo of any URL and the value of any ``Bearer`` or
    ``Basic`` credential.
    """
    # The credential shapes first: a window of a secret masked inside one would
    # leave the rest of it unrecognised (``Basic ***Nzg=``).
    if "@" in text:
        text = _URL_USERINFO.sub(r"\1***@", text)
    if "earer" in text:
        text = _BEARER.sub(r"\1***", text)
    if "asic" in text:
        text = _BASIC.sub(r"\1***", text)
    more = [form for secret in extra if isinstance(secret, str) and secret.strip() for form in _forms(secret)]
    spans = _spans(text, _live_words())
    if more:
        spans += _spans(text, _Index(more))
    if spans:
        spans.sort()
        pieces, position = [], 0
        for begin, end in spans:
            if end <= position:
                continue
            if begin >= position:
                pieces.append(text[position:begin])
                pieces.append(_MASK)
            position = end
        pieces.append(text[position:])
        text = "".join(pieces)
    return text


def redact_error(error: BaseException, secrets: Iterable[Optional[str]] = ()) -> BaseException:
    """Hide every secret (the registered ones and *secrets*) in *error* and in
    every exception it chains to (``__cause__``, ``__context__``).

    Each has its text arguments and its ``detail`` redacted, and the
    request and response that ``requests``' errors keep (their headers hold
    the token) dropped; if its text still shows a secret (one kept in an
    attribute), the chain is cut above it, so no traceback prints it.
    Returns *error*.
    """
    extra = [secret for secret in secrets if secret]
    pending: List[BaseException] = [error]
    seen = set()
    while pending:
        current = pending.pop()
        if id(current) in seen:
            continue
        seen.add(id(current))
        for link in ("__cause__", "__context__"):
            linked = getattr(current, link)
            if linked is None:
                continue
            if _scrub(linked, extra):
                pending.append(linked)
            else:
                setattr(current, link, None)
                current.__suppress_context__ = True
        _scrub(current, extra)
    return error


def _scrub(error: BaseException, extra: List[str]) -> bool:
    """Redact *error* in place; whether its text is now free of secrets."""
    try:
        error.args = tuple(redact_text(arg, extra) if isinstance(arg, str) else arg for arg in error.args)
    except (TypeError, AttributeError):  # pragma: no cover - an exception that refuses new arguments
        pass
    detail = getattr(error, "detail", None)
    if isinstance(detail, str):
        error.detail = redact_text(detail, extra)  # type: ignore[attr-defined]
    for attribute in ("request", "response"):  # requests' errors keep the request and its headers
        if getattr(error, attribute, None) is not None:
            try:
                setattr(error, attribute, None)
            except AttributeError:  # pragma: no cover - a read-only attribute
                pass
    try:
        text = f"{error} {error!r}"
    except Exception:  # pragma: no cover - an exception that cannot even print itself
        return False
    return redact_text(text, extra) == text


class SecretFilter(logging.Filter):
    """Redacts every record of the ``fakegpt`` logger before any handler sees it:
    its message (arguments included) and its exception text."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # a malformed call: what the handler would print, redacted
            message = f"{record.msg} {record.args!r}"
        clean = redact_text(message)
        if clean != message:
            record.msg, record.args = clean, ()
        if record.exc_info and record.exc_info[1] is not None and not record.exc_text:
            record.exc_text = redact_text(logging.Formatter().formatException(record.exc_info))
        elif record.exc_text:
            record.exc_text = redact_text(record.exc_text)
        if record.stack_info:
            record.stack_info = redact_text(record.stack_info)
        return True


def install(name: str) -> None:
    """Put a :class:`SecretFilter` on the logger *name* (once)."""
    logger = logging.getLogger(name)
    if not any(isinstance(existing, SecretFilter) for existing in logger.filters):
        logger.addFilter(SecretFilter())


# A logger's filters do not apply to its children's records: each fakegpt logger gets one.
# urllib3 logs, e.g., "Failed to parse headers ... unparsed data" with what the server sent (an echoed token).
for _name in ("fakegpt", "fakegpt.emulator", "fakegpt.emulator.access", "urllib3", "urllib3.connection", "urllib3.connectionpool",
              "urllib3.response", "urllib3.poolmanager", "urllib3.util.retry"):
    install(_name)
del _name
