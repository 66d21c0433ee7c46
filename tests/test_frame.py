"""The frame (``redundancy/_frame.py``) in one process: the options a training loop passes at every call are checked
once and remembered by the keywords that gave them. What the frame does for every loss of the family (its
checks, its exchange between ranks, its errors raised on every rank) is tested by ``tests/family.py``."""

import itertools

import pytest
import torch

import redundancy
from redundancy import _frame
from redundancy._exchange import hash32
from redundancy._frame import _CHECKED
from redundancy._registry import FAMILY
from redundancy.barlow_twins import BarlowTwinsOptions
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


def _two_names_with_one_code() -> tuple[str, str]:
    """Two loss names whose 24-bit codes (:class:`redundancy._frame.Loss`) are equal: a birthday search."""
    seen: dict[int, str] = {}
    for index in itertools.count():
        name = f"loss_{index}"
        code = hash32(name) & 0xFFFFFF
        if code in seen:
            return seen[code], name
        seen[code] = name
    raise AssertionError("unreachable")


def test_two_losses_with_one_code_are_refused(monkeypatch):
    """The ranks compare a loss's code to know that they run the same loss: two losses with one code would pass for
    one, so the second is refused when it is declared (the family's own codes are distinct)."""
    assert len({member.loss.code for member in FAMILY}) == len(FAMILY)
    first, second = _two_names_with_one_code()
    monkeypatch.setattr(_frame, "LOSS_NAMES", {})
    _frame.Loss(first, BarlowTwinsOptions, _frame.Views("z1", "z2"))
    _frame.Loss(first, BarlowTwinsOptions, _frame.Views("z1", "z2"))  # the same loss again: its own code
    with pytest.raises(RuntimeError, match=f"the losses '{first}' and '{second}' have the same code"):
        _frame.Loss(second, BarlowTwinsOptions, _frame.Views("z1", "z2"))
