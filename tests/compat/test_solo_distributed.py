"""``redundancy.compat.solo`` under 2 gloo processes keeps solo-learn's gradient scale.

solo-learn's ``barlow_loss_func`` all-reduces C outside autograd, so each rank's input gradient is ∂L/∂z_r of the
global loss (``gradient_convention="official"``); its ``vicreg_loss_func`` gathers the embeddings through a gather
whose backward sums the ranks' gradients (W·∂L/∂z_r, ``"global"``). The adapters must give those gradients, or
switching libraries changes the effective learning rate by the number of processes.

Against the formulas (always): uneven, different shards, compared with one process on the concatenated batch.
Against solo-learn's own functions (when ``solo.losses`` imports, see tests/compat/README.md): on inputs where its
per-rank statistics are those of the global batch, so that only the convention can differ (identical shards for
Barlow Twins; different shards of equal size for VICReg, whose statistics solo-learn gathers).
"""

import pytest
import torch

from benchmarks.common import spawn_gloo
from redundancy.compat import solo
from redundancy.reference import barlow_twins_loss_reference
from redundancy.reference import batch_standardize_reference
from redundancy.reference import vicreg_loss_reference
from tests.utils import assert_relative

pytestmark = pytest.mark.distributed

WORLD_SIZE = 2
#: Rows per rank for the comparison with the formulas: uneven, and different rows on each rank.
SHARDS = (3, 8)
DIM = 6
#: The solo-learn comparison runs in float32 (its fresh BatchNorm1d holds float32 buffers, which refuse float64).
SOLO_ROWS, SOLO_DIM = 16, 8
BARLOW_OPTIONS = {"lamb": 0.01, "scale_loss": 0.1}
VICREG_OPTIONS = {"sim_loss_weight": 3.0, "var_loss_weight": 5.0, "cov_loss_weight": 2.0}
UPSTREAM = 1.7  # a non-unit gradient of the loss


