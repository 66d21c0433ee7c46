"""The Mixed Barlow Twins regularizer against the reference transcription of ``wgcban/mix-bt``."""

import itertools

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

import redundancy
from redundancy.reference import mixed_barlow_twins_regularizer_reference
from tests.utils import GRAD_TOL
from tests.utils import LOSS_RTOL
from tests.utils import assert_relative

ALGORITHMS = ["cross", "gram"]
SHAPES = list(itertools.product([2, 37, 256], [1, 70, 130]))
VARIANTS = {
    "official": {},
    "batchnorm": {"correction": 0, "eps": 1e-5},
    "none": {"standardize": False},
    "weights": {"lambd": 1 / 128, "scale": 1.0},
}


def _inputs(n, d, dtype=torch.float64, alpha=0.35):
    z1 = torch.randn(n, d, dtype=torch.float64) * torch.linspace(0.5, 2.0, d, dtype=torch.float64) + 0.3
    z2 = 0.8 * z1 + 0.6 * torch.randn(n, d, dtype=torch.float64)
    permutation = torch.randperm(n)
    z_mixed = alpha * z1 + (1 - alpha) * z2[permutation]
    z_mixed = torch.tanh(z_mixed) + 0.2 * torch.randn(n, d, dtype=torch.float64)  # a non-linear "encoder"
    return z1.to(dtype), z2.to(dtype), z_mixed.to(dtype), permutation, alpha


@pytest.mark.parametrize("algorithm", ALGORITHMS)
@pytest.mark.parametrize(("n", "d"), SHAPES)
def test_mixed_barlow_twins_float64_equals_official_formula(n, d, algorithm):
    inputs = _inputs(n, d)
    loss = redundancy.mixed_barlow_twins_regularizer(*inputs, algorithm=algorithm)
    # With N = 2 every standardized column is ±(1, -1)/√2: the exact value is 0, both sides give rounding only.
    torch.testing.assert_close(loss, mixed_barlow_twins_regularizer_reference(*inputs), rtol=1e-10, atol=1e-24)


@pytest.mark.parametrize("algorithm", ALGORITHMS)
@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_mixed_barlow_twins_float64_variants(variant, algorithm):
    inputs = _inputs(37, 70)
    loss = redundancy.mixed_barlow_twins_regularizer(*inputs, algorithm=algorithm, **VARIANTS[variant])
    assert_relative(loss, mixed_barlow_twins_regularizer_reference(*inputs, **VARIANTS[variant]), 1e-10)


@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_mixed_barlow_twins_gradcheck_and_upstream(algorithm):
    z1, z2, z_mixed, permutation, alpha = _inputs(5, 4)
    tensors = tuple(z.requires_grad_(True) for z in (z1, z2, z_mixed))

    def function(a, b, m):
        return redundancy.mixed_barlow_twins_regularizer(a, b, m, permutation, alpha, algorithm=algorithm)

    assert torch.autograd.gradcheck(function, tensors)
    z1, z2, z_mixed, permutation, alpha = _inputs(37, 70)
    tensors = tuple(z.requires_grad_(True) for z in (z1, z2, z_mixed))
    function(*tensors).backward(torch.tensor(2.5, dtype=torch.float64))
    reference = mixed_barlow_twins_regularizer_reference(*tensors, permutation, alpha) * 2.5
    for tensor, expected, name in zip(tensors, torch.autograd.grad(reference, tensors), "abm", strict=True):
        assert_relative(tensor.grad, expected, GRAD_TOL[torch.float64][0], name)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16])
def test_mixed_barlow_twins_low_precision(dtype):
    z1, z2, z_mixed, permutation, alpha = _inputs(37, 70, dtype)
    z_mixed.requires_grad_(True)
    loss = redundancy.mixed_barlow_twins_regularizer(z1, z2, z_mixed, permutation, alpha)
    assert loss.dtype == torch.float32
    expected = mixed_barlow_twins_regularizer_reference(z1, z2, z_mixed.detach(), permutation, alpha, upcast=True)
    assert_relative(loss, expected, LOSS_RTOL[dtype])
    loss.backward()
    assert z_mixed.grad.dtype == dtype


