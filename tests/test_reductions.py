"""Column reductions without an N×D temporary, and the in-place standardization backward built on them."""

import pytest
import torch

from redundancy._ops import reductions
from redundancy._ops.standardize import Standardization
from redundancy._ops.standardize import standardize
from redundancy._ops.standardize import standardize_backward_
from redundancy._ops.standardize import standardize_forward


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


@pytest.mark.parametrize(("n", "d"), [(1, 5), (7, 1), (65, 9), (200, 70), (3000, 4)])
def test_sums_of_squares_and_products_equal_the_summed_products(n, d, monkeypatch):
    monkeypatch.setattr(reductions, "SLAB_ELEMENTS", 64)  # several slabs of column_dot, and a remainder
    generator = torch.Generator().manual_seed(n * d)
    x = torch.randn(n, d, generator=generator, dtype=torch.float64)
    y = torch.randn(n, d, generator=generator, dtype=torch.float64)
    scale = (x.abs() * y.abs()).sum()
    assert abs(reductions.sum_of_products(x, y) - (x * y).sum()) <= 1e-13 * scale
    assert abs(reductions.row_dot(x, y).sum() - (x * y).sum()) <= 1e-13 * scale  # the path of other devices
    torch.testing.assert_close(reductions.sum_of_squares(x), x.square().sum(), rtol=1e-13, atol=0)
    torch.testing.assert_close(reductions.sum_of_products(x, x), x.square().sum(), rtol=1e-13, atol=0)
    torch.testing.assert_close(reductions.sum_of_products(x[0], y[0]), (x[0] * y[0]).sum(), rtol=1e-13, atol=1e-13)
    torch.testing.assert_close(reductions.sum_of_squares(x.t()), x.square().sum(), rtol=1e-13, atol=0)


def test_long_float32_sums_are_as_exact_as_torch_pairwise_sum():
    """4 million positive terms: one BLAS dot loses the small ones in its few float32 accumulators; the row norms,
    the slab column sums and the batched row dots are as exact as torch's pairwise sum."""
    generator = torch.Generator().manual_seed(0)
    x = torch.rand(2048, 2048, generator=generator) / 2048
    y = torch.rand(2048, 2048, generator=generator) / 2048
    truth_squares, truth_products = x.double().square().sum().item(), (x.double() * y.double()).sum().item()

    def error(value, truth):
        return abs(value.item() - truth) / truth

    pairwise = max(error(x.square().sum(), truth_squares), error((x * y).sum(), truth_products))
    bound = 10 * pairwise + 2.0**-22
    assert error(reductions.sum_of_squares(x), truth_squares) <= bound
    assert error(reductions.sum_of_products(x, y), truth_products) <= bound
    assert error(reductions.row_dot(x, y).sum(), truth_products) <= bound
