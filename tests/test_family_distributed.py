"""Every loss of the family under torch.distributed, and the errors every rank raises together.

One spawned group of three gloo processes runs, on uneven shards of one float64 batch with an empty rank, the
battery of ``tests/family.py`` for every loss of the registry (every option variant under both gradient
conventions, a per-rank call, faults of the inputs and options made on one rank, small global batches, compiled
calls), then a DDP training step with the whole family, then the faults of the frame itself: each made on one rank
only, every rank must raise at once with a message naming what is wrong, and the ranks must be in step for the
next call. The faults that could leave the other ranks waiting in a collective run last, each on a fresh group
with a short timeout, so that a hang shows as gloo's timeout error instead of the expected message, without
stalling the suite.
"""

import datetime
import functools

import numpy as np
import pytest
import torch
import torch.distributed as dist
from torch import nn

import redundancy
from benchmarks.common import spawn_gloo
from tests import family
from tests.family import DIM
from tests.family import FAMILY
from tests.family import SHARDS
from tests.family import WORLD_SIZE
from tests.family import outcome
from tests.family import rows
from tests.utils import assert_relative
from tests.utils import relative_error

pytestmark = [pytest.mark.distributed, pytest.mark.slow]

#: The default group's timeout: long enough for every rank to compile while the others wait in a collective.
TIMEOUT = 60.0
#: How long a rank may wait in a collective of a faulty call before gloo gives up (a hang, in these tests).
FAULT_TIMEOUT = datetime.timedelta(seconds=10)

DISTRIBUTED_CASES = [pytest.param(case, id=case.id) for case in family.cases(ranks=True)]
MEMBERS = [pytest.param(member, id=member.name) for member in FAMILY]
MEMBER_FORMS = [
    pytest.param(member, form, id=f"{member.name}-{form}")
    for member in FAMILY
    for form in family.kind_of(member.loss).forms(*family.shard(family.Case(member, "", {}), 0))
]
MEMBER_FAULTS = [
    pytest.param(member, fault, id=f"{member.name}-{fault}")
    for member in FAMILY
    for fault in family.member_faults(member, family.shard(family.Case(member, "", {}), 2), True)
]


# ------------------------------------------------------------------------------------------------ the worker


def _worker(rank: int, world_size: int) -> dict:
    """What one rank of the gloo group sees (run by :func:`benchmarks.common.spawn_gloo`)."""
    records = {"family": family.rank_battery(rank)}
    model = nn.parallel.DistributedDataParallel(_encoder())
    _train(model, *_training_inputs(rank))
    records["trained"] = [p.detach().clone() for p in model.module.parameters()]
    records["frame"] = _frame_faults(rank)
    records["hang"] = _hang_faults(rank)  # last: a regression may leave a fresh group broken
    return records


@pytest.fixture(scope="module")
def ranks(tmp_path_factory) -> list[dict]:
    return spawn_gloo(_worker, WORLD_SIZE, tmp_path_factory.mktemp("family"), timeout=TIMEOUT)


# ------------------------------------------------------------------------------------------------ the family


@pytest.mark.parametrize("case", DISTRIBUTED_CASES)
def test_every_rank_gets_the_loss_of_the_concatenated_batch_and_gradients_by_the_convention(ranks, case):
    """The value (every term) of one process on the concatenated batch (1e-10), bit-equal on every rank; each
    rank's gradient is W·∂L/∂z_r under ``"global"`` and ∂L/∂z_r under ``"official"`` (1e-9)."""
    expected, expected_grads = family.one_process(case)
    for rank, records in enumerate(ranks):
        results = {convention: records["family"][case.id, convention] for convention in family.CONVENTIONS}
        for convention, result in results.items():
            assert not isinstance(result, str), f"rank {rank}, {convention}: {result}"
            value, grads = result
            assert_relative(value, expected, 1e-10, f"rank {rank}, {convention}")
            assert torch.equal(value, ranks[0]["family"][case.id, convention][0]), f"rank {rank} differs from rank 0"
            factor = WORLD_SIZE if convention == "global" else 1
            for view, (gradient, truth) in enumerate(zip(grads, expected_grads, strict=True)):
                assert gradient.shape == (SHARDS[rank], DIM)
                if SHARDS[rank]:
                    what = f"gradient of view {view}, rank {rank}, {convention}"
                    assert_relative(gradient, factor * truth[rows(rank)], 1e-9, what)
        for official, global_ in zip(results["official"][1], results["global"][1], strict=True):
            if official.numel():
                assert_relative(official * WORLD_SIZE, global_, 1e-12, f"1/W, rank {rank}")


