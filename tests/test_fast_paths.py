"""The shortcuts of small eager calls: the ops' direct ``apply``, autocast left alone when it is off, the finiteness
test of the unscaled variance, two small views standardized together, and the frame's remembered options. Each
must give what the general path gives."""

import importlib
import inspect

import pytest
import torch

import redundancy
from redundancy._frame import _CHECKED
from redundancy._ops import Standardization, cross_correlation_terms, gram_terms, standardize
from redundancy._ops._autocast import no_autocast
from redundancy._ops._autograd import DIRECT_APPLY, with_direct_apply
from redundancy._ops.cross import _CrossCorrelationTerms
from redundancy._ops.standardize import standardize_views
from tests.utils import assert_relative

# The module, which the package's function of the same name hides.
standardize_module = importlib.import_module("redundancy._ops.standardize")


class CountingSignature(inspect.Signature):
    """A signature that counts the bindings :meth:`torch.autograd.Function.apply` makes of it."""

    binds = 0

    def bind(self, *args, **kwargs):
        CountingSignature.binds += 1
        return super().bind(*args, **kwargs)


@pytest.fixture
def counted_cross(monkeypatch):
    signature = inspect.signature(_CrossCorrelationTerms.forward)
    monkeypatch.setattr(
        _CrossCorrelationTerms.forward, "__signature__", CountingSignature(signature.parameters.values())
    )
    CountingSignature.binds = 0
    return CountingSignature


def _views(dtype=torch.float64):
    generator = torch.Generator().manual_seed(5)
    z1 = torch.randn(9, 6, generator=generator, dtype=dtype)
    z2 = z1 + torch.randn(9, 6, generator=generator, dtype=dtype)
    return z1.requires_grad_(), z2.requires_grad_()


needs_direct_apply = pytest.mark.skipif(
    not DIRECT_APPLY, reason="this torch's Function.apply is not the Python classmethod the direct path reuses"
)


@needs_direct_apply
def test_direct_apply_equals_the_generic_apply_and_skips_the_binding(counted_cross):
    z1, z2 = _views()
    standardization = Standardization(unbiased=False, eps=1e-5)
    direct = _CrossCorrelationTerms.apply(z1, z2, -0.5, None, standardization)
    assert counted_cross.binds == 0
    generic = torch.autograd.Function.apply.__func__(_CrossCorrelationTerms, z1, z2, -0.5, None, standardization)
    assert counted_cross.binds == 1
    for a, b in zip(direct, generic, strict=True):
        assert torch.equal(a, b)
    assert [t.requires_grad for t in direct] == [t.requires_grad for t in generic] == [True, True] + [False] * 6
    upstream = (torch.tensor(0.7, dtype=torch.float64), torch.tensor(-1.3, dtype=torch.float64))
    gradients = [torch.autograd.grad(outputs[:2], (z1, z2), upstream) for outputs in (direct, generic)]
    for a, b in zip(*gradients, strict=True):
        assert torch.equal(a, b)


@needs_direct_apply
def test_transforms_take_the_generic_apply(counted_cross):
    z1, z2 = _views()
    standardization = Standardization(unbiased=True, eps=0.0)

    def loss(a, b):
        invariance, redundancy_term = cross_correlation_terms(a, b, target=0.0, standardization=standardization)
        return invariance + 0.01 * redundancy_term

    expected = torch.autograd.grad(loss(z1, z2), z1)[0]
    assert counted_cross.binds == 0
    assert_relative(torch.func.grad(loss)(z1.detach(), z2.detach()), expected, 1e-12, "torch.func.grad")
    assert counted_cross.binds > 0
    batched = torch.func.vmap(loss)(torch.stack((z1, z2)).detach(), torch.stack((z2, z1)).detach())
    assert_relative(batched, torch.stack((loss(z1, z2), loss(z2, z1))).detach(), 1e-12, "vmap")


