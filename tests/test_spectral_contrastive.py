"""The spectral contrastive loss against the reference transcription of the official code."""

import itertools

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

import redundancy
from redundancy.reference import spectral_contrastive_loss_reference
from tests.utils import GRAD_TOL
from tests.utils import LOSS_RTOL
from tests.utils import assert_relative

ALGORITHMS = ["cross", "gram"]
SHAPES = list(itertools.product([2, 37, 256], [1, 70, 130]))


def _views(n, d, dtype=torch.float64, radius=1.0):
    """Rows of norm between 0.5·radius and 1.6·radius (none at the kink, radius), some of them projected."""
    z1 = torch.nn.functional.normalize(torch.randn(n, d, dtype=torch.float64), dim=1)
    z1 = z1 * torch.linspace(0.5, 1.6, n, dtype=torch.float64).unsqueeze(1) * radius
    z2 = 0.8 * z1 + 0.3 * radius * torch.randn(n, d, dtype=torch.float64) / d**0.5
    return z1.to(dtype), z2.to(dtype)


@pytest.mark.parametrize("algorithm", ALGORITHMS)
@pytest.mark.parametrize(("n", "d"), SHAPES)
def test_spectral_contrastive_float64_equals_official_formula(n, d, algorithm):
    z1, z2 = _views(n, d)
    loss = redundancy.spectral_contrastive_loss(z1, z2, algorithm=algorithm)
    assert_relative(loss, spectral_contrastive_loss_reference(z1, z2), 1e-10)


@pytest.mark.parametrize("algorithm", ALGORITHMS)
@pytest.mark.parametrize("mu", [0.25, 10.0])
def test_spectral_contrastive_float64_mu(mu, algorithm):
    z1, z2 = _views(37, 70, radius=mu**0.5)
    loss = redundancy.spectral_contrastive_loss(z1, z2, mu=mu, algorithm=algorithm)
    assert_relative(loss, spectral_contrastive_loss_reference(z1, z2, mu=mu), 1e-10)


@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_spectral_contrastive_gradcheck_and_upstream(algorithm):
    z1, z2 = _views(5, 4)
    z1.requires_grad_(True)
    z2.requires_grad_(True)
    function = lambda a, b: redundancy.spectral_contrastive_loss(a, b, algorithm=algorithm)  # noqa: E731
    assert torch.autograd.gradcheck(function, (z1, z2))
    z1, z2 = (z.detach().requires_grad_(True) for z in _views(37, 70))
    function(z1, z2).backward(torch.tensor(-1.3, dtype=torch.float64))
    expected = torch.autograd.grad(spectral_contrastive_loss_reference(z1, z2) * -1.3, (z1, z2))
    assert_relative(z1.grad, expected[0], GRAD_TOL[torch.float64][0], "z1")
    assert_relative(z2.grad, expected[1], GRAD_TOL[torch.float64][0], "z2")


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16])
@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_spectral_contrastive_low_precision(dtype, algorithm):
    z1, z2 = _views(37, 70, dtype)
    z1.requires_grad_(True)
    loss = redundancy.spectral_contrastive_loss(z1, z2, algorithm=algorithm)
    assert loss.dtype == torch.float32
    assert_relative(loss, spectral_contrastive_loss_reference(z1.detach(), z2, upcast=True), LOSS_RTOL[dtype])
    loss.backward()
    assert z1.grad.dtype == dtype


def test_spectral_contrastive_non_contiguous_and_module():
    z1, z2 = _views(70, 37)
    z1, z2 = z1.t(), z2.t()
    criterion = redundancy.SpectralContrastiveLoss(mu=2.0, algorithm="cross")
    assert_relative(criterion(z1, z2), spectral_contrastive_loss_reference(z1.contiguous(), z2, mu=2.0), 1e-10)
    assert torch.equal(criterion(z1, z2), redundancy.spectral_contrastive_loss(z1, z2, mu=2.0, algorithm="cross"))
    assert "mu=2.0" in repr(criterion)


def test_spectral_contrastive_orthonormal_identical_views_known_value():
    """Orthonormal rows: every matched product is 1 and every mismatched one 0, so the loss is -2."""
    z = torch.eye(16, dtype=torch.float64)[:8]
    for algorithm in ALGORITHMS:
        assert redundancy.spectral_contrastive_loss(z, z, algorithm=algorithm).item() == pytest.approx(-2.0, 1e-14)


@given(n=st.integers(2, 12), d=st.integers(1, 12), seed=st.integers(0, 2**16), radius=st.floats(0.1, 10.0))
def test_spectral_contrastive_properties(n, d, seed, radius):
    torch.manual_seed(seed)
    z1, z2 = _views(n, d, radius=radius)
    loss = redundancy.spectral_contrastive_loss(z1, z2)
    assert torch.isfinite(loss)
    assert_relative(redundancy.spectral_contrastive_loss(z2, z1), loss, 1e-10)
    rows = torch.randperm(n)
    rotation = torch.linalg.qr(torch.randn(d, d, dtype=torch.float64))[0]
    assert_relative(redundancy.spectral_contrastive_loss(z1[rows] @ rotation, z2[rows] @ rotation), loss, 1e-8)
    assert_relative(redundancy.spectral_contrastive_loss(z1, z2, algorithm="gram"), loss, 1e-8)


def test_spectral_contrastive_bad_inputs():
    z1, z2 = _views(8, 4)
    with pytest.raises(ValueError, match="mu must be positive"):
        redundancy.spectral_contrastive_loss(z1, z2, mu=0.0)
    with pytest.raises(ValueError, match="mu"):
        redundancy.SpectralContrastiveLoss(mu=-1.0)
    with pytest.raises(ValueError, match="algorithm"):
        redundancy.spectral_contrastive_loss(z1, z2, algorithm="pairwise")
    with pytest.raises(ValueError, match="same shape"):
        redundancy.spectral_contrastive_loss(z1, z2[:5])
    with pytest.raises(ValueError, match="2-D"):
        redundancy.spectral_contrastive_loss(z1[0], z2[0])
    z1[2, 1] = float("nan")
    assert torch.isnan(redundancy.spectral_contrastive_loss(z1, z2))
