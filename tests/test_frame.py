"""The frame (``redundancy/_frame.py``) in one process: the options a training loop passes at every call are checked
once and remembered by the keywords that gave them. What the frame does for every loss of the family (its
checks, its exchange between ranks, its errors raised on every rank) is tested by ``tests/family.py``."""

import pytest
import torch

import redundancy
from redundancy._frame import _CHECKED
from tests.utils import assert_relative


def test_remembered_options_are_those_of_equal_keywords_of_the_same_types():
    generator = torch.Generator().manual_seed(5)
    z1 = torch.randn(9, 6, generator=generator)
    z2 = z1 + torch.randn(9, 6, generator=generator)
    _CHECKED.clear()
    first = redundancy.barlow_twins_loss(z1, z2, lambd=1, scale=0.5)
    assert len(_CHECKED) == 1
    assert torch.equal(redundancy.barlow_twins_loss(z1, z2, lambd=1, scale=0.5), first)
    assert len(_CHECKED) == 1  # the same keywords: the remembered options
    with pytest.raises(TypeError, match="lambd must be a real number or 'auto', got bool"):
        redundancy.barlow_twins_loss(z1, z2, lambd=True, scale=0.5)  # True == 1, of another type
    with pytest.raises(TypeError, match="lambd must be a real number or 'auto', got list"):
        redundancy.barlow_twins_loss(z1, z2, lambd=[1.0], scale=0.5)  # unhashable: checked, not remembered
    with pytest.raises(ValueError, match="scale"):
        redundancy.barlow_twins_loss(z1, z2, lambd=1, scale=-0.5)
    assert len(_CHECKED) == 1  # options that fail are not remembered
    other = redundancy.barlow_twins_loss(z1, z2, lambd=1.0, scale=2.0)
    assert_relative(other, first * 4.0, 1e-6, "scale")
    assert len(_CHECKED) == 2
