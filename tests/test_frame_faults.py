"""Faults of the loss frame (options, ``Loss.run``, ``GlobalBatch``) found by attacking it, pinned after their fix.

Each docstring says what went wrong before the fix and what is expected now. The distributed ones share two
spawned runs of three gloo processes: one on the default group (faults that leave the ranks able to go on), and
one where each fault that could leave ranks waiting in a collective runs on a fresh group with a short timeout, so
that a hang shows as a gloo timeout error instead of the expected message, without stalling the suite.
"""

import datetime
import functools
import os
import pathlib
import time

import pytest
import torch
import torch.distributed as dist

import redundancy

WORLD_SIZE = 3
ROWS = 4
DIM = 5
#: How long a rank may wait in a collective of a faulty call before gloo gives up (a hang, in these tests).
FAULT_TIMEOUT = datetime.timedelta(seconds=10)  # generous for a loaded machine: a hang still fails fast


def _views(rank: int, rows: int = ROWS) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(100 + rank)
    return tuple(torch.randn(rows, DIM, generator=generator, dtype=torch.float64) for _ in range(2))


def _outcome(function) -> tuple[str, float, object]:
    """``(what function() raised or "no error", seconds it took, its value)``."""
    start = time.perf_counter()
    try:
        value = function()
    except Exception as error:
        return f"{type(error).__name__}: {error}", time.perf_counter() - start, None
    if isinstance(value, torch.Tensor):
        value = value.detach()
    return "no error", time.perf_counter() - start, value


# ------------------------------------------------------------------------------------------------ spawned runs


def _default_group_cases(rank: int) -> dict:
    """Faults that every rank can go on after; run in this order on the default group."""
    z1, z2 = _views(rank)
    faulty = rank == 2
    results = {}
    mixed = 0.5 * z1 + z2
    permutation = torch.randperm(ROWS, generator=torch.Generator().manual_seed(rank))
    results["alpha"] = _outcome(
        lambda: redundancy.mixed_barlow_twins_regularizer(z1, z2, mixed, permutation, 0.9 if faulty else 0.3)
    )
    results["other_loss"] = _outcome(
        lambda: redundancy.vicreg_loss(z1, z2) if faulty else redundancy.barlow_twins_loss(z1, z2)
    )
    for name, function in {
        "compiled_vicreg": redundancy.vicreg_loss,
        "compiled_cca_ssg": redundancy.cca_ssg_loss,
    }.items():
        torch._dynamo.reset()
        compiled = torch.compile(function, fullgraph=True, backend="aot_eager")
        results[name] = _outcome(lambda: compiled(z1, z2))  # noqa: B023 - called at once
    torch._dynamo.reset()
    dynamic = torch.compile(redundancy.barlow_twins_loss, fullgraph=True, backend="aot_eager", dynamic=True)
    results["compiled_dynamic"] = _outcome(lambda: dynamic(z1, z2))
    # A global batch of one row in all: rank 0 holds it.
    results["one_row"] = _outcome(lambda: redundancy.total_coding_rate(z1[:1] if rank == 0 else z1[:0]))
    torch._dynamo.reset()
    # The default group spelled two ways: dist.group.WORLD on rank 2, None on the others.
    results["world", 1] = _outcome(
        lambda: redundancy.barlow_twins_loss(z1, z2, group=dist.group.WORLD if faulty else None)
    )
    results["world", 2] = _outcome(lambda: redundancy.barlow_twins_loss(z1, z2))
    results["world", 3] = _outcome(lambda: redundancy.barlow_twins_loss(z1, z2))
    # Last, as it leaves a rank one exchange ahead: rank 2 is not a member of the group that ranks 0 and 1 pass.
    pair = dist.new_group([0, 1])
    results["non_member"] = _outcome(lambda: redundancy.barlow_twins_loss(z1, z2, group=pair))
    results["non_member", "next"] = _outcome(lambda: redundancy.barlow_twins_loss(z1, z2))
    return results


