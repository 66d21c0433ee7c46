"""The global-batch loss under torch.distributed: gloo processes on CPU with different, uneven shards per rank.

One spawned run per world size (2 and 3) evaluates every check and saves what each rank saw; the tests below
compare it with one process working on the concatenated batch. The statistics merge and the communication
model are tested in this process.
"""

import math
import os
import pathlib

import pytest
import torch
import torch.distributed as dist
from torch import nn

import redundancy
from benchmarks.common import spawn_gloo
from redundancy import cost
from redundancy._batch import local_moments
from redundancy._batch import merge_moments
from redundancy._exchange import HEADER_SIZE
from redundancy.reference import barlow_twins_loss_reference
from tests.utils import GRAD_TOL
from tests.utils import LOSS_RTOL
from tests.utils import assert_relative
from tests.utils import relative_error
from tests.utils import run_torchrun

pytestmark = pytest.mark.distributed

REPOSITORY = pathlib.Path(__file__).resolve().parents[1]

#: Rows per rank: uneven, with a rank of 1 row and one of 0 rows (not rank 0) for three ranks.
SHARDS = {2: (6, 9), 3: (1, 0, 10)}
DIM = 7
#: Option sets evaluated on every rank: each strategy with each algorithm it runs, each standardization.
CONFIGS = [
    dict(strategy="all_reduce", algorithm="auto"),
    dict(strategy="all_reduce", algorithm="cross", correction=1, off_diagonal_target=-1.0, eps=0.0),
    dict(strategy="all_reduce", algorithm="cross", standardize=False, lambd="auto", scale=0.5),
    dict(strategy="all_gather", algorithm="gram"),
    dict(strategy="all_gather", algorithm="cross", lambd=0.02),
    dict(strategy="all_gather", algorithm="gram", correction=1, off_diagonal_target=-1.0, eps=0.0),
    dict(strategy="all_gather", algorithm="auto", standardize=False, off_diagonal_target=0.5),
    dict(strategy="auto", algorithm="auto"),
    dict(strategy="auto", algorithm="gram", scale=2.0),
]
CONVENTIONS = ("global", "official")
UPSTREAM = 0.7  # the loss is multiplied by this before backward: an upstream gradient that is not 1
TRAINING_STRATEGIES = ("all_reduce", "all_gather")
TRAINING_STEPS = 5
LEARNING_RATE = 0.05
INPUT_DIM = 5
EVEN_ROWS = 4  # rows per rank of the batch on which the bytes sent are counted
OFFSET = 1e3  # added to float32 inputs: the loss must not move by more than 1e-4 relative


# ------------------------------------------------------------------------------ data shared by every process


