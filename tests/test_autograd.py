"""The ops' autograd Functions: second derivatives (``gradgradcheck``), the refusal of a graph of gradients across
processes, the direct ``apply`` of small eager calls (it must give what the generic ``apply`` gives), and when saved
tensors die. Second derivatives and :mod:`torch.func` through every public loss are in ``tests/family.py``.
"""

import inspect

import pytest
import torch

import redundancy
from redundancy._ops import Standardization
from redundancy._ops import cross_correlation_terms
from redundancy._ops import gram_terms
from redundancy._ops import standardize
from redundancy._ops._autograd import DIRECT_APPLY
from redundancy._ops._autograd import saved_tensors_die_after_backward
from redundancy._ops._autograd import with_direct_apply
from redundancy._ops.cross import _CrossCorrelationTerms
from tests.utils import STANDARDIZATIONS
from tests.utils import assert_relative


@pytest.mark.parametrize(
    ("op", "standardization"),
    [(op, standardization) for op in ("cross", "gram") for standardization in STANDARDIZATIONS]
    + [("standardize", "biased"), ("standardize", "unbiased")],
)
def test_ops_pass_gradgradcheck(op, standardization):
    options = {"standardize": True, "correction": 0, **STANDARDIZATIONS[standardization]}
    standardization = redundancy._ops.standardization_of(**options, eps=1e-3)
    if op == "standardize":

        def function(z1, z2):
            return standardize(z1, standardization) * z2

    else:
        terms = cross_correlation_terms if op == "cross" else gram_terms

        def function(z1, z2):
            return terms(z1, z2, target=-0.5, standardization=standardization)

    z1 = torch.randn(6, 4, dtype=torch.float64, requires_grad=True)
    z2 = torch.randn(6, 4, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradgradcheck(function, (z1, z2))


class _OneProcessBatch:
    """A batch object of one process: what ``redundancy._batch.GlobalBatch`` gives the ops, without a group."""

    def __init__(self, z):
        self.count = z.shape[0]

    def var_mean(self, z, *, correction):
        return torch.var_mean(z, dim=0, correction=correction)

    def sum_over_ranks(self, tensor):
        return tensor


def test_second_derivatives_across_processes_raise_naming_create_graph():
    z1 = torch.randn(8, 3, dtype=torch.float64, requires_grad=True)
    z2 = torch.randn(8, 3, dtype=torch.float64, requires_grad=True)
    batch = _OneProcessBatch(z1)
    standardization = Standardization(unbiased=False, eps=1e-5)
    invariance, redundancy_term = cross_correlation_terms(z1, z2, target=0.0, batch=batch, standardization=None)
    # First derivatives across processes are what the op is for ...
    (first,) = torch.autograd.grad(invariance + redundancy_term, z1)
    assert_relative(first, torch.autograd.grad(sum(cross_correlation_terms(z1, z2, target=0.0)), z1)[0], 1e-12)
    # ... a graph of them is refused rather than silently wrong.
    for loss in (
        sum(cross_correlation_terms(z1, z2, target=0.0, batch=batch, standardization=standardization)),
        standardize(z1, standardization, batch=batch).square().mul(z2).sum(),
    ):
        with pytest.raises(RuntimeError, match="create_graph"):
            torch.autograd.grad(loss, z1, create_graph=True)


# ------------------------------------------------------------------------------------------------ direct apply


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


def test_saved_tensors_die_only_in_a_backward_without_retain_graph():
    seen = []

    class Probe(torch.autograd.Function):
        @staticmethod
        def forward(ctx, x):
            return x * 2

        @staticmethod
        def backward(ctx, grad):
            seen.append(saved_tensors_die_after_backward())
            return grad * 2

    x = torch.ones(3, requires_grad=True)
    y = Probe.apply(x).sum()
    y.backward(retain_graph=True)
    y.backward()
    torch.autograd.grad(Probe.apply(x).sum(), x, create_graph=True)
    assert seen == [False, True, False]
    assert not saved_tensors_die_after_backward()  # outside a backward