def _views(rows: int, dim: int, dtype: torch.dtype, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    scales = torch.linspace(0.3, 1.5, dim, dtype=torch.float64)
    z1 = torch.randn(rows, dim, generator=generator, dtype=torch.float64) * scales
    z2 = 0.7 * z1 + 0.5 * torch.randn(rows, dim, generator=generator, dtype=torch.float64) * scales
    return z1.to(dtype), z2.to(dtype)


def _rows(rank: int) -> slice:
    start = sum(SHARDS[:rank])
    return slice(start, start + SHARDS[rank])


def _value_and_grads(function, z1: torch.Tensor, z2: torch.Tensor, **options):
    z1, z2 = z1.clone().requires_grad_(), z2.clone().requires_grad_()
    value = function(z1, z2, **options)
    (UPSTREAM * value).backward()
    return value.detach(), z1.grad, z2.grad


def _worker(rank: int, world_size: int) -> dict:
    z1, z2 = _views(sum(SHARDS), DIM, torch.float64, seed=0)
    rows = _rows(rank)
    results = {
        "barlow": _value_and_grads(solo.barlow_loss_func, z1[rows], z2[rows], **BARLOW_OPTIONS),
        "vicreg": _value_and_grads(solo.vicreg_loss_func, z1[rows], z2[rows], **VICREG_OPTIONS),
    }
    try:
        from solo.losses import barlow_loss_func
        from solo.losses import vicreg_loss_func
    except ImportError:
        return results
    # Identical shards: solo-learn's per-rank statistics and mean of per-rank C are those of the global batch.
    same1, same2 = _views(SOLO_ROWS, SOLO_DIM, torch.float32, seed=1)
    results["solo_barlow"] = (
        _value_and_grads(barlow_loss_func, same1, same2, **BARLOW_OPTIONS),
        _value_and_grads(solo.barlow_loss_func, same1, same2, **BARLOW_OPTIONS),
    )
    # Different shards of equal size: solo-learn gathers them for the variance and covariance terms.
    own1, own2 = _views(SOLO_ROWS, SOLO_DIM, torch.float32, seed=2 + rank)
    results["solo_vicreg"] = (
        _value_and_grads(vicreg_loss_func, own1, own2, **VICREG_OPTIONS),
        _value_and_grads(solo.vicreg_loss_func, own1, own2, **VICREG_OPTIONS),
    )
    # Different shards: solo-learn's Barlow Twins with its per-rank statistics (module docstring).
    results["solo_barlow_own"] = barlow_loss_func(own1, own2, **BARLOW_OPTIONS)
    return results


@pytest.fixture(scope="module")
def ranks(tmp_path_factory):
    return spawn_gloo(_worker, WORLD_SIZE, tmp_path_factory.mktemp("solo_world2"))


def _reference_grads(reference, z1: torch.Tensor, z2: torch.Tensor):
    z1, z2 = z1.clone().requires_grad_(), z2.clone().requires_grad_()
    value = reference(z1, z2)
    return (value.detach(), *torch.autograd.grad(UPSTREAM * value, (z1, z2)))


def test_barlow_gradients_are_those_of_the_global_loss_on_each_rank(ranks):
    """solo-learn's scale: each rank's gradient is ∂L/∂z_r, 1/W of one process's gradient after DDP averages."""
    z1, z2 = _views(sum(SHARDS), DIM, torch.float64, seed=0)
    value, grad1, grad2 = _reference_grads(
        lambda a, b: barlow_twins_loss_reference(a, b, lambd=0.01, scale=0.1), z1, z2
    )
    for rank, results in enumerate(ranks):
        actual_value, actual1, actual2 = results["barlow"]
        rows = _rows(rank)
        assert_relative(actual_value, value, 1e-10, f"rank {rank}: loss")
        assert_relative(actual1, grad1[rows], 1e-9, f"rank {rank}: dz1")
        assert_relative(actual2, grad2[rows], 1e-9, f"rank {rank}: dz2")
    # After DDP's averaging the gradient is 1/W of one process's: summed over ranks it is one process's.
    summed = torch.cat([results["barlow"][1] for results in ranks])
    assert_relative(summed, grad1, 1e-9, "dz1 of all ranks")


def test_vicreg_gradients_are_world_size_times_those_of_the_global_loss(ranks):
    z1, z2 = _views(sum(SHARDS), DIM, torch.float64, seed=0)
    value, grad1, grad2 = _reference_grads(
        lambda a, b: vicreg_loss_reference(
            a, b, invariance_weight=3.0, variance_weight=5.0, covariance_weight=2.0, variance_reduction="sum"
        ),
        z1,
        z2,
    )
    for rank, results in enumerate(ranks):
        actual_value, actual1, actual2 = results["vicreg"]
        rows = _rows(rank)
        assert_relative(actual_value, value, 1e-10, f"rank {rank}: loss")
        assert_relative(actual1, WORLD_SIZE * grad1[rows], 1e-9, f"rank {rank}: dz1")
        assert_relative(actual2, WORLD_SIZE * grad2[rows], 1e-9, f"rank {rank}: dz2")


def _solo_results(ranks, key):
    if key not in ranks[0]:
        pytest.skip("solo-learn is not importable (see tests/compat/README.md)")
    return [results[key] for results in ranks]


@pytest.mark.parametrize("key", ["solo_barlow", "solo_vicreg"])
def test_gradients_equal_solo_learns(ranks, key):
    for rank, (theirs, ours) in enumerate(_solo_results(ranks, key)):
        if key == "solo_barlow":  # the one intended difference is the statistics, identical here
            assert_relative(ours[0], theirs[0], 1e-5, f"rank {rank}: loss")
        for name, mine, want in zip(("dz1", "dz2"), ours[1:], theirs[1:], strict=True):
            assert_relative(mine, want, 1e-5, f"{key}, rank {rank}: {name}")


def test_solo_barlow_averages_the_ranks_cross_correlations(ranks):
    """What the module docstring says solo-learn computes: ``C = ½ (C₀ + C₁)``, each ``C_r`` from rank r's rows
    standardized by rank r's own mean and variance."""
    values = _solo_results(ranks, "solo_barlow_own")
    correlations = []
    for rank in range(WORLD_SIZE):
        z1, z2 = (batch_standardize_reference(z) for z in _views(SOLO_ROWS, SOLO_DIM, torch.float32, seed=2 + rank))
        correlations.append(z1.T @ z2 / SOLO_ROWS)
    c = torch.stack(correlations).mean(dim=0)
    off_diagonal = c.square().sum() - c.diagonal().square().sum()
    expected = BARLOW_OPTIONS["scale_loss"] * (
        (1 - c.diagonal()).square().sum() + BARLOW_OPTIONS["lamb"] * off_diagonal
    )
    for rank, value in enumerate(values):
        assert_relative(value, expected, 1e-5, f"rank {rank}: solo-learn's loss")


def test_solo_vicreg_keeps_each_ranks_invariance_term(ranks):
    """The module docstring: solo-learn's ranks' values differ, and their mean is the adapter's (equal shards)."""
    (theirs0, ours0), (theirs1, ours1) = _solo_results(ranks, "solo_vicreg")
    assert not torch.equal(theirs0[0], theirs1[0])
    assert torch.equal(ours0[0], ours1[0])
    assert_relative((theirs0[0] + theirs1[0]) / 2, ours0[0], 1e-5, "mean of solo-learn's ranks")
