"""Barlow Twins and VICReg over a grid of row and feature shards (``group=`` and ``feature_group=``).

Four gloo processes hold blocks of one float64 pair of views (N = 11 rows, D = 13 features), uneven along both
axes, as a 2×2 grid, as 1×4 (features only) and as 4×1 (rows only, with one-rank feature groups). On every rank
the loss and its terms must equal one process on the full matrices at 1e-10, and every block's gradient must be
its block of the full gradient, times R (the ranks of the row group) under the default gradient convention and
times 1 under ``"official"``. Then faults made on one rank only must raise on every rank of the grid.
"""

import functools
import os
import pathlib
import re

import pytest
import torch
import torch.distributed as dist

import redundancy
from redundancy._frame import GRID_OUTSIDE_GRAPHS
from tests.utils import assert_relative, run_torchrun, spawn_gloo

pytestmark = pytest.mark.distributed

TIMEOUT = 20.0  # seconds: a rank left waiting in a collective fails the test quickly
N, D = 11, 13
UPSTREAM = 0.7

#: layout -> (rows on each row rank, columns on each feature rank); rank = row_rank · F + feature_rank.
LAYOUTS = {
    "2x2": ((7, 4), (5, 8)),
    "1x4": ((11,), (3, 4, 1, 5)),
    "4x1": ((4, 0, 5, 2), (13,)),
}

#: name -> terms function with its options; each is checked on every layout.
LOSSES = {
    "barlow_twins_cross": functools.partial(redundancy.barlow_twins_terms, algorithm="cross", lambd=0.02),
    "barlow_twins_gram": functools.partial(redundancy.barlow_twins_terms, algorithm="gram"),
    "barlow_twins_auto_std_hsic": functools.partial(
        redundancy.barlow_twins_terms, correction=1, off_diagonal_target=-1.0, lambd="auto", scale=0.5
    ),
    "barlow_twins_gram_hsic": functools.partial(
        redundancy.barlow_twins_terms, algorithm="gram", off_diagonal_target=-1.0, standardize=False
    ),
    "barlow_twins_cross_hsic": functools.partial(
        redundancy.barlow_twins_terms, algorithm="cross", off_diagonal_target=-1.0, eps=0.0
    ),
    "vicreg_cross": functools.partial(redundancy.vicreg_terms, algorithm="cross"),
    "vicreg_gram": functools.partial(redundancy.vicreg_terms, algorithm="gram", correction=0, gamma=2.0),
}


def full_views(count: int = 2) -> tuple[torch.Tensor, ...]:
    generator = torch.Generator().manual_seed(5)
    z1 = torch.randn(N, D, generator=generator, dtype=torch.float64) * 1.5 + 2.0
    z2 = z1 @ torch.randn(D, D, generator=generator, dtype=torch.float64) * 0.3 + 0.1
    z3 = z2 - 0.5 * z1 + torch.randn(N, D, generator=generator, dtype=torch.float64)
    return (z1, z2, z3)[:count]


#: name -> multi-view terms function with its options (three views).
MULTIVIEW_LOSSES = {
    "multiview_barlow_twins_cross": functools.partial(
        redundancy.multiview_barlow_twins_terms, algorithm="cross", off_diagonal_target=-1.0
    ),
    "multiview_barlow_twins_gram": functools.partial(
        redundancy.multiview_barlow_twins_terms, algorithm="gram", off_diagonal_target=0.5, lambd="auto"
    ),
    "multiview_vicreg_cross": functools.partial(redundancy.multiview_vicreg_terms, algorithm="cross"),
    "multiview_vicreg_gram": functools.partial(
        redundancy.multiview_vicreg_terms, algorithm="gram", variance_reduction="sum", gamma=2.0
    ),
}


def evaluate_views(function, views, **options):
    """``(terms, gradients)`` of ``UPSTREAM · loss`` of a multi-view function, for any number of views."""
    views = [view.clone().requires_grad_() for view in views]
    terms = function(views, **options)
    (terms.loss * UPSTREAM).backward()
    return torch.stack([t.detach() for t in terms]), *(view.grad for view in views)


