"""``redundancy.compat.lightly.MMCRLoss`` reproduces lightly 1.6's ``MMCRLoss`` in one process, and differs where its
docstring says (half precision, the gradient at vanishing singular values; the loss under torch.distributed is in
``test_lightly_sigreg_distributed.py``). The tests against lightly's own module skip where it is not importable."""

import inspect

import pytest
import torch

import redundancy
from redundancy.compat import lightly
from redundancy.reference import mmcr_loss_reference
from tests.utils import assert_relative

F64 = torch.float64


def _lightly():
    loss = pytest.importorskip("lightly.loss", reason="lightly is not installed (see tests/compat/README.md)")
    assert loss.MMCRLoss is not lightly.MMCRLoss, "lightly.loss is swapped for the adapters"
    return loss


def _pair(batch: int, k: int, dim: int, dtype=F64, seed: int = 0):
    generator = torch.Generator().manual_seed(seed)
    online = torch.randn(batch, k, dim, generator=generator, dtype=F64)
    momentum = online + 0.5 * torch.randn(batch, k, dim, generator=generator, dtype=F64)
    return online.to(dtype), momentum.to(dtype)


def _value_and_grads(criterion, online, momentum):
    online, momentum = online.clone().requires_grad_(True), momentum.clone().requires_grad_(True)
    value = criterion(online, momentum)
    return value.detach(), *torch.autograd.grad(1.3 * value, (online, momentum))


def test_signature_and_attributes_are_lightlys():
    parameters = list(inspect.signature(lightly.MMCRLoss).parameters.values())
    assert [(p.name, p.default, p.kind) for p in parameters] == [
        ("lmda", 5e-3, inspect.Parameter.POSITIONAL_OR_KEYWORD)
    ]
    assert lightly.MMCRLoss(lmda=0.1).lmda == 0.1
    with pytest.raises(ValueError, match="lmda must be greater than or equal to 0"):
        lightly.MMCRLoss(lmda=-1.0)


@pytest.mark.parametrize(("batch", "k", "dim"), [(16, 2, 8), (5, 3, 12), (37, 1, 70)])
def test_the_unnormalized_loss_of_the_online_and_momentum_views(batch, k, dim):
    online, momentum = _pair(batch, k, dim)
    value = lightly.MMCRLoss(lmda=0.2)(online, momentum)
    views = torch.cat([online, momentum], dim=1).transpose(0, 1)  # (2k, B, D)
    assert_relative(value, mmcr_loss_reference(views, lmbda=0.2, normalize=False), 1e-10)


def test_lmda_is_read_at_the_call_and_checked_under_its_name():
    online, momentum = _pair(8, 2, 4)
    criterion = lightly.MMCRLoss()
    criterion.lmda = 0.5
    views = torch.cat([online, momentum], dim=1).transpose(0, 1)
    assert_relative(criterion(online, momentum), mmcr_loss_reference(views, lmbda=0.5, normalize=False), 1e-12)
    criterion.lmda = -1.0
    with pytest.raises(ValueError, match="lmda must be non-negative"):
        criterion(online, momentum)


@pytest.mark.parametrize(
    ("online", "momentum", "message"),
    [
        (torch.randn(8, 2, 4), torch.randn(8, 3, 4), "online and momentum need to have the same shape"),
        (torch.randn(8, 4), torch.randn(8, 4), r"online must have shape \(batch_size, k, embedding_size\)"),
        (torch.randn(8, 2, 4), None, r"momentum must have shape \(batch_size, k, embedding_size\), got NoneType"),
    ],
)
def test_shapes_are_checked_as_lightly_asserts_them(online, momentum, message):
    with pytest.raises(ValueError, match=message):
        lightly.MMCRLoss()(online, momentum)


def test_errors_of_the_views_name_online_and_momentum():
    online, momentum = _pair(8, 2, 4)
    with pytest.raises(TypeError, match=r"momentum\[:, 0\] must have a floating-point dtype"):
        lightly.MMCRLoss()(online, momentum.long())


@pytest.mark.parametrize(("batch", "k", "dim"), [(16, 2, 8), (5, 3, 12), (37, 1, 70)])
def test_values_and_gradients_equal_lightlys(batch, k, dim):
    online, momentum = _pair(batch, k, dim)
    ours = _value_and_grads(lightly.MMCRLoss(lmda=0.3), online, momentum)
    theirs = _value_and_grads(_lightly().MMCRLoss(lmda=0.3), online, momentum)
    for mine, expected, what in zip(ours, theirs, ("value", "d online", "d momentum"), strict=True):
        assert_relative(mine, expected, 1e-10, what)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_half_precision_computes_where_lightly_raises(dtype):
    online, momentum = _pair(16, 2, 8, dtype=dtype)
    value = lightly.MMCRLoss()(online, momentum)
    assert value.dtype == torch.float32
    views = torch.cat([online, momentum], dim=1).transpose(0, 1).double()
    assert_relative(value, mmcr_loss_reference(views, lmbda=5e-3, normalize=False), 1e-6)
    with pytest.raises(NotImplementedError, match="not implemented for"):
        _lightly().MMCRLoss()(online, momentum)


def _local_term_gradient(criterion_class, x: torch.Tensor) -> torch.Tensor:
    """The gradient of the samples' nuclear norms with respect to the online view, when both views are ``x``."""
    gradients = []
    for lmda in (0.0, 1.0):
        online, momentum = x[:, None].clone().requires_grad_(True), x[:, None].clone()
        criterion_class(lmda=lmda)(online, momentum).backward()
        gradients.append(online.grad[:, 0])
    return gradients[1] - gradients[0]


def test_at_identical_views_the_gradient_is_the_least_norm_subgradient():
    """Each sample's 2×D matrix [x; x] has rank one; its nuclear norm's least-norm subgradient is along x. lightly's
    ``torch.linalg.svd`` adds the other singular pair's ``u₂ v₂ᵀ``, whose v₂ is any direction orthogonal to x."""
    x = torch.randn(16, 6, dtype=F64)

    def across(gradient: torch.Tensor) -> torch.Tensor:  # the part of each row orthogonal to that row of x
        return gradient - (gradient * x).sum(-1, keepdim=True) / (x * x).sum(-1, keepdim=True) * x

    ours = _local_term_gradient(lightly.MMCRLoss, x)
    assert across(ours).norm() < 1e-12 * ours.norm()
    theirs = _local_term_gradient(_lightly().MMCRLoss, x)
    assert across(theirs).norm() > 0.1 * theirs.norm()
    assert_relative(
        redundancy.mmcr_loss([x, x], lmbda=1.0, normalize=False), lightly.MMCRLoss(1.0)(x[:, None], x[:, None]), 1e-12
    )
