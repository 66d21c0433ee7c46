"""``redundancy.compat.lightly`` under 2 gloo processes keeps lightly's gradient scale.

With ``gather_distributed=True`` lightly's Barlow Twins all-reduces C through ``torch.distributed.nn`` (whose
backward sums the ranks' gradients) and its VICReg gathers the embeddings through a gather whose backward does the
same: each rank's input gradient is W·∂L/∂z_r (``gradient_convention="global"``), so that after DDP's averaging the
parameter gradients are those of one process on the whole batch. With ``gather_distributed=False`` each rank
computes its own loss.

Against the formulas (always): uneven, different shards, compared with one process on the concatenated batch.
Against lightly's own modules (when lightly is installed, see tests/compat/README.md): on inputs where lightly's
per-rank statistics are those of the global batch, so that only the convention can differ (identical shards for
Barlow Twins; different shards of equal size for VICReg, whose statistics lightly gathers).
"""

import pytest
import torch

from benchmarks.common import spawn_gloo
from redundancy.compat import lightly
from redundancy.reference import barlow_twins_loss_reference
from redundancy.reference import batch_standardize_reference
from redundancy.reference import vicreg_loss_reference
from tests.utils import assert_relative

pytestmark = pytest.mark.distributed

WORLD_SIZE = 2
#: Rows per rank for the comparison with the formulas: uneven, and different rows on each rank.
SHARDS = (3, 8)
DIM = 6
ROWS, FEATURES = 16, 8
UPSTREAM = 1.7  # a non-unit gradient of the loss


