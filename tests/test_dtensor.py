"""Barlow Twins and VICReg on DTensor views: a DeviceMesh's placements name the groups of rows and features.

Four gloo processes hold the views of ``tests/test_feature_parallel.py`` (N = 11 rows, D = 13 features) as
DTensors placed on a mesh of 2×2 or 4: rows sharded, features sharded, both, replicated. The loss and its terms
come back as DTensors replicated over the mesh, equal on every rank to one process on the full views (1e-10), and
each view's gradient is a DTensor of the view's placements, the full gradient times the ranks that split the rows
(the gradient convention). Placements the loss cannot take are named. One spawned set of processes records every
case; a last test launches a script under torchrun on a mesh that ``init_device_mesh`` creates itself.
"""

import functools
import os
import pathlib
import re

import pytest
import torch
import torch.distributed as dist

import redundancy
from benchmarks.common import spawn_gloo
from tests.test_feature_parallel import LOSSES
from tests.test_feature_parallel import TIMEOUT
from tests.test_feature_parallel import UPSTREAM
from tests.test_feature_parallel import evaluate
from tests.test_feature_parallel import full_views
from tests.test_feature_parallel import is_error
from tests.test_feature_parallel import outcome
from tests.utils import assert_relative
from tests.utils import run_torchrun

pytestmark = pytest.mark.distributed


def _worker(rank: int, world_size: int) -> dict:
    """Every case of this file on one rank of the four (run by :func:`benchmarks.common.spawn_gloo`)."""
    return {"placements": _placements_worker(rank, world_size), "more": _more_placements_worker(rank, world_size)}


@pytest.fixture(scope="module")
def ranks(tmp_path_factory) -> list[dict]:
    return spawn_gloo(_worker, 4, tmp_path_factory.mktemp("dtensor"), timeout=TIMEOUT)


@pytest.fixture(scope="module")
def placements(ranks) -> list[dict]:
    return [results["placements"] for results in ranks]


@pytest.fixture(scope="module")
def more_placements(ranks) -> list[dict]:
    return [results["more"] for results in ranks]


#: mesh shape and placements -> the row ranks R (the gradient convention's factor).
PLACEMENTS = {
    "(Shard(0), Shard(1)) on 2x2": ((2, 2), ("rows", "features"), 2),
    "(Replicate(), Shard(1)) on 2x2": ((2, 2), ("replicate", "features"), 1),
    "(Shard(1),) on 4": ((4,), ("features",), 1),
    "(Shard(0),) on 4": ((4,), ("rows",), 4),
}


def _placements_worker(rank: int, world_size: int) -> dict:
    from torch.distributed.tensor import Replicate
    from torch.distributed.tensor import Shard
    from torch.distributed.tensor import distribute_tensor
    from torch.distributed.tensor import init_device_mesh

    kinds = {"rows": Shard(0), "features": Shard(1), "replicate": Replicate()}
    results = {}
    for layout, (shape, placements, _) in PLACEMENTS.items():
        mesh = init_device_mesh("cpu", shape)
        placements = [kinds[kind] for kind in placements]
        for name in ("barlow_twins_cross", "barlow_twins_gram", "vicreg_gram"):
            z1, z2 = (distribute_tensor(view, mesh, placements).requires_grad_() for view in full_views())
            terms = LOSSES[name](z1, z2)
            (terms.loss * UPSTREAM).backward()
            results[layout, name] = (
                [type(t).__name__ for t in terms],
                [tuple(t.placements) == (Replicate(),) * len(shape) for t in terms],
                torch.stack([t.to_local().detach() for t in terms]),
                [tuple(z.grad.placements) == tuple(placements) for z in (z1, z2)],
                [z.grad.full_tensor() for z in (z1, z2)],
            )
        module = redundancy.BarlowTwinsLoss()
        z1, z2 = (distribute_tensor(view, mesh, placements) for view in full_views())
        results[layout, "module"] = module(z1, z2).to_local()
    mesh = init_device_mesh("cpu", (2, 2))
    z1, z2 = (distribute_tensor(view, mesh, [Shard(0), Shard(1)]) for view in full_views())
    errors = {}
    for what, call in {
        "group= with DTensor views": lambda: redundancy.barlow_twins_loss(z1, z2, group=dist.group.WORLD),
        "a loss without feature_group": lambda: redundancy.cca_ssg_loss(z1, z2),
        "a DTensor and a tensor": lambda: redundancy.barlow_twins_loss(z1, z2.to_local()),
    }.items():
        try:
            call()
            errors[what] = None
        except (TypeError, ValueError) as error:
            errors[what] = str(error)
    results["errors"] = errors
    return results