@pytest.mark.parametrize("member", MEMBERS)
def test_local_mode_raises_the_short_ranks_error_on_every_rank(ranks, member):
    """``distributed="local"``: each rank's own loss; a rank of fewer rows than the loss needs (the empty one)
    makes every rank raise its error (the ranks exchange their headers in local mode too)."""
    short = [rank for rank, count in enumerate(SHARDS) if count < member.loss.min_rows]
    assert short, "the shards have an empty rank"
    for rank, records in enumerate(ranks):
        message = records["family"][member.name, "local"]
        assert isinstance(message, str) and "needs a batch of at least" in message, f"rank {rank}: {message}"
        assert f"(on rank {short[0]})" in message, f"rank {rank}: {message}"


@pytest.mark.parametrize(("member", "form"), MEMBER_FORMS)
def test_other_forms_of_the_inputs_give_the_global_loss(ranks, member, form):
    """The inputs spelt another way (the views of a sequence as one ``(V, N, D)`` tensor): the same global loss."""
    expected = family.one_process_loss(member)
    for rank, records in enumerate(ranks):
        value = records["family"][member.name, "form", form]
        assert not isinstance(value, str), f"rank {rank}: {value}"
        assert_relative(value, expected, 1e-10, f"rank {rank}")


@pytest.mark.parametrize(("member", "fault"), MEMBER_FAULTS)
def test_a_fault_on_one_rank_raises_on_every_rank_and_the_next_call_is_in_step(ranks, member, fault):
    """A bad input or option of rank 2 (a view that is not a tensor, 1-D or integer; what the kind of inputs can
    get wrong; a real option that differs from the other ranks'; an option given a value it does not take): every
    rank raises an error naming it, and the next, good call of every rank gives the global loss."""
    _, _, error = family.member_faults(member, family.shard(family.Case(member, "", {}), 2), True)[fault]
    expected = family.one_process_loss(member)
    for rank, records in enumerate(ranks):
        message = records["family"][member.name, fault]
        assert isinstance(message, str), f"rank {rank} raised nothing: {message}"
        if isinstance(error, str):  # the whole message
            assert message == error, f"rank {rank}: {message}"
        else:
            assert all(word in message for word in error), f"rank {rank}: {message}"
        following = records["family"][member.name, fault, "next"]
        assert not isinstance(following, str), f"rank {rank}, the call after {fault}: {following}"
        assert_relative(following, expected, 1e-10, f"the call after {fault}, rank {rank}")


@pytest.mark.parametrize("member", MEMBERS)
def test_a_global_batch_of_the_fewest_rows_on_one_rank_is_the_loss_of_those_rows(ranks, member):
    """``min_rows`` rows in all, on rank 0 (the total coding rate takes one row): the value of one process on them;
    one row fewer makes every rank raise that the global batch is too small."""
    fewest = member.loss.min_rows
    expected = family.one_process_loss(member, (fewest, 0, 0))
    for rank, records in enumerate(ranks):
        value = records["family"][member.name, "min_rows"]
        assert not isinstance(value, str), f"rank {rank}: {value}"
        assert_relative(value, expected, 1e-12, f"rank {rank}")
        message = records["family"][member.name, "too_few_rows"]
        assert isinstance(message, str) and "global batch" in message, f"rank {rank}: {message}"