def block(layout: str, rank: int) -> tuple[slice, slice]:
    """The rows and columns of the full views that ``rank`` holds."""
    row_counts, column_counts = LAYOUTS[layout]
    row_rank, feature_rank = divmod(rank, len(column_counts))
    start, first = sum(row_counts[:row_rank]), sum(column_counts[:feature_rank])
    return slice(start, start + row_counts[row_rank]), slice(first, first + column_counts[feature_rank])


def grid_groups(layout: str, rank: int):
    """``(group, feature_group)`` of ``rank``: the ranks of its column, the ranks of its row (collective calls)."""
    row_counts, column_counts = LAYOUTS[layout]
    rows, features = len(row_counts), len(column_counts)
    group = feature_group = None
    for feature_rank in range(features):  # every rank creates every group, in the same order
        created = dist.new_group([r * features + feature_rank for r in range(rows)])
        if rank % features == feature_rank:
            group = created
    for row_rank in range(rows):
        created = dist.new_group([row_rank * features + p for p in range(features)])
        if rank // features == row_rank:
            feature_group = created
    return (None if rows == 1 else group), feature_group


def evaluate(function, z1, z2, **options):
    z1, z2 = z1.clone().requires_grad_(), z2.clone().requires_grad_()
    terms = function(z1, z2, **options)
    (terms.loss * UPSTREAM).backward()
    return torch.stack([t.detach() for t in terms]), z1.grad, z2.grad


def _grid_worker(rank: int, world_size: int, layout: str) -> dict:
    group, feature_group = grid_groups(layout, rank)
    rows, columns = block(layout, rank)
    z1, z2 = (view[rows, columns] for view in full_views())
    results = {}
    for name, function in LOSSES.items():
        results[name] = evaluate(function, z1, z2, group=group, feature_group=feature_group)
    official = functools.partial(redundancy.barlow_twins_terms, gradient_convention="official")
    results["official"] = evaluate(official, z1, z2, group=group, feature_group=feature_group)
    module = redundancy.VICRegLoss(feature_group=feature_group, group=group)
    results["module"] = module(z1, z2).detach()
    views = [view[rows, columns] for view in full_views(3)]
    for name, function in MULTIVIEW_LOSSES.items():
        results[name] = evaluate_views(function, views, group=group, feature_group=feature_group)
    return results


@pytest.fixture(scope="module", params=list(LAYOUTS))
def grid(request, tmp_path_factory):
    layout = request.param
    body = functools.partial(_grid_worker, layout=layout)
    return layout, spawn_gloo(body, 4, tmp_path_factory.mktemp(layout), timeout=TIMEOUT)


@pytest.mark.parametrize("name", [*LOSSES, "official"])
def test_grid_equals_one_process_on_the_full_views(grid, name):
    layout, results = grid
    function = LOSSES.get(name) or functools.partial(redundancy.barlow_twins_terms, gradient_convention="official")
    expected, grad1, grad2 = evaluate(function, *full_views())
    row_ranks = len(LAYOUTS[layout][0])
    factor = 1 if name == "official" else row_ranks
    for rank, result in enumerate(results):
        value, block1, block2 = result[name]
        assert_relative(value, expected, 1e-10, f"{name} terms on rank {rank} ({layout})")
        rows, columns = block(layout, rank)
        for got, full in ((block1, grad1), (block2, grad2)):
            if got.numel():
                assert_relative(got, factor * full[rows, columns], 1e-10, f"{name} gradient on rank {rank} ({layout})")


@pytest.mark.parametrize("name", list(MULTIVIEW_LOSSES))
def test_grid_multiview_equals_one_process_on_the_full_views(grid, name):
    layout, results = grid
    expected, *grads = evaluate_views(MULTIVIEW_LOSSES[name], full_views(3))
    row_ranks = len(LAYOUTS[layout][0])
    for rank, result in enumerate(results):
        value, *blocks = result[name]
        assert_relative(value, expected, 1e-10, f"{name} terms on rank {rank} ({layout})")
        rows, columns = block(layout, rank)
        for got, full in zip(blocks, grads, strict=True):
            if got.numel():
                expected_block = row_ranks * full[rows, columns]
                assert_relative(got, expected_block, 1e-10, f"{name} gradient on rank {rank} ({layout})")