@pytest.mark.parametrize("layout", list(PLACEMENTS))
@pytest.mark.parametrize("name", ["barlow_twins_cross", "barlow_twins_gram", "vicreg_gram"])
def test_dtensor_views_give_the_loss_of_the_full_views(placements, layout, name):
    expected, grad1, grad2 = evaluate(LOSSES[name], *full_views())
    row_ranks = PLACEMENTS[layout][2]
    for rank, results in enumerate(placements):
        kinds, replicated, values, same_placements, grads = results[layout, name]
        assert set(kinds) == {"DTensor"} and all(replicated), f"rank {rank}: the terms come back as {kinds}"
        assert_relative(values, expected, 1e-10, f"{name} on {layout}, rank {rank}")
        assert all(same_placements), f"rank {rank}: the gradients' placements differ from the views'"
        for got, full in zip(grads, (grad1, grad2), strict=True):
            assert_relative(got, row_ranks * full, 1e-10, f"{name} gradient on {layout}, rank {rank}")
    expected_loss = redundancy.barlow_twins_loss(*full_views())
    for rank, results in enumerate(placements):
        assert_relative(results[layout, "module"], expected_loss, 1e-10, f"BarlowTwinsLoss on {layout}, rank {rank}")


@pytest.mark.parametrize(
    ("what", "words"),
    [
        ("group= with DTensor views", ["group=", "placements"]),
        ("a loss without feature_group", ["cca_ssg_loss", "Shard(1)"]),
        ("a DTensor and a tensor", ["z2", "DTensor"]),
    ],
)
def test_dtensor_misuse_is_named(placements, what, words):
    for rank, results in enumerate(placements):
        message = results["errors"][what]
        assert message is not None, f"rank {rank}: {what} did not raise"
        for word in words:
            assert word in message, f"rank {rank}: {message!r} does not mention {word!r}"


#: layout -> (mesh shape, placements, the rows of the full views, the row ranks R: the gradient convention's factor).
MORE_PLACEMENTS = {
    "(Shard(-1),) on 4": ((4,), ("Shard(-1)",), 11, 1),
    "(Shard(1), Shard(0)) on 2x2": ((2, 2), ("Shard(1)", "Shard(0)"), 11, 2),
    "(Shard(0), Replicate()) on 2x2": ((2, 2), ("Shard(0)", "Replicate()"), 11, 2),
    "(Replicate(), Replicate()) on 2x2": ((2, 2), ("Replicate()", "Replicate()"), 11, 1),
    "(Shard(0),) on 4, N = 2": ((4,), ("Shard(0)",), 2, 4),
}
DTENSOR_LOSSES = ("barlow_twins_gram", "vicreg_cross")


def _placement(text: str):
    from torch.distributed.tensor import Replicate
    from torch.distributed.tensor import Shard

    return Replicate() if text == "Replicate()" else Shard(int(text[6:-1]))


def _dtensor_result(function, z1, z2):
    terms = function(z1, z2)
    (terms.loss * UPSTREAM).backward()
    grads = [None if z.grad is None else z.grad.full_tensor() for z in (z1, z2)]
    return [type(t).__name__ for t in terms], torch.stack([t.to_local().detach() for t in terms]), grads


def _more_placements_worker(rank: int, world_size: int) -> dict:
    from torch.distributed.tensor import DTensor
    from torch.distributed.tensor import Partial
    from torch.distributed.tensor import Shard
    from torch.distributed.tensor import distribute_tensor
    from torch.distributed.tensor import init_device_mesh

    results = {}
    for layout, (shape, placements, n, _) in MORE_PLACEMENTS.items():
        mesh = init_device_mesh("cpu", shape)
        placements = [_placement(text) for text in placements]
        for name in DTENSOR_LOSSES:
            z1, z2 = (distribute_tensor(view[:n], mesh, placements).requires_grad_() for view in full_views())
            results[layout, name] = outcome(functools.partial(_dtensor_result, LOSSES[name], z1, z2))
    mesh = init_device_mesh("cpu", (2, 2), mesh_dim_names=("rows", "features"))
    for name in DTENSOR_LOSSES:
        z1 = distribute_tensor(full_views()[0], mesh, [Shard(0), Shard(1)]).requires_grad_()
        z2 = distribute_tensor(full_views()[1], mesh, [Shard(0), Shard(1)])
        results["requires_grad on z1 only", name] = outcome(functools.partial(_dtensor_result, LOSSES[name], z1, z2))
        # A sub-mesh: each row of the 2×2 mesh splits the features of its own pair of views.
        own = slice(0, 6) if rank < 2 else slice(6, 11)
        z1, z2 = (distribute_tensor(view[own], mesh["features"], [Shard(1)]).requires_grad_() for view in full_views())
        results["a sub-mesh", name] = outcome(functools.partial(_dtensor_result, LOSSES[name], z1, z2))
    line = init_device_mesh("cpu", (4,))
    z1, z2 = (distribute_tensor(view, mesh, [Shard(0), Shard(1)]) for view in full_views())
    partial = [DTensor.from_local(view[:, :3], line, [Partial()]) for view in full_views()]
    twice = [distribute_tensor(view, mesh, [Shard(0), Shard(0)]) for view in full_views()]
    other_mesh = distribute_tensor(full_views()[1], line, [Shard(1)])
    for what, call in {
        "Partial()": lambda: redundancy.barlow_twins_loss(*partial),
        "(Shard(0), Shard(0))": lambda: redundancy.barlow_twins_loss(*twice),
        "views on two meshes": lambda: redundancy.barlow_twins_loss(z1, other_mesh),
    }.items():
        results["error", what] = outcome(call)
    return results


