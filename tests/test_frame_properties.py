"""Properties of the loss frame that hold, found while attacking it, and that no other test states.

Distributed: every loss of the family under both gradient conventions and both ``distributed`` modes equals one
process (on the concatenated batch, or on the rank's own rows), over three gloo ranks with uneven shards, one of
them empty; a bad input of every loss on one rank raises on every rank; NaN inputs are not an error; ranks whose
half-precision dtypes differ but compute in float32 agree; a numpy option equal to a Python one is not a mismatch.
One process: half-precision inputs and autocast, numpy options, and the Modules' copies and state.
"""

import copy
import functools
import inspect
import pickle

import numpy as np
import pytest
import torch

import redundancy
from tests.family_batch import (
    ALPHA,
    DIM,
    SHARDS,
    WORLD_SIZE,
    evaluate,
    global_permutation,
    global_views,
    permutation,
    rows,
)
from tests.utils import assert_relative, spawn_gloo

#: name -> (function, number of embedding views): every loss of the family, with options off their defaults.
LOSSES = {
    "barlow_twins_all_reduce_std": (
        functools.partial(redundancy.barlow_twins_terms, strategy="all_reduce", correction=1, eps=0.0),
        2,
    ),
    "barlow_twins_all_reduce_none": (
        functools.partial(
            redundancy.barlow_twins_terms, strategy="all_reduce", standardize=False, off_diagonal_target=-1.0
        ),
        2,
    ),
    "barlow_twins_auto_lambd": (functools.partial(redundancy.barlow_twins_terms, lambd="auto", scale=0.3), 2),
    "barlow_twins_all_gather_cross": (
        functools.partial(redundancy.barlow_twins_terms, strategy="all_gather", algorithm="cross"),
        2,
    ),
    "vicreg_cross": (functools.partial(redundancy.vicreg_terms, algorithm="cross", correction=0), 2),
    "vicreg_variance": (redundancy.vicreg_variance_loss, 1),
    "vicreg_covariance_gram": (functools.partial(redundancy.vicreg_covariance_loss, algorithm="gram"), 1),
    "decov_cross": (functools.partial(redundancy.decov_loss, algorithm="cross", correction=1), 1),
    "total_coding_rate": (redundancy.total_coding_rate, 1),
    "cca_ssg_gram_batchnorm": (
        functools.partial(redundancy.cca_ssg_terms, algorithm="gram", correction=0, eps=1e-3),
        2,
    ),
    "spectral_contrastive_cross": (
        functools.partial(redundancy.spectral_contrastive_terms, algorithm="cross", mu=0.5),
        2,
    ),
    "mixed_barlow_twins_cross": (
        functools.partial(redundancy.mixed_barlow_twins_regularizer, algorithm="cross", correction=0),
        3,
    ),
}


def _error(function) -> str:
    try:
        value = function()
    except (TypeError, ValueError, RuntimeError) as error:
        return f"{type(error).__name__}: {error}"
    return value.detach() if isinstance(value, torch.Tensor) else value


def _worker(rank: int, world_size: int) -> dict:
    """What one rank of the gloo group sees (run by :func:`tests.utils.spawn_gloo`)."""
    views = [view[rows(rank)] for view in global_views()]
    perm = permutation(rank)
    results = {}
    for name in LOSSES:
        results[name, "official"] = evaluate(LOSSES, name, views, perm, gradient_convention="official")
        # every rank makes the local call; the empty rank's error is raised on every rank
        results[name, "local"] = _error(lambda: evaluate(LOSSES, name, views, perm, distributed="local"))  # noqa: B023
    z1, z2, z3 = views
    faulty = rank == 2
    for name, (function, count) in LOSSES.items():
        inputs = [None if faulty else view for view in views[:count]]
        extra = (perm, ALPHA) if name.startswith("mixed") else ()
        results[name, "none"] = _error(lambda: function(*inputs, *extra))  # noqa: B023
    results["nan"] = _error(lambda: redundancy.vicreg_loss(z1 * float("nan") if faulty else z1, z2))
    results["nan", "next"] = _error(lambda: redundancy.vicreg_loss(z1, z2))
    results["half_and_single"] = _error(
        lambda: redundancy.cca_ssg_loss(z1.half() if faulty else z1.float(), z2.half() if faulty else z2.float())
    )
    results["bfloat16_and_half"] = _error(
        lambda: redundancy.barlow_twins_loss(
            z1.bfloat16() if faulty else z1.half(), z2.bfloat16() if faulty else z2.half(), strategy="all_gather"
        )
    )
    results["numpy_float64"] = _error(
        lambda: redundancy.barlow_twins_loss(z1, z2, lambd=np.float64(0.0051) if faulty else 0.0051)
    )
    results["numpy_float32"] = _error(
        lambda: redundancy.barlow_twins_loss(z1, z2, lambd=np.float32(0.0051) if faulty else 0.0051)
    )
    results["mixed_permutation_dtype"] = _error(
        lambda: redundancy.mixed_barlow_twins_regularizer(z1, z2, z3, perm.float() if faulty else perm, ALPHA)
    )
    return results


