"""The symmetric product X Xᵀ from its lower block-triangle."""

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from redundancy._ops import products

#: Shapes below and above products.MIN_SPLIT_WORK, with row counts that the blocks divide evenly and not.
SHAPES = [(3, 5), (128, 8192), (300, 1024), (257, 4096), (1031, 64)]


@pytest.mark.parametrize(("n", "d"), SHAPES)
@pytest.mark.parametrize("split_small", [False, True], ids=["as-chosen", "blocks-forced"])
def test_symmetric_gram_equals_the_full_product(n, d, split_small, monkeypatch):
    if split_small:
        monkeypatch.setattr(products, "MIN_SPLIT_WORK", 0)  # exercise the blocks on small shapes too
    x = torch.randn(n, d, dtype=torch.float64)
    torch.testing.assert_close(products.symmetric_gram(x), x @ x.T, rtol=1e-12, atol=1e-12 * d)


@pytest.mark.parametrize(("n", "d"), [*SHAPES, (1024, 2**20), (4096, 8192)])
def test_flops_are_those_of_the_products_it_runs(n, d):
    """symmetric_gram_flops counts the matrix products symmetric_gram runs (measured on shapes alone)."""
    with FlopCounterMode(display=False) as counter:
        products.symmetric_gram(torch.empty(n, d, device="meta"))
    assert counter.get_total_flops() == products.symmetric_gram_flops(n, d)


@pytest.mark.parametrize(("n", "d"), [*SHAPES, (1024, 2**20), (4096, 8192), (64, 2**20), (127, 2**20)])
def test_blocks_save_work_and_keep_full_speed_products(n, d):
    """Split only work worth splitting, into blocks of at least MIN_BLOCK_ROWS rows, and save FLOPs by it."""
    blocks = products.symmetric_blocks(n, d)
    full_product = 2 * n * n * d
    assert 1 <= blocks <= products.MAX_BLOCKS
    if blocks == 1:
        assert products.symmetric_gram_flops(n, d) == full_product
    else:
        assert n * n * d >= products.MIN_SPLIT_WORK and n // blocks >= products.MIN_BLOCK_ROWS
        # The lower block-triangle of k blocks: (1 + 1/k)·N²·D when k divides N.
        assert products.symmetric_gram_flops(n, d) < full_product
        if n % blocks == 0:
            assert products.symmetric_gram_flops(n, d) == (1 + 1 / blocks) * n * n * d