@pytest.mark.parametrize("name", DTENSOR_LOSSES)
@pytest.mark.parametrize("layout", list(MORE_PLACEMENTS))
def test_dtensor_placements_give_the_loss_of_the_full_views(more_placements, layout, name):
    _, _, n, factor = MORE_PLACEMENTS[layout]
    expected, grad1, grad2 = evaluate(LOSSES[name], *(view[:n] for view in full_views()))
    for rank, results in enumerate(more_placements):
        result = results[layout, name]
        assert not is_error(result), f"rank {rank}: {result}"
        kinds, values, grads = result
        assert set(kinds) == {"DTensor"}, f"rank {rank}: {kinds}"
        assert_relative(values, expected, 1e-10, f"{name} on {layout}, rank {rank}")
        for got, full in zip(grads, (grad1, grad2), strict=True):
            assert_relative(got, factor * full, 1e-10, f"{name} gradient on {layout}, rank {rank}")


@pytest.mark.parametrize("name", DTENSOR_LOSSES)
def test_dtensor_with_requires_grad_on_one_view_and_on_a_sub_mesh(more_placements, name):
    expected, grad1, _ = evaluate(LOSSES[name], *full_views())
    for rank, results in enumerate(more_placements):
        result = results["requires_grad on z1 only", name]
        assert not is_error(result), f"rank {rank}: {result}"
        _, values, (got1, got2) = result
        assert_relative(values, expected, 1e-10, f"{name}, rank {rank}")
        assert got2 is None
        assert_relative(got1, 2 * grad1, 1e-10, f"{name} gradient, rank {rank}")
        own = slice(0, 6) if rank < 2 else slice(6, 11)
        expected_own, own1, own2 = evaluate(LOSSES[name], *(view[own] for view in full_views()))
        result = results["a sub-mesh", name]
        assert not is_error(result), f"rank {rank}: {result}"
        _, values, grads = result
        assert_relative(values, expected_own, 1e-10, f"{name} on a sub-mesh, rank {rank}")
        for got, full in zip(grads, (own1, own2), strict=True):
            assert_relative(got, full, 1e-10, f"{name} gradient on a sub-mesh, rank {rank}")


@pytest.mark.parametrize(
    ("what", "words"),
    [
        ("Partial()", ["Partial", "Shard(0)"]),
        ("(Shard(0), Shard(0))", ["rows", "flatten"]),
        ("views on two meshes", ["mesh"]),
    ],
)
def test_dtensor_placements_the_loss_cannot_take_are_named(more_placements, what, words):
    for rank, results in enumerate(more_placements):
        result = results["error", what]
        assert is_error(result) and result[1] in ("TypeError", "ValueError"), f"rank {rank}: {result}"
        for word in words:
            assert word in result[2], f"rank {rank}: {result[2]!r} does not mention {word!r}"


def test_dtensor_views_on_a_mesh_that_init_device_mesh_creates():
    """Without init_process_group first, the mesh's process group names no backend ("undefined"): every collective
    of the grid, the error flag of its third exchange included, must still go to the CPU."""
    repository = pathlib.Path(__file__).resolve().parents[1]
    environment = dict(os.environ, PYTHONPATH=str(repository), OMP_NUM_THREADS="1")
    script = str(repository / "tests" / "dtensor_mesh_run.py")
    completed = run_torchrun(["--nproc_per_node=4", script], env=environment, timeout=180)
    assert completed.returncode == 0, completed.stderr[-3000:]
    # The four processes share stdout, and their lines may run into each other: read the reports, not the lines.
    reports = set(re.findall(r"rank (\d) (equal|raised) (True|False|none)", completed.stdout))
    assert reports == {(str(rank), check, "True") for rank in range(4) for check in ("equal", "raised")}, reports