def _hang_cases(rank: int) -> dict:
    """Faults on one rank that leave the other ranks waiting; each on a fresh group with a short timeout."""
    z1, z2 = _views(rank)
    faulty = rank == 2
    permutation = torch.arange(ROWS)
    out_of_range = permutation + ROWS * WORLD_SIZE if faulty else permutation  # global indices on rank 2
    cases = {
        "permutation_out_of_range": lambda group: redundancy.mixed_barlow_twins_regularizer(
            z1, z2, z1 + z2, out_of_range, 0.5, group=group
        ),
        "meta_device": lambda group: redundancy.barlow_twins_loss(
            z1.to("meta") if faulty else z1, z2.to("meta") if faulty else z2, group=group
        ),
        "local_on_one_rank": lambda group: (
            redundancy.barlow_twins_loss(z1, z2, group=group, distributed="local" if faulty else "global"),
            dist.barrier(group=group),  # the next collective of the group is not a loss call
        ),
        "huge_integer_option": lambda group: redundancy.barlow_twins_loss(
            z1, z2, group=group, lambd=10**400 if faulty else 0.0051
        ),
        "compiled_bad_input": lambda group: torch.compile(
            functools.partial(redundancy.barlow_twins_loss, group=group), fullgraph=True, backend="aot_eager"
        )(z1[:, 0] if faulty else z1, z2),
    }

    groups = {name: dist.new_group(timeout=FAULT_TIMEOUT) for name in cases}
    results = {}
    for name, case in cases.items():
        torch._dynamo.reset()
        results[name] = _outcome(lambda: case(groups[name]))  # noqa: B023 - called at once
        dist.barrier()  # the default group: every rank starts the next case together
    return results


def _worker(rank: int, directory: str, which: str, timeout: float) -> None:
    torch.set_num_threads(1)
    dist.init_process_group(
        "gloo",
        init_method=f"file://{directory}/store",
        rank=rank,
        world_size=WORLD_SIZE,
        timeout=datetime.timedelta(seconds=timeout),
    )
    cases = {"default": _default_group_cases, "hang": _hang_cases}[which]
    torch.save(cases(rank), os.path.join(directory, f"rank{rank}.pt"))
    # Wait for the others' results (a rank may still be stuck in a collective), then leave without the
    # teardown of a group that may hold a timed-out collective.
    deadline = time.monotonic() + 3 * timeout
    while time.monotonic() < deadline:
        if all(os.path.exists(os.path.join(directory, f"rank{r}.pt")) for r in range(WORLD_SIZE)):
            break
        time.sleep(0.1)
    time.sleep(0.5)
    os._exit(0)


def _spawn(directory: pathlib.Path, which: str, timeout: float) -> list[dict]:
    torch.multiprocessing.start_processes(
        _worker, args=(str(directory), which, timeout), nprocs=WORLD_SIZE, join=True, start_method="spawn"
    )
    return [torch.load(directory / f"rank{rank}.pt", weights_only=False) for rank in range(WORLD_SIZE)]


@pytest.fixture(scope="module")
def default_group(tmp_path_factory) -> list[dict]:
    return _spawn(tmp_path_factory.mktemp("attacks_default"), "default", timeout=20.0)


@pytest.fixture(scope="module")
def hangs(tmp_path_factory) -> list[dict]:
    return _spawn(tmp_path_factory.mktemp("attacks_hang"), "hang", timeout=60.0)


def _raised_together(ranks: list[dict], case: str, expected: str) -> None:
    """Every rank raised an error containing ``expected`` (a rank left waiting gets gloo's timeout error instead)."""
    report = [(rank, message[:160]) for rank, (message, _, _) in enumerate(r[case] for r in ranks)]
    for rank, (message, _, _) in enumerate(r[case] for r in ranks):
        assert expected in message, f"rank {rank} of {report}"


# ------------------------------------------------------------------------------------------------ distributed


@pytest.mark.distributed
def test_mixed_barlow_twins_alpha_that_differs_on_one_rank_is_detected(default_group):
    """``alpha`` changes the value but is neither exchanged nor compared: with alpha = 0.9 on rank 2 and 0.3
    elsewhere, every rank evaluates the gathered batch with its own alpha, so the ranks silently return different
    "global" losses (and the gather's backward, exact only when every rank computes the same L, gives gradients of
    no single function). Expected: a ValueError naming alpha on every rank, as for a mismatched option."""
    _raised_together(default_group, "alpha", "alpha")


@pytest.mark.distributed
def test_a_rank_calling_another_loss_is_told_which_losses(default_group):
    """Rank 2 calls vicreg_loss while the others call barlow_twins_loss at the same call: every rank raises
    "the ranks ... are out of step ... at calls [k, k, k] of losses that differ", which reads as a skipped call and
    names neither loss. Expected: a message naming the loss of each rank."""
    for rank, (message, _, _) in enumerate(r["other_loss"] for r in default_group):
        assert "vicreg_loss" in message and "barlow_twins_loss" in message and "out of step" not in message, (
            f"rank {rank}: {message}"
        )


