"""Sphinx configuration of the redundancy documentation (built with ``sphinx-build -W --keep-going``)."""

import importlib.util
import os
import pathlib
import sys

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent / "_ext"))

import redundancy

project = "redundancy"
author = "The redundancy developers"
copyright = "2026, the redundancy developers"
release = redundancy.__version__
version = release

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.napoleon",
    "sphinx.ext.mathjax",
    "sphinx.ext.viewcode",
    "changelog",  # CHANGELOG.md rendered as a page (docs/_ext/changelog.py)
    "family_table",  # the family's tables, generated from redundancy._registry.FAMILY (docs/_ext/family_table.py)
    "grouped_arguments",  # "a, b: as in f" entries of Args, one parameter each (docs/_ext/grouped_arguments.py)
]

# PyTorch's names link to its documentation only where its inventory is at hand offline: set
# REDUNDANCY_TORCH_INVENTORY to a local copy of https://pytorch.org/docs/stable/objects.inv. Without it (CI builds
# offline) the names are left unresolved on purpose, and nitpicky mode ignores them.
_torch_inventory = os.environ.get("REDUNDANCY_TORCH_INVENTORY")
if _torch_inventory and pathlib.Path(_torch_inventory).is_file():
    extensions.append("sphinx.ext.intersphinx")
    intersphinx_mapping = {"torch": ("https://pytorch.org/docs/stable/", _torch_inventory)}

# MathJax from a local copy where one is at hand (an offline build read in a browser without network): set
# REDUNDANCY_MATHJAX to its path, e.g. Debian's libjs-mathjax /usr/share/javascript/mathjax/MathJax.js (MathJax 2).
# Without it the pages load MathJax from its CDN.
_mathjax = os.environ.get("REDUNDANCY_MATHJAX")
if _mathjax and pathlib.Path(_mathjax).is_file():
    mathjax_path = f"file://{_mathjax}?config=TeX-AMS-MML_HTMLorMML" if "mathjax/MathJax.js" in _mathjax else _mathjax

nitpicky = True
nitpick_ignore_regex = [
    ("py:(class|meth|func|attr|data|mod|exc)", r"torch\..*"),
    ("py:class", r"(Tensor|Module|nn\.Module|NamedTuple)"),
    ("py:class", r"collections\.abc\..*"),
    ("py:class", r"redundancy(\.\w+)*\._\w+(\.\w+)*"),  # private bases, e.g. redundancy._loss.LossModule
]

autodoc_member_order = "bysource"
# Types go into the parameter list, once per documented parameter (the signature line keeps names and defaults):
# a terms form or a Module, which points at its loss function for the arguments, gets no second list.
autodoc_typehints = "description"
autodoc_typehints_description_target = "documented_params"
autodoc_typehints_format = "short"
autodoc_default_options = {"show-inheritance": False}
napoleon_google_docstring = True
napoleon_numpy_docstring = False

# The docs extra brings furo and sphinx-copybutton. Sphinx alone still builds the pages (for a quick look at
# their text in an environment without the extra), in its default theme and without copy buttons.
if importlib.util.find_spec("sphinx_copybutton") is not None:
    extensions.append("sphinx_copybutton")
    copybutton_prompt_text = r">>> |\.\.\. |\$ "  # an example copies as code: no prompts, no output
    copybutton_prompt_is_regexp = True
html_theme = "furo" if importlib.util.find_spec("furo") is not None else "alabaster"
html_title = f"redundancy {release}"
html_static_path = ["_static"]
html_css_files = ["redundancy.css"]
exclude_patterns = ["_build"]


def _public_bases(app, name, obj, options, bases):
    """A Module's base as a reader knows it: ``torch.nn.Module`` for the private ``redundancy._frame.LossModule``."""
    import torch

    bases[:] = [torch.nn.Module if base.__module__.startswith("redundancy._") else base for base in bases]


def setup(app):
    app.connect("autodoc-process-bases", _public_bases)
