"""The standardization of the views (``redundancy/_ops/standardize.py``): finite columns whose total overflows take
the scaled path, and two small views standardized as one stacked batch give what each alone gives."""

import importlib

import pytest
import torch

import redundancy
from redundancy._ops import Standardization
from redundancy._ops import cross_correlation_terms
from redundancy._ops import gram_terms
from redundancy._ops import standardize
from redundancy._ops.standardize import standardize_views
from tests.utils import assert_relative

# The module, which the package's function of the same name hides.
standardize_module = importlib.import_module("redundancy._ops.standardize")


@pytest.mark.parametrize("unbiased", [False, True])
def test_finite_columns_whose_total_overflows_take_the_scaled_path(unbiased):
    # Each column's sum of squares is finite in float32 (about 1e38) while their total overflows: the unscaled
    # variance is given up for the scaled one, which must still be right.
    generator = torch.Generator().manual_seed(11)
    z = torch.randn(8, 6, generator=generator, dtype=torch.float64)
    z = (z - z.mean(dim=0)) / z.std(dim=0, correction=0) * 3.5e18
    z_single = z.float()
    centered = z_single.double() - z_single.double().mean(dim=0)
    sums = centered.square().sum(dim=0)
    assert bool((sums < torch.finfo(torch.float32).max).all()) and sums.sum() > torch.finfo(torch.float32).max
    standardization = Standardization(unbiased=unbiased, eps=1e-5)
    actual = standardize(z_single, standardization)
    assert torch.isfinite(actual).all()
    assert_relative(actual, standardize(z, standardization), 1e-5, "standardized columns")
    z2 = z_single.flip(0)
    loss = redundancy.barlow_twins_loss(z_single, z2, algorithm="cross")
    assert_relative(loss, redundancy.barlow_twins_loss(z, z.flip(0), algorithm="cross"), 1e-4, "loss")


@pytest.mark.parametrize("op", [cross_correlation_terms, gram_terms])
@pytest.mark.parametrize("unbiased", [False, True])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_small_views_standardized_together_equal_each_alone(op, unbiased, dtype, monkeypatch):
    generator = torch.Generator().manual_seed(7)
    z1 = torch.randn(11, 5, generator=generator, dtype=dtype) * 3.0 + 2.0
    z2 = torch.randn(11, 5, generator=generator, dtype=dtype) * 0.5 - 1.0
    z2[:, 3] = 4.0  # a constant column
    standardization = Standardization(unbiased=unbiased, eps=1e-5)
    results = []
    for joint_elements in (standardize_module.JOINT_ELEMENTS, 0):  # together, then each view alone
        monkeypatch.setattr(standardize_module, "JOINT_ELEMENTS", joint_elements)
        a, b = z1.clone().requires_grad_(), z2.clone().requires_grad_()
        invariance, redundancy_term = op(a, b, target=-0.5, standardization=standardization)
        (0.3 * invariance + 0.02 * redundancy_term).backward()
        results.append((invariance, redundancy_term, a.grad, b.grad))
    tolerance = 1e-12 if dtype == torch.float64 else 1e-5
    for together, alone, what in zip(*results, ("invariance", "redundancy", "dz1", "dz2"), strict=True):
        assert_relative(together, alone, tolerance, what)


def test_views_standardized_together_fall_back_when_one_needs_the_scale():
    generator = torch.Generator().manual_seed(8)
    z1 = torch.randn(16, 4, generator=generator, dtype=torch.float64)
    z2 = z1 + 0.3 * torch.randn(16, 4, generator=generator, dtype=torch.float64)
    z2[:, 1] *= 1e30  # its squares overflow float32
    standardization = Standardization(unbiased=False, eps=1e-5)
    together = standardize_views(z1.float(), (z1 + 1.0).float(), standardization)
    assert together[0].untyped_storage().data_ptr() == together[1].untyped_storage().data_ptr()  # one stack
    a, b, rstd_a, rstd_b = standardize_views(z1.float(), z2.float(), standardization)
    assert a.untyped_storage().data_ptr() != b.untyped_storage().data_ptr()  # each view alone
    expected = standardize_views(z1, z2, standardization)
    for actual, truth, what in zip((a, b, rstd_a, rstd_b), expected, ("a", "b", "rstd_a", "rstd_b"), strict=True):
        assert actual.shape == truth.shape
        assert_relative(actual, truth, 1e-5, what)
