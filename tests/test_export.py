"""The Modules under ``torch.export`` with the natural spec of their inputs, and the diagnostics under compile."""

import torch
from torch.export import Dim
from torch.export import export

import redundancy


def test_export_takes_the_natural_dynamic_shapes_of_a_modules_inputs():
    """``dynamic_shapes`` spelled as the inputs are: one spec per positional input of ``forward(z1, z2)``."""
    module = redundancy.BarlowTwinsLoss(algorithm="gram")
    rows = Dim("rows", min=2)
    exported = export(module, (torch.randn(16, 8), torch.randn(16, 8)), dynamic_shapes=({0: rows}, {0: rows}))
    z1, z2 = torch.randn(32, 8), torch.randn(32, 8)
    torch.testing.assert_close(exported.module()(z1, z2), module(z1, z2))
    by_name = export(module, (z1, z2), dynamic_shapes={"z1": {0: rows}, "z2": {0: rows}})
    torch.testing.assert_close(by_name.module()(z1[:5], z2[:5]), module(z1[:5], z2[:5]))


def test_effective_rank_compiles_with_fullgraph_and_keeps_nan_for_non_finite_inputs():
    compiled = torch.compile(redundancy.effective_rank, fullgraph=True, backend="aot_eager")
    z = torch.randn(16, 8)
    torch.testing.assert_close(compiled(z), redundancy.effective_rank(z))
    z[3, 2] = float("inf")
    assert torch.isnan(compiled(z)) and torch.isnan(redundancy.effective_rank(z))
