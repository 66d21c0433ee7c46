"""The adapters against the peers' own code: lightly's loss modules and solo-learn's loss functions, run here.

Each test skips, saying why, where its library is not importable; tests/compat/README.md says how to install
both (lightly needs torchvision, solo-learn is run from a checkout). Values and gradients are compared on the
golden inputs and on random ones, float64 where the peer computes in float64, float32 otherwise. What the
adapters' docstrings say of the peers (the weights they take, the errors they raise, the dtypes they return) is
checked here against the peers' own code.
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


def _assert_same_value(ours, theirs, rtol, what):
    """Equal within ``rtol`` (NaN where NaN, the same infinities), with the same dtype and shape."""
    assert (ours.dtype, ours.shape) == (theirs.dtype, theirs.shape), f"{what}: {ours!r} and {theirs!r}"
    torch.testing.assert_close(ours, theirs, rtol=rtol, atol=0.0, equal_nan=True, msg=what)


#: Weights of every kind the peers' arithmetic takes (negative, NaN, infinite, bool, numpy numbers, tensors of
#: other dtypes and of shape (1,)): ids -> value.
WEIGHTS = {
    "negative": -1.0,
    "nan": float("nan"),
    "inf": float("inf"),
    "-inf": -float("inf"),
    "bool": True,
    "int": 3,
    "numpy-float32": np.float32(0.02),
    "numpy-int64": np.int64(2),
    "float32-tensor": torch.tensor(0.02),
    "float64-tensor": torch.tensor(-0.5, dtype=torch.float64),
    "1-element-tensor": torch.tensor([0.5], dtype=torch.float64),
    "int-tensor": torch.tensor(2, dtype=torch.int32),
    "bool-tensor": torch.tensor(True),
}


def _grads_of_weights(call, z1, z2, weights):
    """The loss of ``call(z1, z2, *weights)`` and its gradients with respect to the views and the weights."""
    z1, z2 = z1.clone().requires_grad_(), z2.clone().requires_grad_()
    weights = [weight.clone().requires_grad_() for weight in weights]
    value = call(z1, z2, *weights)
    return value.detach(), torch.autograd.grad(1.3 * value, (z1, z2, *weights))


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


@pytest.mark.parametrize("value", list(WEIGHTS.values()), ids=list(WEIGHTS))
def test_lightly_any_real_weight(value):
    """Negative, NaN, infinite, bool and tensor weights: lightly's value, dtype and shape."""
    loss = _lightly()
    for dtype, rtol in ((torch.float64, 1e-10), (torch.float32, 1e-4)):
        z1, z2 = _views((37, 20), dtype)
        for cls, names in (("BarlowTwinsLoss", ["lambda_param"]), ("VICRegLoss", ["lambda_param", "mu_param"])):
            options = dict.fromkeys(names, value)
            theirs = getattr(loss, cls)(**options)(z1, z2)
            ours = getattr(lightly_adapters, cls)(**options)(z1, z2)
            _assert_same_value(ours, theirs, rtol, f"{cls}({options}) in {dtype}")


def test_lightly_hyperparameters_set_after_construction():
    """``criterion.lambda_param = torch.tensor(0.02)`` after construction: lightly reads it at the call."""
    loss = _lightly()
    z1, z2 = _views((64, 32), torch.float32)
    for name, value in (("lambda_param", torch.tensor(0.02)), ("lambda_param", -2.0)):
        theirs, ours = loss.BarlowTwinsLoss(), lightly_adapters.BarlowTwinsLoss()
        setattr(theirs, name, value)
        setattr(ours, name, value)
        _assert_same_value(ours(z1, z2), theirs(z1, z2), 1e-5, f"BarlowTwinsLoss.{name} = {value!r}")
    theirs, ours = loss.VICRegLoss(), lightly_adapters.VICRegLoss()
    for criterion in (theirs, ours):
        criterion.lambda_param, criterion.mu_param, criterion.nu_param = 3.0, torch.tensor(-1.0), np.float64(2.0)
        criterion.eps = 0.1
    _assert_same_value(ours(z1, z2), theirs(z1, z2), 1e-5, "VICRegLoss, set after construction")


def test_lightly_weights_that_require_grad_get_lightlys_gradients():
    loss = _lightly()
    z1, z2 = _views((37, 20), torch.float64)
    cases = [
        (loss.BarlowTwinsLoss, lightly_adapters.BarlowTwinsLoss, [torch.tensor(0.02, dtype=torch.float64)]),
        (
            loss.VICRegLoss,
            lightly_adapters.VICRegLoss,
            [torch.tensor(v, dtype=torch.float64) for v in (3.0, -2.0, 0.5)],
        ),
    ]
    for theirs_cls, ours_cls, weights in cases:
        theirs = _grads_of_weights(lambda a, b, *w, cls=theirs_cls: cls(*w)(a, b), z1, z2, weights)
        ours = _grads_of_weights(lambda a, b, *w, cls=ours_cls: cls(*w)(a, b), z1, z2, weights)
        assert_relative(ours[0], theirs[0], 1e-10, f"{ours_cls.__name__}: loss")
        for index, (mine, want) in enumerate(zip(ours[1], theirs[1], strict=True)):
            assert_relative(mine, want, 1e-10, f"{ours_cls.__name__}: gradient {index}")