def _global_views(world_size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The concatenated batch: two correlated float64 views with different means and scales per feature."""
    generator = torch.Generator().manual_seed(100 + world_size)
    n = sum(SHARDS[world_size])
    z1 = torch.randn(n, DIM, generator=generator, dtype=torch.float64) * 2.0 + 3.0
    mixing = torch.randn(DIM, DIM, generator=generator, dtype=torch.float64)
    z2 = z1 @ mixing + 0.5 * torch.randn(n, DIM, generator=generator, dtype=torch.float64) - 1.0
    return z1, z2


def _training_inputs(world_size: int) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(200 + world_size)
    n = sum(SHARDS[world_size])
    x = torch.randn(n, INPUT_DIM, generator=generator, dtype=torch.float64)
    return (
        x + 0.1 * torch.randn(n, INPUT_DIM, generator=generator, dtype=torch.float64),
        x + 0.1 * torch.randn(n, INPUT_DIM, generator=generator, dtype=torch.float64),
    )


def _on_float32_grid(z: torch.Tensor) -> torch.Tensor:
    """``z`` rounded to multiples of 2**-14 within (-16, 16): adding ``OFFSET`` to it is exact in float32."""
    return (z.clamp(-15, 15) * 2**14).round() / 2**14


def _rows(world_size: int, rank: int) -> slice:
    start = sum(SHARDS[world_size][:rank])
    return slice(start, start + SHARDS[world_size][rank])


def _encoder() -> nn.Module:
    torch.manual_seed(7)
    return nn.Sequential(nn.Linear(INPUT_DIM, 16), nn.Tanh(), nn.Linear(16, DIM)).double()


def _train(model: nn.Module, x1: torch.Tensor, x2: torch.Tensor, **options) -> None:
    optimizer = torch.optim.SGD(model.parameters(), lr=LEARNING_RATE)
    for _ in range(TRAINING_STEPS):
        optimizer.zero_grad()
        redundancy.barlow_twins_loss(model(x1), model(x2), **options).backward()
        optimizer.step()


# ------------------------------------------------------------------------------------------ the worker


class _RingTraffic:
    """Counts the bytes a rank sends through ``torch.distributed`` collectives, as ring algorithms send them."""

    def __init__(self, world_size: int) -> None:
        self.world_size = world_size
        self.bytes = 0.0
        self._all_gather, self._all_reduce = dist.all_gather, dist.all_reduce

    def all_gather(self, outputs, tensor, *args, **kwargs):
        self.bytes += (self.world_size - 1) * tensor.numel() * tensor.element_size()
        return self._all_gather(outputs, tensor, *args, **kwargs)

    def all_reduce(self, tensor, *args, **kwargs):
        self.bytes += 2 * (self.world_size - 1) / self.world_size * tensor.numel() * tensor.element_size()
        return self._all_reduce(tensor, *args, **kwargs)

    def __enter__(self):
        dist.all_gather, dist.all_reduce = self.all_gather, self.all_reduce
        return self

    def __exit__(self, *exc_info):
        dist.all_gather, dist.all_reduce = self._all_gather, self._all_reduce


def _error_message(function) -> str | None:
    try:
        function()
    except ValueError as error:
        return str(error)
    return None


def _worker(rank: int, world_size: int) -> dict:
    """Every check of one rank, run inside the gloo group (:func:`benchmarks.common.spawn_gloo`)."""
    rows = _rows(world_size, rank)
    z1_global, z2_global = _global_views(world_size)
    z1_local, z2_local = z1_global[rows], z2_global[rows]
    results = {"evaluations": {}}

    for index, config in enumerate(CONFIGS):
        for convention in CONVENTIONS:
            z1 = z1_local.clone().requires_grad_()
            z2 = z2_local.clone().requires_grad_()
            terms = redundancy.barlow_twins_terms(z1, z2, gradient_convention=convention, **config)
            (terms.loss * UPSTREAM).backward()
            results["evaluations"][index, convention] = {
                "terms": torch.stack([t.detach() for t in terms]),
                "grad_z1": z1.grad,
                "grad_z2": z2.grad,
            }

    results["module"] = redundancy.BarlowTwinsLoss(**CONFIGS[3])(z1_local, z2_local)
    results["local"] = (  # every rank calls; a rank of fewer than 2 rows makes every rank raise
        redundancy.barlow_twins_loss(z1_local, z2_local, distributed="local")
        if min(SHARDS[world_size]) >= 2
        else _error_message(lambda: redundancy.barlow_twins_loss(z1_local, z2_local, distributed="local"))
    )
    single_rank_groups = [dist.new_group([other]) for other in range(world_size)]  # every rank creates each
    results["local_single_rank_group"] = (
        redundancy.barlow_twins_loss(z1_local, z2_local, group=single_rank_groups[rank])
        if z1_local.shape[0] >= 2
        else None
    )

    mismatched = torch.randn(3, DIM + rank, dtype=torch.float64)
    results["dim_mismatch"] = _error_message(lambda: redundancy.barlow_twins_loss(mismatched, mismatched))
    results["options_mismatch"] = _error_message(
        lambda: redundancy.barlow_twins_loss(z1_local, z2_local, strategy=TRAINING_STRATEGIES[rank % 2])
    )
    tiny = torch.randn(1 if rank == 0 else 0, DIM, dtype=torch.float64)
    results["too_few_rows"] = _error_message(lambda: redundancy.barlow_twins_loss(tiny, tiny))

    grid1, grid2 = _on_float32_grid(z1_local), _on_float32_grid(z2_local)
    results["offset"] = {
        (strategy, offset): redundancy.barlow_twins_loss(
            (grid1 + offset).float(), (grid2 + offset).float(), strategy=strategy
        )
        for strategy in TRAINING_STRATEGIES
        for offset in (0.0, OFFSET)
    }

    results["traffic"] = {}
    even = torch.randn(EVEN_ROWS, DIM, 2, dtype=torch.float64).unbind(-1)  # the same rows on every rank
    for strategy in TRAINING_STRATEGIES:
        for standardize in (True, False):
            z1, z2 = (z.clone().requires_grad_() for z in even)
            with _RingTraffic(world_size) as traffic:
                loss = redundancy.barlow_twins_loss(z1, z2, strategy=strategy, standardize=standardize)
                loss.backward()
            results["traffic"][strategy, standardize] = traffic.bytes

    results["bfloat16"] = {}
    for strategy in TRAINING_STRATEGIES:
        z1 = z1_local.bfloat16().requires_grad_()
        z2 = z2_local.bfloat16().requires_grad_()
        loss = redundancy.barlow_twins_loss(z1, z2, strategy=strategy)
        loss.backward()
        results["bfloat16"][strategy] = (loss.detach(), z1.grad, z2.grad)

    x1_global, x2_global = _training_inputs(world_size)
    results["trained"] = {}
    for strategy in TRAINING_STRATEGIES:
        model = nn.parallel.DistributedDataParallel(_encoder())
        _train(model, x1_global[rows], x2_global[rows], strategy=strategy)
        results["trained"][strategy] = [p.detach().clone() for p in model.module.parameters()]

    return results


@pytest.fixture(scope="module", params=sorted(SHARDS), ids=lambda w: f"world{w}")
def spawned(request, tmp_path_factory):
    """``(world_size, [results of rank 0, rank 1, ...])`` of one spawned gloo run."""
    world_size = request.param
    return world_size, spawn_gloo(_worker, world_size, tmp_path_factory.mktemp(f"world{world_size}"))


def _reference(world_size: int, config: dict, z1: torch.Tensor | None = None, z2: torch.Tensor | None = None):
    """Loss, terms and input gradients (times UPSTREAM) of one process on the concatenated batch."""
    if z1 is None:
        z1, z2 = _global_views(world_size)
    z1, z2 = z1.clone().requires_grad_(), z2.clone().requires_grad_()
    options = {k: v for k, v in config.items() if k not in ("strategy", "algorithm")}
    loss = barlow_twins_loss_reference(z1, z2, **options)
    (loss * UPSTREAM).backward()
    return loss.detach(), z1.grad, z2.grad


# ------------------------------------------------------------------------------------------ the tests


def test_every_rank_returns_the_loss_of_the_concatenated_batch(spawned):
    world_size, ranks = spawned
    z1, z2 = _global_views(world_size)
    for index, config in enumerate(CONFIGS):
        expected_loss, _, _ = _reference(world_size, config)
        expected_terms = redundancy.barlow_twins_terms(z1, z2, **config)
        for convention in CONVENTIONS:
            first = ranks[0]["evaluations"][index, convention]["terms"]
            for rank, results in enumerate(ranks):
                terms = results["evaluations"][index, convention]["terms"]
                what = f"{config} {convention} rank {rank}"
                assert_relative(terms[0], expected_loss, 1e-10, f"loss, {what}")
                assert_relative(terms[1], expected_terms.invariance, 1e-10, f"invariance, {what}")
                assert_relative(terms[2], expected_terms.redundancy, 1e-10, f"redundancy, {what}")
                assert torch.equal(terms, first), f"rank {rank} differs from rank 0: {what}"


def test_barlow_twins_input_gradients_follow_the_gradient_convention(spawned):
    world_size, ranks = spawned
    for index, config in enumerate(CONFIGS):
        _, grad_z1, grad_z2 = _reference(world_size, config)
        for rank, results in enumerate(ranks):
            rows = _rows(world_size, rank)
            global_convention = results["evaluations"][index, "global"]
            official = results["evaluations"][index, "official"]
            for view, expected in (("grad_z1", grad_z1[rows]), ("grad_z2", grad_z2[rows])):
                what = f"{view} {config} rank {rank}"
                assert global_convention[view].shape == expected.shape, what
                if expected.numel() == 0:
                    continue
                assert_relative(global_convention[view], world_size * expected, 1e-9, f"global {what}")
                assert_relative(official[view], expected, 1e-9, f"official {what}")
                assert_relative(official[view] * world_size, global_convention[view], 1e-12, f"1/W {what}")


def test_a_large_offset_of_float32_inputs_leaves_the_global_loss_unchanged(spawned):
    world_size, ranks = spawned
    z1, z2 = (_on_float32_grid(z) for z in _global_views(world_size))
    expected = barlow_twins_loss_reference(z1, z2)
    for strategy in TRAINING_STRATEGIES:
        for rank, results in enumerate(ranks):
            for offset in (0.0, OFFSET):
                loss = results["offset"][strategy, offset]
                assert loss.dtype == torch.float32
                assert_relative(loss, expected, 1e-4, f"float32 loss with offset {offset}, {strategy} rank {rank}")


def test_barlow_twins_bfloat16_inputs_give_a_float32_loss_and_bfloat16_gradients(spawned):
    world_size, ranks = spawned
    z1, z2 = (z.bfloat16().requires_grad_() for z in _global_views(world_size))
    expected = barlow_twins_loss_reference(z1, z2, upcast=True)
    expected.backward()
    rtol, atol = GRAD_TOL[torch.bfloat16]
    for strategy in TRAINING_STRATEGIES:
        for rank, results in enumerate(ranks):
            loss, grad_z1, grad_z2 = results["bfloat16"][strategy]
            what = f"bfloat16, {strategy} rank {rank}"
            assert loss.dtype == torch.float32 and grad_z1.dtype == grad_z2.dtype == torch.bfloat16, what
            assert_relative(loss, expected, LOSS_RTOL[torch.bfloat16], f"loss, {what}")
            rows = _rows(world_size, rank)
            for grad, reference in ((grad_z1, z1.grad[rows]), (grad_z2, z2.grad[rows])):
                torch.testing.assert_close(
                    grad.double(), (world_size * reference.double()).bfloat16().double(), rtol=rtol, atol=atol
                )


def test_communication_bytes_is_what_the_collectives_send(spawned):
    world_size, ranks = spawned
    for strategy in TRAINING_STRATEGIES:
        for standardize in (True, False):
            expected = cost.communication_bytes(
                strategy, EVEN_ROWS * world_size, DIM, world_size, torch.float64, standardize=standardize
            )
            for results in ranks:
                sent = results["traffic"][strategy, standardize]
                assert sent == pytest.approx(expected, abs=4 * 8), f"{strategy}, standardize={standardize}"


def test_barlow_twins_ddp_training_matches_one_process_on_the_concatenated_batch(spawned):
    world_size, ranks = spawned
    x1, x2 = _training_inputs(world_size)
    model = _encoder()
    initial = [p.detach().clone() for p in model.parameters()]
    _train(model, x1, x2)
    expected = list(model.parameters())
    assert max(relative_error(p, q) for p, q in zip(expected, initial, strict=True)) > 1e-3, "training must move"
    for strategy in TRAINING_STRATEGIES:
        for rank, results in enumerate(ranks):
            for trained, single in zip(results["trained"][strategy], expected, strict=True):
                assert_relative(trained, single, 1e-6, f"parameters after DDP, {strategy} rank {rank}")


def test_barlow_twins_module_equals_function(spawned):
    _, ranks = spawned
    for rank, results in enumerate(ranks):
        assert torch.equal(results["module"], ranks[rank]["evaluations"][3, "global"]["terms"][0])


def test_barlow_twins_local_mode_is_the_per_rank_single_process_loss(spawned):
    world_size, ranks = spawned
    z1, z2 = _global_views(world_size)
    for rank, results in enumerate(ranks):
        rows = _rows(world_size, rank)
        expected = barlow_twins_loss_reference(z1[rows], z2[rows]) if SHARDS[world_size][rank] >= 2 else None
        if SHARDS[world_size][rank] >= 2:
            assert_relative(results["local_single_rank_group"], expected, 1e-10, f"one-rank group, rank {rank}")
        if min(SHARDS[world_size]) >= 2:
            assert_relative(results["local"], expected, 1e-10, f"local loss, rank {rank}")
        else:  # the short rank's error, raised on every rank
            assert "at least 2 rows" in results["local"] and "(on rank" in results["local"], results["local"]


def test_a_feature_dimension_that_differs_between_ranks_raises_on_every_rank(spawned):
    world_size, ranks = spawned
    for results in ranks:
        message = results["dim_mismatch"]
        assert message is not None and "same number of features D on every rank" in message
        assert str(list(range(DIM, DIM + world_size))) in message


def test_barlow_twins_options_that_differ_between_ranks_raise_on_every_rank(spawned):
    _, ranks = spawned
    for results in ranks:
        message = results["options_mismatch"]
        assert message is not None and "strategy must be the same on every rank" in message


def test_barlow_twins_a_global_batch_of_one_row_raises_on_every_rank(spawned):
    _, ranks = spawned
    for results in ranks:
        assert results["too_few_rows"] is not None and "global batch" in results["too_few_rows"]


# ------------------------------------------------------------------------------ in this process


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("counts", [(10,), (4, 0, 6), (1, 1, 8), (3, 3, 3, 1), (0, 9, 0, 1)])
def test_merged_moments_equal_one_pass(counts, dtype):
    z = torch.randn(sum(counts), 6, dtype=torch.float64) * 3 + 2
    parts = torch.split(z.to(dtype), list(counts))
    moments = [local_moments(part) for part in parts]
    mean, m2 = merge_moments(counts, torch.stack([m[0] for m in moments]), torch.stack([m[1] for m in moments]))
    rtol = 1e-12 if dtype == torch.float64 else 1e-5
    assert_relative(mean, z.mean(0), rtol, "mean")
    assert_relative(m2, z.var(0, correction=0) * z.shape[0], rtol, "M2")


def test_merged_moments_are_robust_to_a_large_offset():
    # Adding the offset to values on the grid is exact in float32, so only the merge can lose precision.
    z = _on_float32_grid(torch.randn(4000, 5, dtype=torch.float64) * 4)
    counts = (1000, 0, 1, 2999)
    for offset in (0.0, OFFSET):
        parts = torch.split((z + offset).float(), list(counts))
        moments = [local_moments(part) for part in parts]
        mean, m2 = merge_moments(counts, torch.stack([m[0] for m in moments]), torch.stack([m[1] for m in moments]))
        assert_relative(m2, z.var(0, correction=0) * z.shape[0], 1e-5, f"M2 with offset {offset}")
        assert_relative(mean - offset, z.mean(0), 1e-3, f"mean with offset {offset}")


def test_naive_moments_would_fail_the_offset_check():
    """The offset test above can fail: E[z²] - E[z]² in float32 loses the variance under an offset of 1e3."""
    z = _on_float32_grid(torch.randn(4000, 5, dtype=torch.float64) * 4)
    shifted = (z + OFFSET).float()
    naive = (shifted.square().mean(0) - shifted.mean(0).square()) * z.shape[0]
    assert relative_error(naive, z.var(0, correction=0) * z.shape[0]) > 1e-3


@pytest.mark.parametrize("world_size", [2, 8])
def test_all_gather_moves_about_n_over_d_of_the_bytes_of_all_reduce(world_size):
    all_gather = cost.communication_bytes("all_gather", 2048, 8192, world_size, torch.float32)
    all_reduce = cost.communication_bytes("all_reduce", 2048, 8192, world_size, torch.float32)
    assert all_gather <= 0.3 * all_reduce


def test_communication_bytes_counts_the_formula():
    n, d, w = 100, 30, 3  # ceil(100 / 3) = 34 padded rows per rank
    shapes = (w - 1) * HEADER_SIZE * 8  # every rank's header of float64 values
    assert cost.communication_bytes("all_gather", n, d, w, torch.float64, standardize=False) == (
        shapes + (w - 1) * 2 * 34 * d * 8
    )
    assert cost.communication_bytes("all_reduce", n, d, w, torch.bfloat16, standardize=False) == (
        shapes + math.ceil(2 * (w - 1) * d * d / w) * 4
    )
    assert cost.communication_bytes("all_gather", n, d, 1) == 0
    with pytest.raises(ValueError, match="strategy"):
        cost.communication_bytes("ring", n, d, w)
    with pytest.raises(ValueError, match="world_size"):
        cost.communication_bytes("all_gather", n, d, 0)


def test_barlow_twins_single_process_ignores_the_distributed_options():
    z1, z2 = _global_views(2)
    expected = redundancy.barlow_twins_loss(z1, z2)
    for options in (
        dict(distributed="local"),
        dict(strategy="all_gather", gradient_convention="official"),
        dict(strategy="all_reduce"),
    ):
        assert torch.equal(redundancy.barlow_twins_loss(z1, z2, **options), expected)


@pytest.mark.parametrize(
    ("options", "name"),
    [
        (dict(distributed="globally"), "distributed"),
        (dict(strategy="ring"), "strategy"),
        (dict(gradient_convention="mean"), "gradient_convention"),
        (dict(strategy="all_reduce", algorithm="gram"), "all_reduce"),
    ],
)
def test_barlow_twins_bad_distributed_options_raise(options, name):
    z = torch.randn(4, 3)
    with pytest.raises(ValueError, match=name):
        redundancy.barlow_twins_loss(z, z, **options)
    with pytest.raises(ValueError, match=name):
        redundancy.BarlowTwinsLoss(**options)


def test_group_must_be_a_process_group():
    z = torch.randn(4, 3)
    with pytest.raises(TypeError, match="group"):
        redundancy.barlow_twins_loss(z, z, group="world")


def test_example_runs_under_torchrun():
    environment = dict(os.environ, PYTHONPATH=str(REPOSITORY), OMP_NUM_THREADS="1")
    completed = run_torchrun(
        ["--nproc_per_node=2", str(REPOSITORY / "examples" / "ddp_barlow_twins.py"), "--steps", "3"],
        env=environment,
        timeout=120,
    )
    assert completed.returncode == 0, completed.stderr[-3000:]
    losses = [line for line in completed.stdout.splitlines() if line.startswith("step")]
    assert len(losses) == 3, completed.stdout
    assert all(math.isfinite(float(line.split()[-1])) for line in losses), completed.stdout


def _compiled_first(rank: int, world_size: int) -> list:
    """The first call of the process is compiled (``fullgraph=True``): nothing has named the group yet."""
    from redundancy import _exchange

    _exchange._FINGERPRINTS.clear()
    torch._dynamo.reset()
    z1, z2 = _global_views(world_size)
    rows = slice(6 * rank, 6 * (rank + 1))  # equal rows, as a compiled call needs
    results = []
    for dynamic in (False, True):
        torch._dynamo.reset()
        _exchange._FINGERPRINTS.clear()
        compiled = torch.compile(redundancy.barlow_twins_loss, fullgraph=True, dynamic=dynamic, backend="eager")
        results.append(compiled(z1[rows], z2[rows]))
    return results


def test_a_compiled_first_call_in_a_process_group_traces_without_a_graph_break(tmp_path):
    """The group's fingerprint is computed while the first compiled call is traced (a constant to the tracer)."""
    z1, z2 = _global_views(2)
    expected = redundancy.barlow_twins_loss(z1[:12], z2[:12])
    for rank, results in enumerate(spawn_gloo(_compiled_first, 2, tmp_path)):
        for value in results:
            assert_relative(value, expected, 1e-10, f"rank {rank}")
