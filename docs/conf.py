"""Sphinx configuration of the jaxprune documentation (offline; warnings are errors in CI).

Build: ``sphinx-build -W --keep-going -b html docs docs/_build/html``.
"""

import logging
import os
import re
import shutil
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, ROOT)  # document this checkout's jaxprune, installed or not

project = "jaxprune"
author = "the jaxprune authors"
copyright = "the jaxprune authors"  # noqa: A001

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.napoleon",
    "sphinx.ext.viewcode",
    "myst_nb",
]

# Google-style docstrings (optax's and flax's style).
napoleon_google_docstring = True
napoleon_numpy_docstring = False
napoleon_use_rtype = False

# The API pages list what each module's ``__all__`` exports: ``automodule`` with
# ``:members:`` follows ``__all__`` (re-exported names included) and nothing else.
autodoc_default_options = {"members": True, "undoc-members": True, "member-order": "bysource"}
autodoc_typehints = "signature"
autodoc_preserve_defaults = True
autodoc_inherit_docstrings = False

# The docstrings are written as plain text with ``code`` spans; a single-backtick
# `name` means code too, as in Markdown.
default_role = "code"

# Notebooks are rendered as committed (with their outputs), never executed here.
nb_execution_mode = "off"
myst_enable_extensions = ["colon_fence"]
myst_heading_anchors = 3

source_suffix = {".rst": "restructuredtext", ".md": "myst-nb", ".ipynb": "myst-nb"}
exclude_patterns = ["_build", "Thumbs.db", ".DS_Store", "**.ipynb_checkpoints"]

html_theme = "furo"
html_title = "jaxprune"
html_static_path: list[str] = []

# Offline: no intersphinx mapping, so the build fetches nothing.


def _copy_notebooks() -> None:
    """Copies ``colab/*.ipynb`` into ``docs/notebooks/`` (ignored by git) to render them."""
    src = os.path.join(ROOT, "colab")
    dst = os.path.join(HERE, "notebooks")
    os.makedirs(dst, exist_ok=True)
    wanted = {n for n in os.listdir(src) if n.endswith(".ipynb")}
    for name in set(os.listdir(dst)) - wanted:  # a notebook removed from colab/
        os.remove(os.path.join(dst, name))
    for name in sorted(wanted):
        source, target = os.path.join(src, name), os.path.join(dst, name)
        with open(source, "rb") as f, open(target, "ab+") as g:
            g.seek(0)
            if f.read() == g.read():
                continue  # unchanged: keep the copy's time stamp (no rebuild)
        shutil.copyfile(source, target + ".tmp")
        os.replace(target + ".tmp", target)  # a reader never sees half a notebook


_copy_notebooks()


PUBLIC_MODULES = sorted(
    name[: -len(".rst")] for name in os.listdir(os.path.join(HERE, "api")) if name != "index.rst"
)

_LITERAL = re.compile(r"(``.+?``|`[^`]+`)")
_LONE_STAR = re.compile(r"(?<![*\w])\*(?=\w[^*]*$)")  # "*window" with no closing star


def _plain_text(line: str) -> str:
    """Escapes what reStructuredText would misread in a plain-text docstring line.

    ``|w|`` (a norm, not a substitution), a lone ``*args``-like star, ``name_`` (not a
    link) and a suffix glued to a literal (````x````s).
    """
    if line.lstrip().startswith((">>>", "...")):
        return line
    parts = _LITERAL.split(line)
    for i in range(0, len(parts), 2):  # the prose between literals
        text = parts[i].replace("|", "\\|")
        text = re.sub(r"(\w)_(?=\W|$)", r"\1\\_", text)
        parts[i] = _LONE_STAR.sub(r"\\*", text)
        if i and parts[i][:1].isalnum():
            parts[i] = "\\ " + parts[i]  # ``x``s: end the literal first
    return "".join(parts)


def _process_docstring(app, what, name, obj, options, lines) -> None:
    del app, what, name, obj, options
    lines[:] = [_plain_text(line) for line in lines]


class _CanonicalDuplicates(logging.Filter):
    """Drops "duplicate object description" of an implementation module's name.

    A class re-exported by two public modules (``jaxprune.MaskedState`` and
    ``jaxprune.transforms.MaskedState``) is documented on both pages; autodoc gives both
    the canonical name of its home module, which Sphinx then reports twice.
    Duplicates of public names still fail the build.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        if not str(record.msg).startswith("duplicate object description of %s"):
            return True
        module = str(record.args[0]).rpartition(".")[0]
        return module in PUBLIC_MODULES


def setup(app):
    app.connect("autodoc-process-docstring", _process_docstring)
    logging.getLogger("sphinx.sphinx.domains.python").addFilter(_CanonicalDuplicates())
