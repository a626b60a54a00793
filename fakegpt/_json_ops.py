"""The JSON-pointer ops of the delta stream format (PROTOCOL §4), applied to a
message document. Pure; an op that does not fit the document is ignored.
"""
from __future__ import annotations

from typing import Any, Dict, List, Optional

__all__ = ["apply_op"]

_POINTERS: Dict[str, List[str]] = {}


def _pointer(path: str) -> List[str]:
    """Parse a JSON pointer (RFC 6901) into its keys, with a cache."""
    keys = _POINTERS.get(path)
    if keys is None:
        keys = [k.replace("~1", "/").replace("~0", "~") for k in path.split("/")[1:]]
        if len(_POINTERS) < 256:
            _POINTERS[path] = keys
    return keys


def apply_op(doc: Dict[str, Any], path: str, op: Optional[str], value: Any) -> None:
    """Apply one delta op to *doc*; ops that do not fit the document are ignored."""
    if not isinstance(path, str):
        return
    keys = _pointer(path)
    if not keys:
        return
    parent: Any = doc
    try:
        for key in keys[:-1]:
            parent = parent[int(key)] if isinstance(parent, list) else parent[key]
        last: Any = keys[-1]
        if isinstance(parent, list):
            last = len(parent) if last == "-" else int(last)
        if op == "append":
            current = parent[last]
            if isinstance(current, list):
                current.extend(value if isinstance(value, list) else [value])
            elif isinstance(current, dict):
                current.update(value)  # e.g. finish_details appended to /message/metadata
            else:
                parent[last] = current + value
        elif op in ("replace", "add"):
            if isinstance(parent, list) and op == "add":
                parent.insert(last, value)
            else:
                parent[last] = value
        elif op == "truncate":
            parent[last] = parent[last][:value]
        elif op == "remove":
            del parent[last]
    except (KeyError, IndexError, TypeError, ValueError):
        pass
