"""Float32 accuracy of the family's values and gradients: never less exact than the same formula in plain PyTorch.

Each value is computed three ways on the same inputs, rounded to the input dtype: by this library; by the reference
formula of :mod:`redundancy.reference` in float32, as plain PyTorch code computes it (``C = bn(z1)ᵀ bn(z2) / N``, the
entries squared and summed pairwise by ``.pow(2).sum()``), on the inputs upcast to float32 when they are bfloat16 or
float16 (the library accumulates those in float32 too); and by the same formula in float64, the truth. The library's
relative error against the truth must be

- at most :data:`FACTOR` times plain PyTorch's, plus :data:`ROUNDING` (a few roundings of the result itself), and
- at most :data:`RTOL` wherever the formula is well conditioned in float32: where plain PyTorch's error is within
  ``RTOL / FACTOR``.

Plain PyTorch's error is that of one order of the arithmetic: where a bound is missed with it, it is taken as the
larger of its errors on the inputs and on the inputs with their rows and features in reverse order (every value is
invariant to that), so that one lucky rounding does not set the bound.

Two values are not sums of a few roundings. The invariance ``Σ_i (1 - c_i)²`` of nearly equal views is ill conditioned
in float32: its ``1 - c_i`` are differences of numbers close to 1 (each ``c_i`` carries float32's rounding however it
is summed); there plain PyTorch itself misses :data:`RTOL`, and the bound is the comparison with it. The log-determinant
of the total coding rate carries the rounding of each entry of ``I + α zᵀz`` through the factorization: its float32
error, about 1e-7 to 1e-6 whatever the order of the arithmetic (up to tenfold apart between two orders), is what
:mod:`redundancy._ops.logdet` keeps float32 for (``LOGDET_ROUNDING`` in place of :data:`ROUNDING`).

The inputs are random embeddings, and converged ones: nearly equal views whose features are decorrelated (orthogonal
centred columns when N > D), where C ≈ I and the off-diagonal energy is small beside ‖C‖² ≈ D (DESIGN §2).
"""

import functools
import math
from collections.abc import Callable
from typing import NamedTuple

import pytest
import torch

import redundancy
from redundancy import reference

#: The library's relative error may be this many times plain PyTorch's ...
FACTOR = 10.0
#: ... plus this much: four roundings of a float32 result (its scaling and the sum of its terms) ...
ROUNDING = 4 * 2.0**-24
#: ... or, for a log-determinant factorized in float32, the accuracy :mod:`redundancy._ops.logdet` keeps float32 for.
LOGDET_ROUNDING = 2.0**-20
#: The relative error of float32 accuracy, wherever plain PyTorch reaches it.
RTOL = 1e-5

SHAPES = [(64, 64), (37, 70), (256, 128), (128, 512)]
LARGE_SHAPES = [(1024, 1024), (512, 8192), (2048, 2048)]
DTYPES = [torch.float32, torch.bfloat16, torch.float16]
KINDS = ["random", "converged"]
ALGORITHMS = ["cross", "gram"]


def embeddings(kind: str, n: int, d: int, count: int, dtype: torch.dtype) -> tuple[torch.Tensor, ...]:
    """``count`` views (N×D) in ``dtype``, with per-feature offsets and scales.

    ``"converged"``: the views differ by noise of 1% of their spread, and their features are decorrelated (the
    columns of a centred orthogonal matrix when N > D), so that C ≈ I.
    """
    generator = torch.Generator().manual_seed(1000 * n + d)
    if kind == "random":
        views = [torch.randn(n, d, generator=generator, dtype=torch.float64) for _ in range(count)]
    else:
        base = torch.randn(n, d, generator=generator, dtype=torch.float64)
        if n > d:
            base = torch.linalg.qr(base - base.mean(dim=0)).Q * math.sqrt(n)
        views = [base + 1e-2 * torch.randn(n, d, generator=generator, dtype=torch.float64) for _ in range(count)]
    scale = 0.5 + torch.rand(d, generator=generator, dtype=torch.float64)
    offset = torch.randn(d, generator=generator, dtype=torch.float64)
    return tuple((view * scale + offset).to(dtype) for view in views)


class Family(NamedTuple):
    """Several values of one call: ``library(inputs, algorithm)`` and ``reference(inputs, upcast)`` give a dict of
    the same names; ``inputs(views, kind)`` builds the call's inputs from the embeddings; ``rounding`` is the
    rounding of the result that the bounds allow beside plain PyTorch's error."""

    views: int
    library: Callable[[tuple, str], dict]
    reference: Callable[[tuple, bool], dict]
    inputs: Callable[[tuple, str], tuple] = lambda views, kind: views
    rounding: float = ROUNDING


