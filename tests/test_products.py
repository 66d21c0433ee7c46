"""The symmetric product X Xᵀ from its lower block-triangle."""

import pytest
import torch

from redundancy._ops import products


@pytest.mark.parametrize(("n", "d"), [(3, 5), (128, 8192), (300, 1024), (257, 4096), (1031, 64)])
def test_symmetric_gram_equals_the_full_product(n, d, monkeypatch):
    x = torch.randn(n, d, dtype=torch.float64)
    if n * n * d < products.MIN_SPLIT_WORK:
        monkeypatch.setattr(products, "MIN_SPLIT_WORK", 0)  # exercise the blocks on small shapes too
    blocks = products.symmetric_blocks(n, d)
    gram = products.symmetric_gram(x)
    torch.testing.assert_close(gram, x @ x.T, rtol=1e-12, atol=1e-12 * d)
    assert blocks == min(products.MAX_BLOCKS, max(1, n // products.MIN_BLOCK_ROWS))


def test_flops_count_the_lower_block_triangle():
    n = 1024
    k = products.symmetric_blocks(n, 2**20)
    assert k == 4
    assert products.symmetric_gram_flops(n, 2**20) == (1 + 1 / k) * n * n * 2**20
    assert products.symmetric_gram_flops(16, 8) == 2 * 16 * 16 * 8  # small: one full product
