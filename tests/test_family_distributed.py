"""Every loss of the family under torch.distributed, and the errors every rank raises together.

Three gloo processes hold uneven shards of one float64 batch, one of them empty. Each loss of the family, with its
global-batch default, must give every rank the value of one process on the concatenated batch, and each rank the
gradient of its own rows (times W under the default gradient convention). Then each fault (a bad input, a bad or
mismatched option, a rank that calls with ``distributed="local"``) is made on one rank only: every rank must raise
at once, with a message naming what is wrong, and the ranks must still be in step for the next call. The process
group has a short timeout, so that a rank left waiting in a collective fails the test quickly instead of hanging.
"""

import functools

import pytest
import torch
from torch import nn

import redundancy
from tests.family_batch import (
    DIM,
    SHARDS,
    UPSTREAM,
    WORLD_SIZE,
    evaluate,
    global_permutation,
    global_views,
    permutation,
    rows,
)
from tests.utils import assert_relative, relative_error, spawn_gloo

pytestmark = pytest.mark.distributed

TIMEOUT = 20.0  # seconds: a rank left waiting in a collective fails the test quickly


#: name -> (function of this rank's inputs, number of embedding views). Every loss of the family, with options
#: that exercise both of its algorithms where it has two.
LOSSES = {
    "barlow_twins_cross": (functools.partial(redundancy.barlow_twins_terms, algorithm="cross", lambd=0.02), 2),
    "barlow_twins_gram": (functools.partial(redundancy.barlow_twins_terms, algorithm="gram", correction=1), 2),
    "vicreg": (functools.partial(redundancy.vicreg_terms, algorithm="gram"), 2),
    "vicreg_variance": (functools.partial(redundancy.vicreg_variance_loss, gamma=2.0), 1),
    "vicreg_covariance": (functools.partial(redundancy.vicreg_covariance_loss, algorithm="cross"), 1),
    "decov": (redundancy.decov_loss, 1),
    "total_coding_rate": (functools.partial(redundancy.total_coding_rate, algorithm="gram"), 1),
    "cca_ssg": (functools.partial(redundancy.cca_ssg_terms, algorithm="cross"), 2),
    "spectral_contrastive": (functools.partial(redundancy.spectral_contrastive_terms, algorithm="gram"), 2),
    "mixed_barlow_twins": (functools.partial(redundancy.mixed_barlow_twins_regularizer, algorithm="gram"), 3),
}


def _error(function) -> str:
    """``"ExceptionType: message"`` of what ``function()`` raises, or ``"no error"``."""
    try:
        function()
    except (ValueError, TypeError, RuntimeError) as error:
        return f"{type(error).__name__}: {error}"
    return "no error"


def _faults(rank: int) -> dict:
    """Each fault made on rank 2 only; every rank records what it raised, then makes one good call."""
    z1, z2, _ = (view[rows(rank)] for view in global_views())
    faulty = rank == 2
    cases = {
        "one_dimensional": lambda: redundancy.barlow_twins_loss(z1[:, 0] if faulty else z1, z2),
        "integer_dtype": lambda: redundancy.vicreg_loss(z1.long() if faulty else z1, z2),
        "bad_option": lambda: redundancy.decov_loss(z1, correction=2 if faulty else 0),
        "triton": lambda: redundancy.barlow_twins_loss(z1, z2, backend="triton" if faulty else "auto"),
        "triton_everywhere": lambda: redundancy.barlow_twins_loss(z1, z2, backend="triton"),
        "lambd_differs": lambda: redundancy.barlow_twins_loss(z1, z2, lambd=0.01 if faulty else 0.0051),
        "scale_differs": lambda: redundancy.barlow_twins_loss(z1, z2, scale=2.0 if faulty else 1.0),
        "mu_differs": lambda: redundancy.spectral_contrastive_loss(z1, z2, mu=2.0 if faulty else 1.0),
        "dim_differs": lambda: redundancy.cca_ssg_loss(z1[:, :-1] if faulty else z1, z2[:, :-1] if faulty else z2),
    }
    results = {}
    for name, case in cases.items():
        results[name] = _error(case)
        results[name, "next"] = redundancy.barlow_twins_loss(z1, z2).detach()  # in step again
    # A rank that uses the local loss while the others use the global one: it still joins the exchange.
    results["local_on_one_rank"] = _error(
        lambda: redundancy.barlow_twins_loss(z1, z2, distributed="local" if faulty else "global")
    )
    results["local_on_one_rank", "next"] = redundancy.barlow_twins_loss(z1, z2).detach()
    # A rank that calls another loss.
    results["other_loss"] = _error(
        lambda: redundancy.vicreg_loss(z1, z2) if faulty else redundancy.barlow_twins_loss(z1, z2)
    )
    results["other_loss", "next"] = redundancy.barlow_twins_loss(z1, z2).detach()
    return results