@pytest.fixture(scope="module")
def ranks(tmp_path_factory) -> list[dict]:
    return spawn_gloo(_worker, WORLD_SIZE, tmp_path_factory.mktemp("frame_properties"))


@pytest.mark.distributed
@pytest.mark.parametrize("name", list(LOSSES))
def test_official_convention_gives_each_rank_the_gradient_of_its_own_rows(ranks, name):
    """``gradient_convention="official"``: the global value, and exactly ∂L/∂z_r (not W times it) on each rank."""
    expected, expected_grads = evaluate(LOSSES, name, global_views(), global_permutation())
    for rank, results in enumerate(ranks):
        value, grads = results[name, "official"]
        assert_relative(value, expected, 1e-10, f"{name}, rank {rank}")
        for grad, expected_grad in zip(grads, expected_grads, strict=True):
            assert grad.shape == (SHARDS[rank], DIM)
            if SHARDS[rank]:
                assert_relative(grad, expected_grad[rows(rank)], 1e-9, f"official gradient of {name}, rank {rank}")


@pytest.mark.distributed
@pytest.mark.parametrize("name", list(LOSSES))
def test_local_mode_is_each_ranks_own_loss_inside_a_group(ranks, name):
    """``distributed="local"``: one process's loss and gradients on the rank's own rows; a rank of fewer rows than
    the loss needs makes every rank raise its error (the ranks exchange their headers in local mode too)."""
    needed = 1 if name == "total_coding_rate" else 2  # the coding rate is defined for one row
    short = [rank for rank, rows in enumerate(SHARDS) if rows < needed]
    for rank, results in enumerate(ranks):
        outcome = results[name, "local"]
        if short:
            assert isinstance(outcome, str) and "needs a batch of at least" in outcome, outcome
            assert f"(on rank {short[0]})" in outcome, outcome
            continue
        expected, expected_grads = evaluate(
            LOSSES, name, [view[rows(rank)] for view in global_views()], permutation(rank)
        )
        value, grads = outcome
        assert_relative(value, expected, 1e-10, f"local {name}, rank {rank}")
        for grad, expected_grad in zip(grads, expected_grads, strict=True):
            assert_relative(grad, expected_grad, 1e-9, f"local gradient of {name}, rank {rank}")


@pytest.mark.distributed
@pytest.mark.parametrize("name", list(LOSSES))
def test_a_non_tensor_on_one_rank_raises_the_same_error_on_every_rank(ranks, name):
    argument = (
        "z" if LOSSES[name][1] == 1 and not name.startswith("decov") else "h" if name.startswith("decov") else "z1"
    )
    expected = f"TypeError: {argument} must be a torch.Tensor, got NoneType (on rank 2)"
    for rank, results in enumerate(ranks):
        assert results[name, "none"] == expected, f"rank {rank}: {results[name, 'none']}"


@pytest.mark.distributed
def test_nan_on_one_rank_is_not_an_error_and_reaches_every_rank(ranks):
    views = global_views()
    expected = redundancy.vicreg_loss(views[0], views[1])
    for rank, results in enumerate(ranks):
        assert isinstance(results["nan"], torch.Tensor) and torch.isnan(results["nan"]), f"rank {rank}"
        assert_relative(results["nan", "next"], expected, 1e-10, f"the call after NaN, rank {rank}")


@pytest.mark.distributed
def test_ranks_with_different_half_precision_dtypes_compute_one_float32_loss(ranks):
    """float16 on one rank and float32 (or bfloat16 and float16) elsewhere: one compute dtype, one global value."""
    views = global_views()
    half_and_single = redundancy.cca_ssg_loss(
        torch.cat([views[0][rows(r)].half().float() if r == 2 else views[0][rows(r)].float() for r in range(3)]),
        torch.cat([views[1][rows(r)].half().float() if r == 2 else views[1][rows(r)].float() for r in range(3)]),
    )
    rounded = [
        torch.cat([v[rows(r)].bfloat16().double() if r == 2 else v[rows(r)].half().double() for r in range(3)])
        for v in views[:2]
    ]
    bfloat16_and_half = redundancy.barlow_twins_loss(*rounded)
    for rank, results in enumerate(ranks):
        assert results["half_and_single"].dtype == torch.float32
        assert_relative(results["half_and_single"], half_and_single, 1e-5, f"float16 with float32, rank {rank}")
        assert_relative(results["bfloat16_and_half"], bfloat16_and_half, 1e-5, f"bfloat16 with float16, rank {rank}")


@pytest.mark.distributed
def test_numpy_options_are_compared_by_value(ranks):
    """``numpy.float64(0.0051)`` equals the Python float: no mismatch. ``numpy.float32(0.0051)`` is another number,
    and the error shows each rank's value."""
    expected = redundancy.barlow_twins_loss(*global_views()[:2])
    for rank, results in enumerate(ranks):
        assert_relative(results["numpy_float64"], expected, 1e-12, f"rank {rank}")
        message = results["numpy_float32"]
        assert message.startswith("ValueError: lambd must be the same on every rank") and "0.005100000184" in message