def _views(rows: int, dim: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    scales = torch.linspace(0.3, 1.5, dim, dtype=torch.float64)
    z1 = torch.randn(rows, dim, generator=generator, dtype=torch.float64) * scales
    z2 = 0.7 * z1 + 0.5 * torch.randn(rows, dim, generator=generator, dtype=torch.float64) * scales
    return z1, z2


def _rows(rank: int) -> slice:
    start = sum(SHARDS[:rank])
    return slice(start, start + SHARDS[rank])


def _value_and_grads(criterion, z1: torch.Tensor, z2: torch.Tensor):
    z1, z2 = z1.clone().requires_grad_(), z2.clone().requires_grad_()
    value = criterion(z1, z2)
    (UPSTREAM * value).backward()
    return value.detach(), z1.grad, z2.grad


def _worker(rank: int, world_size: int) -> dict:
    z1, z2 = _views(sum(SHARDS), DIM, seed=0)
    rows = _rows(rank)
    results = {
        "barlow": _value_and_grads(lightly.BarlowTwinsLoss(gather_distributed=True), z1[rows], z2[rows]),
        "vicreg": _value_and_grads(lightly.VICRegLoss(gather_distributed=True), z1[rows], z2[rows]),
        "barlow_local": _value_and_grads(lightly.BarlowTwinsLoss(), z1[rows], z2[rows]),
    }
    try:
        from lightly.loss import BarlowTwinsLoss
        from lightly.loss import VICRegLoss
    except ImportError:
        return results
    same1, same2 = _views(ROWS, FEATURES, seed=1)
    results["lightly_barlow"] = (
        _value_and_grads(BarlowTwinsLoss(gather_distributed=True), same1, same2),
        _value_and_grads(lightly.BarlowTwinsLoss(gather_distributed=True), same1, same2),
    )
    own1, own2 = _views(ROWS, FEATURES, seed=2 + rank)
    results["lightly_vicreg"] = (
        _value_and_grads(VICRegLoss(gather_distributed=True), own1, own2),
        _value_and_grads(lightly.VICRegLoss(gather_distributed=True), own1, own2),
    )
    # Different shards: lightly's per-rank statistics (module docstring); a truthy non-bool flag gathers.
    results["lightly_barlow_own"] = {
        flag: BarlowTwinsLoss(gather_distributed=flag)(own1, own2) for flag in (True, False, "false")
    }
    return results


@pytest.fixture(scope="module")
def ranks(tmp_path_factory):
    return spawn_gloo(_worker, WORLD_SIZE, tmp_path_factory.mktemp("lightly_world2"))


def _reference(reference, z1: torch.Tensor, z2: torch.Tensor):
    z1, z2 = z1.clone().requires_grad_(), z2.clone().requires_grad_()
    value = reference(z1, z2)
    return (value.detach(), *torch.autograd.grad(UPSTREAM * value, (z1, z2)))


@pytest.mark.parametrize(
    ("key", "reference"),
    [
        ("barlow", lambda a, b: barlow_twins_loss_reference(a, b, lambd=5e-3)),
        ("vicreg", vicreg_loss_reference),
    ],
)
def test_gather_distributed_gradients_are_world_size_times_those_of_the_global_loss(ranks, key, reference):
    value, grad1, grad2 = _reference(reference, *_views(sum(SHARDS), DIM, seed=0))
    for rank, results in enumerate(ranks):
        actual_value, actual1, actual2 = results[key]
        rows = _rows(rank)
        assert_relative(actual_value, value, 1e-10, f"{key}, rank {rank}: loss")
        assert_relative(actual1, WORLD_SIZE * grad1[rows], 1e-9, f"{key}, rank {rank}: dz1")
        assert_relative(actual2, WORLD_SIZE * grad2[rows], 1e-9, f"{key}, rank {rank}: dz2")


def test_without_gather_distributed_each_rank_has_its_own_loss(ranks):
    z1, z2 = _views(sum(SHARDS), DIM, seed=0)
    for rank, results in enumerate(ranks):
        rows = _rows(rank)
        value, grad1, grad2 = _reference(lambda a, b: barlow_twins_loss_reference(a, b, lambd=5e-3), z1[rows], z2[rows])
        assert_relative(results["barlow_local"][0], value, 1e-10, f"rank {rank}: loss")
        assert_relative(results["barlow_local"][1], grad1, 1e-9, f"rank {rank}: dz1")
        assert_relative(results["barlow_local"][2], grad2, 1e-9, f"rank {rank}: dz2")


@pytest.mark.parametrize("key", ["lightly_barlow", "lightly_vicreg"])
def test_gradients_equal_lightlys(ranks, key):
    if key not in ranks[0]:
        pytest.skip("lightly is not installed (see tests/compat/README.md)")
    for rank, results in enumerate(ranks):
        theirs, ours = results[key]
        if key == "lightly_barlow":  # the one intended difference is the statistics, identical here
            assert_relative(ours[0], theirs[0], 1e-10, f"rank {rank}: loss")
        for name, mine, want in zip(("dz1", "dz2"), ours[1:], theirs[1:], strict=True):
            assert_relative(mine, want, 1e-10, f"{key}, rank {rank}: {name}")


def _lightly_results(ranks, key):
    if key not in ranks[0]:
        pytest.skip("lightly is not installed (see tests/compat/README.md)")
    return [results[key] for results in ranks]


def test_lightly_barlow_twins_averages_the_ranks_cross_correlations(ranks):
    """What the module docstring says lightly computes: ``C = ½ (C₀ + C₁)``, each ``C_r`` from rank r's rows
    standardized by rank r's statistics; and ``gather_distributed="false"`` gathers, being true."""
    values = _lightly_results(ranks, "lightly_barlow_own")
    correlations = []
    for rank in range(WORLD_SIZE):
        z1, z2 = (batch_standardize_reference(z) for z in _views(ROWS, FEATURES, seed=2 + rank))
        correlations.append(z1.T @ z2 / ROWS)
    c = torch.stack(correlations).mean(dim=0)
    off_diagonal = c.square().sum() - c.diagonal().square().sum()
    expected = (1 - c.diagonal()).square().sum() + 5e-3 * off_diagonal
    for rank, value in enumerate(values):
        assert_relative(value[True], expected, 1e-10, f"rank {rank}: lightly's loss")
        assert torch.equal(value["false"], value[True])
        assert not torch.equal(value[False], value[True])


def test_lightly_vicreg_keeps_each_ranks_invariance_term(ranks):
    """The module docstring: lightly's ranks' values differ, and their mean is the adapter's (equal shards)."""
    (theirs0, ours0), (theirs1, ours1) = _lightly_results(ranks, "lightly_vicreg")
    assert not torch.equal(theirs0[0], theirs1[0])
    assert torch.equal(ours0[0], ours1[0])
    assert_relative((theirs0[0] + theirs1[0]) / 2, ours0[0], 1e-10, "mean of lightly's ranks")
