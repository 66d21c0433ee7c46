"""Args entries that share a description (``lambd, scale, eps: as in f``), as one parameter each.

A multi-view form documents the options it shares with its two-view loss in a few grouped entries. Napoleon turns
such an entry into one field, ``:param lambd, scale, eps:``, which Sphinx would read as a parameter ``eps`` of type
``lambd, scale,``. After Napoleon has run, this splits the field into one ``:param name:`` per name, each with the
shared description, so that every parameter is listed once with the type of the signature.
"""

import re

from sphinx.application import Sphinx

_GROUPED = re.compile(r"^(\s*):param ((?:[\w\\*]+, )+[\w\\*]+):(.*)$")


def split_grouped_parameters(lines: list[str]) -> list[str]:
    """``lines`` of a docstring in Sphinx's field syntax, each grouped ``:param a, b:`` field split by name."""
    result: list[str] = []
    index = 0
    while index < len(lines):
        match = _GROUPED.match(lines[index])
        if match is None:
            result.append(lines[index])
            index += 1
            continue
        indent, names, first = match.groups()
        continuation = []
        index += 1
        while index < len(lines) and lines[index].startswith(indent + " ") and lines[index].strip():
            continuation.append(lines[index])
            index += 1
        for name in names.split(", "):
            result.append(f"{indent}:param {name}:{first}")
            result.extend(continuation)
    return result


def _process(app: Sphinx, what: str, name: str, obj: object, options: object, lines: list[str]) -> None:
    lines[:] = split_grouped_parameters(lines)


def setup(app: Sphinx) -> dict:
    app.setup_extension("sphinx.ext.napoleon")
    app.connect("autodoc-process-docstring", _process, priority=600)  # after Napoleon's (500)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