def test_lightly_computes_what_the_adapters_refuse():
    """The module docstring's list: what lightly does with the weights, eps and flags that the adapters refuse."""
    loss = _lightly()
    z1, z2 = _views((16, 8), torch.float32)
    for cls in (loss.BarlowTwinsLoss, loss.VICRegLoss):
        complex_loss = cls(lambda_param=1j)(z1.clone().requires_grad_(), z2)
        assert complex_loss.is_complex()
        with pytest.raises(RuntimeError, match="real scalar outputs"):
            complex_loss.backward()
        assert cls(lambda_param=torch.tensor([0.5, 1.0]))(z1, z2).shape == (2,)  # one loss per element
        assert torch.equal(cls(lambda_param=np.bool_(True))(z1, z2), cls(lambda_param=1.0)(z1, z2))
    # A negative eps: a value while every variance exceeds -eps, NaN once one does not; a tensor eps's gradient.
    assert torch.isfinite(loss.VICRegLoss(eps=-1e-5)(z1, z2))
    assert torch.isnan(loss.VICRegLoss(eps=-1e-5)(z1, torch.cat([z2[:, :-1], torch.zeros(16, 1)], dim=1)))
    eps = torch.tensor(1e-3, requires_grad=True)
    loss.VICRegLoss(eps=eps)(0.1 * z1, 0.1 * z2).backward()  # standard deviations below 1: the hinge is active
    assert eps.grad is not None and eps.grad != 0
    # gather_distributed is taken by its truth (tests/compat/test_lightly_distributed.py: "false" gathers).
    assert loss.BarlowTwinsLoss(gather_distributed="false").gather_distributed == "false"


def test_lightly_errors_on_bad_inputs():
    """The module docstring's classes of lightly's errors, where the adapters raise ValueError."""
    loss = _lightly()
    with pytest.raises(ValueError, match="Expected more than 1 value per channel"):  # from F.batch_norm
        loss.BarlowTwinsLoss()(torch.randn(1, 4), torch.randn(1, 4))
    with pytest.raises(AssertionError):
        loss.BarlowTwinsLoss()(torch.randn(8, 4), torch.randn(8, 3))
    with pytest.raises(RuntimeError):
        loss.BarlowTwinsLoss()(torch.randn(8, 4), torch.randn(7, 4))
    with pytest.raises(AssertionError, match="batch size > 1"):
        loss.VICRegLoss()(torch.randn(1, 4), torch.randn(1, 4))
    with pytest.raises(AssertionError, match="same shape"):
        loss.VICRegLoss()(torch.randn(8, 4), torch.randn(8, 3))
    for cls in (lightly_adapters.BarlowTwinsLoss, lightly_adapters.VICRegLoss):
        for shapes in (((1, 4), (1, 4)), ((8, 4), (8, 3)), ((8, 4), (7, 4))):
            with pytest.raises(ValueError, match="z_a"):
                cls()(*(torch.randn(shape) for shape in shapes))


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_lightly_returns_the_input_dtype_for_half_precision(dtype):
    """Where the adapters return float32 (module docstring)."""
    loss = _lightly()
    z1, z2 = (z.to(dtype) for z in _views((64, 16), torch.float32))
    for cls in ("BarlowTwinsLoss", "VICRegLoss"):
        assert getattr(loss, cls)()(z1, z2).dtype == dtype
        assert getattr(lightly_adapters, cls)()(z1, z2).dtype == torch.float32


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


@pytest.mark.parametrize("value", list(WEIGHTS.values()), ids=list(WEIGHTS))
def test_solo_learn_any_real_weight(value):
    """Negative, NaN, infinite, bool and tensor weights: solo-learn's value, dtype and shape."""
    losses = _solo()
    z1, z2 = _views((37, 20), torch.float32)  # its Barlow Twins refuses float64
    for options in ({"lamb": value}, {"scale_loss": value}, {"lamb": value, "scale_loss": value}):
        theirs = losses.barlow_loss_func(z1, z2, **options)
        ours = solo_adapters.barlow_loss_func(z1, z2, **options)
        _assert_same_value(ours, theirs, 1e-4, f"barlow_loss_func({options})")
    z1, z2 = _views((37, 20), torch.float64)
    for weights in ((value, 25.0, 1.0), (1.0, value, value)):
        theirs = losses.vicreg_loss_func(z1, z2, *weights)
        ours = solo_adapters.vicreg_loss_func(z1, z2, *weights)
        _assert_same_value(ours, theirs, 1e-10, f"vicreg_loss_func{weights}")


def test_solo_learn_negative_scale_loss():
    losses = _solo()
    z1, z2 = _views((64, 32), torch.float32)
    theirs = losses.barlow_loss_func(z1, z2, scale_loss=-1)
    assert theirs < 0
    _assert_same_value(solo_adapters.barlow_loss_func(z1, z2, scale_loss=-1), theirs, 1e-5, "scale_loss=-1")


