"""Column reductions without an N×D temporary, and the in-place standardization backward built on them."""

import pytest
import torch

from redundancy._ops import reductions
from redundancy._ops.standardize import Standardization, standardize, standardize_backward_, standardize_forward


@pytest.mark.parametrize(("n", "d"), [(1, 3), (2, 1), (63, 9), (64, 9), (65, 9), (200, 7), (129, 8192), (3000, 4)])
def test_column_dot_equals_the_summed_product(n, d, monkeypatch):
    monkeypatch.setattr(reductions, "SLAB_ELEMENTS", 64)  # slabs of MIN_SLAB_ROWS rows: several, and a remainder
    generator = torch.Generator().manual_seed(n * d)
    x = torch.randn(n, d, generator=generator, dtype=torch.float64)
    y = torch.randn(n, d, generator=generator, dtype=torch.float64)
    torch.testing.assert_close(reductions.column_dot(x, y), (x * y).sum(dim=0), rtol=1e-13, atol=1e-13 * n)


def test_column_dot_reads_strided_views_and_empty_batches():
    x = torch.randn(9, 300, dtype=torch.float64).t()  # 300×9, not contiguous
    y = torch.randn(300, 18, dtype=torch.float64)[:, ::2]
    torch.testing.assert_close(reductions.column_dot(x, y), (x * y).sum(dim=0), rtol=1e-13, atol=1e-12)
    empty = torch.empty(0, 5)
    assert torch.equal(reductions.column_dot(empty, empty), torch.zeros(5))


def test_slab_rows_bound_the_accumulator():
    assert reductions.slab_rows(2048, 8192) == reductions.MIN_SLAB_ROWS
    assert reductions.slab_rows(2048, 256) * 256 == reductions.SLAB_ELEMENTS
    assert reductions.slab_rows(10, 8192) == 10


@pytest.mark.parametrize("unbiased", [False, True])
def test_in_place_standardization_backward_equals_the_autograd_function(unbiased):
    """For the gradients it is meant for: those of a function of C = AᵀB/N, ``B dCᵀ`` with B's columns centred."""
    standardization = Standardization(unbiased=unbiased, eps=1e-3)
    z = (torch.randn(37, 70, dtype=torch.float64) * 3 + 5).requires_grad_()
    other = torch.randn(37, 70, dtype=torch.float64)
    upstream = (other - other.mean(dim=0)) @ torch.randn(70, 70, dtype=torch.float64)
    (expected,) = torch.autograd.grad(standardize(z, standardization), z, upstream)
    a, rstd = standardize_forward(z.detach(), standardization)
    grad = upstream.clone()
    assert standardize_backward_(grad, a, rstd, standardization) is grad
    torch.testing.assert_close(grad, expected, rtol=1e-12, atol=1e-12)
