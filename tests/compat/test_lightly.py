"""``redundancy.compat.lightly`` reproduces lightly's ``BarlowTwinsLoss`` and ``VICRegLoss``."""

import inspect
import math

import numpy as np
import pytest
import torch

from redundancy.compat import lightly
from redundancy.reference import barlow_twins_loss_reference
from redundancy.reference import barlow_twins_terms_reference
from redundancy.reference import vicreg_loss_reference
from redundancy.reference import vicreg_terms_reference
from tests.utils import assert_relative

# The published signatures (lightly/loss/barlow_twins_loss.py and vicreg_loss.py).
SIGNATURES = {
    lightly.BarlowTwinsLoss: [("lambda_param", 5e-3), ("gather_distributed", False)],
    lightly.VICRegLoss: [
        ("lambda_param", 25.0),
        ("mu_param", 25.0),
        ("nu_param", 1.0),
        ("gather_distributed", False),
        ("eps", 0.0001),
    ],
}
SHAPES = [(8, 6), (37, 70), (5, 130), (256, 64)]


def _views(n, d, dtype):
    scales = torch.linspace(0.3, 2.0, d, dtype=torch.float64)
    z1 = torch.randn(n, d, dtype=torch.float64) * scales
    z2 = 0.8 * z1 + 0.6 * torch.randn(n, d, dtype=torch.float64) * scales
    return z1.to(dtype), z2.to(dtype)


@pytest.mark.parametrize("cls", list(SIGNATURES), ids=lambda c: c.__name__)
def test_signature_is_lightlys(cls):
    parameters = list(inspect.signature(cls).parameters.values())
    assert [(p.name, p.default) for p in parameters] == SIGNATURES[cls]
    assert all(p.kind is p.POSITIONAL_OR_KEYWORD for p in parameters)


def test_lightly_golden_values(golden_cases):
    for case in golden_cases:
        z1 = torch.tensor(case["z1"], dtype=torch.float64)
        z2 = torch.tensor(case["z2"], dtype=torch.float64)
        expected = case["expected"]
        cases = {
            "lightly BarlowTwinsLoss(lambda_param=0.0051)": lightly.BarlowTwinsLoss(lambda_param=0.0051),
            "lightly BarlowTwinsLoss() default lambda_param=5e-3": lightly.BarlowTwinsLoss(),
            "lightly VICRegLoss() defaults": lightly.VICRegLoss(),
        }
        for key, criterion in cases.items():
            value = torch.tensor(expected[key], dtype=torch.float64)
            assert_relative(criterion(z1, z2), value, 1e-10, f"{case['name']}: {key}")


@pytest.mark.parametrize(("n", "d"), SHAPES)
def test_float32_equals_lightly_formula(n, d):
    z1, z2 = _views(n, d, torch.float32)
    barlow = lightly.BarlowTwinsLoss(lambda_param=0.01)
    assert_relative(barlow(z1, z2), barlow_twins_loss_reference(z1, z2, lambd=0.01), 1e-6, "BarlowTwinsLoss")
    vicreg = lightly.VICRegLoss(lambda_param=10.0, mu_param=20.0, nu_param=2.0, eps=1e-3)
    expected = vicreg_loss_reference(
        z1, z2, invariance_weight=10.0, variance_weight=20.0, covariance_weight=2.0, eps=1e-3
    )
    assert_relative(vicreg(z1, z2), expected, 1e-6, "VICRegLoss")


@pytest.mark.parametrize(("n", "d"), [(37, 70), (256, 64)])
def test_lightly_gradients_equal_the_reference(n, d):
    """Gradients included: float64 gradients of both adapters equal those of the reference formula."""
    z1, z2 = _views(n, d, torch.float64)
    cases = [
        (lightly.BarlowTwinsLoss(lambda_param=0.01), lambda a, b: barlow_twins_loss_reference(a, b, lambd=0.01)),
        (lightly.VICRegLoss(nu_param=2.0), lambda a, b: vicreg_loss_reference(a, b, covariance_weight=2.0)),
    ]
    for criterion, reference in cases:
        inputs = [z1.clone().requires_grad_(), z2.clone().requires_grad_()]
        grads = torch.autograd.grad(criterion(*inputs), inputs)
        expected = torch.autograd.grad(reference(*inputs), inputs)
        for grad, want in zip(grads, expected, strict=True):
            assert_relative(grad, want, 1e-10, type(criterion).__name__)