@pytest.mark.distributed
@pytest.mark.parametrize("name", ["compiled_vicreg", "compiled_cca_ssg"])
def test_two_view_gathered_losses_compile_inside_a_process_group(default_group, name):
    """``torch.compile(fullgraph=True, backend="aot_eager")`` of vicreg_loss and cca_ssg_loss inside a process
    group with equal shards fails to trace on every rank when no input requires grad (an evaluation step, or
    ``torch.no_grad()``): "raised exception AttributeError("'GlobalBatch' object has no attribute 'shape'")" in
    the gather of two views (the same call with ``requires_grad=True`` traces; decov_loss, one view, traces
    either way). The docs promise the gathered losses of the family. Expected: the global loss."""
    for rank, (message, _, value) in enumerate(r[name] for r in default_group):
        assert message == "no error" and torch.isfinite(value), f"rank {rank}: {message[:300]}"


@pytest.mark.distributed
def test_dynamic_compile_inside_a_process_group(default_group):
    """``torch.compile(barlow_twins_loss, dynamic=True, fullgraph=True)`` inside a process group with equal shards
    fails on every rank: ``cost.choose_strategy`` calls ``min(..., key=...)`` on symbolic sizes, which dynamo
    cannot trace. The docs list uneven shards and bad inputs as the cases that need eager mode, not dynamic
    shapes. Expected: one trace, or the case documented."""
    for rank, (message, _, value) in enumerate(r["compiled_dynamic"] for r in default_group):
        assert message == "no error" and torch.isfinite(value), f"rank {rank}: {message[:300]}"


@pytest.mark.distributed
def test_the_default_group_passed_as_world_on_one_rank_keeps_the_ranks_in_step(default_group):
    """``group=dist.group.WORLD`` is the default group, but the call counter is keyed by the object (``None`` vs
    ``WORLD``): once the group has seen loss calls, a rank that passes WORLD while the others pass None makes every
    rank raise "out of step" ("calls [3, 3, 1]"), and the recovery sets the counter of the key that rank used, so
    the next calls are out of step again. Nothing was out of step. Expected: three good calls on every rank."""
    for rank, results in enumerate(default_group):
        for call in (1, 2, 3):
            message, _, _ = results["world", call]
            assert message == "no error", f"rank {rank}, call {call}: {message[:200]}"


@pytest.mark.distributed
def test_a_rank_outside_the_group_it_passes_fails_alone_and_clearly(default_group):
    """On a rank outside ``new_group([0, 1])``, torch returns ``GroupMember.NON_GROUP_MEMBER`` (an int): that rank
    raises "group must be None or a torch.distributed.ProcessGroup, got int" (the "not a member" check of
    ``GlobalBatch.exchange`` cannot be reached), and it first joins the *default* group's exchange with an error
    flag, so ranks 0 and 1 get rank 2's error at their next, correct call on the default group. Expected: rank 2
    raises at once that it is not a member of ``group``, without touching the default group; ranks 0 and 1 get
    their loss at both calls."""
    ranks = default_group
    message, _, _ = ranks[2]["non_member"]
    assert "not a member" in message, f"rank 2: {message}"
    for rank in (0, 1):
        for key in ("non_member", ("non_member", "next")):
            message, _, _ = ranks[rank][key]
            assert message == "no error", f"rank {rank}, {key}: {message[:200]}"


@pytest.mark.distributed
def test_a_permutation_out_of_range_on_one_rank_raises_on_every_rank(hangs):
    """Mixed Barlow Twins checks the permutation's dtype and shape only. Rank 2 passes indices into the global
    batch (a natural mistake under DDP): ``views[1][permutation]`` raises IndexError on rank 2 after the exchange,
    and the other ranks wait in the gather until the timeout. Expected: a ValueError naming permutation (indices
    must lie in [0, N_r)) on every rank at once."""
    _raised_together(hangs, "permutation_out_of_range", "permutation")


@pytest.mark.distributed
def test_a_view_on_another_device_on_one_rank_raises_on_every_rank(hangs):
    """Rank 2 passes meta tensors (a device the group's backend cannot use) while the others pass CPU tensors:
    the checks compare devices within a rank only, rank 2 fails inside the header exchange ("Cannot copy out of
    meta tensor") and the others wait until the timeout. Expected: every rank raises at once an error naming the
    device of each rank."""
    _raised_together(hangs, "meta_device", "device")


