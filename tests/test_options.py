"""Options take any real number their annotation allows, as the computation needs it."""

import fractions

import numpy as np
import pytest
import torch

import redundancy
from redundancy._registry import FAMILY

#: The real-number options of Barlow Twins and VICReg, and a value of each in several spellings.
SPELLINGS = [
    ("lambd", fractions.Fraction(1, 100), 0.01),
    ("scale", np.float32(0.5), 0.5),
    ("off_diagonal_target", fractions.Fraction(-1, 2), -0.5),
    ("correction", np.int64(1), 1),
]


@pytest.mark.parametrize(("option", "spelling", "value"), SPELLINGS, ids=[s[0] for s in SPELLINGS])
def test_a_fraction_or_a_numpy_scalar_gives_the_loss_of_the_float(option, spelling, value):
    z1, z2 = torch.randn(16, 8, dtype=torch.float64), torch.randn(16, 8, dtype=torch.float64)
    expected = redundancy.barlow_twins_loss(z1, z2, **{option: value})
    assert torch.equal(redundancy.barlow_twins_loss(z1, z2, **{option: spelling}), expected)
    assert torch.equal(redundancy.BarlowTwinsLoss(**{option: spelling})(z1, z2), expected)


def test_every_real_option_of_the_family_takes_a_fraction():
    """A ``fractions.Fraction`` is a real number: no loss fails on it deep in the computation."""
    z = torch.randn(12, 6, dtype=torch.float64)
    for member in FAMILY:
        reals = {
            spec.name: spec.default
            for spec in member.loss.specs
            if isinstance(spec.default, float) and not isinstance(spec.default, bool)
        }
        inputs = member.loss.inputs
        if inputs.names is None:
            arguments = ([z, z * 2 + 1],)
        elif inputs.extra:
            arguments = (z, z * 2, z + 1, torch.arange(12), 0.5)
        else:
            arguments = tuple(z * (k + 1) for k in range(len(inputs.names)))
        for name, default in reals.items():
            as_fraction = fractions.Fraction(default).limit_denominator(10**6)
            expected = member.function(*arguments, **{name: float(as_fraction)})
            assert torch.equal(member.function(*arguments, **{name: as_fraction}), expected), (member.name, name)