def _barlow_twins_reference(inputs, upcast, *, lambd=0.0051, target=0.0):
    invariance, redundancy_term = reference.barlow_twins_terms_reference(
        *inputs, off_diagonal_target=target, upcast=upcast
    )
    # barlow_twins_loss_reference's own expression, on the terms it computes
    return {"loss": invariance + lambd * redundancy_term, "invariance": invariance, "redundancy": redundancy_term}


def _barlow_twins(inputs, algorithm):
    terms = redundancy.barlow_twins_terms(*inputs, algorithm=algorithm)
    return {"loss": terms.loss, "invariance": terms.invariance, "redundancy": terms.redundancy}


def _hsic(inputs, algorithm):
    return {"loss": redundancy.barlow_twins_loss(*inputs, lambd="auto", off_diagonal_target=-1.0, algorithm=algorithm)}


def _hsic_reference(inputs, upcast):
    values = _barlow_twins_reference(inputs, upcast, lambd=1.0 / inputs[0].shape[1], target=-1.0)
    return {"loss": values["loss"]}


def _vicreg(inputs, algorithm):
    terms = redundancy.vicreg_terms(*inputs, algorithm=algorithm)
    return {"loss": terms.loss, "covariance": terms.covariance}


def _vicreg_reference(inputs, upcast):
    invariance, variance, covariance = reference.vicreg_terms_reference(*inputs, upcast=upcast)
    return {"loss": 25.0 * invariance + 25.0 * variance + 1.0 * covariance, "covariance": covariance}


def _pairs(inputs):
    return [(inputs[u], inputs[v]) for u in range(len(inputs)) for v in range(u + 1, len(inputs))]


def _mean_over_pairs(family_reference):
    def mean(inputs, upcast):
        pairs = [family_reference(pair, upcast) for pair in _pairs(inputs)]
        return {name: torch.stack([values[name] for values in pairs]).mean() for name in pairs[0]}

    return mean


def _multiview_barlow_twins(inputs, algorithm):
    terms = redundancy.multiview_barlow_twins_terms(list(inputs), algorithm=algorithm)
    return {"loss": terms.loss, "redundancy": terms.redundancy}


def _multiview_vicreg(inputs, algorithm):
    terms = redundancy.multiview_vicreg_terms(list(inputs), algorithm=algorithm)
    return {"loss": terms.loss, "covariance": terms.covariance}


def _unit_rows(inputs, kind):
    """EMP-SSL's L2-normalized rows, for the coding rate: normalized in float64, then rounded to the dtype."""
    (z,) = inputs
    return (torch.nn.functional.normalize(z.double(), dim=1).to(z.dtype),)


def _mixed_inputs(inputs, kind):
    """``z1, z2``, the embeddings of their mixture, the permutation and α. The mixture's embeddings are random, or
    for converged views those of a linear encoder, ``α z1 + (1 - α) z2[π]``, up to noise of about 1% (a small
    residual)."""
    z1, z2, mixed = inputs
    n = z1.shape[0]
    permutation = torch.randperm(n, generator=torch.Generator().manual_seed(n))
    alpha = 0.3
    if kind == "converged":
        linear = alpha * z1.double() + (1 - alpha) * z2.double()[permutation]
        mixed = (linear + (mixed.double() - z1.double())).to(z1.dtype)  # two converged views differ by ~1%
    return z1, z2, mixed, permutation, alpha


FAMILIES = {
    "barlow_twins": Family(2, _barlow_twins, _barlow_twins_reference),
    "barlow_twins_hsic": Family(2, _hsic, _hsic_reference),
    "vicreg": Family(2, _vicreg, _vicreg_reference),
    "vicreg_covariance_loss": Family(
        1,
        lambda inputs, algorithm: {"loss": redundancy.vicreg_covariance_loss(*inputs, algorithm=algorithm)},
        lambda inputs, upcast: {"loss": reference.vicreg_terms_reference(*inputs, *inputs, upcast=upcast)[2] / 2},
    ),
    "decov_loss": Family(
        1,
        lambda inputs, algorithm: {"loss": redundancy.decov_loss(*inputs, algorithm=algorithm)},
        lambda inputs, upcast: {"loss": reference.decov_loss_reference(*inputs, upcast=upcast)},
    ),
    "cca_ssg_loss": Family(
        2,
        lambda inputs, algorithm: {"loss": redundancy.cca_ssg_loss(*inputs, algorithm=algorithm)},
        lambda inputs, upcast: {"loss": reference.cca_ssg_loss_reference(*inputs, upcast=upcast)},
    ),
    "total_coding_rate": Family(
        1,
        lambda inputs, algorithm: {"loss": redundancy.total_coding_rate(*inputs, algorithm=algorithm)},
        lambda inputs, upcast: {"loss": reference.total_coding_rate_reference(*inputs, upcast=upcast)},
        _unit_rows,
        LOGDET_ROUNDING,
    ),
    "spectral_contrastive_loss": Family(
        2,
        lambda inputs, algorithm: {"loss": redundancy.spectral_contrastive_loss(*inputs, algorithm=algorithm)},
        lambda inputs, upcast: {"loss": reference.spectral_contrastive_loss_reference(*inputs, upcast=upcast)},
    ),
    "mixed_barlow_twins_regularizer": Family(
        3,
        lambda inputs, algorithm: {"loss": redundancy.mixed_barlow_twins_regularizer(*inputs, algorithm=algorithm)},
        lambda inputs, upcast: {"loss": reference.mixed_barlow_twins_regularizer_reference(*inputs, upcast=upcast)},
        _mixed_inputs,
    ),
    "multiview_barlow_twins": Family(3, _multiview_barlow_twins, _mean_over_pairs(_barlow_twins_reference)),
    "multiview_vicreg": Family(3, _multiview_vicreg, _mean_over_pairs(_vicreg_reference)),
}


