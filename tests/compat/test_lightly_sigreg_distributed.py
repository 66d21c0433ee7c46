"""``redundancy.compat.lightly``'s SIGReg, LeJEPALoss and MMCRLoss under 2 gloo processes, against one process and
against lightly's own modules.

Against the formulas (always): uneven shards, every rank's value that of one process on the concatenated batch and
its gradient W times its rows' (lightly's convention for ``gather_distributed=True``: after DDP's averaging, the
gradients of one process). Against lightly (when importable, see tests/compat/README.md): its SIGReg is the adapter's
to float32 rounding; its LeJEPALoss keeps each rank's own invariance term and its MMCRLoss each rank's own loss, so the
ranks' values differ from each other and from the global batch's; and in bfloat16 it counts the rows in bfloat16.
"""

import pytest
import torch

from benchmarks.common import spawn_gloo
from redundancy.compat import lightly
from redundancy.reference import lejepa_loss_reference
from redundancy.reference import mmcr_loss_reference
from redundancy.reference import sigreg_loss_reference
from tests.utils import assert_relative

pytestmark = pytest.mark.distributed

WORLD_SIZE = 2
SHARDS = (3, 8)  # uneven, different rows on each rank
DIM, SLICES, SEED = 6, 16, 9
UPSTREAM = 1.7


def _proj(views: int, rows: int, dtype=torch.float64, seed: int = 0) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    signal = torch.randn(rows, DIM, generator=generator, dtype=torch.float64)
    stacked = [signal + 0.5 * torch.randn(rows, DIM, generator=generator, dtype=torch.float64) for _ in range(views)]
    return torch.stack(stacked).to(dtype)


def _own(proj: torch.Tensor, rank: int, shards=SHARDS) -> torch.Tensor:
    return proj[:, sum(shards[:rank]) : sum(shards[: rank + 1])]


def _value_and_grads(call, *inputs):
    leaves = [tensor.clone().requires_grad_(True) for tensor in inputs]
    torch.manual_seed(SEED)
    value = call(*leaves)
    (UPSTREAM * value).backward()
    return value.detach(), *(leaf.grad for leaf in leaves)


def _adapters():
    return {
        "sigreg": lambda proj: lightly.SIGReg(num_vectors=SLICES, gather_distributed=True)(proj),
        "lejepa": lambda proj: lightly.LeJEPALoss(sigreg_num_vectors=SLICES, gather_distributed=True)(
            local_proj=proj[2:], global_proj=proj[:2]
        ),
        "mmcr": lambda proj: lightly.MMCRLoss(lmda=0.1)(proj[0].unsqueeze(1), proj[1].unsqueeze(1)),
    }


def _peers():
    from lightly.loss import LeJEPALoss
    from lightly.loss import MMCRLoss
    from lightly.loss import SIGReg

    return {
        "sigreg": lambda proj: SIGReg(num_vectors=SLICES, gather_distributed=True)(proj),
        "lejepa": lambda proj: LeJEPALoss(sigreg_num_vectors=SLICES, gather_distributed=True)(
            local_proj=proj[2:], global_proj=proj[:2]
        ),
        "mmcr": lambda proj: MMCRLoss(lmda=0.1)(proj[0].unsqueeze(1), proj[1].unsqueeze(1)),
    }


def _worker(rank: int, world_size: int) -> dict:
    proj = _own(_proj(4, sum(SHARDS)), rank)
    results = {"ours": {name: _value_and_grads(call, proj) for name, call in _adapters().items()}}
    try:
        peers = _peers()
    except ImportError as error:
        results["lightly"] = f"lightly is not importable: {error}"
        return results
    single = proj.float()
    results["lightly"] = {name: _value_and_grads(call, single) for name, call in peers.items()}
    results["ours_float32"] = {name: _value_and_grads(call, single) for name, call in _adapters().items()}
    # bfloat16: lightly all-reduces the row count in the input's dtype; 128 + 129 = 257 rows are counted as 256.
    rows = (128, 129)
    counted = _own(_proj(1, sum(rows), seed=3), rank, rows)[0].bfloat16()
    results["bfloat16"] = {
        name: _value_and_grads(call, counted)[0]
        for name, call in (("lightly", peers["sigreg"]), ("ours", _adapters()["sigreg"]))
    }
    return results