@pytest.mark.distributed
def test_distributed_local_on_one_rank_raises_on_every_rank(hangs):
    """Rank 2 calls with ``distributed="local"`` and the others with "global": rank 2 communicates nothing, so the
    others wait in the exchange, and when rank 2's next collective is not a loss call (here a barrier; in training,
    DDP's gradient all-reduce) every rank fails only at the timeout. ``distributed`` is even among the options the
    header compares, but a local call never sends a header. Expected: the mismatch of ``distributed`` raised on
    every rank at once (the issue's done criterion for this fault)."""
    _raised_together(hangs, "local_on_one_rank", "distributed")


@pytest.mark.distributed
def test_a_bad_input_under_compile_names_the_input(hangs):
    """Compiled inside a process group, a 1-D ``z1`` on rank 2 does not raise "z1 must be 2-D": the caught error
    reaches ``GlobalBatch.exchange`` with ``dtype`` unassigned (only set when there is no error) and dynamo stops
    with "Attempted to read undefined local variable ... dtype"; the other ranks then wait until the timeout. The
    docs accept the wait but say the bad rank raises its input's error. Expected: "z1 must be 2-D" on rank 2 (and,
    ideally, on every rank)."""
    message, _, _ = hangs[2]["compiled_bad_input"]
    assert "z1 must be 2-D" in message, f"rank 2: {message[:300]}"


# ------------------------------------------------------------------------------------------------ one process


def test_dynamic_compile_traces_once_for_many_batch_sizes():
    """With ``dynamic=True`` the CHANGELOG promises one trace for every batch size, but ``column_dot`` (the column
    sums of the statistics) loops in Python over row slabs, ``range(rows, n, rows)``, which guards on N: every new
    N recompiles, and with ``fullgraph=True`` the 9th size fails with "recompile limit exceeded"
    (tests/test_compile.py::test_dynamic_compile_traces_once_for_every_batch_size fails on main for the same
    reason). Expected: one frame for N = 8, 9, 17, 33."""
    torch._dynamo.reset()
    frames = []

    def count(graph, example_inputs):
        frames.append(graph)
        return graph.forward

    function = functools.partial(redundancy.cca_ssg_loss, algorithm="cross")
    compiled = torch.compile(function, dynamic=True, fullgraph=True, backend=count)
    for n in (8, 9, 17, 33):
        z1, z2 = torch.randn(n, 7, dtype=torch.float64), torch.randn(n, 7, dtype=torch.float64)
        torch.testing.assert_close(compiled(z1, z2), function(z1, z2), rtol=1e-12, atol=0)
    assert len(frames) == 1, f"traced {len(frames)} times for 4 batch sizes"


@pytest.mark.parametrize(
    "name",
    [
        "barlow_twins_loss",
        "vicreg_loss",
        "decov_loss",
        "total_coding_rate",
        "cca_ssg_loss",
        "spectral_contrastive_loss",
    ],
)
def test_torch_func_grad_over_the_public_functions(name):
    """``torch.func.grad`` (and ``vmap``) over every loss but vicreg_variance_loss raises "In order to use an
    autograd.Function with functorch transforms ... it must override the setup_context staticmethod": the ops'
    autograd Functions use the old ``forward(ctx, ...)`` form. Expected: the gradient ``torch.autograd.grad``
    gives."""
    function = getattr(redundancy, name)
    z1, z2 = torch.randn(16, 6, dtype=torch.float64), torch.randn(16, 6, dtype=torch.float64)
    views = (
        (z1, z2) if name in ("barlow_twins_loss", "vicreg_loss", "cca_ssg_loss", "spectral_contrastive_loss") else (z1,)
    )
    leaf = z1.clone().requires_grad_()
    (expected,) = torch.autograd.grad(function(leaf, *views[1:]), leaf)
    actual = torch.func.grad(lambda z: function(z, *views[1:]))(z1)
    torch.testing.assert_close(actual, expected, rtol=1e-10, atol=1e-12)


def test_correction_takes_the_same_values_as_python():
    """``correction`` rejects ``True`` (a bool is not 0 or 1) but takes ``numpy.True_`` and ``1.0``, which then
    reach the ranks' comparison and the repr as they are (``VICRegLoss(correction=np.True_)``). Expected: the
    ValueError of ``True`` for ``numpy.True_`` too (and an int for 1.0, or the same error)."""
    np = pytest.importorskip("numpy")
    with pytest.raises(ValueError, match="correction"):
        redundancy.VICRegLoss(correction=np.True_)


