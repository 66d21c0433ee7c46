"""The global-batch VICReg and regularizers under torch.distributed: gloo processes on CPU, uneven shards per rank.

One spawned run per world size (2 and 3, :func:`benchmarks.common.spawn_gloo`) evaluates every check and returns what
each rank saw; the tests below compare it with one process working on the concatenated batch.
"""

import functools

import pytest
import torch
from torch import nn

import redundancy
from benchmarks.common import spawn_gloo
from redundancy.compat import lightly
from redundancy.compat import solo
from redundancy.reference import barlow_twins_loss_reference
from redundancy.reference import decov_loss_reference
from redundancy.reference import total_coding_rate_reference
from redundancy.reference import vicreg_loss_reference
from redundancy.reference import vicreg_terms_reference
from tests.utils import GRAD_TOL
from tests.utils import LOSS_RTOL
from tests.utils import assert_relative
from tests.utils import relative_error

pytestmark = pytest.mark.distributed

#: Rows per rank: uneven; for three ranks rank 0 holds no row and rank 1 a single one.
SHARDS = {2: (3, 8), 3: (0, 1, 9)}
DIM = 6
#: Option sets of vicreg_terms evaluated on every rank; gamma and the feature scales keep some hinges active.
CONFIGS = [
    dict(),
    dict(algorithm="gram", correction=0, variance_reduction="sum", gamma=1.5),
    dict(algorithm="cross", eps=1e-3, invariance_weight=3.0, variance_weight=5.0, covariance_weight=2.0),
]
WEIGHTS = ("invariance_weight", "variance_weight", "covariance_weight", "algorithm")
CONVENTIONS = ("global", "official")
#: One-view losses: (the function with its options, its reference, the view it is given). A VICReg term of one
#: view is the reference's term of the pair (z, z): the mean of two equal hinges, half the sum of two covariances.
ONE_VIEW = {
    "vicreg_variance": (
        functools.partial(redundancy.vicreg_variance_loss, gamma=1.5, gradient_convention="official"),
        lambda z: vicreg_terms_reference(z, z, gamma=1.5)[1],
        0,
    ),
    "vicreg_covariance": (
        functools.partial(redundancy.vicreg_covariance_loss, algorithm="gram"),
        lambda z: vicreg_terms_reference(z, z)[2] / 2,
        1,
    ),
    "decov": (
        functools.partial(redundancy.decov_loss, correction=1, gradient_convention="official"),
        functools.partial(decov_loss_reference, correction=1),
        0,
    ),
    "total_coding_rate": (
        functools.partial(redundancy.total_coding_rate, algorithm="gram"),
        total_coding_rate_reference,
        1,
    ),
}
UPSTREAM = 0.7  # the loss is multiplied by this before backward: an upstream gradient that is not 1
TRAINING_STEPS = 4
LEARNING_RATE = 0.02
INPUT_DIM = 5


# ------------------------------------------------------------------------------ data shared by every process


