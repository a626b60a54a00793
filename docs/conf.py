"""Sphinx configuration for the fakegpt documentation."""
import os
import sys

sys.path.insert(0, os.path.abspath(".."))
sys.path.insert(0, os.path.abspath("_ext"))

import fakegpt  # noqa: E402

project = "fakegpt"
author = "the fakegpt authors"
copyright = "2026, the fakegpt authors"
version = release = fakegpt.__version__

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.viewcode",
    "cli_help",
]
exclude_patterns = ["_build", "examples/.ipynb_checkpoints"]

autodoc_member_order = "bysource"
autodoc_typehints = "description"
autodoc_default_options = {"members": True, "show-inheritance": True}

# No intersphinx: the build must work offline (CI has no internet).
try:
    import furo  # noqa: F401
except ImportError:  # pragma: no cover - the docs extra installs it
    html_theme = "alabaster"
else:
    html_theme = "furo"
html_title = f"fakegpt {release}"
