"""Sphinx configuration of the sklearn-tmnre documentation.

Build with warnings as errors::

    python -m sphinx -W -b html docs docs/_build/html

The build is offline: intersphinx has no inventories to fetch, and the example
gallery is rendered from the scripts' text without running them. To run the
examples and render their figures, set ``SKLEARN_TMNRE_DOCS_RUN_EXAMPLES=1``
(add ``SKLEARN_TMNRE_QUICK=1`` for their tiny settings).
"""

import importlib.util
import os
import re
import sys
from pathlib import Path

import sklearn_tmnre

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE / "_ext"))

# -- Project -----------------------------------------------------------------
project = "sklearn-tmnre"
author = "The sklearn-tmnre developers"
copyright = "2026, The sklearn-tmnre developers"
release = sklearn_tmnre.__version__
version = ".".join(release.split(".")[:2])

# -- Extensions --------------------------------------------------------------
extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",
    "sphinx.ext.intersphinx",
    "sphinx.ext.mathjax",
    "numpydoc",
    "sphinx_gallery.gen_gallery",
    "bad_input_table",
    "benchmark_results",
]
# Markdown (docs/benchmarks.md) is rendered when myst-parser is installed and shown
# as literal text otherwise (see _ext/benchmark_results.py).
HAVE_MYST = importlib.util.find_spec("myst_parser") is not None
if HAVE_MYST:
    extensions.append("myst_parser")

source_suffix = {".rst": "restructuredtext"}
root_doc = "index"
# benchmarks.md is pulled into benchmarking.rst, never built as a page of its own.
exclude_patterns = ["_build", "benchmarks.md"]
templates_path = []
nitpicky = False

# -- autodoc / autosummary / numpydoc ----------------------------------------
autodoc_default_options = {"members": True, "member-order": "bysource"}
# Type hints show in the signatures (the package ships py.typed).
autodoc_typehints = "signature"
# The autosummary tables in api.rst link to its autodoc entries: no stub pages are
# generated into the source tree.
autosummary_generate = False
numpydoc_show_class_members = False
numpydoc_class_members_toctree = False
numpydoc_xref_param_type = False

# -- intersphinx -------------------------------------------------------------
# Empty on purpose: CI has no network, so no inventories are fetched.
intersphinx_mapping = {}

# -- sphinx-gallery ----------------------------------------------------------
RUN_EXAMPLES = os.environ.get("SKLEARN_TMNRE_DOCS_RUN_EXAMPLES") == "1"
# Read by sphinx-gallery as a Sphinx setting; it overrides the key of the same name below.
plot_gallery = RUN_EXAMPLES
sphinx_gallery_conf = {
    "examples_dirs": "../examples",
    "gallery_dirs": "auto_examples",
    # Every script runs when examples are enabled; none runs otherwise.
    "filename_pattern": r"\.py$" if RUN_EXAMPLES else r"^$",
    # Helper modules (leading underscore, __init__ included) are not examples.
    "ignore_pattern": r"[\\/]_[^\\/]*\.py$|conftest\.py$",
    "plot_gallery": RUN_EXAMPLES,
    "within_subsection_order": "FileNameSortKey",
    "download_all_examples": False,
    "remove_config_comments": True,
    "min_reported_time": 1,
}

# -- HTML --------------------------------------------------------------------
html_theme = "alabaster"
html_title = f"sklearn-tmnre {release}"
html_static_path = []
html_theme_options = {
    "description": "Truncated Marginal Neural Ratio Estimation for scikit-learn",
    "fixed_sidebar": True,
    "show_powered_by": False,
}
html_sidebars = {"**": ["about.html", "navigation.html", "relations.html", "searchbox.html"]}


# -- Docstring fix-ups ---------------------------------------------------------
# Docstrings write shapes in Python notation, "(n, *event_shape)". In reST a lone
# "*" before a word opens emphasis that never closes (a warning, an error under
# -W), so such a star is escaped — outside literals, roles, doctests and
# indented blocks, where reST does not parse markup.
_STAR = re.compile(r"(?<![\w*\\])\*(?=[A-Za-z_]\w*[),\]])")
_PROTECTED = re.compile(r"``.+?``|:[\w:]+:`[^`]*`|`[^`]*`_{0,2}")


def _escape_line(line):
    out, last = [], 0
    for match in _PROTECTED.finditer(line):
        out += [_STAR.sub(r"\\*", line[last:match.start()]), match.group()]
        last = match.end()
    out.append(_STAR.sub(r"\\*", line[last:]))
    return "".join(out)


def escape_shape_stars(app, what, name, obj, options, lines):
    block_indent = None
    for i, line in enumerate(lines):
        stripped = line.lstrip()
        indent = len(line) - len(stripped)
        if block_indent is not None:
            if stripped and indent <= block_indent:
                block_indent = None
            else:
                continue
        if stripped.startswith((">>>", "...")):
            continue
        lines[i] = _escape_line(line)
        if stripped.endswith("::"):
            block_indent = indent


def skip_metadata_requests(app, what, name, obj, skip, options):
    """Hide scikit-learn's generated ``set_*_request`` methods (their docstrings
    reference scikit-learn's own glossary, which is not part of these docs)."""
    if name.startswith("set_") and name.endswith("_request"):
        return True
    return None


def setup(app):
    app.connect("autodoc-skip-member", skip_metadata_requests)
    # After numpydoc (priority 500) has turned the numpydoc sections into reST.
    app.connect("autodoc-process-docstring", escape_shape_stars, priority=900)