#: Losses compiled with ``torch.compile(fullgraph=True)`` inside the process group, on equal shards.
COMPILED = {
    "barlow_twins_all_reduce": functools.partial(redundancy.barlow_twins_loss, strategy="all_reduce"),
    "barlow_twins_all_gather": functools.partial(redundancy.barlow_twins_loss, strategy="all_gather", algorithm="gram"),
    "vicreg": redundancy.vicreg_loss,
}
EQUAL_ROWS = 3


def _equal_shards() -> list[torch.Tensor]:
    """Two views of ``EQUAL_ROWS`` rows per rank (a compiled graph needs as many rows on every rank)."""
    generator = torch.Generator().manual_seed(23)
    return [torch.randn(EQUAL_ROWS * WORLD_SIZE, DIM, generator=generator, dtype=torch.float64) for _ in range(2)]


def _compiled(rank: int) -> dict:
    """Each compiled loss's value and gradients on this rank's equal shard, and what a mismatch raises."""
    torch._dynamo.reset()
    views = [view[rank * EQUAL_ROWS : (rank + 1) * EQUAL_ROWS] for view in _equal_shards()]
    results = {}
    for name, function in COMPILED.items():
        compiled = torch.compile(function, fullgraph=True, backend="aot_eager")  # any graph break raises
        results[name] = _value_and_grads(compiled, views)
    mismatched = torch.compile(
        lambda z1, z2: redundancy.barlow_twins_loss(z1, z2, lambd=0.01 if rank == 2 else 0.0051),
        fullgraph=True,
        backend="aot_eager",
    )
    results["mismatch"] = _error(lambda: mismatched(*views))
    return results


def _value_and_grads(function, views: list[torch.Tensor]):
    views = [view.clone().requires_grad_() for view in views]
    value = function(*views)
    (value * UPSTREAM).backward()
    return value.detach(), [view.grad for view in views]


def _worker(rank: int, world_size: int) -> dict:
    """What one rank of the gloo group sees (run by :func:`tests.utils.spawn_gloo`)."""
    views = [view[rows(rank)] for view in global_views()]
    perm = permutation(rank)
    results = {"values": {name: evaluate(LOSSES, name, views, perm) for name in LOSSES}}
    model = nn.parallel.DistributedDataParallel(_encoder())
    _train(model, *views[:2])
    results["trained"] = [p.detach().clone() for p in model.module.parameters()]
    results["faults"] = _faults(rank)
    results["compiled"] = _compiled(rank)
    return results


def _encoder() -> nn.Module:
    torch.manual_seed(5)
    return nn.Sequential(nn.Linear(DIM, 12), nn.Tanh(), nn.Linear(12, DIM)).double()


def _train(model: nn.Module, x1: torch.Tensor, x2: torch.Tensor) -> None:
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05)
    for _ in range(3):
        optimizer.zero_grad()
        (redundancy.cca_ssg_loss(model(x1), model(x2)) + redundancy.vicreg_loss(model(x1), model(x2))).backward()
        optimizer.step()


@pytest.fixture(scope="module")
def ranks(tmp_path_factory) -> list[dict]:
    return spawn_gloo(_worker, WORLD_SIZE, tmp_path_factory.mktemp("family"), timeout=TIMEOUT)