def _vicreg_per_position_reference(z_a, z_b, **options):
    """lightly's (N, ..., D) VICReg: the statistics of each position over the batch, the mean over positions."""
    z_a, z_b = z_a.flatten(1, -2), z_b.flatten(1, -2)
    losses = [vicreg_loss_reference(z_a[:, m], z_b[:, m], **options) for m in range(z_a.shape[1])]
    return torch.stack(losses).mean()


@pytest.mark.parametrize("shape", [(16, 3, 8), (9, 2, 2, 5), (16, 1, 8)])
def test_vicreg_takes_lightlys_batch_positions_features_shape(shape):
    z_a = torch.randn(shape, dtype=torch.float64, requires_grad=True)
    z_b = (0.5 * z_a + torch.randn(shape, dtype=torch.float64)).detach().requires_grad_()
    criterion = lightly.VICRegLoss(lambda_param=10.0, mu_param=20.0, nu_param=2.0, eps=1e-3)
    expected = _vicreg_per_position_reference(
        z_a, z_b, invariance_weight=10.0, variance_weight=20.0, covariance_weight=2.0, eps=1e-3
    )
    loss = criterion(z_a, z_b)
    assert_relative(loss, expected, 1e-12, f"VICRegLoss on {shape}")
    grads = torch.autograd.grad(loss, (z_a, z_b))
    for grad, want in zip(grads, torch.autograd.grad(expected, (z_a, z_b)), strict=True):
        assert_relative(grad, want, 1e-10, f"gradient on {shape}")
    # One position is the 2-D loss of that slice.
    if math.prod(shape[1:-1]) == 1:
        assert torch.equal(loss, criterion(z_a.flatten(1, -2)[:, 0], z_b.flatten(1, -2)[:, 0]))


#: Weights of every kind lightly's arithmetic takes: ids -> value.
WEIGHTS = {
    "negative": -0.5,
    "nan": float("nan"),
    "inf": float("inf"),
    "bool": True,
    "int": 3,
    "numpy-float32": np.float32(0.02),
    "numpy-int64": np.int64(2),
    "0-dim-tensor": torch.tensor(0.02),
    "float64-tensor": torch.tensor(-0.02, dtype=torch.float64),
    "1-element-tensor": torch.tensor([0.02]),
    "int-tensor": torch.tensor(2, dtype=torch.int32),
    "bool-tensor": torch.tensor(True),
}


def _assert_same(actual, expected, rtol, what):
    """Equal within ``rtol`` (NaN where NaN, the same infinities), with the same dtype and shape."""
    assert (actual.dtype, actual.shape) == (expected.dtype, expected.shape), what
    torch.testing.assert_close(actual, expected, rtol=rtol, atol=0.0, equal_nan=True, msg=what)


@pytest.mark.parametrize("value", list(WEIGHTS.values()), ids=list(WEIGHTS))
def test_any_real_weight_gives_lightlys_arithmetic_on_the_terms(value):
    """lightly computes ``invariance + lambda_param * redundancy``: negative, NaN, infinite and bool weights too."""
    z1, z2 = _views(16, 8, torch.float32)
    invariance, redundancy = barlow_twins_terms_reference(z1.double(), z2.double())
    expected = invariance.float() + value * redundancy.float()
    _assert_same(lightly.BarlowTwinsLoss(lambda_param=value)(z1, z2), expected, 1e-5, "BarlowTwinsLoss")
    invariance, variance, covariance = (t.float() for t in vicreg_terms_reference(z1.double(), z2.double()))
    expected = value * invariance + value * variance + value * covariance
    criterion = lightly.VICRegLoss(lambda_param=value, mu_param=value, nu_param=value)
    _assert_same(criterion(z1, z2), expected, 1e-5, "VICRegLoss")


@pytest.mark.parametrize("number", [np.float64(0.02), torch.tensor([0.02], dtype=torch.float64), True])
def test_hyperparameters_are_kept_as_given(number):
    """As in lightly, the attributes hold what was passed (a tensor stays a tensor, with its gradient)."""
    barlow = lightly.BarlowTwinsLoss(lambda_param=number)
    assert barlow.lambda_param is number
    vicreg = lightly.VICRegLoss(lambda_param=number, mu_param=number, nu_param=number, eps=number)
    assert all(value is number for value in (vicreg.lambda_param, vicreg.mu_param, vicreg.nu_param, vicreg.eps))