def test_mixed_barlow_twins_non_contiguous_and_module():
    z1, z2, z_mixed, permutation, alpha = _inputs(70, 37)
    z1, z2, z_mixed = z1.t(), z2.t(), z_mixed.t()  # (37, 70); a permutation of 37 rows
    permutation = torch.randperm(37)
    expected = mixed_barlow_twins_regularizer_reference(
        z1.contiguous(), z2.contiguous(), z_mixed.contiguous(), permutation, alpha
    )
    regularizer = redundancy.MixedBarlowTwinsRegularizer(algorithm="gram")
    assert_relative(regularizer(z1, z2, z_mixed, permutation, alpha), expected, 1e-10)
    direct = redundancy.mixed_barlow_twins_regularizer(z1, z2, z_mixed, permutation, alpha, algorithm="gram")
    assert torch.equal(regularizer(z1, z2, z_mixed, permutation, alpha), direct)
    assert "scale=5.0" in repr(regularizer)


@given(n=st.integers(2, 12), d=st.integers(1, 12), seed=st.integers(0, 2**16), alpha=st.floats(0.0, 1.0))
def test_mixed_barlow_twins_properties(n, d, seed, alpha):
    torch.manual_seed(seed)
    z1, z2, z_mixed, permutation, alpha = _inputs(n, d, alpha=alpha)
    loss = redundancy.mixed_barlow_twins_regularizer(z1, z2, z_mixed, permutation, alpha, standardize=False)
    assert torch.isfinite(loss) and loss >= 0
    # A linear encoder commutes with the mixing: the regularizer vanishes.
    linear = alpha * z1 + (1 - alpha) * z2[permutation]
    zero = redundancy.mixed_barlow_twins_regularizer(z1, z2, linear, permutation, alpha, standardize=False)
    assert zero.item() <= 1e-20 * max(1.0, z1.abs().max().item() ** 4)
    # Reordering the batch (with the permutation expressed in the new order) leaves the value unchanged.
    order = torch.randperm(n)
    inverse = torch.argsort(order)
    moved = redundancy.mixed_barlow_twins_regularizer(
        z1[order], z2[order], z_mixed[order], inverse[permutation[order]], alpha, standardize=False
    )
    assert_relative(moved, loss, 1e-9)
    gram = redundancy.mixed_barlow_twins_regularizer(
        z1, z2, z_mixed, permutation, alpha, standardize=False, algorithm="gram"
    )
    torch.testing.assert_close(gram, loss, rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize(
    ("change", "error", "match"),
    [
        ({"alpha": 1.5}, ValueError, "alpha"),
        ({"alpha": "0.5"}, TypeError, "alpha"),
        ({"permutation": torch.arange(7)}, ValueError, r"permutation must have shape \(8,\)"),
        ({"permutation": torch.arange(8.0)}, TypeError, "permutation"),
        ({"z_mixed": torch.randn(8, 3, dtype=torch.float64)}, ValueError, "z1 and z_mixed must have the same shape"),
        ({"z_mixed": torch.ones(8, 4, dtype=torch.int64)}, TypeError, "z_mixed must have a floating-point"),
        ({"lambd": -1.0}, ValueError, "lambd"),
        ({"scale": -1.0}, ValueError, "scale"),
        ({"normalization": "batchnorm"}, TypeError, "normalization"),
        ({"correction": 2}, ValueError, "correction must be 0"),
        ({"standardize": 0}, TypeError, "standardize must be a bool"),
    ],
)
def test_mixed_barlow_twins_bad_inputs(change, error, match):
    z1, z2, z_mixed, permutation, alpha = _inputs(8, 4)
    arguments = {"z1": z1, "z2": z2, "z_mixed": z_mixed, "permutation": permutation, "alpha": alpha} | change
    with pytest.raises(error, match=match):
        redundancy.mixed_barlow_twins_regularizer(**arguments)


def test_mixed_barlow_twins_non_finite_input_propagates():
    z1, z2, z_mixed, permutation, alpha = _inputs(8, 4)
    z_mixed[1, 1] = float("inf")
    assert torch.isnan(redundancy.mixed_barlow_twins_regularizer(z1, z2, z_mixed, permutation, alpha))


def test_mixed_barlow_twins_permutation_must_be_a_permutation():
    """Any integer vector of the right shape is not a mixing: every row mixed with row 0, negative indices and
    indices past N each raise a ValueError naming permutation (not a value, nor a bare IndexError)."""
    z1, z2 = torch.randn(8, 6, dtype=torch.float64), torch.randn(8, 6, dtype=torch.float64)
    for permutation in (torch.zeros(8, dtype=torch.long), torch.arange(8) - 8, torch.arange(8) + 5):
        with pytest.raises(ValueError, match="permutation"):
            redundancy.mixed_barlow_twins_regularizer(z1, z2, z1 + z2, permutation, 0.5)