@with_direct_apply
class _AffineWithDefault(torch.autograd.Function):
    """``scale * x + shift`` with a default ``shift``: calls that rely on it, or on keywords, bind."""

    @staticmethod
    def forward(x, scale, shift=1.0):
        return x * scale + shift

    @staticmethod
    def setup_context(ctx, inputs, output):
        ctx.scale = inputs[1]

    @staticmethod
    def backward(ctx, grad):
        return grad * ctx.scale, None, None


@with_direct_apply
class _SumOfViews(torch.autograd.Function):
    """``scale * Σ views``, with a variable number of views."""

    @staticmethod
    def forward(scale, *views):
        return sum(views) * scale

    @staticmethod
    def setup_context(ctx, inputs, output):
        ctx.scale, ctx.count = inputs[0], len(inputs) - 1

    @staticmethod
    def backward(ctx, grad):
        return (None,) + (grad * ctx.scale,) * ctx.count


def test_direct_apply_leaves_defaults_keywords_and_variadic_calls_right():
    x = torch.tensor([1.0, 2.0], requires_grad=True)
    assert torch.equal(_AffineWithDefault.apply(x, 3.0), torch.tensor([4.0, 7.0]))  # default shift
    assert torch.equal(_AffineWithDefault.apply(x, 3.0, 0.0), torch.tensor([3.0, 6.0]))
    assert torch.equal(_AffineWithDefault.apply(x, scale=2.0, shift=0.5), torch.tensor([2.5, 4.5]))
    with pytest.raises(TypeError):
        _AffineWithDefault.apply(x, 3.0, 0.0, 1.0)  # one argument too many, as without the direct path
    y = torch.tensor([10.0, 20.0], requires_grad=True)
    total = _SumOfViews.apply(2.0, x, y, x)
    assert torch.equal(total, torch.tensor([24.0, 48.0]))
    total.sum().backward()
    assert torch.equal(x.grad, torch.tensor([4.0, 4.0])) and torch.equal(y.grad, torch.tensor([2.0, 2.0]))


def test_direct_apply_refuses_keyword_only_parameters():
    class KeywordOnly(torch.autograd.Function):
        @staticmethod
        def forward(x, *, scale):
            return x * scale

    with pytest.raises(TypeError, match="positional parameters only"):
        with_direct_apply(KeywordOnly)


def test_no_autocast_disables_autocast_and_leaves_it_off_when_off():
    device = torch.device("cpu")
    with torch.autocast("cpu", dtype=torch.bfloat16):
        with no_autocast(device):
            assert not torch.is_autocast_enabled("cpu")
            assert torch.mm(torch.ones(2, 2), torch.ones(2, 2)).dtype == torch.float32
        assert torch.is_autocast_enabled("cpu")
    with no_autocast(device):
        assert not torch.is_autocast_enabled("cpu")
    with no_autocast(torch.device("meta")):  # a device type autocast does not know
        assert torch.ones(1, device="meta").dtype == torch.float32


@pytest.mark.parametrize("unbiased", [False, True])
def test_finite_columns_whose_total_overflows_take_the_scaled_path(unbiased):
    # Each column's sum of squares is finite in float32 (about 1e38) while their total overflows: the unscaled
    # variance is given up for the scaled one, which must still be right.
    generator = torch.Generator().manual_seed(11)
    z = torch.randn(8, 6, generator=generator, dtype=torch.float64)
    z = (z - z.mean(dim=0)) / z.std(dim=0, correction=0) * 3.5e18
    z_single = z.float()
    centered = z_single.double() - z_single.double().mean(dim=0)
    sums = centered.square().sum(dim=0)
    assert bool((sums < torch.finfo(torch.float32).max).all()) and sums.sum() > torch.finfo(torch.float32).max
    standardization = Standardization(unbiased=unbiased, eps=1e-5)
    actual = standardize(z_single, standardization)
    assert torch.isfinite(actual).all()
    assert_relative(actual, standardize(z, standardization), 1e-5, "standardized columns")
    z2 = z_single.flip(0)
    loss = redundancy.barlow_twins_loss(z_single, z2, algorithm="cross")
    assert_relative(loss, redundancy.barlow_twins_loss(z, z.flip(0), algorithm="cross"), 1e-4, "loss")