def test_grid_module(grid):
    layout, results = grid
    expected = redundancy.vicreg_loss(*full_views())
    for rank, result in enumerate(results):
        assert_relative(result["module"], expected, 1e-10, f"VICRegLoss on rank {rank} ({layout})")


#: fault -> (what the faulty rank passes instead, words every rank's error must contain). On the 2×2 grid, rank 3
#: is at row 1, column 1: its column's ranks are {1, 3} and its row's {2, 3}, so ranks 0 reaches it in two hops.
FAULTS = {
    "one-dimensional input": (lambda z1, z2: ((z1[:, 0], z2), {}), ["z1", "rank"]),
    "lambd on one rank": (lambda z1, z2: ((z1, z2), {"lambd": 0.1}), ["lambd", "same on every rank"]),
    "rows differ in a feature group": (lambda z1, z2: ((z1[:2], z2[:2]), {}), ["same rows", "feature_group"]),
    "columns differ in a row group": (lambda z1, z2: ((z1[:, :3], z2[:, :3]), {}), ["number of features D"]),
    "distributed='local' on one rank": (lambda z1, z2: ((z1, z2), {"distributed": "local"}), ["distributed"]),
    "backend on every rank": (None, ["backend"]),
}


def _fault_worker(rank: int, world_size: int) -> dict:
    group, feature_group = grid_groups("2x2", rank)
    rows, columns = block("2x2", rank)
    z1, z2 = (view[rows, columns] for view in full_views())
    grid = {"group": group, "feature_group": feature_group}
    outcomes = {}
    for name, (fault, _) in FAULTS.items():
        inputs, options = (z1, z2), {}
        if fault is None:
            options = {"backend": "triton"}
        elif rank == 3:
            inputs, options = fault(z1, z2)
        try:
            redundancy.barlow_twins_loss(*inputs, **grid, **options)
            outcomes[name] = None
        except (TypeError, ValueError, RuntimeError) as error:
            outcomes[name] = (type(error).__name__, str(error))
        outcomes[name + ", then a good call"] = redundancy.barlow_twins_loss(z1, z2, **grid).detach()
    outcomes["local"] = redundancy.vicreg_loss(z1, z2, distributed="local", **grid).detach()
    compiled = torch.compile(lambda a, b: redundancy.barlow_twins_loss(a, b, **grid) * 2.0)
    outcomes["compiled"] = compiled(z1, z2).detach() / 2.0
    try:
        torch.compile(lambda a, b: redundancy.barlow_twins_loss(a, b, **grid), fullgraph=True)(z1, z2)
        outcomes["fullgraph"] = None
    except Exception as error:  # torch._dynamo's Unsupported: the graph break that fullgraph refuses
        outcomes["fullgraph"] = str(error)
    return outcomes


@pytest.fixture(scope="module")
def faults(tmp_path_factory):
    return spawn_gloo(_fault_worker, 4, tmp_path_factory.mktemp("faults"), timeout=TIMEOUT)


@pytest.mark.parametrize("fault", list(FAULTS))
def test_a_fault_on_one_rank_raises_on_every_rank_of_the_grid(faults, fault):
    words = FAULTS[fault][1]
    kinds = set()
    for rank, outcome in enumerate(faults):
        assert outcome[fault] is not None, f"rank {rank} did not raise for {fault}"
        kind, message = outcome[fault]
        kinds.add(kind)
        for word in words:
            assert word in message, f"rank {rank}: {message!r} does not mention {word!r}"
    assert len(kinds) == 1, f"the ranks raised different errors: {kinds}"
    expected = redundancy.barlow_twins_loss(*full_views())
    for rank, outcome in enumerate(faults):
        assert_relative(outcome[fault + ", then a good call"], expected, 1e-10, f"the call after {fault}, rank {rank}")