def test_hyperparameters_set_after_construction_are_read_at_the_call():
    z1, z2 = _views(16, 8, torch.float64)
    barlow = lightly.BarlowTwinsLoss()
    barlow.lambda_param = torch.tensor(0.02, dtype=torch.float64)
    assert_relative(barlow(z1, z2), barlow_twins_loss_reference(z1, z2, lambd=0.02), 1e-12, "lambda_param")
    barlow.lambda_param = -3.0
    assert_relative(barlow(z1, z2), barlow_twins_loss_reference(z1, z2, lambd=-3.0), 1e-12, "lambda_param")
    vicreg = lightly.VICRegLoss()
    vicreg.lambda_param, vicreg.mu_param, vicreg.nu_param, vicreg.eps = 2.0, torch.tensor(3.0), np.float32(4.0), 0.5
    expected = vicreg_loss_reference(z1, z2, invariance_weight=2.0, variance_weight=3.0, covariance_weight=4.0, eps=0.5)
    assert_relative(vicreg(z1, z2), expected, 1e-12, "VICRegLoss")


@pytest.mark.parametrize(
    ("attribute", "value", "error", "match"),
    [
        ("lambda_param", "0.1", TypeError, "lambda_param must be a real number"),
        ("mu_param", None, TypeError, "mu_param must be a real number"),
        ("nu_param", torch.ones(2), TypeError, "nu_param must be a real number or a one-element real tensor"),
        ("eps", -1.0, ValueError, "eps must be non-negative"),
        ("gather_distributed", 1, TypeError, "gather_distributed must be a bool"),
    ],
)
def test_hyperparameters_set_after_construction_are_checked_under_their_names(attribute, value, error, match):
    criterion = lightly.BarlowTwinsLoss() if attribute == "lambda_param" else lightly.VICRegLoss()
    setattr(criterion, attribute, value)
    with pytest.raises(error, match=match):
        criterion(torch.randn(8, 4), torch.randn(8, 4))


def test_lightly_weights_that_require_grad_get_their_gradients():
    """As in lightly: ∂L/∂λ is the redundancy term, ∂L/∂(λ, μ, ν) of VICReg its three terms."""
    z1, z2 = _views(16, 8, torch.float64)
    lambda_param = torch.tensor(0.02, dtype=torch.float64, requires_grad=True)
    lightly.BarlowTwinsLoss(lambda_param=lambda_param)(z1, z2).backward()
    assert_relative(lambda_param.grad, barlow_twins_terms_reference(z1, z2)[1], 1e-12, "dL/dlambda_param")
    weights = [torch.tensor(value, dtype=torch.float64, requires_grad=True) for value in (3.0, -2.0, 0.5)]
    lightly.VICRegLoss(*weights)(z1, z2).backward()
    for name, weight, term in zip(("lambda", "mu", "nu"), weights, vicreg_terms_reference(z1, z2), strict=True):
        assert_relative(weight.grad, term, 1e-12, f"dL/d{name}_param")


@pytest.mark.parametrize(
    ("options", "error", "match"),
    [
        ({"lambda_param": 1j}, TypeError, "lambda_param must be a real number"),
        ({"lambda_param": torch.tensor(0.5j)}, TypeError, "lambda_param must be a real number or a one-element real"),
        ({"lambda_param": torch.ones(2)}, TypeError, "lambda_param must be a real number or a one-element real"),
        ({"lambda_param": np.bool_(True)}, TypeError, "lambda_param must be a real number"),
        ({"lambda_param": np.ones(1)}, TypeError, "lambda_param must be a real number"),
        ({"lambda_param": "0.1"}, TypeError, "lambda_param must be a real number"),
        ({"lambda_param": 10**400}, ValueError, "lambda_param must fit in a float"),
        ({"gather_distributed": "false"}, TypeError, "gather_distributed must be a bool"),
        ({"gather_distributed": 1}, TypeError, "gather_distributed must be a bool"),
    ],
    ids=[
        "complex",
        "complex-tensor",
        "2-element-tensor",
        "numpy-bool",
        "numpy-array",
        "str",
        "huge-int",
        "str-flag",
        "int-flag",
    ],
)
@pytest.mark.parametrize("cls", [lightly.BarlowTwinsLoss, lightly.VICRegLoss], ids=lambda c: c.__name__)
def test_refused_weights_and_flags(cls, options, error, match):
    """The refusals the module docstring lists, at construction and when set afterwards."""
    if cls is lightly.VICRegLoss:  # the same rules for each weight: name the one refused
        options = {"nu_param" if name == "lambda_param" else name: value for name, value in options.items()}
        match = match.replace("lambda_param", "nu_param")
    with pytest.raises(error, match=match):
        cls(**options)
    criterion = cls()
    for name, value in options.items():
        setattr(criterion, name, value)
    with pytest.raises(error, match=match):
        criterion(torch.randn(8, 4), torch.randn(8, 4))


