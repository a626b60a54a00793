"""Sphinx configuration for the fakegpt documentation.

Builds offline, with only the ``docs`` extra installed:
``sphinx-build -n -W --keep-going -b html docs docs/_build/html``.
"""
import inspect
import os
import re
import sys

sys.path.insert(0, os.path.abspath(".."))
sys.path.insert(0, os.path.abspath("_ext"))

import fakegpt  # noqa: E402
from fakegpt import _constants  # noqa: E402

from sphinx.util import logging  # noqa: E402

project = "fakegpt"
author = "The fakegpt authors"
copyright = "2026, The fakegpt authors"
version = release = fakegpt.__version__

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.viewcode",
    "cli_help",
]
exclude_patterns = ["_build", "examples/.ipynb_checkpoints"]

autodoc_member_order = "bysource"
autodoc_typehints = "description"
# The pytest plugin imports pytest, which the docs extra does not install.
autodoc_mock_imports = ["pytest"]
nitpicky = True  # every reference must resolve (as with -n)

# No intersphinx: the build must work offline (CI has no internet).
# So a class of requests' own cannot be linked to: it is named, not linked.
nitpick_ignore = [("py:class", "requests.cookies.RequestsCookieJar")]
try:
    import furo  # noqa: F401
except ImportError:  # pragma: no cover - the docs extra installs it
    html_theme = "alabaster"
else:
    html_theme = "furo"
html_title = f"fakegpt {release}"

logger = logging.getLogger(__name__)

#: What a "not given, read the environment" default stands for, shown in signatures.
REAL_DEFAULTS = {
    "timeout": _constants.DEFAULT_TIMEOUT,
    "max_retries": _constants.DEFAULT_MAX_RETRIES,
}

#: Public types for parameters (and returns) whose annotations name private helpers.
PUBLIC_TYPES = {
    "fakegpt.Client": {
        "timeout": "float | tuple[float | None, float | None] | None",
        "max_retries": "int",
        "session_cache": "bool | str | None",
        "login_timeout": "float | tuple[float | None, float | None] | None",
    },
    "fakegpt.Stream": {"call": "object", "generate": "typing.Callable"},
    "fakegpt.Conversation": {"engine": "object"},
    "fakegpt.FakeGpt.create_completion": {"return": "typing.Generator[str, None, None]"},
    "fakegpt.gateway.UpstreamReply": {"upstream": "object", "response": "object", "cancel": "object"},
}
PUBLIC_PARAMS = {
    "fakegpt.Conversation": {
        "engine": "used by the client: a conversation comes from :meth:`Client.conversation`",
    },
    "fakegpt.Stream": {
        "call": "used by the client (the call object behind the stream)",
        "generate": "used by the client: a stream comes from :meth:`Client.stream` or :meth:`Conversation.stream`",
    },
    "fakegpt.gateway.UpstreamReply": {
        "upstream": "used by the gateway: a reply comes from :meth:`Upstream.stream`",
        "response": "the model server's answer, its body unread",
        "cancel": "hangs the request up",
    },
}


def real_defaults(app, what, name, obj, options, signature, return_annotation):
    """Signatures show the default a "read the environment" marker stands for
    (``timeout=(10.0, 120.0)``), not the marker's repr."""
    if not signature or "=<default>" not in signature or not callable(obj):
        return None
    parameters = []
    for parameter in inspect.signature(obj).parameters.values():
        if repr(parameter.default) == "<default>":
            if parameter.name not in REAL_DEFAULTS:
                logger.warning(f"{name}: no real default known for {parameter.name!r} (docs/conf.py REAL_DEFAULTS)")
                return None
            parameter = parameter.replace(default=REAL_DEFAULTS[parameter.name])
        parameters.append(parameter.replace(annotation=inspect.Parameter.empty))
    return str(inspect.Signature(parameters)), return_annotation


_IVAR = re.compile(r"^:ivar (\w+):\s*(.*)$")


def public_docstring(app, what, name, obj, options, lines):
    """Public types where the annotations name private helpers, and each
    ``:ivar name:`` as a documented attribute (so that it can be linked to)."""
    for parameter, text in PUBLIC_PARAMS.get(name, {}).items():
        lines.append(f":param {parameter}: {text}")
    for parameter, type_ in PUBLIC_TYPES.get(name, {}).items():
        field = f":rtype: {type_}" if parameter == "return" else f":type {parameter}: {type_}"
        # In the field list that describes the parameter: autodoc adds no type of its own there.
        at = next((i for i, line in enumerate(lines) if line.startswith((f":param {parameter}:", ":return"))
                   and (parameter == "return") == line.startswith(":return")), None)
        if at is None:
            lines.append(field)
        else:
            lines.insert(at, field)
    attributes, kept, index = [], [], 0
    while index < len(lines):
        match = _IVAR.match(lines[index])
        if not match:
            kept.append(lines[index])
            index += 1
            continue
        body = [match[2]]
        index += 1
        while index < len(lines) and lines[index].startswith((" ", "\t")):
            body.append(lines[index].strip())
            index += 1
        attributes += ["", f".. attribute:: {match[1]}", "", "   " + " ".join(body)]
    lines[:] = kept + attributes


def public_bases(app, name, obj, options, bases):
    """``collections.abc.Generator`` as ``typing.Generator`` (resolvable offline)."""
    import collections.abc
    import typing

    def public(base):
        if base is collections.abc.Generator:
            return typing.Generator
        if typing.get_origin(base) is collections.abc.Generator:  # Generator[str, None, None]
            return typing.Generator[typing.get_args(base)]
        return base

    bases[:] = [public(base) for base in bases]


def no_class_rtype(app, domain, objtype, contentnode):
    """A class's (or an exception's) description has no "Return type" (of its ``__init__``/``__new__``)."""
    if domain != "py" or objtype not in ("class", "exception"):
        return
    from docutils import nodes

    for field_list in [node for node in contentnode.children if isinstance(node, nodes.field_list)]:
        for field in list(field_list.children):
            if field.children and field.children[0].astext() in ("rtype", "Return type"):
                field_list.remove(field)


def setup(app):
    app.connect("object-description-transform", no_class_rtype, priority=900)
    app.connect("autodoc-process-signature", real_defaults)
    app.connect("autodoc-process-docstring", public_docstring)
    app.connect("autodoc-process-bases", public_bases)