@pytest.mark.parametrize("member", MEMBERS)
def test_compiled_losses_trace_without_graph_breaks_inside_the_process_group(ranks, member):
    """``torch.compile(fullgraph=True)`` inside the group, equal shards: the global value and each rank's gradient
    (W times its rows of the one-process gradient); compiled with ``dynamic=True`` and called without autograd
    (an evaluation step), the global value again."""
    expected, expected_grads = family.compiled_one_process(member)
    for rank, records in enumerate(ranks):
        result = records["family"][member.name, "compiled"]
        assert not isinstance(result, str), f"rank {rank}: {result[:300]}"
        value, grads = result
        assert_relative(value, expected, 1e-10, f"compiled, rank {rank}")
        shard = slice(rank * family.EQUAL_ROWS, (rank + 1) * family.EQUAL_ROWS)
        for gradient, truth in zip(grads, expected_grads, strict=True):
            assert_relative(gradient, WORLD_SIZE * truth[shard], 1e-9, f"compiled gradient, rank {rank}")
        no_grad = records["family"][member.name, "compiled_no_grad"]
        assert not isinstance(no_grad, str), f"rank {rank}: {no_grad[:300]}"
        assert_relative(no_grad, expected, 1e-10, f"compiled without autograd, rank {rank}")


# ------------------------------------------------------------------------------------------------ training

INPUT_DIM = 5


def _encoder() -> nn.Module:
    torch.manual_seed(5)
    return nn.Sequential(nn.Linear(INPUT_DIM, 12), nn.Tanh(), nn.Linear(12, DIM)).double()


def _training_inputs(rank: int | None) -> tuple[list[torch.Tensor], list]:
    """The encoder's inputs (one per view of the loss that takes most) and each member's further inputs, of rank
    ``rank`` or (``None``) of the concatenated batch."""
    generator = torch.Generator().manual_seed(13)
    n = sum(SHARDS)
    x = torch.randn(n, INPUT_DIM, generator=generator, dtype=torch.float64)
    count = max(family.kind_of(member.loss).count for member in FAMILY)
    inputs = [x + 0.3 * torch.randn(n, INPUT_DIM, generator=generator, dtype=torch.float64) for _ in range(count)]
    extras = []
    for member in FAMILY:
        per_rank, whole = family.kind_of(member.loss).extra(SHARDS)
        extras.append(whole if rank is None else per_rank[rank])
    return [x if rank is None else x[rows(rank)] for x in inputs], extras


def _train(model: nn.Module, inputs: list[torch.Tensor], extras: list) -> None:
    """Three SGD steps on the sum of every loss of the family."""
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
    for _ in range(3):
        optimizer.zero_grad()
        embeddings = [model(x) for x in inputs]
        total = 0.0
        for member, extra in zip(FAMILY, extras, strict=True):
            kind = family.kind_of(member.loss)
            total = total + member.function(*kind.arguments(embeddings[: kind.count], extra))
        total.backward()
        optimizer.step()


def test_ddp_training_with_the_whole_family_matches_one_process(ranks):
    model = _encoder()
    initial = [p.detach().clone() for p in model.parameters()]
    _train(model, *_training_inputs(None))
    assert max(relative_error(p, q) for p, q in zip(model.parameters(), initial, strict=True)) > 1e-3
    for rank, records in enumerate(ranks):
        for trained, single in zip(records["trained"], model.parameters(), strict=True):
            assert_relative(trained, single, 1e-8, f"parameters after DDP, rank {rank}")


# ------------------------------------------------------------------------------------------------ the frame's faults


