"""Second derivatives and :mod:`torch.func` through every loss of the family, against :mod:`redundancy.reference`.

A gradient penalty differentiates the gradient itself: ``g = ∂L/∂x`` with ``create_graph=True``, then the
gradient of ``‖g‖²`` with respect to the parameters of a small linear layer. The ops' closed-form backwards must
then be differentiable (not ``once_differentiable``, which drops the second-order terms without a word when the
incoming gradient needs none). The reference formulas are plain autograd, so their second derivatives are exact.
"""

import functools

import pytest
import torch
from torch.func import grad, jacrev, vmap

import redundancy
from redundancy import reference
from redundancy._ops import Standardization, cross_correlation_terms, gram_terms, standardize
from tests.utils import STANDARDIZATIONS, assert_relative

N, D_IN, D = 11, 5, 7
PERMUTATION = torch.tensor([3, 0, 7, 1, 10, 2, 9, 4, 8, 6, 5])


def _mixed(loss, reference_loss):
    """Mixed Barlow Twins as a loss of two views: the mixed view is a fixed mix of the two."""

    def make(implementation):
        def mixed(z1, z2):
            z_mixed = 0.3 * z1 + 0.7 * z2[PERMUTATION] + 0.1 * z1.square()
            return implementation(z1, z2, z_mixed, PERMUTATION, 0.3)

        return mixed

    return make(loss), make(reference_loss)


#: (name, loss of (z1, z2) through the library, the same through reference.py)
FAMILY = [
    *[
        (
            f"barlow_twins-{algorithm}-{standardization}-t{target}",
            functools.partial(
                redundancy.barlow_twins_loss,
                algorithm=algorithm,
                **STANDARDIZATIONS[standardization],
                off_diagonal_target=target,
                lambd=0.3,
            ),
            functools.partial(
                reference.barlow_twins_loss_reference,
                **STANDARDIZATIONS[standardization],
                off_diagonal_target=target,
                lambd=0.3,
            ),
        )
        for algorithm in ("cross", "gram")
        for standardization in STANDARDIZATIONS
        for target in (0.0, -1.0)
    ],
    *[
        (
            f"vicreg-{algorithm}",
            functools.partial(redundancy.vicreg_loss, algorithm=algorithm),
            reference.vicreg_loss_reference,
        )
        for algorithm in ("cross", "gram")
    ],
    *[
        (
            f"decov-{algorithm}",
            lambda z1, z2, algorithm=algorithm: (
                redundancy.decov_loss(z1, algorithm=algorithm) + redundancy.decov_loss(z2, algorithm=algorithm)
            ),
            lambda z1, z2: reference.decov_loss_reference(z1) + reference.decov_loss_reference(z2),
        )
        for algorithm in ("cross", "gram")
    ],
    *[
        (
            f"total_coding_rate-{algorithm}",
            lambda z1, z2, algorithm=algorithm: (
                redundancy.total_coding_rate(z1, algorithm=algorithm)
                - redundancy.total_coding_rate(z2, algorithm=algorithm)
            ),
            lambda z1, z2: reference.total_coding_rate_reference(z1) - reference.total_coding_rate_reference(z2),
        )
        for algorithm in ("cross", "gram")
    ],
    *[
        (
            f"cca_ssg-{algorithm}",
            functools.partial(redundancy.cca_ssg_loss, algorithm=algorithm, lambd=0.1),
            functools.partial(reference.cca_ssg_loss_reference, lambd=0.1),
        )
        for algorithm in ("cross", "gram")
    ],
    *[
        (
            f"spectral_contrastive-{algorithm}",
            functools.partial(redundancy.spectral_contrastive_loss, algorithm=algorithm),
            reference.spectral_contrastive_loss_reference,
        )
        for algorithm in ("cross", "gram")
    ],
    *[
        (
            f"mixed_barlow_twins-{algorithm}",
            *_mixed(
                functools.partial(redundancy.mixed_barlow_twins_regularizer, algorithm=algorithm),
                reference.mixed_barlow_twins_regularizer_reference,
            ),
        )
        for algorithm in ("cross", "gram")
    ],
]
IDS = [name for name, _, _ in FAMILY]


def _gradient_penalty_parameter_gradients(loss_fn, inputs):
    """∂/∂θ of ``‖∂L/∂x‖²`` for ``L = loss(linear(x1), linear(x2))``: a second derivative through the loss."""
    torch.manual_seed(1)
    linear = torch.nn.Linear(D_IN, D, dtype=torch.float64)
    x1, x2 = (x.clone().requires_grad_() for x in inputs)
    loss = loss_fn(torch.tanh(linear(x1)), linear(x2) * 1.5)
    g1, g2 = torch.autograd.grad(loss, (x1, x2), create_graph=True)
    penalty = g1.square().sum() + (g2 * torch.linspace(0.5, 2.0, D_IN, dtype=torch.float64)).square().sum()
    penalty.backward()
    return loss.detach(), linear.weight.grad, linear.bias.grad


@pytest.mark.parametrize(("name", "loss", "reference_loss"), FAMILY, ids=IDS)
def test_gradient_penalty_equals_autograd_through_the_reference(name, loss, reference_loss):
    inputs = (torch.randn(N, D_IN, dtype=torch.float64), torch.randn(N, D_IN, dtype=torch.float64))
    value, weight_grad, bias_grad = _gradient_penalty_parameter_gradients(loss, inputs)
    expected_value, expected_weight_grad, expected_bias_grad = _gradient_penalty_parameter_gradients(
        reference_loss, inputs
    )
    assert_relative(value, expected_value, 1e-10, "loss")
    assert_relative(weight_grad, expected_weight_grad, 1e-8, "second derivative (weight)")
    assert_relative(bias_grad, expected_bias_grad, 1e-8, "second derivative (bias)")


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


@pytest.mark.parametrize(("name", "loss", "reference_loss"), FAMILY, ids=IDS)
def test_torch_func_grad_and_vmap_equal_autograd_and_a_loop(name, loss, reference_loss):
    z1 = torch.randn(3, N, D, dtype=torch.float64)
    z2 = torch.randn(3, N, D, dtype=torch.float64)
    expected_values, expected_grads = [], []
    for a, b in zip(z1, z2, strict=True):
        a = a.clone().requires_grad_()
        value = loss(a, b)
        expected_values.append(value.detach())
        expected_grads.append(torch.autograd.grad(value, a)[0])
    assert_relative(vmap(loss)(z1, z2), torch.stack(expected_values), 1e-12, "vmap")
    assert_relative(vmap(grad(loss))(z1, z2), torch.stack(expected_grads), 1e-10, "vmap(grad)")
    assert_relative(jacrev(loss)(z1[0], z2[0]), expected_grads[0], 1e-10, "jacrev")


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


@pytest.mark.parametrize(("name", "loss", "reference_loss"), FAMILY, ids=IDS)
def test_torch_func_second_derivatives_equal_the_reference(name, loss, reference_loss):
    z1 = torch.randn(N, 4, dtype=torch.float64)
    z2 = torch.randn(N, 4, dtype=torch.float64)
    hessian = jacrev(jacrev(loss))(z1, z2)
    expected = jacrev(jacrev(reference_loss))(z1, z2)
    assert_relative(hessian, expected, 1e-8, "jacrev(jacrev)")
