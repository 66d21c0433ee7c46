"""The public primitives of ``redundancy/correlation.py``: batch standardization, the cross-correlation matrix and its
off-diagonal entries, against the reference and with bad inputs named."""

import pytest
import torch

import redundancy
from redundancy.reference import batch_standardize_reference
from tests.utils import STANDARDIZATIONS
from tests.utils import assert_relative
from tests.utils import relative_error

GOOD = torch.randn(8, 4)


@pytest.mark.parametrize("standardization", STANDARDIZATIONS)
def test_batch_standardize_equals_reference_and_its_gradient(standardization):
    options = STANDARDIZATIONS[standardization]
    z = torch.randn(37, 70, dtype=torch.float64, requires_grad=True)
    assert_relative(redundancy.batch_standardize(z, **options), batch_standardize_reference(z, **options), 1e-12)
    small = torch.randn(5, 3, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda x: redundancy.batch_standardize(x, **options, eps=1e-3), (small,))


def test_batch_standardize_keeps_half_dtype_and_handles_large_magnitudes():
    z = (torch.randn(64, 8) * 1e4).half()
    a = redundancy.batch_standardize(z)
    assert a.dtype == torch.float16 and torch.isfinite(a).all()
    assert relative_error(a, batch_standardize_reference(z.double())) < 1e-3


def test_cross_correlation_is_the_standardized_cross_product():
    z1 = torch.randn(37, 70, dtype=torch.float64) * 2 + 0.5
    z2 = 0.8 * z1 + 0.6 * torch.randn(37, 70, dtype=torch.float64)
    c = redundancy.cross_correlation(z1, z2, correction=1, eps=0.0)
    expected = ((z1 - z1.mean(0)) / z1.std(0)).T @ ((z2 - z2.mean(0)) / z2.std(0)) / 37
    assert c.shape == (70, 70)
    assert_relative(c, expected, 1e-12)


def test_off_diagonal_matches_the_row_major_order():
    x = torch.arange(16.0).view(4, 4)
    expected = torch.tensor([v for i, row in enumerate(x.tolist()) for j, v in enumerate(row) if i != j])
    assert torch.equal(redundancy.off_diagonal(x), expected)
    assert redundancy.off_diagonal(torch.ones(1, 1)).numel() == 0


def test_correlation_primitives_reject_bad_inputs():
    with pytest.raises(ValueError, match=r"x must be a square matrix, got shape \(2, 3\)"):
        redundancy.off_diagonal(torch.ones(2, 3))
    with pytest.raises(ValueError, match=r"z must be 2-D"):
        redundancy.batch_standardize(torch.ones(3))
    with pytest.raises(TypeError, match=r"unexpected keyword argument 'normalization'"):
        redundancy.cross_correlation(GOOD, GOOD, normalization="l2")
    with pytest.raises(ValueError, match=r"correction must be 0"):
        redundancy.cross_correlation(GOOD, GOOD, correction=-1)
    with pytest.raises(TypeError, match=r"standardize must be a bool"):
        redundancy.batch_standardize(GOOD, standardize=1)