@pytest.mark.parametrize("name", list(LOSSES))
def test_every_loss_is_that_of_the_concatenated_batch(ranks, name):
    expected, expected_grads = evaluate(LOSSES, name, global_views(), global_permutation())
    for rank, results in enumerate(ranks):
        value, grads = results["values"][name]
        assert_relative(value, expected, 1e-10, f"{name}, rank {rank}")
        assert torch.equal(value, ranks[0]["values"][name][0]), f"{name}: rank {rank} differs from rank 0"
        for view, (grad, expected_grad) in enumerate(zip(grads, expected_grads, strict=True)):
            assert grad.shape == (SHARDS[rank], DIM)
            if SHARDS[rank]:  # the default convention: W times the rank's rows of the one-process gradient
                what = f"gradient of view {view} of {name}, rank {rank}"
                assert_relative(grad, WORLD_SIZE * expected_grad[rows(rank)], 1e-9, what)


def test_ddp_training_with_the_family_matches_one_process(ranks):
    model = _encoder()
    initial = [p.detach().clone() for p in model.parameters()]
    _train(model, *global_views()[:2])
    assert max(relative_error(p, q) for p, q in zip(model.parameters(), initial, strict=True)) > 1e-3
    for rank, results in enumerate(ranks):
        for trained, single in zip(results["trained"], model.parameters(), strict=True):
            assert_relative(trained, single, 1e-8, f"parameters after DDP, rank {rank}")


#: fault -> what every rank's error message must contain.
FAULTS = {
    "one_dimensional": "ValueError: z1 must be 2-D of shape (N, D), got shape (7,) (on rank 2)",
    "integer_dtype": "TypeError: z1 must have a floating-point dtype, got torch.int64 (on rank 2)",
    "bad_option": "ValueError: correction must be 0 (divide by N) or 1 (divide by N - 1), got 2 (on rank 2)",
    "triton": "ValueError: backend must be the same on every rank of the process group, got backend = "
    "['auto', 'auto', 'triton']",
    "triton_everywhere": "ValueError: backend='triton' does not compute the global-batch loss of several ranks",
    "lambd_differs": "ValueError: lambd must be the same on every rank",
    "scale_differs": "ValueError: scale must be the same on every rank",
    "mu_differs": "ValueError: mu must be the same on every rank",
    "dim_differs": "ValueError: z1 and z2 must have the same number of features D on every rank",
    "local_on_one_rank": "ValueError: distributed must be the same on every rank of the process group, got "
    "distributed = ['global', 'global', 'local']",
    "other_loss": "RuntimeError: the ranks of the process group called different losses at the same call: "
    "['barlow_twins_loss', 'barlow_twins_loss', 'vicreg_loss']",
}


@pytest.mark.parametrize("fault", list(FAULTS))
def test_a_fault_on_one_rank_raises_on_every_rank_and_the_next_call_is_in_step(ranks, fault):
    expected = redundancy.barlow_twins_loss(*[view for view in global_views()[:2]])
    for rank, results in enumerate(ranks):
        message = results["faults"][fault]
        assert FAULTS[fault] in message, f"rank {rank}: {message}"
        assert_relative(results["faults"][fault, "next"], expected, 1e-10, f"the call after {fault}, rank {rank}")


@pytest.mark.parametrize("name", list(COMPILED))
def test_compiled_losses_trace_without_graph_breaks_inside_the_process_group(ranks, name):
    expected, expected_grads = _value_and_grads(COMPILED[name], _equal_shards())
    for rank, results in enumerate(ranks):
        value, grads = results["compiled"][name]
        assert_relative(value, expected, 1e-10, f"compiled {name}, rank {rank}")
        rows = slice(rank * EQUAL_ROWS, (rank + 1) * EQUAL_ROWS)
        for grad, expected_grad in zip(grads, expected_grads, strict=True):
            assert_relative(grad, WORLD_SIZE * expected_grad[rows], 1e-9, f"gradient of compiled {name}, rank {rank}")


def test_compiled_loss_with_options_that_differ_raises_on_every_rank(ranks):
    for rank, results in enumerate(ranks):
        message = results["compiled"]["mismatch"]
        assert "RuntimeError" in message and "the ranks of the process group differ" in message, f"rank {rank}"
