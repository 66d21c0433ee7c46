"""``redundancy.compat.lightly`` reproduces lightly's ``BarlowTwinsLoss`` and ``VICRegLoss``."""

import inspect
import math

import numpy as np
import pytest
import torch

from redundancy.compat import lightly
from redundancy.reference import barlow_twins_loss_reference, vicreg_loss_reference
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


def test_golden_values(golden_cases):
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
def test_gradients_equal_the_reference(n, d):
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


@pytest.mark.parametrize(
    "number",
    [np.float32(0.02), np.float64(0.02), torch.tensor(0.02), torch.tensor([0.02], dtype=torch.float64), 0.02],
    ids=["numpy-float32", "numpy-float64", "0-dim-tensor", "1-element-tensor", "float"],
)
def test_hyperparameters_are_any_real_number(number):
    z1, z2 = _views(16, 8, torch.float64)
    expected = float(np.float32(0.02)) if isinstance(number, np.float32) else 0.02
    barlow = lightly.BarlowTwinsLoss(lambda_param=number)
    assert type(barlow.lambda_param) is float and barlow.lambda_param == pytest.approx(expected, rel=1e-7)
    assert_relative(barlow(z1, z2), barlow_twins_loss_reference(z1, z2, lambd=barlow.lambda_param), 1e-12, "barlow")
    vicreg = lightly.VICRegLoss(lambda_param=number, mu_param=number, nu_param=number, eps=number)
    assert all(type(value) is float for value in (vicreg.lambda_param, vicreg.mu_param, vicreg.nu_param, vicreg.eps))
    weights = {"invariance_weight": vicreg.lambda_param, "variance_weight": vicreg.mu_param}
    expected_loss = vicreg_loss_reference(z1, z2, covariance_weight=vicreg.nu_param, eps=vicreg.eps, **weights)
    assert_relative(vicreg(z1, z2), expected_loss, 1e-12, "vicreg")


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
@pytest.mark.parametrize("cls", [lightly.BarlowTwinsLoss, lightly.VICRegLoss], ids=lambda c: c.__name__)
def test_half_precision_loss_is_float32_and_gradients_keep_the_dtype(cls, dtype):
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


@pytest.mark.parametrize(
    ("build", "error", "match"),
    [
        (lambda: lightly.BarlowTwinsLoss(lambda_param=-1.0), ValueError, "lambda_param must be non-negative"),
        (lambda: lightly.BarlowTwinsLoss(lambda_param=float("nan")), ValueError, "lambda_param must be finite"),
        (lambda: lightly.BarlowTwinsLoss(lambda_param="0.1"), TypeError, "lambda_param must be a real number"),
        (lambda: lightly.BarlowTwinsLoss(lambda_param=True), TypeError, "lambda_param must be a real number"),
        (lambda: lightly.BarlowTwinsLoss(lambda_param=torch.ones(2)), TypeError, "lambda_param must be a real"),
        (lambda: lightly.BarlowTwinsLoss(gather_distributed="yes"), TypeError, "gather_distributed"),
        (lambda: lightly.VICRegLoss(lambda_param=-1.0), ValueError, "lambda_param must be non-negative"),
        (lambda: lightly.VICRegLoss(mu_param=-1.0), ValueError, "mu_param must be non-negative"),
        (lambda: lightly.VICRegLoss(nu_param=np.float32(-1)), ValueError, "nu_param must be non-negative"),
        (lambda: lightly.VICRegLoss(eps=-1.0), ValueError, "eps must be non-negative"),
        (lambda: lightly.VICRegLoss(gather_distributed=1), TypeError, "gather_distributed"),
    ],
)
def test_bad_options_are_named_as_lightly_names_them(build, error, match):
    with pytest.raises(error, match=match):
        build()


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