@pytest.mark.distributed
def test_a_bad_extra_input_on_one_rank_raises_on_every_rank(ranks):
    for rank, results in enumerate(ranks):
        message = results["mixed_permutation_dtype"]
        assert message.startswith("TypeError: permutation must be an int64 or int32"), f"rank {rank}: {message}"
        assert "(on rank 2)" in message, f"rank {rank}: {message}"


# ------------------------------------------------------------------------------------------------ one process

SINGLE = {
    "barlow_twins_loss": 2,
    "vicreg_loss": 2,
    "vicreg_variance_loss": 1,
    "vicreg_covariance_loss": 1,
    "decov_loss": 1,
    "total_coding_rate": 1,
    "cca_ssg_loss": 2,
    "spectral_contrastive_loss": 2,
    "mixed_barlow_twins_regularizer": 3,
}


def _inputs(name: str, views: list[torch.Tensor]) -> list:
    extra = [torch.randperm(views[0].shape[0], generator=torch.Generator().manual_seed(3)), ALPHA]
    return views[: SINGLE[name]] + (extra if name == "mixed_barlow_twins_regularizer" else [])


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
@pytest.mark.parametrize("name", list(SINGLE))
def test_half_precision_inputs_give_a_float32_loss_and_gradients_in_their_dtype(name, dtype):
    function = getattr(redundancy, name)
    views = [torch.randn(12, 6).to(dtype).requires_grad_() for _ in range(3)]
    value = function(*_inputs(name, views))
    value.backward()
    reference = function(*_inputs(name, [view.detach().double() for view in views]))
    assert value.dtype == torch.float32 and views[0].grad.dtype == dtype
    assert_relative(value, reference, 1e-5, f"{name} on {dtype}")


@pytest.mark.parametrize("name", list(SINGLE))
def test_autocast_does_not_change_the_loss(name):
    function = getattr(redundancy, name)
    views = [torch.randn(12, 6) for _ in range(3)]
    with torch.autocast("cpu", dtype=torch.bfloat16):
        autocast = function(*_inputs(name, views))
    assert autocast.dtype == torch.float32
    assert torch.equal(autocast, function(*_inputs(name, views)))


MODULES = {
    "BarlowTwinsLoss": ("barlow_twins_loss", {"lambd": np.float32(0.01), "scale": np.int64(2)}),
    "VICRegLoss": ("vicreg_loss", {"correction": np.int64(0), "gamma": np.float64(0.5)}),
    "DeCovLoss": ("decov_loss", {"algorithm": np.str_("gram")}),
    "TotalCodingRate": ("total_coding_rate", {"eps": np.float64(0.3)}),
    "CCASSGLoss": ("cca_ssg_loss", {"lambd": np.float32(1e-3)}),
    "SpectralContrastiveLoss": ("spectral_contrastive_loss", {"mu": np.float64(2.0)}),
    "MixedBarlowTwinsRegularizer": ("mixed_barlow_twins_regularizer", {"scale": np.float64(2.0)}),
}


@pytest.mark.parametrize("module_name", list(MODULES))
def test_modules_with_numpy_options_survive_pickle_and_deepcopy(module_name):
    """A Module with numpy options: forward equals the function with the same options, and so do its pickled and
    deep-copied versions; it has no state, and its repr lists every option of the function's signature."""
    function_name, options = MODULES[module_name]
    module = getattr(redundancy, module_name)(**options)
    function = getattr(redundancy, function_name)
    inputs = _inputs(function_name, [torch.randn(10, 5, dtype=torch.float64) for _ in range(3)])
    expected = function(*inputs, **options)
    for copied in (module, pickle.loads(pickle.dumps(module)), copy.deepcopy(module)):
        assert torch.equal(copied(*inputs), expected)
        assert repr(copied) == repr(module)
    assert module.state_dict() == {} and list(module.parameters()) == []
    signature = inspect.signature(redundancy.__dict__[function_name])
    options_in_signature = [p.name for p in signature.parameters.values() if p.kind == p.KEYWORD_ONLY]
    assert list(module.options) == options_in_signature
    for name in options_in_signature:
        assert f"{name}=" in repr(module)


@pytest.mark.parametrize("option", ["lambd", "scale", "eps", "off_diagonal_target"])
def test_a_tensor_option_is_refused_with_a_message_naming_it(option):
    """Options are plain numbers: a 0-dim tensor (a scheduled or learned weight) is refused, at the call and at the
    Module's construction, by a TypeError naming the option, instead of being traced or compared as a tensor."""
    z = torch.randn(8, 4, dtype=torch.float64)
    value = torch.tensor(0.5)
    with pytest.raises(TypeError, match=f"{option} must be a real number( or 'auto')?, got Tensor"):
        redundancy.barlow_twins_loss(z, z, **{option: value})
    with pytest.raises(TypeError, match=f"{option} must be a real number( or 'auto')?, got Tensor"):
        redundancy.BarlowTwinsLoss(**{option: value})