def _frame_faults(rank: int) -> dict:
    """Faults of the frame made on rank 2 only (or mismatches between ranks); every rank records what it raised
    (or returned), then makes one good call. Run in this order on the default group."""
    z1, z2 = (view[rows(rank)] for view in _global_pair())
    faulty = rank == 2
    cases = {
        "bad_option": lambda: redundancy.decov_loss(z1, correction=2 if faulty else 0),
        "triton": lambda: redundancy.barlow_twins_loss(z1, z2, backend="triton" if faulty else "auto"),
        "triton_everywhere": lambda: redundancy.barlow_twins_loss(z1, z2, backend="triton"),
        "local_on_one_rank": lambda: redundancy.barlow_twins_loss(z1, z2, distributed="local" if faulty else "global"),
        "other_loss": lambda: redundancy.vicreg_loss(z1, z2) if faulty else redundancy.barlow_twins_loss(z1, z2),
        "nan": lambda: redundancy.vicreg_loss(z1 * float("nan") if faulty else z1, z2),
        "half_and_single": lambda: redundancy.cca_ssg_loss(
            z1.half() if faulty else z1.float(), z2.half() if faulty else z2.float()
        ),
        "bfloat16_and_half": lambda: redundancy.barlow_twins_loss(
            z1.bfloat16() if faulty else z1.half(), z2.bfloat16() if faulty else z2.half(), strategy="all_gather"
        ),
        "numpy_float64": lambda: redundancy.barlow_twins_loss(z1, z2, lambd=np.float64(0.0051) if faulty else 0.0051),
        "numpy_float32": lambda: redundancy.barlow_twins_loss(z1, z2, lambd=np.float32(0.0051) if faulty else 0.0051),
    }
    records = {}
    for name, case in cases.items():
        records[name] = outcome(case)
        records[name, "next"] = outcome(lambda: redundancy.barlow_twins_loss(z1, z2))

    # Compiled inside the group, equal shards (a graph needs equal rows): each strategy of Barlow Twins, then an
    # option that differs on rank 2.
    equal = [view[rank * family.EQUAL_ROWS : (rank + 1) * family.EQUAL_ROWS] for view in _equal_views()]
    for name, function in COMPILED.items():
        torch._dynamo.reset()
        compiled = torch.compile(function, fullgraph=True, backend="aot_eager")  # any graph break raises
        records["compiled", name] = outcome(lambda: family.compiled_value_and_grads(compiled, equal))  # noqa: B023
    torch._dynamo.reset()
    mismatched = torch.compile(
        lambda a, b: redundancy.barlow_twins_loss(a, b, lambd=0.01 if faulty else 0.0051),
        fullgraph=True,
        backend="aot_eager",
    )
    records["compiled_mismatch"] = outcome(lambda: mismatched(*equal))
    torch._dynamo.reset()

    # The default group spelled two ways: dist.group.WORLD on rank 2, None on the others.
    records["world", 1] = outcome(
        lambda: redundancy.barlow_twins_loss(z1, z2, group=dist.group.WORLD if faulty else None)
    )
    records["world", 2] = outcome(lambda: redundancy.barlow_twins_loss(z1, z2))
    records["world", 3] = outcome(lambda: redundancy.barlow_twins_loss(z1, z2))
    # Last: rank 2 is not a member of the group that ranks 0 and 1 pass.
    pair = dist.new_group([0, 1])
    records["non_member"] = outcome(lambda: redundancy.barlow_twins_loss(z1, z2, group=pair))
    records["non_member", "next"] = outcome(lambda: redundancy.barlow_twins_loss(z1, z2))
    return records


def _equal_views() -> list[torch.Tensor]:
    generator = torch.Generator().manual_seed(23)
    return [torch.randn(family.EQUAL_ROWS * WORLD_SIZE, DIM, generator=generator, dtype=torch.float64) for _ in "ab"]


def _hang_faults(rank: int) -> dict:
    """Faults on one rank that could leave the other ranks waiting; each on a fresh group with a short timeout."""
    z1, z2 = (view[rows(rank)] for view in _global_pair())
    faulty = rank == 2
    permutation = torch.arange(SHARDS[rank])
    out_of_range = permutation + sum(SHARDS) if faulty else permutation  # global indices on rank 2
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
        # Only the faulty rank calls: its error is raised while it is traced, before any collective, and the
        # others would wait in the graph's first collective (docs/distributed.rst says so).
        "compiled_bad_input": lambda group: (
            torch.compile(
                functools.partial(redundancy.barlow_twins_loss, group=group), fullgraph=True, backend="aot_eager"
            )(z1[:, 0], z2)
            if faulty
            else None
        ),
    }
    groups = {name: dist.new_group(timeout=FAULT_TIMEOUT) for name in cases}
    records = {}
    for name, case in cases.items():
        torch._dynamo.reset()
        records[name] = outcome(lambda: case(groups[name]))  # noqa: B023 - called at once
        dist.barrier()  # the default group: every rank starts the next case together
    return records


def _raised_together(ranks: list[dict], case: str, expected: str, where: str = "hang") -> None:
    """Every rank raised an error containing ``expected`` (a rank left waiting gets gloo's timeout error instead)."""
    report = [(rank, str(records[where][case])[:160]) for rank, records in enumerate(ranks)]
    for rank, records in enumerate(ranks):
        message = records[where][case]
        assert isinstance(message, str) and expected in message, f"rank {rank} of {report}"