@pytest.mark.parametrize(
    ("eps", "error", "match"),
    [
        (-1e-5, ValueError, "eps must be non-negative"),
        (float("nan"), ValueError, "eps must be finite"),
        (float("inf"), ValueError, "eps must be finite"),
        (torch.tensor(1e-3, requires_grad=True), TypeError, "eps must not require grad"),
        (torch.ones(2), TypeError, "eps must be a real number or a one-element real tensor"),
    ],
    ids=["negative", "nan", "inf", "requires-grad", "2-element-tensor"],
)
def test_refused_eps(eps, error, match):
    """ε goes into the library's variance hinge, which takes a finite non-negative number."""
    with pytest.raises(error, match=match):
        lightly.VICRegLoss(eps=eps)
    criterion = lightly.VICRegLoss()
    criterion.eps = eps
    with pytest.raises(error, match=match):
        criterion(torch.randn(8, 4), torch.randn(8, 4))


@pytest.mark.parametrize("eps", [True, np.float32(0.5), torch.tensor(0.5, dtype=torch.float64)], ids=str)
def test_eps_of_any_numeric_kind(eps):
    z1, z2 = _views(16, 8, torch.float64)
    expected = vicreg_loss_reference(z1, z2, eps=float(eps))
    assert_relative(lightly.VICRegLoss(eps=eps)(z1, z2), expected, 1e-12, "VICRegLoss")


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
@pytest.mark.parametrize("cls", [lightly.BarlowTwinsLoss, lightly.VICRegLoss], ids=lambda c: c.__name__)
def test_lightly_half_precision_loss_is_float32_and_gradients_keep_the_dtype(cls, dtype):
    z1, z2 = (z.requires_grad_() for z in _views(64, 16, dtype))
    loss = cls()(z1, z2)
    assert loss.dtype == torch.float32
    loss.backward()
    assert z1.grad.dtype == dtype and z2.grad.dtype == dtype


def test_attributes_and_repr():
    criterion = lightly.VICRegLoss(lambda_param=1.0, gather_distributed=True)
    assert (criterion.lambda_param, criterion.mu_param, criterion.nu_param, criterion.eps) == (1.0, 25.0, 1.0, 1e-4)
    assert criterion.gather_distributed is True
    assert "gather_distributed=True" in repr(criterion)
    assert list(criterion.parameters()) == []
    assert lightly.BarlowTwinsLoss(0.0051).lambda_param == 0.0051


@pytest.mark.parametrize("gather_distributed", [False, True])
@pytest.mark.parametrize("cls", [lightly.BarlowTwinsLoss, lightly.VICRegLoss], ids=lambda c: c.__name__)
def test_bad_inputs_raise_value_error_where_lightly_asserts(cls, gather_distributed):
    criterion = cls(gather_distributed=gather_distributed)  # in one process both mean this process's batch
    with pytest.raises(ValueError, match=r"z_a needs a batch of at least 2 rows, got shape \(1, 4\)"):
        criterion(torch.randn(1, 4), torch.randn(1, 4))
    with pytest.raises(ValueError, match=r"z_a and z_b must have the same shape, got z_a \(8, 4\) and z_b \(8, 3\)"):
        criterion(torch.randn(8, 4), torch.randn(8, 3))
    with pytest.raises(ValueError, match=r"z_a must be 2-D of shape \(N, D\), got shape \(8,\)"):
        criterion(torch.randn(8), torch.randn(8))
    with pytest.raises(TypeError, match=r"z_b must be a torch\.Tensor"):
        criterion(torch.randn(8, 4), [[0.0] * 4] * 8)


def test_vicreg_needs_a_position_between_batch_and_features():
    with pytest.raises(ValueError, match=r"at least one position between batch and features, got \(8, 0, 4\)"):
        lightly.VICRegLoss()(torch.randn(8, 0, 4), torch.randn(8, 0, 4))


def test_barlow_twins_takes_2d_embeddings_only():
    with pytest.raises(ValueError, match=r"z_a must be 2-D of shape \(N, D\), got shape \(8, 2, 4\)"):
        lightly.BarlowTwinsLoss()(torch.randn(8, 2, 4), torch.randn(8, 2, 4))