def _global_views(world_size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The concatenated batch: two correlated float64 views, features with standard deviations from 0.3 to 2."""
    generator = torch.Generator().manual_seed(300 + world_size)
    n = sum(SHARDS[world_size])
    scales = torch.linspace(0.3, 2.0, DIM, dtype=torch.float64)
    z1 = torch.randn(n, DIM, generator=generator, dtype=torch.float64) * scales + 1.0
    z2 = 0.8 * z1 + 0.6 * torch.randn(n, DIM, generator=generator, dtype=torch.float64) * scales - 0.5
    return z1, z2


def _training_inputs(world_size: int) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(400 + world_size)
    n = sum(SHARDS[world_size])
    x = torch.randn(n, INPUT_DIM, generator=generator, dtype=torch.float64)
    noise = [0.1 * torch.randn(n, INPUT_DIM, generator=generator, dtype=torch.float64) for _ in range(2)]
    return x + noise[0], x + noise[1]


def _rows(world_size: int, rank: int) -> slice:
    start = sum(SHARDS[world_size][:rank])
    return slice(start, start + SHARDS[world_size][rank])


def _encoder() -> nn.Module:
    torch.manual_seed(11)
    return nn.Sequential(nn.Linear(INPUT_DIM, 16), nn.Tanh(), nn.Linear(16, DIM)).double()


def _train(model: nn.Module, x1: torch.Tensor, x2: torch.Tensor) -> None:
    optimizer = torch.optim.SGD(model.parameters(), lr=LEARNING_RATE)
    for _ in range(TRAINING_STEPS):
        optimizer.zero_grad()
        redundancy.vicreg_loss(model(x1), model(x2), gamma=1.5).backward()
        optimizer.step()


def _value_and_grad(function, *views: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """``function(*views)`` and the gradients of ``UPSTREAM · function(*views)`` with respect to the views."""
    views = [view.clone().requires_grad_() for view in views]
    value = function(*views)
    loss = value.loss if isinstance(value, tuple) else value
    (loss * UPSTREAM).backward()
    detached = torch.stack([t.detach() for t in value]) if isinstance(value, tuple) else value.detach()
    return detached, [view.grad for view in views]


def _error_message(function) -> str | None:
    try:
        function()
    except ValueError as error:
        return str(error)
    return None


# ------------------------------------------------------------------------------------------ the worker


def _worker(rank: int, world_size: int) -> dict:
    """Every check of one rank, run inside the gloo group."""
    rows = _rows(world_size, rank)
    z1_global, z2_global = _global_views(world_size)
    z1, z2 = z1_global[rows], z2_global[rows]
    results = {"terms": {}}

    for index, config in enumerate(CONFIGS):
        for convention in CONVENTIONS:
            terms = functools.partial(redundancy.vicreg_terms, gradient_convention=convention, **config)
            results["terms"][index, convention] = _value_and_grad(terms, z1, z2)
    results["module"] = redundancy.VICRegLoss(**CONFIGS[1])(z1, z2)
    results["bfloat16"] = _value_and_grad(redundancy.vicreg_loss, z1.bfloat16(), z2.bfloat16())
    results["one_view"] = {
        name: _value_and_grad(function, (z1, z2)[view]) for name, (function, _, view) in ONE_VIEW.items()
    }
    results["one_view_modules"] = {
        "decov": redundancy.DeCovLoss(correction=1)(z1),
        "total_coding_rate": redundancy.TotalCodingRate(algorithm="gram")(z2),
    }

    def per_rank(criterion):
        """``criterion(z1, z2)`` of a per-rank loss, or the error all ranks raise when one has fewer than 2 rows."""
        return criterion(z1, z2) if min(SHARDS[world_size]) >= 2 else _error_message(lambda: criterion(z1, z2))

    results["local"] = per_rank(functools.partial(redundancy.vicreg_loss, distributed="local"))
    for name, criterion in (("lightly_vicreg", lightly.VICRegLoss), ("lightly_barlow_twins", lightly.BarlowTwinsLoss)):
        results[name] = {
            True: criterion(gather_distributed=True)(z1, z2),
            False: per_rank(criterion(gather_distributed=False)),
        }
    results["solo_vicreg"] = solo.vicreg_loss_func(z1, z2)

    results["options_mismatch"] = _error_message(lambda: redundancy.vicreg_loss(z1, z2, gamma=1.0 + rank))
    tiny = torch.randn(1 if rank == world_size - 1 else 0, DIM, dtype=torch.float64)
    results["too_few_rows"] = _error_message(lambda: redundancy.vicreg_loss(tiny, tiny))

    x1, x2 = _training_inputs(world_size)
    model = nn.parallel.DistributedDataParallel(_encoder())
    _train(model, x1[rows], x2[rows])
    results["trained"] = [p.detach().clone() for p in model.module.parameters()]
    return results


@pytest.fixture(scope="module", params=sorted(SHARDS), ids=lambda w: f"world{w}")
def spawned(request, tmp_path_factory):
    """``(world_size, [results of rank 0, rank 1, ...])`` of one spawned gloo run."""
    world_size = request.param
    return world_size, spawn_gloo(_worker, world_size, tmp_path_factory.mktemp(f"vicreg_world{world_size}"))


def _reference_options(config: dict) -> dict:
    return {name: value for name, value in config.items() if name not in WEIGHTS}


# ------------------------------------------------------------------------------------------ the tests


def test_every_rank_returns_the_terms_of_the_concatenated_batch(spawned):
    world_size, ranks = spawned
    z1, z2 = _global_views(world_size)
    for index, config in enumerate(CONFIGS):
        expected_loss = vicreg_loss_reference(z1, z2, **{k: v for k, v in config.items() if k != "algorithm"})
        expected_terms = vicreg_terms_reference(z1, z2, **_reference_options(config))
        for convention in CONVENTIONS:
            first = ranks[0]["terms"][index, convention][0]
            for rank, results in enumerate(ranks):
                terms = results["terms"][index, convention][0]
                what = f"{config} {convention} rank {rank}"
                assert_relative(terms[0], expected_loss, 1e-10, f"loss, {what}")
                for position, name in enumerate(("invariance", "variance", "covariance"), start=1):
                    assert_relative(terms[position], expected_terms[position - 1], 1e-10, f"{name}, {what}")
                assert torch.equal(terms, first), f"rank {rank} differs from rank 0: {what}"


def test_vicreg_input_gradients_follow_the_gradient_convention(spawned):
    world_size, ranks = spawned
    for index, config in enumerate(CONFIGS):
        reference = functools.partial(vicreg_loss_reference, **{k: v for k, v in config.items() if k != "algorithm"})
        _, (grad_z1, grad_z2) = _value_and_grad(reference, *_global_views(world_size))
        for rank, results in enumerate(ranks):
            rows = _rows(world_size, rank)
            global_grads = results["terms"][index, "global"][1]
            official_grads = results["terms"][index, "official"][1]
            for view, expected, global_grad, official in zip(
                ("z1", "z2"), (grad_z1[rows], grad_z2[rows]), global_grads, official_grads, strict=True
            ):
                what = f"grad of {view}, {config} rank {rank}"
                assert global_grad.shape == official.shape == expected.shape, what
                if expected.numel() == 0:
                    continue
                assert_relative(global_grad, world_size * expected, 1e-9, f"global {what}")
                assert_relative(official, expected, 1e-9, f"official {what}")
                assert_relative(official * world_size, global_grad, 1e-12, f"1/W, {what}")


@pytest.mark.parametrize("name", list(ONE_VIEW))
def test_one_view_regularizers_are_those_of_the_concatenated_batch(spawned, name):
    world_size, ranks = spawned
    function, reference, view = ONE_VIEW[name]
    expected, (expected_grad,) = _value_and_grad(reference, _global_views(world_size)[view])
    factor = 1 if function.keywords.get("gradient_convention") == "official" else world_size
    for rank, results in enumerate(ranks):
        value, (grad,) = results["one_view"][name]
        assert_relative(value, expected, 1e-10, f"{name}, rank {rank}")
        assert grad.shape == (SHARDS[world_size][rank], DIM)
        if grad.numel():
            rows = _rows(world_size, rank)
            assert_relative(grad, factor * expected_grad[rows], 1e-9, f"gradient of {name}, rank {rank}")
        if name in results["one_view_modules"]:
            assert_relative(results["one_view_modules"][name], expected, 1e-10, f"{name} module, rank {rank}")


def test_vicreg_bfloat16_inputs_give_a_float32_loss_and_bfloat16_gradients(spawned):
    world_size, ranks = spawned
    views = [z.bfloat16() for z in _global_views(world_size)]
    expected, expected_grads = _value_and_grad(functools.partial(vicreg_loss_reference, upcast=True), *views)
    rtol, atol = GRAD_TOL[torch.bfloat16]
    for rank, results in enumerate(ranks):
        loss, grads = results["bfloat16"]
        assert loss.dtype == torch.float32 and all(grad.dtype == torch.bfloat16 for grad in grads), f"rank {rank}"
        assert_relative(loss, expected, LOSS_RTOL[torch.bfloat16], f"bfloat16 loss, rank {rank}")
        rows = _rows(world_size, rank)
        for grad, reference in zip(grads, expected_grads, strict=True):
            expected_grad = (world_size * reference[rows].double()).bfloat16().double()
            torch.testing.assert_close(grad.double(), expected_grad, rtol=rtol, atol=atol)


def test_vicreg_ddp_training_matches_one_process_on_the_concatenated_batch(spawned):
    world_size, ranks = spawned
    x1, x2 = _training_inputs(world_size)
    model = _encoder()
    initial = [p.detach().clone() for p in model.parameters()]
    _train(model, x1, x2)
    expected = list(model.parameters())
    assert max(relative_error(p, q) for p, q in zip(expected, initial, strict=True)) > 1e-3, "training must move"
    for rank, results in enumerate(ranks):
        for trained, single in zip(results["trained"], expected, strict=True):
            assert_relative(trained, single, 1e-6, f"parameters after DDP, rank {rank}")


def test_vicreg_module_equals_function_on_every_rank(spawned):
    _, ranks = spawned
    for rank, results in enumerate(ranks):
        assert torch.equal(results["module"], results["terms"][1, "global"][0][0]), f"rank {rank}"


def _per_rank_or_error(world_size: int, rank: int, actual, reference) -> None:
    """``actual`` is ``reference`` of this rank's own rows, or, when a rank has fewer than 2 rows, the error that
    every rank raises (naming the short rank)."""
    if min(SHARDS[world_size]) >= 2:
        rows = _rows(world_size, rank)
        z1, z2 = _global_views(world_size)
        assert_relative(actual, reference(z1[rows], z2[rows]), 1e-10, f"per-rank loss, rank {rank}")
    else:
        assert "at least 2 rows" in actual and "(on rank" in actual, actual


def test_vicreg_local_mode_is_the_per_rank_single_process_loss(spawned):
    world_size, ranks = spawned
    for rank, results in enumerate(ranks):
        _per_rank_or_error(world_size, rank, results["local"], vicreg_loss_reference)


def test_lightly_gather_distributed_selects_global_or_per_rank(spawned):
    world_size, ranks = spawned
    z1, z2 = _global_views(world_size)
    for rank, results in enumerate(ranks):
        assert_relative(results["lightly_vicreg"][True], vicreg_loss_reference(z1, z2), 1e-10, f"VICReg rank {rank}")
        expected = barlow_twins_loss_reference(z1, z2, lambd=5e-3)
        assert_relative(results["lightly_barlow_twins"][True], expected, 1e-10, f"Barlow Twins rank {rank}")
        _per_rank_or_error(world_size, rank, results["lightly_vicreg"][False], vicreg_loss_reference)
        _per_rank_or_error(
            world_size,
            rank,
            results["lightly_barlow_twins"][False],
            lambda a, b: barlow_twins_loss_reference(a, b, lambd=5e-3),
        )


def test_solo_vicreg_is_the_loss_of_the_concatenated_batch(spawned):
    world_size, ranks = spawned
    expected = vicreg_loss_reference(*_global_views(world_size), variance_reduction="sum")
    for rank, results in enumerate(ranks):
        assert_relative(results["solo_vicreg"], expected, 1e-10, f"rank {rank}")


def test_vicreg_options_that_differ_between_ranks_raise_on_every_rank(spawned):
    _, ranks = spawned
    for results in ranks:
        message = results["options_mismatch"]
        assert message is not None and "gamma must be the same on every rank" in message


def test_vicreg_a_global_batch_of_one_row_raises_on_every_rank(spawned):
    _, ranks = spawned
    for results in ranks:
        assert results["too_few_rows"] is not None and "global batch" in results["too_few_rows"]


# ------------------------------------------------------------------------------ in this process


def test_vicreg_single_process_ignores_the_distributed_options():
    z1, z2 = _global_views(2)
    expected = redundancy.vicreg_terms(z1, z2)
    for options in (dict(distributed="local"), dict(gradient_convention="official")):
        assert all(torch.equal(a, b) for a, b in zip(redundancy.vicreg_terms(z1, z2, **options), expected, strict=True))
        assert torch.equal(redundancy.vicreg_variance_loss(z1, **options), redundancy.vicreg_variance_loss(z1))
        assert torch.equal(redundancy.vicreg_covariance_loss(z1, **options), redundancy.vicreg_covariance_loss(z1))
        assert torch.equal(redundancy.decov_loss(z1, **options), redundancy.decov_loss(z1))
        assert torch.equal(redundancy.total_coding_rate(z1, **options), redundancy.total_coding_rate(z1))


@pytest.mark.parametrize(
    ("options", "error", "name"),
    [
        (dict(distributed="globally"), ValueError, "distributed"),
        (dict(gradient_convention="mean"), ValueError, "gradient_convention"),
        (dict(group="world"), TypeError, "group"),
    ],
)
def test_vicreg_bad_distributed_options_raise(options, error, name):
    z = torch.randn(4, 3)
    with pytest.raises(error, match=name):
        redundancy.vicreg_loss(z, z, **options)
    with pytest.raises(error, match=name):
        redundancy.VICRegLoss(**options)
    with pytest.raises(error, match=name):
        redundancy.vicreg_variance_loss(z, **options)
    with pytest.raises(error, match=name):
        redundancy.vicreg_covariance_loss(z, **options)
    for function, module in (
        (redundancy.decov_loss, redundancy.DeCovLoss),
        (redundancy.total_coding_rate, redundancy.TotalCodingRate),
    ):
        with pytest.raises(error, match=name):
            function(z, **options)
        with pytest.raises(error, match=name):
            module(**options)
