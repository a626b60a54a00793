"""Checks of the client's arguments: a clear ``TypeError``/``ValueError``
before any request, never echoing a secret."""
from __future__ import annotations

import math
import os
import re
from typing import Any, Optional
from urllib.parse import urlsplit

from ._http import Timeout
from ._secrets import redact_url

__all__ = [
    "check_base_url", "check_max_retries", "check_proxy", "check_secret", "check_timeout", "public_url",
    "url_password",
]

_PRINTABLE = re.compile(r"[\x21-\x7e]+")


def public_url(url: str) -> str:
    """*url* with any ``user:password@`` shown as ``***@`` (for messages and reprs)."""
    return redact_url(url)


def url_password(url: Optional[str]) -> Optional[str]:
    """The password (or user) of *url*'s userinfo, a secret to redact."""
    if not url:
        return None
    parts = urlsplit(url)
    return parts.password or parts.username or None


def check_base_url(base_url: Any) -> str:
    if not isinstance(base_url, str):
        raise TypeError(f"base_url must be a str, not {type(base_url).__name__}")
    url = base_url.strip()
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"base_url must be an http(s) URL like 'https://host', not {public_url(url)!r}")
    if parts.query or parts.fragment:
        raise ValueError(f"base_url must not carry a query or fragment: {public_url(url)!r}")
    try:
        parts.port
    except ValueError:
        raise ValueError(f"base_url has a bad port: {public_url(url)!r}") from None
    if not _valid_host(parts.hostname):
        raise ValueError(f"base_url has a bad host name (an empty label, or one over 63 characters): "
                         f"{public_url(url)!r}")
    return url.rstrip("/")


def _valid_host(host: str) -> bool:
    """Whether urllib3 can connect to *host*: an IP address, or a DNS name
    whose labels are 1 to 63 characters (IDNA-encoded) and 253 in all."""
    if ":" in host:  # an IPv6 literal (urlsplit checked its brackets)
        return True
    name = host[:-1] if host.endswith(".") else host
    try:
        labels = [label.encode("idna") if not label.isascii() else label.encode() for label in name.split(".")]
    except UnicodeError:
        return False
    return all(0 < len(label) <= 63 for label in labels) and len(name) <= 253


def check_proxy(proxy: Any) -> Optional[str]:
    if proxy is None or proxy == "":
        return None
    if not isinstance(proxy, str):
        raise TypeError(f"proxy must be a str like 'http://host:port', not {type(proxy).__name__}")
    parts = urlsplit(proxy)
    if parts.scheme not in ("http", "https", "socks4", "socks4a", "socks5", "socks5h") or not parts.hostname:
        raise ValueError("proxy must be a URL like 'http://host:port' or 'socks5://host:port'")
    if not _valid_host(parts.hostname):
        raise ValueError("proxy has a bad host name (an empty label, or one over 63 characters)")
    if parts.scheme.startswith("socks"):
        try:
            import socks  # type: ignore[import-untyped]  # noqa: F401  (PySocks, what requests needs for SOCKS)
        except ImportError:
            raise ValueError("SOCKS proxies need PySocks: pip install 'requests[socks]'") from None
    return proxy


def check_timeout(timeout: Any, name: str = "timeout") -> Timeout:
    def seconds(value: Any, what: str) -> Optional[float]:
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise TypeError(f"{what} must be a number of seconds, not {type(value).__name__}")
        if not (value > 0 and math.isfinite(value)):
            raise ValueError(f"{what} must be a positive, finite number of seconds, not {value!r}")
        return float(value)

    if isinstance(timeout, (tuple, list)):
        if len(timeout) != 2:
            raise ValueError(f"{name} must be seconds or a (connect, read) pair")
        return (seconds(timeout[0], f"connect {name}"), seconds(timeout[1], f"read {name}"))
    return seconds(timeout, name)


def check_max_retries(max_retries: Any) -> int:
    if isinstance(max_retries, bool) or not isinstance(max_retries, int):
        raise TypeError(f"max_retries must be an int, not {type(max_retries).__name__}")
    if max_retries < 0:
        raise ValueError(f"max_retries must be 0 or more, not {max_retries}")
    return max_retries


def check_secret(name: str, value: Any, *, token: bool = False) -> Optional[str]:
    """A secret argument, stripped of surrounding white space (a value pasted
    from a file). A token must then be printable ASCII, as a header value
    needs. The value itself never appears in the error."""
    if value is None:
        return None
    if not isinstance(value, str):
        raise TypeError(f"{name} must be a str, not {type(value).__name__}")
    value = value.strip()
    if not value:
        raise ValueError(f"{name} must not be empty")
    if token and not _PRINTABLE.fullmatch(value):
        raise ValueError(f"{name} must be printable ASCII with no spaces or line breaks (the value is not shown)")
    checked: str = value
    return checked


def check_path(value: Any) -> bool:
    return isinstance(value, (str, os.PathLike)) and bool(os.fspath(value))
