"""The adapters against the peers' own code: lightly's loss modules and solo-learn's loss functions, run here.

Each test skips, saying why, where its library is not importable; tests/compat/README.md says how to install
both (lightly needs torchvision, solo-learn is run from a checkout). Values and gradients are compared on the
golden inputs and on random ones, float64 where the peer computes in float64, float32 otherwise.
"""

import numpy as np
import pytest
import torch

from redundancy.compat import lightly as lightly_adapters
from redundancy.compat import solo as solo_adapters
from tests.utils import assert_relative

SHAPES = [(8, 6), (37, 70), (5, 130), (64, 32)]


def _lightly():
    loss = pytest.importorskip("lightly.loss", reason="lightly is not installed (see tests/compat/README.md)")
    assert loss.BarlowTwinsLoss is not lightly_adapters.BarlowTwinsLoss, "lightly.loss is swapped for the adapters"
    return loss


def _solo():
    losses = pytest.importorskip("solo.losses", reason="solo-learn is not importable (see tests/compat/README.md)")
    assert losses.barlow_loss_func is not solo_adapters.barlow_loss_func, "solo.losses is swapped for the adapters"
    return losses


def _views(shape, dtype, seed=0):
    generator = torch.Generator().manual_seed(seed)
    scales = torch.linspace(0.3, 2.0, shape[-1], dtype=torch.float64)
    z1 = torch.randn(shape, generator=generator, dtype=torch.float64) * scales
    z2 = 0.8 * z1 + 0.6 * torch.randn(shape, generator=generator, dtype=torch.float64) * scales
    return z1.to(dtype), z2.to(dtype)


def _value_and_grads(function, z1, z2):
    z1, z2 = z1.clone().requires_grad_(), z2.clone().requires_grad_()
    value = function(z1, z2)
    grads = torch.autograd.grad(1.3 * value, (z1, z2))  # a non-unit upstream gradient
    return value.detach(), grads


def _assert_same(ours, theirs, rtol, what):
    assert_relative(ours[0], theirs[0], rtol, f"{what}: loss")
    for name, mine, want in zip(("dz1", "dz2"), ours[1], theirs[1], strict=True):
        assert_relative(mine, want, rtol, f"{what}: {name}")


# ------------------------------------------------------------------------------------------------ lightly


def test_lightly_reproduces_the_golden_values_that_name_it(golden_cases):
    loss = _lightly()
    criteria = {
        "lightly BarlowTwinsLoss(lambda_param=0.0051)": loss.BarlowTwinsLoss(lambda_param=0.0051),
        "lightly BarlowTwinsLoss() default lambda_param=5e-3": loss.BarlowTwinsLoss(),
        "lightly VICRegLoss() defaults": loss.VICRegLoss(),
    }
    for case in golden_cases:
        z1, z2 = (torch.tensor(case[key], dtype=torch.float64) for key in ("z1", "z2"))
        for key, criterion in criteria.items():
            expected = torch.tensor(case["expected"][key], dtype=torch.float64)
            assert_relative(criterion(z1, z2), expected, 1e-12, f"{case['name']}: {key}")


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize(
    "options",
    [{}, {"lambda_param": 0.0051}, {"lambda_param": np.float32(0.02)}, {"lambda_param": torch.tensor(0.02)}],
    ids=["default", "official-lambda", "numpy-float32", "0-dim-tensor"],
)
def test_lightly_barlow_twins_values_and_gradients(shape, options):
    loss = _lightly()
    z1, z2 = _views(shape, torch.float64)
    theirs = _value_and_grads(loss.BarlowTwinsLoss(**options), z1, z2)
    ours = _value_and_grads(lightly_adapters.BarlowTwinsLoss(**options), z1, z2)
    _assert_same(ours, theirs, 1e-10, f"BarlowTwinsLoss{options} on {shape}")


@pytest.mark.parametrize("shape", [*SHAPES, (16, 4, 12), (6, 2, 3, 10)])
@pytest.mark.parametrize(
    "options",
    [{}, {"lambda_param": 10.0, "mu_param": np.float64(20.0), "nu_param": torch.tensor(2.0), "eps": 1e-3}],
    ids=["default", "weights"],
)
def test_lightly_vicreg_values_and_gradients(shape, options):
    loss = _lightly()
    z1, z2 = _views(shape, torch.float64)
    theirs = _value_and_grads(loss.VICRegLoss(**options), z1, z2)
    ours = _value_and_grads(lightly_adapters.VICRegLoss(**options), z1, z2)
    _assert_same(ours, theirs, 1e-10, f"VICRegLoss on {shape}")


@pytest.mark.parametrize("cls", ["BarlowTwinsLoss", "VICRegLoss"])
def test_lightly_float32_values_and_gradients(cls):
    loss = _lightly()
    z1, z2 = _views((256, 64), torch.float32)
    theirs = _value_and_grads(getattr(loss, cls)(), z1, z2)
    ours = _value_and_grads(getattr(lightly_adapters, cls)(), z1, z2)
    _assert_same(ours, theirs, 1e-4, cls)


# --------------------------------------------------------------------------------------------- solo-learn


def test_solo_learn_reproduces_the_golden_values_that_name_it(golden_cases):
    losses = _solo()
    for case in golden_cases:
        z1, z2 = (torch.tensor(case[key], dtype=torch.float64) for key in ("z1", "z2"))
        expected = torch.tensor(case["expected"]["solo-learn vicreg_loss_func defaults"], dtype=torch.float64)
        assert_relative(losses.vicreg_loss_func(z1, z2), expected, 1e-12, f"{case['name']}: vicreg")
        # solo-learn's fresh BatchNorm1d holds float32 buffers and refuses float64 inputs: compare in float32.
        expected = case["expected"]["solo-learn barlow_loss_func defaults (lamb=5e-3, scale_loss=0.025)"]
        barlow = losses.barlow_loss_func(z1.float(), z2.float())
        assert_relative(barlow, torch.tensor(expected, dtype=torch.float64), 1e-4, f"{case['name']}: barlow")


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize(
    "options", [{}, {"lamb": np.float32(0.0051), "scale_loss": torch.tensor(0.1)}], ids=["default", "options"]
)
def test_solo_learn_barlow_values_and_gradients(shape, options):
    losses = _solo()
    z1, z2 = _views(shape, torch.float32)
    theirs = _value_and_grads(lambda a, b: losses.barlow_loss_func(a, b, **options), z1, z2)
    ours = _value_and_grads(lambda a, b: solo_adapters.barlow_loss_func(a, b, **options), z1, z2)
    _assert_same(ours, theirs, 1e-4, f"barlow_loss_func on {shape}")


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize(
    "weights", [(), (3.0, np.float32(5.0), torch.tensor(2.0, dtype=torch.float64))], ids=["default", "weights"]
)
def test_solo_learn_vicreg_values_and_gradients(shape, weights):
    losses = _solo()
    z1, z2 = _views(shape, torch.float64)
    theirs = _value_and_grads(lambda a, b: losses.vicreg_loss_func(a, b, *weights), z1, z2)
    ours = _value_and_grads(lambda a, b: solo_adapters.vicreg_loss_func(a, b, *weights), z1, z2)
    _assert_same(ours, theirs, 1e-10, f"vicreg_loss_func on {shape}")