def _as(dtype: torch.dtype, inputs: tuple) -> tuple:
    return tuple(x.to(dtype) if isinstance(x, torch.Tensor) and x.is_floating_point() else x for x in inputs)


def _reversed(inputs: tuple) -> tuple:
    """The inputs with their rows and their features in reverse order (a row permutation ``π`` follows the rows)."""

    def reverse(x):
        if not isinstance(x, torch.Tensor):
            return x
        if x.is_floating_point():
            return x.flip((0, 1))
        return (x.shape[0] - 1 - x).flip(0)

    return tuple(reverse(x) for x in inputs)


def _relative(value: float, truth: float) -> float:
    return abs(value - truth) / abs(truth)


class Expectation:
    """The float64 values of ``reference_values`` on ``inputs``, and plain PyTorch's relative error of each: on the
    inputs as they are, and on the inputs in reverse order (computed only when a bound is missed without it)."""

    def __init__(self, reference_values: Callable[[tuple, bool], dict], inputs: tuple):
        self.reference_values, self.inputs = reference_values, inputs
        with torch.no_grad():
            values = reference_values(_as(torch.float64, inputs), True)
        self.truth = {name: value.item() for name, value in values.items()}
        self._plain_errors = [self._errors_of_plain_pytorch(inputs)]

    def _errors_of_plain_pytorch(self, inputs: tuple) -> dict:
        with torch.no_grad():
            values = self.reference_values(_as(torch.float32, inputs), False)
        return {name: _relative(value.item(), self.truth[name]) for name, value in values.items()}

    def plain_error(self, name: str, *, both_orders: bool = False) -> float:
        if both_orders and len(self._plain_errors) == 1:
            self._plain_errors.append(self._errors_of_plain_pytorch(_reversed(self.inputs)))
        return max(errors[name] for errors in self._plain_errors)


@functools.lru_cache(maxsize=4)  # the algorithms of one family and shape run one after the other
def expectation(family: str, n: int, d: int, kind: str, dtype: torch.dtype) -> Expectation:
    spec = FAMILIES[family]
    return Expectation(spec.reference, spec.inputs(embeddings(kind, n, d, spec.views, dtype), kind))


def _bound(plain_error: float, rounding: float) -> float:
    bound = FACTOR * plain_error + rounding
    return min(bound, RTOL) if plain_error <= RTOL / FACTOR else bound


def assert_as_exact_as_plain_pytorch(values: dict, expected: Expectation, rounding: float = ROUNDING) -> None:
    """The bounds of the module docstring, for every value; the message lists each one that misses them."""
    failures = []
    for name, value in values.items():
        error = _relative(value, expected.truth[name])
        if error <= _bound(expected.plain_error(name), rounding):
            continue
        plain_error = expected.plain_error(name, both_orders=True)
        if not error <= _bound(plain_error, rounding):
            bound = _bound(plain_error, rounding)
            failures.append(f"{name}: error {error:.2e} > {bound:.2e} (plain PyTorch {plain_error:.2e})")
    assert not failures, "; ".join(failures)


def check_family(family: str, n: int, d: int, kind: str, dtype: torch.dtype, algorithm: str) -> None:
    expected = expectation(family, n, d, kind, dtype)
    with torch.no_grad():
        values = {name: value.item() for name, value in FAMILIES[family].library(expected.inputs, algorithm).items()}
    assert_as_exact_as_plain_pytorch(values, expected, FAMILIES[family].rounding)


@pytest.mark.parametrize("algorithm", ALGORITHMS)
@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize(("n", "d"), SHAPES, ids=lambda v: str(v))
def test_values_are_as_exact_as_plain_pytorch(n, d, kind, dtype, family, algorithm):
    check_family(family, n, d, kind, dtype, algorithm)