def test_permutation_must_be_a_permutation():
    """``mixed_barlow_twins_regularizer`` takes any integer vector of the right shape: ``torch.zeros(N)`` (every
    row mixed with row 0) and negative indices return a value, and indices past N raise a bare IndexError that
    names no argument. Expected: a ValueError naming permutation."""
    z1, z2 = torch.randn(8, 6, dtype=torch.float64), torch.randn(8, 6, dtype=torch.float64)
    for permutation in (torch.zeros(8, dtype=torch.long), torch.arange(8) - 8, torch.arange(8) + 5):
        with pytest.raises(ValueError, match="permutation"):
            redundancy.mixed_barlow_twins_regularizer(z1, z2, z1 + z2, permutation, 0.5)


def _gradient_penalty(function, z: torch.Tensor, other: torch.Tensor) -> torch.Tensor:
    """``‖∂L/∂z‖²``, differentiable in ``z`` (``create_graph=True``), as a gradient penalty computes it."""
    (gradient,) = torch.autograd.grad(function(z, other), z, create_graph=True)
    return gradient.square().sum()


@pytest.mark.parametrize("name", ["vicreg_loss", "spectral_contrastive_loss"])
def test_double_backward_is_exact_or_refused(name):
    """Differentiating a gradient (a gradient penalty, meta-learning) through vicreg_loss or
    spectral_contrastive_loss returns a wrong answer without a word: the ops' autograd Functions have a closed-form
    backward that autograd does not differentiate, while the terms computed with plain torch operations are, so
    the second derivative holds only part of the graph (relative error 0.16 for VICReg and 0.45 for the spectral
    loss against central differences). Barlow Twins, DeCov and the total coding rate return a gradient with no
    ``grad_fn`` instead. Expected: the exact second derivative, or an error (``once_differentiable``)."""
    function = getattr(redundancy, name)
    generator = torch.Generator().manual_seed(0)
    z1, z2 = (torch.randn(6, 4, generator=generator, dtype=torch.float64) for _ in range(2))
    leaf = z1.clone().requires_grad_()
    try:
        (actual,) = torch.autograd.grad(_gradient_penalty(function, leaf, z2), leaf)
    except RuntimeError:
        return  # refused: acceptable
    step = 1e-4
    expected = torch.zeros_like(z1)
    for index in range(z1.numel()):
        shift = torch.zeros(z1.numel(), dtype=torch.float64)
        shift[index] = step
        shift = shift.view_as(z1)
        plus = _gradient_penalty(function, (z1 + shift).requires_grad_(), z2)
        minus = _gradient_penalty(function, (z1 - shift).requires_grad_(), z2)
        expected.view(-1)[index] = (plus - minus).item() / (2 * step)
    torch.testing.assert_close(actual, expected, rtol=1e-4, atol=1e-6)


@pytest.mark.distributed
def test_total_coding_rate_of_a_global_batch_of_one_row(default_group):
    """One process computes ``total_coding_rate`` of a single row (its ``min_rows`` is 1), but the exchange asks
    every loss for a global batch of at least 2 rows: with rows 1, 0, 0 every rank raises "the global batch ...
    needs at least 2 rows". Expected: the value of one process on that row, on every rank."""
    expected = redundancy.total_coding_rate(_views(0)[0][:1])
    for rank, (message, _, value) in enumerate(r["one_row"] for r in default_group):
        assert message == "no error", f"rank {rank}: {message}"
        torch.testing.assert_close(value, expected, rtol=1e-12, atol=0)


@pytest.mark.parametrize("option", ["lambd", "scale", "eps", "off_diagonal_target"])
def test_an_integer_too_large_for_a_float_is_a_bad_option(option):
    """``check_real`` takes ``10**400`` as finite (an int compares with ``inf``), so ``BarlowTwinsLoss(lambd=10**400)``
    is built, and the call raises a bare ``OverflowError: int too big to convert`` that names no option (in a
    process group, see the next test). Expected: a ValueError naming the option, at construction and at the call."""
    z = torch.randn(8, 4, dtype=torch.float64)
    with pytest.raises(ValueError, match=option):
        redundancy.barlow_twins_loss(z, z, **{option: 10**400})
    with pytest.raises(ValueError, match=option):
        redundancy.BarlowTwinsLoss(**{option: 10**400})


@pytest.mark.distributed
def test_an_integer_too_large_on_one_rank_raises_on_every_rank(hangs):
    """``lambd=10**400`` on rank 2 passes its checks, then ``shared_values`` raises OverflowError in the exchange on
    rank 2 alone, before the all-gather, and the others wait until the timeout. Expected: a ValueError naming
    lambd on every rank at once."""
    _raised_together(hangs, "huge_integer_option", "lambd")
