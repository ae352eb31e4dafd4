"""Sphinx configuration: Markdown pages (MyST) and an API reference from numpydoc docstrings.

Build offline, warnings as errors: ``python -m sphinx -W -b html docs docs/_build/html``.
"""

import re
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

project = "nmfinterp"
author = "nmfinterp contributors"
copyright = "nmfinterp contributors"
extensions = [
    "myst_parser",
    "sphinx.ext.autodoc",
    "sphinx.ext.napoleon",  # numpydoc-style sections (Parameters, Returns, Examples)
    "sphinx.ext.mathjax",
]
source_suffix = {".md": "markdown"}
exclude_patterns = ["_build"]
root_doc = "index"
myst_enable_extensions = ["dollarmath", "colon_fence"]
myst_heading_anchors = 3
napoleon_google_docstring = False
napoleon_numpy_docstring = True
napoleon_use_rtype = False
autodoc_member_order = "bysource"
autodoc_typehints = "description"
autodoc_default_options = {"members": True, "show-inheritance": False}
html_theme = "alabaster"
# Nothing is fetched at build time; MathJax is only referenced by the built pages.


_BARS = re.compile(r"(?<![\\|])\|([^|\s][^|]*?)\|(?!_)")


def _escape_magnitudes(app, what, name, obj, options, lines):
    """Docstrings write magnitudes as |X|, which reStructuredText reads as a substitution."""
    for i, line in enumerate(lines):
        if line.lstrip().startswith(("|", "+-", "+=")):  # table rows
            continue
        parts = line.split("``")
        parts[::2] = [_BARS.sub(r"\\|\1\\|", p) for p in parts[::2]]  # outside ``literals``
        lines[i] = "``".join(parts)


def setup(app):
    app.connect("autodoc-process-docstring", _escape_magnitudes)