@pytest.mark.slow
@pytest.mark.parametrize("algorithm", ALGORITHMS)
@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize(("n", "d"), LARGE_SHAPES, ids=lambda v: str(v))
def test_values_of_large_shapes_are_as_exact_as_plain_pytorch(n, d, kind, family, algorithm):
    """float32 inputs: half-precision inputs are upcast to float32 before anything else, the small shapes show it."""
    check_family(family, n, d, kind, torch.float32, algorithm)


def _summary_reference(inputs: tuple, upcast: bool) -> dict:
    """:func:`redundancy.reference.cross_correlation_summary_reference`'s formula, in float64 or (plain PyTorch) in
    float32."""
    z1, z2 = inputs
    if upcast:
        mean_diagonal, off_diagonal_rms = reference.cross_correlation_summary_reference(z1, z2)
    else:
        a, b = reference.batch_standardize_reference(z1), reference.batch_standardize_reference(z2)
        c = a.T @ b / z1.shape[0]
        off = c[~torch.eye(c.shape[0], dtype=torch.bool)]
        mean_diagonal, off_diagonal_rms = torch.diagonal(c).mean(), off.pow(2).mean().sqrt()
    return {"mean_diagonal": mean_diagonal, "off_diagonal_rms": off_diagonal_rms}


SUMMARY_CASES = [
    *((n, d, dtype) for n, d in SHAPES for dtype in DTYPES),
    *(pytest.param(n, d, torch.float32, marks=pytest.mark.slow) for n, d in LARGE_SHAPES),
]


@pytest.mark.parametrize("return_matrix", [False, True])
@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize(("n", "d", "dtype"), SUMMARY_CASES, ids=str)
def test_cross_correlation_summary_is_as_exact_as_plain_pytorch(n, d, dtype, kind, return_matrix):
    expected = Expectation(_summary_reference, embeddings(kind, n, d, 2, dtype))
    summary = redundancy.diagnostics.cross_correlation_summary(*expected.inputs, return_matrix=return_matrix)
    values = {"mean_diagonal": summary.mean_diagonal.item(), "off_diagonal_rms": summary.off_diagonal_rms.item()}
    assert_as_exact_as_plain_pytorch(values, expected)


# ------------------------------------------------------------------------------------------------ gradients


def _gradient(loss: Callable, z1: torch.Tensor, z2: torch.Tensor) -> torch.Tensor:
    """The gradient of ``loss(z1, z2)`` with respect to both views, flattened, in float64."""
    z1, z2 = z1.detach().requires_grad_(), z2.detach().requires_grad_()
    grads = torch.autograd.grad(loss(z1, z2), (z1, z2))
    return torch.cat([grad.double().flatten() for grad in grads])


def _barlow_twins_losses(correction):
    def library(z1, z2, algorithm):
        return redundancy.barlow_twins_loss(z1, z2, correction=correction, algorithm=algorithm)

    def formula(z1, z2, upcast):
        return reference.barlow_twins_loss_reference(z1, z2, correction=correction, upcast=upcast)

    return library, formula


GRADIENT_LOSSES = {
    "barlow_twins_biased": _barlow_twins_losses(0),
    "barlow_twins_unbiased": _barlow_twins_losses(1),
    "vicreg": (
        lambda z1, z2, algorithm: redundancy.vicreg_loss(z1, z2, algorithm=algorithm),
        lambda z1, z2, upcast: reference.vicreg_loss_reference(z1, z2, upcast=upcast),
    ),
}


@pytest.mark.parametrize("algorithm", ALGORITHMS)
@pytest.mark.parametrize("loss", GRADIENT_LOSSES)
@pytest.mark.parametrize(("n", "d"), [(64, 32), (32, 64), (256, 128)])
def test_gradients_of_offset_inputs_are_as_exact_as_plain_pytorch(n, d, loss, algorithm):
    """Inputs offset by 1e4 with a spread of 1e-3 (about one float32 ulp of the offset): the rounding of the batch
    mean, as large as the spread, must not reach the centred views. The library's error may exceed plain PyTorch's
    by one rounding of the gradient (where both are at float32's resolution)."""
    generator = torch.Generator().manual_seed(n + d)
    z1, z2 = ((1e4 + 1e-3 * torch.randn(n, d, generator=generator, dtype=torch.float64)).float() for _ in range(2))
    library, formula = GRADIENT_LOSSES[loss]
    truth = _gradient(lambda a, b: formula(a, b, True), z1, z2)
    plain = _gradient(lambda a, b: formula(a, b, False), z1, z2)
    value = _gradient(lambda a, b: library(a, b, algorithm), z1, z2)
    error = ((value - truth).norm() / truth.norm()).item()
    plain_error = ((plain - truth).norm() / truth.norm()).item()
    assert error <= plain_error + 2.0**-24, f"gradient error {error:.2e}, plain PyTorch's {plain_error:.2e}"
