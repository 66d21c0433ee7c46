"""``redundancy.compat.lightly`` reproduces lightly's ``BarlowTwinsLoss`` and ``VICRegLoss``."""

import inspect

import pytest
import torch

import redundancy
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


def test_gradients_flow_and_match_core():
    z1, z2 = _views(37, 70, torch.float64)
    z1.requires_grad_(True)
    lightly.VICRegLoss()(z1, z2).backward()
    expected = torch.autograd.grad(redundancy.vicreg_loss(z1, z2), z1)[0]
    torch.testing.assert_close(z1.grad, expected, rtol=0, atol=0)


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
        (lambda: lightly.BarlowTwinsLoss(lambda_param=-1.0), ValueError, "lambd"),
        (lambda: lightly.BarlowTwinsLoss(gather_distributed="yes"), TypeError, "gather_distributed"),
        (lambda: lightly.VICRegLoss(mu_param=-1.0), ValueError, "variance_weight"),
        (lambda: lightly.VICRegLoss(eps=-1.0), ValueError, "eps"),
        (lambda: lightly.VICRegLoss(gather_distributed=1), TypeError, "gather_distributed"),
    ],
)
def test_bad_options(build, error, match):
    with pytest.raises(error, match=match):
        build()


@pytest.mark.parametrize("cls", [lightly.BarlowTwinsLoss, lightly.VICRegLoss], ids=lambda c: c.__name__)
def test_bad_inputs(cls):
    criterion = cls()
    with pytest.raises(ValueError, match=r"at least 2 rows"):
        criterion(torch.randn(1, 4), torch.randn(1, 4))
    with pytest.raises(ValueError, match="same shape"):
        criterion(torch.randn(8, 4), torch.randn(8, 3))
    with pytest.raises(ValueError, match="2-D"):
        criterion(torch.randn(8, 2, 4), torch.randn(8, 2, 4))