# ------------------------------------------------------------------------------------------------ DTensor views

#: mesh shape and placements -> the row ranks R (the gradient convention's factor).
DTENSOR_LAYOUTS = {
    "(Shard(0), Shard(1)) on 2x2": ((2, 2), ("rows", "features"), 2),
    "(Replicate(), Shard(1)) on 2x2": ((2, 2), ("replicate", "features"), 1),
    "(Shard(1),) on 4": ((4,), ("features",), 1),
    "(Shard(0),) on 4": ((4,), ("rows",), 4),
}


def _dtensor_worker(rank: int, world_size: int) -> dict:
    from torch.distributed.tensor import Replicate, Shard, distribute_tensor, init_device_mesh

    kinds = {"rows": Shard(0), "features": Shard(1), "replicate": Replicate()}
    results = {}
    for layout, (shape, placements, _) in DTENSOR_LAYOUTS.items():
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


@pytest.fixture(scope="module")
def dtensors(tmp_path_factory):
    return spawn_gloo(_dtensor_worker, 4, tmp_path_factory.mktemp("dtensor"), timeout=TIMEOUT)


@pytest.mark.parametrize("layout", list(DTENSOR_LAYOUTS))
@pytest.mark.parametrize("name", ["barlow_twins_cross", "barlow_twins_gram", "vicreg_gram"])
def test_dtensor_views_give_the_loss_of_the_full_views(dtensors, layout, name):
    expected, grad1, grad2 = evaluate(LOSSES[name], *full_views())
    row_ranks = DTENSOR_LAYOUTS[layout][2]
    for rank, results in enumerate(dtensors):
        kinds, replicated, values, same_placements, grads = results[layout, name]
        assert set(kinds) == {"DTensor"} and all(replicated), f"rank {rank}: the terms come back as {kinds}"
        assert_relative(values, expected, 1e-10, f"{name} on {layout}, rank {rank}")
        assert all(same_placements), f"rank {rank}: the gradients' placements differ from the views'"
        for got, full in zip(grads, (grad1, grad2), strict=True):
            assert_relative(got, row_ranks * full, 1e-10, f"{name} gradient on {layout}, rank {rank}")
    expected_loss = redundancy.barlow_twins_loss(*full_views())
    for rank, results in enumerate(dtensors):
        assert_relative(results[layout, "module"], expected_loss, 1e-10, f"BarlowTwinsLoss on {layout}, rank {rank}")


@pytest.mark.parametrize(
    ("what", "words"),
    [
        ("group= with DTensor views", ["group=", "placements"]),
        ("a loss without feature_group", ["cca_ssg_loss", "Shard(1)"]),
        ("a DTensor and a tensor", ["z2", "DTensor"]),
    ],
)
def test_dtensor_misuse_is_named(dtensors, what, words):
    for rank, results in enumerate(dtensors):
        message = results["errors"][what]
        assert message is not None, f"rank {rank}: {what} did not raise"
        for word in words:
            assert word in message, f"rank {rank}: {message!r} does not mention {word!r}"


def test_a_local_call_on_a_grid_is_the_loss_of_its_rows_and_every_feature(faults):
    for rank, outcome in enumerate(faults):
        rows, _ = block("2x2", rank)
        expected = redundancy.vicreg_loss(*(view[rows] for view in full_views()))
        assert_relative(outcome["local"], expected, 1e-10, f"the local loss of rank {rank}")


def test_torch_compile_breaks_the_graph_at_a_grid_loss(faults):
    """The grid's collectives run in eager mode: compiled callers get the loss, fullgraph=True says why it fails."""
    expected = redundancy.barlow_twins_loss(*full_views())
    for rank, outcome in enumerate(faults):
        assert_relative(outcome["compiled"], expected, 1e-10, f"the compiled loss on rank {rank}")
        assert outcome["fullgraph"] is not None and GRID_OUTSIDE_GRAPHS in outcome["fullgraph"], outcome["fullgraph"]


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