def _global_pair() -> list[torch.Tensor]:
    """Two views of the concatenated batch, for the faults of the frame (made with the two-view losses)."""
    return family.example_views(2, sum(SHARDS), DIM, seed=11)


#: Barlow Twins' strategies compiled inside the group.
COMPILED = {
    "all_reduce": functools.partial(redundancy.barlow_twins_loss, strategy="all_reduce"),
    "all_gather_gram": functools.partial(redundancy.barlow_twins_loss, strategy="all_gather", algorithm="gram"),
}

#: fault -> what every rank's error message must contain.
FRAME_FAULTS = {
    "bad_option": "ValueError: correction must be 0 (divide by N) or 1 (divide by N - 1), got 2 (on rank 2)",
    "triton": "ValueError: backend must be the same on every rank of the process group, got backend = "
    "['auto', 'auto', 'triton']",
    "triton_everywhere": "ValueError: backend='triton' does not compute the global-batch loss of several ranks",
    "local_on_one_rank": "ValueError: distributed must be the same on every rank of the process group, got "
    "distributed = ['global', 'global', 'local']",
    "other_loss": "RuntimeError: the ranks of the process group called different losses at the same call: "
    "['barlow_twins_loss', 'barlow_twins_loss', 'vicreg_loss']",
}


@pytest.mark.parametrize("fault", list(FRAME_FAULTS))
def test_a_fault_of_the_frame_on_one_rank_raises_on_every_rank(ranks, fault):
    expected = redundancy.barlow_twins_loss(*_global_pair())
    for rank, records in enumerate(ranks):
        message = records["frame"][fault]
        assert isinstance(message, str) and FRAME_FAULTS[fault] in message, f"rank {rank}: {message}"
        assert_relative(records["frame"][fault, "next"], expected, 1e-10, f"the call after {fault}, rank {rank}")


def test_a_rank_calling_another_loss_is_told_which_losses(ranks):
    """Not "out of step" (which reads as a skipped call): the loss of each rank, named."""
    for rank, records in enumerate(ranks):
        message = records["frame"]["other_loss"]
        assert "vicreg_loss" in message and "barlow_twins_loss" in message and "out of step" not in message, (
            f"rank {rank}: {message}"
        )


def test_nan_on_one_rank_is_not_an_error_and_reaches_every_rank(ranks):
    expected = redundancy.barlow_twins_loss(*_global_pair())
    for rank, records in enumerate(ranks):
        value = records["frame"]["nan"]
        assert isinstance(value, torch.Tensor) and torch.isnan(value), f"rank {rank}: {value}"
        assert_relative(records["frame"]["nan", "next"], expected, 1e-10, f"the call after NaN, rank {rank}")


def test_ranks_with_different_half_precision_dtypes_compute_one_float32_loss(ranks):
    """float16 on one rank and float32 (or bfloat16 and float16) elsewhere: one compute dtype, one global value."""
    views = _global_pair()
    half_and_single = redundancy.cca_ssg_loss(
        *[torch.cat([v[rows(r)].half().float() if r == 2 else v[rows(r)].float() for r in range(3)]) for v in views]
    )
    rounded = [
        torch.cat([v[rows(r)].bfloat16().double() if r == 2 else v[rows(r)].half().double() for r in range(3)])
        for v in views
    ]
    bfloat16_and_half = redundancy.barlow_twins_loss(*rounded)
    for rank, records in enumerate(ranks):
        assert records["frame"]["half_and_single"].dtype == torch.float32
        assert_relative(records["frame"]["half_and_single"], half_and_single, 1e-5, f"float16 and float32, {rank}")
        assert_relative(records["frame"]["bfloat16_and_half"], bfloat16_and_half, 1e-5, f"bfloat16 and float16, {rank}")


