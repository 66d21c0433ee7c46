"""Doctest namespace for the examples in the package's docstrings (``pytest --doctest-modules redundancy``)."""

import pytest
import torch


@pytest.fixture(autouse=True)
def _doctest_namespace(doctest_namespace):
    torch.manual_seed(0)
    doctest_namespace["torch"] = torch