@pytest.fixture(scope="module")
def ranks(tmp_path_factory):
    return spawn_gloo(_worker, WORLD_SIZE, tmp_path_factory.mktemp("lightly_sigreg"), timeout=60.0)


def _one_process(name: str, proj: torch.Tensor):
    """One process on the concatenated batch, through the formulas of ``redundancy.reference``."""
    formulas = {
        "sigreg": lambda p: sigreg_loss_reference(p, num_slices=SLICES),
        "lejepa": lambda p: lejepa_loss_reference(p, lamb=0.05, global_views=2, num_slices=SLICES),
        "mmcr": lambda p: mmcr_loss_reference(p[:2], lmbda=0.1, normalize=False),
    }
    return _value_and_grads(formulas[name], proj)


@pytest.mark.parametrize("name", ["sigreg", "lejepa", "mmcr"])
def test_every_rank_has_the_global_batchs_loss_and_lightlys_gradient_scale(ranks, name):
    expected, expected_gradient = _one_process(name, _proj(4, sum(SHARDS)))
    for rank, results in enumerate(ranks):
        value, gradient = results["ours"][name]
        assert_relative(value, expected, 1e-10, f"{name}, rank {rank}")
        assert_relative(gradient, WORLD_SIZE * _own(expected_gradient, rank), 1e-9, f"{name}, rank {rank}")


def _lightly_results(ranks):
    if isinstance(ranks[0]["lightly"], str):
        pytest.skip(ranks[0]["lightly"])
    return [results["lightly"] for results in ranks]


def test_lightlys_sigreg_is_the_adapters(ranks):
    theirs = _lightly_results(ranks)
    for rank, results in enumerate(ranks):
        for what, mine, expected in zip(
            ("value", "gradient"), results["ours_float32"]["sigreg"], theirs[rank]["sigreg"], strict=True
        ):
            assert_relative(mine, expected, 1e-4, f"rank {rank}: {what}")


def test_lightlys_lejepa_keeps_each_ranks_own_invariance_term(ranks):
    theirs = _lightly_results(ranks)
    values = [results["lejepa"][0] for results in theirs]
    ours = ranks[0]["ours_float32"]["lejepa"][0]
    assert abs(values[0] - values[1]) > 1e-3 * abs(ours)  # the ranks disagree
    proj = _proj(4, sum(SHARDS)).float()
    for rank, value in enumerate(values):  # each rank: the global SIGReg, its own rows' invariance
        local = _own(proj, rank).double()
        local_invariance = (local[:2].mean(0) - local).square().mean()
        torch.manual_seed(SEED)
        sigreg = sigreg_loss_reference(proj.double(), num_slices=SLICES)
        assert_relative(value, 0.05 * sigreg + 0.95 * local_invariance, 1e-5, f"rank {rank}")


def test_lightlys_mmcr_is_each_ranks_own_loss(ranks):
    theirs = _lightly_results(ranks)
    proj = _proj(4, sum(SHARDS))
    for rank, results in enumerate(theirs):
        own = mmcr_loss_reference(_own(proj, rank)[:2], lmbda=0.1, normalize=False)
        assert_relative(results["mmcr"][0], own, 1e-5, f"rank {rank}")
        glob = mmcr_loss_reference(proj[:2], lmbda=0.1, normalize=False)
        assert abs(results["mmcr"][0] - glob) > 0.05 * abs(glob)


def test_lightly_counts_the_rows_of_a_bfloat16_batch_in_bfloat16(ranks):
    _lightly_results(ranks)
    rows = (128, 129)
    proj = _proj(1, sum(rows), seed=3)[0].bfloat16().double()
    torch.manual_seed(SEED)
    expected = sigreg_loss_reference(proj, num_slices=SLICES)
    for rank, results in enumerate(ranks):
        assert_relative(results["bfloat16"]["ours"], expected, 1e-5, f"ours, rank {rank}")
        assert abs(results["bfloat16"]["lightly"] - expected) > 1e-3 * expected, f"lightly, rank {rank}"