def test_numpy_options_are_compared_by_value(ranks):
    """``numpy.float64(0.0051)`` equals the Python float: no mismatch. ``numpy.float32(0.0051)`` is another number,
    and the error shows each rank's value."""
    expected = redundancy.barlow_twins_loss(*_global_pair())
    for rank, records in enumerate(ranks):
        assert_relative(records["frame"]["numpy_float64"], expected, 1e-12, f"rank {rank}")
        message = records["frame"]["numpy_float32"]
        assert message.startswith("ValueError: lambd must be the same on every rank") and "0.005100000184" in message


@pytest.mark.parametrize("name", list(COMPILED))
def test_compiled_strategies_trace_without_graph_breaks_inside_the_process_group(ranks, name):
    expected, expected_grads = family.compiled_value_and_grads(COMPILED[name], _equal_views())
    for rank, records in enumerate(ranks):
        result = records["frame"]["compiled", name]
        assert not isinstance(result, str), f"rank {rank}: {result[:300]}"
        value, grads = result
        assert_relative(value, expected, 1e-10, f"compiled {name}, rank {rank}")
        shard = slice(rank * family.EQUAL_ROWS, (rank + 1) * family.EQUAL_ROWS)
        for gradient, truth in zip(grads, expected_grads, strict=True):
            assert_relative(gradient, WORLD_SIZE * truth[shard], 1e-9, f"gradient of compiled {name}, rank {rank}")


def test_compiled_loss_with_options_that_differ_raises_on_every_rank(ranks):
    for rank, records in enumerate(ranks):
        message = records["frame"]["compiled_mismatch"]
        assert "RuntimeError" in message and "the ranks of the process group differ" in message, f"rank {rank}"


def test_the_default_group_passed_as_world_on_one_rank_keeps_the_ranks_in_step(ranks):
    """``group=dist.group.WORLD`` on rank 2 and ``None`` elsewhere are one group: three good calls on every rank
    (the call counter is keyed by the group, not by how it was spelt)."""
    for rank, records in enumerate(ranks):
        for call in (1, 2, 3):
            value = records["frame"]["world", call]
            assert not isinstance(value, str), f"rank {rank}, call {call}: {value[:200]}"


def test_a_rank_outside_the_group_it_passes_fails_alone_and_clearly(ranks):
    """Rank 2 passes ``new_group([0, 1])``, of which it is not a member: it raises at once that it is not a member,
    without touching the default group; ranks 0 and 1 get their loss at both calls."""
    message = ranks[2]["frame"]["non_member"]
    assert isinstance(message, str) and "not a member" in message, f"rank 2: {message}"
    for rank in (0, 1):
        for key in ("non_member", ("non_member", "next")):
            value = ranks[rank]["frame"][key]
            assert not isinstance(value, str), f"rank {rank}, {key}: {value[:200]}"


def test_a_permutation_out_of_range_on_one_rank_raises_on_every_rank(ranks):
    """Indices into the global batch on rank 2 (a natural mistake under DDP): a ValueError naming permutation on
    every rank at once, not an IndexError on rank 2 while the others wait in the gather."""
    _raised_together(ranks, "permutation_out_of_range", "permutation")


def test_a_view_on_another_device_on_one_rank_raises_on_every_rank(ranks):
    """Meta tensors on rank 2 and CPU tensors elsewhere: every rank raises at once, naming the device."""
    _raised_together(ranks, "meta_device", "device")


def test_distributed_local_on_one_rank_raises_on_every_rank_before_another_collective(ranks):
    """Rank 2 calls with ``distributed="local"``, the others with "global", and rank 2's next collective is not
    a loss call (here a barrier; in training, DDP's all-reduce): the mismatch is raised on every rank at once."""
    _raised_together(ranks, "local_on_one_rank", "distributed")


def test_an_integer_too_large_on_one_rank_raises_on_every_rank(ranks):
    """``lambd=10**400`` on rank 2: a ValueError naming lambd on every rank, not an OverflowError on rank 2 alone
    in the exchange."""
    _raised_together(ranks, "huge_integer_option", "lambd")


def test_a_bad_input_under_compile_names_the_input(ranks):
    """Compiled inside a process group, a 1-D ``z1`` on rank 2 raises "z1 must be 2-D" there."""
    message = ranks[2]["hang"]["compiled_bad_input"]
    assert isinstance(message, str) and "z1 must be 2-D" in message, f"rank 2: {message[:300]}"
