"""Sphinx configuration of the redundancy documentation (built with ``sphinx-build -W --keep-going``)."""

import importlib.util
import os
import pathlib
import sys

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))

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
]

# PyTorch's names link to its documentation only where its inventory is at hand offline: set
# REDUNDANCY_TORCH_INVENTORY to a local copy of https://pytorch.org/docs/stable/objects.inv. Without it (CI builds
# offline) the names are left unresolved on purpose, and nitpicky mode ignores them.
_torch_inventory = os.environ.get("REDUNDANCY_TORCH_INVENTORY")
if _torch_inventory and pathlib.Path(_torch_inventory).is_file():
    extensions.append("sphinx.ext.intersphinx")
    intersphinx_mapping = {"torch": ("https://pytorch.org/docs/stable/", _torch_inventory)}

nitpicky = True
nitpick_ignore_regex = [
    ("py:(class|meth|func|attr|data|mod|exc)", r"torch\..*"),
    ("py:class", r"(Tensor|Module|nn\.Module|NamedTuple)"),
    ("py:class", r"collections\.abc\..*"),
    ("py:class", r"redundancy(\.\w+)*\._\w+(\.\w+)*"),  # private bases, e.g. redundancy._loss.LossModule
]

autodoc_member_order = "bysource"
autodoc_typehints = "description"
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