def test_solo_learn_weights_that_require_grad_get_solo_learns_gradients():
    losses = _solo()
    z1, z2 = _views((37, 20), torch.float32)
    weights = [torch.tensor(0.02), torch.tensor(-0.5, dtype=torch.float64)]
    theirs = _grads_of_weights(losses.barlow_loss_func, z1, z2, weights)
    ours = _grads_of_weights(solo_adapters.barlow_loss_func, z1, z2, weights)
    assert_relative(ours[0], theirs[0], 1e-4, "barlow_loss_func: loss")
    for index, (mine, want) in enumerate(zip(ours[1], theirs[1], strict=True)):
        assert_relative(mine, want, 1e-4, f"barlow_loss_func: gradient {index}")
    z1, z2 = _views((37, 20), torch.float64)
    weights = [torch.tensor(value, dtype=torch.float64) for value in (3.0, -2.0, 0.5)]
    theirs = _grads_of_weights(losses.vicreg_loss_func, z1, z2, weights)
    ours = _grads_of_weights(solo_adapters.vicreg_loss_func, z1, z2, weights)
    assert_relative(ours[0], theirs[0], 1e-10, "vicreg_loss_func: loss")
    for index, (mine, want) in enumerate(zip(ours[1], theirs[1], strict=True)):
        assert_relative(mine, want, 1e-10, f"vicreg_loss_func: gradient {index}")


def test_solo_learn_infinite_lamb_multiplies_each_entry():
    """The one value that differs: an off-diagonal entry of C that is exactly 0 makes solo-learn's loss NaN."""
    losses = _solo()
    columns = [[1.0, 1.0, -1.0, -1.0], [1.0, -1.0, 1.0, -1.0], [1.0, 2.0, 3.0, 5.0]]  # C_01 = 0, C_02 != 0
    z = torch.tensor(columns).T.contiguous()
    assert torch.isnan(losses.barlow_loss_func(z, z, lamb=float("inf")))
    assert solo_adapters.barlow_loss_func(z, z, lamb=float("inf")) == float("inf")


def test_solo_learn_computes_or_raises_where_the_adapters_refuse():
    """The module docstring's list: what solo-learn does with the weights that the adapters refuse."""
    losses = _solo()
    z1, z2 = _views((16, 8), torch.float32)
    for call in (
        lambda a, b: losses.barlow_loss_func(a, b, scale_loss=1j),
        lambda a, b: losses.vicreg_loss_func(a, b, sim_loss_weight=1j),
    ):
        complex_loss = call(z1.clone().requires_grad_(), z2)
        assert complex_loss.is_complex()
        with pytest.raises(RuntimeError, match="real scalar outputs"):
            complex_loss.backward()
    with pytest.raises(RuntimeError):
        losses.barlow_loss_func(z1, z2, lamb=1j)
    assert losses.barlow_loss_func(z1, z2, scale_loss=torch.tensor([0.5, 1.0])).shape == (2,)
    assert losses.vicreg_loss_func(z1, z2, cov_loss_weight=torch.tensor([0.5, 1.0])).shape == (2,)
    with pytest.raises(RuntimeError):
        losses.barlow_loss_func(z1, z2, lamb=torch.tensor([0.5, 1.0]))
    assert torch.equal(losses.barlow_loss_func(z1, z2, lamb=np.bool_(True)), losses.barlow_loss_func(z1, z2, lamb=1))


def test_solo_learn_errors_and_dtypes():
    """The module docstring's "Other differences": solo-learn's errors on bad inputs, float64, half precision."""
    losses = _solo()
    with pytest.raises(ValueError, match="Expected more than 1 value per channel"):  # from its BatchNorm1d
        losses.barlow_loss_func(torch.randn(1, 4), torch.randn(1, 4))
    with pytest.raises(RuntimeError):
        losses.barlow_loss_func(torch.randn(8, 4), torch.randn(8, 3))
    assert torch.isnan(losses.vicreg_loss_func(torch.randn(1, 4), torch.randn(1, 4)))
    with pytest.raises(RuntimeError):
        losses.vicreg_loss_func(torch.randn(8, 4), torch.randn(8, 3))
    for function in (solo_adapters.barlow_loss_func, solo_adapters.vicreg_loss_func):
        for shapes in (((1, 4), (1, 4)), ((8, 4), (8, 3))):
            with pytest.raises(ValueError, match="z1"):
                function(*(torch.randn(shape) for shape in shapes))
    z1, z2 = _views((64, 16), torch.float64)
    with pytest.raises(RuntimeError):
        losses.barlow_loss_func(z1, z2)
    assert solo_adapters.barlow_loss_func(z1, z2).dtype == torch.float64
    for dtype in (torch.float16, torch.bfloat16):
        a, b = z1.to(dtype), z2.to(dtype)
        assert losses.barlow_loss_func(a, b).dtype == torch.float32
        assert losses.vicreg_loss_func(a, b).dtype == dtype
        assert solo_adapters.barlow_loss_func(a, b).dtype == solo_adapters.vicreg_loss_func(a, b).dtype == torch.float32
