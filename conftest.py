"""Doctest setup for the package's docstrings (``pytest --doctest-modules redundancy``).

Triton is an optional dependency: where it is not installed (macOS, Windows, or a plain ``.[test]`` install),
the modules of :mod:`redundancy._triton` that import it cannot be imported, so their doctests are reported as
skipped with the reason instead of failing the collection.
"""

import importlib
import pathlib

import pytest
import torch

_TRITON_PACKAGE = pathlib.Path(__file__).resolve().parent / "redundancy" / "_triton"


class _SkippedModule(pytest.File):
    """A module whose doctests cannot run here: collecting it reports one skip with the reason."""

    reason: str

    def collect(self):
        pytest.skip(self.reason)


def _missing_triton(path: pathlib.Path) -> str | None:
    """Why the module at ``path`` of redundancy._triton cannot be imported, when Triton is what is missing."""
    name = "redundancy._triton" if path.stem == "__init__" else f"redundancy._triton.{path.stem}"
    try:
        importlib.import_module(name)
    except ModuleNotFoundError as error:
        if error.name is not None and error.name.split(".")[0] == "triton":
            return f"{path.name}: Triton is not installed ({error}); on Linux, pip install 'redundancy[triton]'"
        raise
    return None


@pytest.hookimpl(wrapper=True)
def pytest_collect_file(file_path: pathlib.Path, parent: pytest.Collector):
    collectors = yield
    # Only the doctest plugin collects these modules (their names do not start with test_).
    if collectors and file_path.suffix == ".py" and file_path.parent == _TRITON_PACKAGE:
        reason = _missing_triton(file_path)
        if reason is not None:
            skipped = _SkippedModule.from_parent(parent, path=file_path)
            skipped.reason = reason
            return [skipped]
    return collectors


@pytest.fixture(autouse=True)
def _seed_doctests():
    """Every docstring example starts from the same random state. Nothing is put into the examples' namespace:
    each imports what it uses (``tests/test_docs.py`` runs the public ones in an empty namespace)."""
    torch.manual_seed(0)