@pytest.mark.parametrize("op", [cross_correlation_terms, gram_terms])
@pytest.mark.parametrize("unbiased", [False, True])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_small_views_standardized_together_equal_each_alone(op, unbiased, dtype, monkeypatch):
    generator = torch.Generator().manual_seed(7)
    z1 = torch.randn(11, 5, generator=generator, dtype=dtype) * 3.0 + 2.0
    z2 = torch.randn(11, 5, generator=generator, dtype=dtype) * 0.5 - 1.0
    z2[:, 3] = 4.0  # a constant column
    standardization = Standardization(unbiased=unbiased, eps=1e-5)
    results = []
    for joint_elements in (standardize_module.JOINT_ELEMENTS, 0):  # together, then each view alone
        monkeypatch.setattr(standardize_module, "JOINT_ELEMENTS", joint_elements)
        a, b = z1.clone().requires_grad_(), z2.clone().requires_grad_()
        invariance, redundancy_term = op(a, b, target=-0.5, standardization=standardization)
        (0.3 * invariance + 0.02 * redundancy_term).backward()
        results.append((invariance, redundancy_term, a.grad, b.grad))
    tolerance = 1e-12 if dtype == torch.float64 else 1e-5
    for together, alone, what in zip(*results, ("invariance", "redundancy", "dz1", "dz2"), strict=True):
        assert_relative(together, alone, tolerance, what)


def test_views_standardized_together_fall_back_when_one_needs_the_scale():
    generator = torch.Generator().manual_seed(8)
    z1 = torch.randn(16, 4, generator=generator, dtype=torch.float64)
    z2 = z1 + 0.3 * torch.randn(16, 4, generator=generator, dtype=torch.float64)
    z2[:, 1] *= 1e30  # its squares overflow float32
    standardization = Standardization(unbiased=False, eps=1e-5)
    together = standardize_views(z1.float(), (z1 + 1.0).float(), standardization)
    assert together[0].untyped_storage().data_ptr() == together[1].untyped_storage().data_ptr()  # one stack
    a, b, rstd_a, rstd_b = standardize_views(z1.float(), z2.float(), standardization)
    assert a.untyped_storage().data_ptr() != b.untyped_storage().data_ptr()  # each view alone
    expected = standardize_views(z1, z2, standardization)
    for actual, truth, what in zip((a, b, rstd_a, rstd_b), expected, ("a", "b", "rstd_a", "rstd_b"), strict=True):
        assert actual.shape == truth.shape
        assert_relative(actual, truth, 1e-5, what)


def test_remembered_options_are_those_of_equal_keywords_of_the_same_types():
    z1, z2 = _views(torch.float32)
    z1, z2 = z1.detach(), z2.detach()
    _CHECKED.clear()
    first = redundancy.barlow_twins_loss(z1, z2, lambd=1, scale=0.5)
    assert len(_CHECKED) == 1
    assert torch.equal(redundancy.barlow_twins_loss(z1, z2, lambd=1, scale=0.5), first)
    assert len(_CHECKED) == 1  # the same keywords: the remembered options
    with pytest.raises(TypeError, match="lambd must be a real number or 'auto', got bool"):
        redundancy.barlow_twins_loss(z1, z2, lambd=True, scale=0.5)  # True == 1, of another type
    with pytest.raises(TypeError, match="lambd must be a real number or 'auto', got list"):
        redundancy.barlow_twins_loss(z1, z2, lambd=[1.0], scale=0.5)  # unhashable: checked, not remembered
    with pytest.raises(ValueError, match="scale"):
        redundancy.barlow_twins_loss(z1, z2, lambd=1, scale=-0.5)
    assert len(_CHECKED) == 1  # options that fail are not remembered
    other = redundancy.barlow_twins_loss(z1, z2, lambd=1.0, scale=2.0)
    assert_relative(other, first * 4.0, 1e-6, "scale")
    assert len(_CHECKED) == 2
