"""The public functions: argument validation and dispatch to the algorithms of :mod:`redundancy._ops`."""

import math
from typing import NamedTuple

import torch

from redundancy import cost
from redundancy import distributed as distributed_ops
from redundancy._ops import cross_correlation_terms, gram_terms, standardization_of, standardize
from redundancy._ops._autocast import no_autocast
from redundancy._triton import barlow_twins_terms_triton, select_backend

__all__ = [
    "BarlowTwinsTerms",
    "barlow_twins_loss",
    "barlow_twins_terms",
    "batch_standardize",
    "cross_correlation",
    "off_diagonal",
]

NORMALIZATIONS = ("batchnorm", "std", "none")
ALGORITHMS = ("auto", *cost.ALGORITHMS)
BACKENDS = ("auto", "torch", "triton")


class BarlowTwinsTerms(NamedTuple):
    """The Barlow Twins loss and its two terms, as :func:`barlow_twins_terms` returns them.

    ``loss = scale * (invariance + lambd * redundancy)``; the terms are unscaled, so they read the same
    whatever ``lambd`` and ``scale`` are. All three are 0-dim tensors and carry gradients.

    Example:
        >>> z1, z2 = torch.randn(32, 16), torch.randn(32, 16)
        >>> loss, invariance, redundancy = barlow_twins_terms(z1, z2, lambd=0.01, scale=0.5)
        >>> torch.allclose(loss, 0.5 * (invariance + 0.01 * redundancy))
        True
    """

    loss: torch.Tensor
    """The loss, as :func:`barlow_twins_loss` returns it."""
    invariance: torch.Tensor
    """``Σ_i (1 - C_ii)²``: how far the diagonal of C is from 1."""
    redundancy: torch.Tensor
    """``Σ_{i≠j} (C_ij - t)²``: the off-diagonal energy of C."""


# --------------------------------------------------------------------------------------------- validation


def _check_choice(name: str, value: object, choices: tuple[str, ...]) -> None:
    if not isinstance(value, str) or value not in choices:
        raise ValueError(f"{name} must be one of {choices}, got {value!r}")


def _check_real(name: str, value: object, *, nonnegative: bool) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{name} must be a real number, got {type(value).__name__} {value!r}")
    if not math.isfinite(value):
        raise ValueError(f"{name} must be finite, got {value!r}")
    if nonnegative and value < 0:
        raise ValueError(f"{name} must be non-negative, got {value!r}")


def _check_distributed_options(*, distributed: object, gradient_convention: object, group: object) -> None:
    """Check ``distributed``, ``gradient_convention`` and ``group``, the options every global-batch loss takes."""
    _check_choice("distributed", distributed, distributed_ops.DISTRIBUTED_MODES)
    _check_choice("gradient_convention", gradient_convention, distributed_ops.GRADIENT_CONVENTIONS)
    distributed_ops.check_group(group)


def _is_global(distributed: str, group: object) -> bool:
    """Whether a loss with these (already checked) options computes the batch of several ranks."""
    return distributed == "global" and distributed_ops.group_world_size(group) > 1


def check_barlow_twins_options(
    *,
    lambd: float | str,
    scale: float,
    eps: float,
    normalization: str,
    off_diagonal_target: float,
    algorithm: str,
    backend: str,
    distributed: str = "global",
    strategy: str = "auto",
    gradient_convention: str = "global",
    group: object = None,
) -> None:
    """Raise a :class:`ValueError` or :class:`TypeError` naming the first bad option (used by the Module too).

    Example:
        >>> check_barlow_twins_options(lambd=-1.0, scale=1.0, eps=1e-5, normalization="batchnorm",
        ...     off_diagonal_target=0.0, algorithm="auto", backend="auto")
        Traceback (most recent call last):
            ...
        ValueError: lambd must be non-negative, got -1.0
    """
    if lambd != "auto":
        _check_real("lambd", lambd, nonnegative=True)
    _check_real("scale", scale, nonnegative=True)
    _check_real("eps", eps, nonnegative=True)
    _check_real("off_diagonal_target", off_diagonal_target, nonnegative=False)
    _check_choice("normalization", normalization, NORMALIZATIONS)
    _check_choice("algorithm", algorithm, ALGORITHMS)
    _check_choice("backend", backend, BACKENDS)
    _check_distributed_options(distributed=distributed, gradient_convention=gradient_convention, group=group)
    _check_choice("strategy", strategy, distributed_ops.STRATEGIES)
    if strategy == "all_reduce" and algorithm == "gram":
        raise ValueError(
            "strategy='all_reduce' sums C over the ranks, which is the cross algorithm; use algorithm='cross' or "
            "'auto' with it, or strategy='all_gather' (or 'auto') with algorithm='gram'"
        )


def _check_embedding(name: str, z: object, *, min_rows: int) -> None:
    if not isinstance(z, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(z).__name__}")
    if not z.is_floating_point():
        raise TypeError(f"{name} must have a floating-point dtype, got {z.dtype}")
    if z.ndim != 2:
        raise ValueError(f"{name} must be 2-D of shape (N, D), got shape {tuple(z.shape)}")
    if z.shape[0] < min_rows:
        raise ValueError(f"{name} needs a batch of at least {min_rows} rows, got shape {tuple(z.shape)}")
    if z.shape[1] < 1:
        raise ValueError(f"{name} needs at least one feature column, got shape {tuple(z.shape)}")


def _check_views(z1: object, z2: object, *, min_rows: int = 2) -> None:
    _check_embedding("z1", z1, min_rows=min_rows)
    _check_embedding("z2", z2, min_rows=min_rows)
    if z1.shape != z2.shape:
        raise ValueError(
            f"z1 and z2 must have the same shape, got z1 {tuple(z1.shape)} and z2 {tuple(z2.shape)}"
        )
    if z1.device != z2.device:
        raise ValueError(f"z1 and z2 must be on the same device, got {z1.device} and {z2.device}")


def _compute_dtype(*tensors: torch.Tensor) -> torch.dtype:
    """float64 when any input is float64, otherwise float32 (half inputs are accumulated in float32)."""
    return torch.float64 if any(z.dtype == torch.float64 for z in tensors) else torch.float32


def _standardize_view(z: torch.Tensor, normalization: str, eps: float) -> torch.Tensor:
    """Standardize an already upcast view (the identity for ``"none"``)."""
    standardization = standardization_of(normalization, eps)
    return z if standardization is None else standardize(z, standardization)


# ------------------------------------------------------------------------------------------------ public


def barlow_twins_terms(
    z1: torch.Tensor,
    z2: torch.Tensor,
    *,
    lambd: float | str = 0.0051,
    scale: float = 1.0,
    eps: float = 1e-5,
    normalization: str = "batchnorm",
    off_diagonal_target: float = 0.0,
    algorithm: str = "auto",
    backend: str = "auto",
    distributed: str = "global",
    strategy: str = "auto",
    gradient_convention: str = "global",
    group: "torch.distributed.ProcessGroup | None" = None,
) -> BarlowTwinsTerms:
    r"""The Barlow Twins loss together with its invariance and redundancy terms, for logging.

    Takes the same arguments as :func:`barlow_twins_loss`; ``terms.loss`` is exactly what that returns.

    Returns:
        :class:`BarlowTwinsTerms` ``(loss, invariance, redundancy)``, each a 0-dim tensor with gradients.

    Example:
        >>> z1, z2 = torch.randn(32, 64), torch.randn(32, 64)
        >>> terms = barlow_twins_terms(z1, z2)
        >>> torch.allclose(terms.loss, terms.invariance + 0.0051 * terms.redundancy)
        True
    """
    check_barlow_twins_options(
        lambd=lambd,
        scale=scale,
        eps=eps,
        normalization=normalization,
        off_diagonal_target=off_diagonal_target,
        algorithm=algorithm,
        backend=backend,
        distributed=distributed,
        strategy=strategy,
        gradient_convention=gradient_convention,
        group=group,
    )
    if _is_global(distributed, group):
        if backend == "triton":
            raise ValueError(
                "backend='triton' does not compute the global-batch loss of several ranks yet; "
                "use backend='auto' or 'torch' with distributed='global', or distributed='local'"
            )
        return _barlow_twins_terms_global(
            z1,
            z2,
            lambd=lambd,
            scale=scale,
            eps=eps,
            normalization=normalization,
            off_diagonal_target=off_diagonal_target,
            algorithm=algorithm,
            strategy=strategy,
            gradient_convention=gradient_convention,
            group=group,
        )
    _check_views(z1, z2)
    n, d = z1.shape
    if lambd == "auto":
        lambd = 1.0 / d
    if algorithm == "auto":
        algorithm = cost.choose_algorithm(n, d)
    backend = select_backend(backend, z1)
    with no_autocast(z1.device):
        if backend == "triton":
            invariance, redundancy = barlow_twins_terms_triton(
                z1, z2, normalization=normalization, eps=eps, target=off_diagonal_target, algorithm=algorithm
            )
        else:
            dtype = _compute_dtype(z1, z2)
            compute_terms = gram_terms if algorithm == "gram" else cross_correlation_terms
            invariance, redundancy = compute_terms(
                z1.to(dtype),
                z2.to(dtype),
                target=float(off_diagonal_target),
                standardization=standardization_of(normalization, eps),
            )
        loss = (invariance + redundancy * lambd) * scale
    return BarlowTwinsTerms(loss, invariance, redundancy)


def _barlow_twins_terms_global(
    z1: torch.Tensor, z2: torch.Tensor, *, lambd: float | str, scale: float, **options
) -> BarlowTwinsTerms:
    """:func:`barlow_twins_terms` of the batch of all ranks (:mod:`redundancy.distributed`); every rank calls it."""
    _check_views(z1, z2, min_rows=0)  # the global N >= 2 is checked once the ranks have exchanged their shapes
    invariance, redundancy, batch = distributed_ops.barlow_twins_terms_global(
        z1, z2, dtype=_compute_dtype(z1, z2), **options
    )
    if lambd == "auto":
        lambd = 1.0 / batch.dim
    loss = (invariance + redundancy * lambd) * scale
    return BarlowTwinsTerms(loss, invariance, redundancy)


def barlow_twins_loss(
    z1: torch.Tensor,
    z2: torch.Tensor,
    *,
    lambd: float | str = 0.0051,
    scale: float = 1.0,
    eps: float = 1e-5,
    normalization: str = "batchnorm",
    off_diagonal_target: float = 0.0,
    algorithm: str = "auto",
    backend: str = "auto",
    distributed: str = "global",
    strategy: str = "auto",
    gradient_convention: str = "global",
    group: "torch.distributed.ProcessGroup | None" = None,
) -> torch.Tensor:
    r"""The Barlow Twins loss (Zbontar et al., 2021) of two embeddings of the same batch.

    Each view is standardized per feature over the batch (``A``, ``B``), their cross-correlation is
    :math:`C = A^\top B / N` and

    .. math::

        L = s \Big( \sum_i (1 - C_{ii})^2 + \lambda \sum_{i \ne j} (C_{ij} - t)^2 \Big).

    The defaults reproduce the official implementation (``facebookresearch/barlowtwins`` ``main.py``).
    C is never built unless the cross algorithm is the cheaper one, and even then no copy of it is made.

    Args:
        z1: embeddings of the first view, shape ``(N, D)``, floating point.
        z2: embeddings of the second view, same shape and device as ``z1``.
        lambd: weight :math:`\lambda` of the redundancy term, or ``"auto"`` for ``1 / D``.
        scale: factor :math:`s` on the whole loss (solo-learn's ``scale_loss``).
        eps: added to the variance before the square root.
        normalization: ``"batchnorm"`` (biased variance, as ``BatchNorm1d`` in the official code),
            ``"std"`` (unbiased variance, the paper's Algorithm 1; use ``eps=0`` to match it exactly) or
            ``"none"`` (the inputs are already standardized).
        off_diagonal_target: target :math:`t` of the off-diagonal entries; ``-1`` gives the HSIC variant
            (Tsai et al., 2021).
        algorithm: ``"cross"`` (through the D×D matrix C, 6·N·D² FLOPs), ``"gram"`` (through two N×N Gram
            matrices, 8·N²·D FLOPs) or ``"auto"`` (the cheaper, see :func:`redundancy.cost.choose_algorithm`).
        backend: ``"torch"`` (PyTorch operations, any device), ``"triton"`` (fused kernels that never
            materialize C; CUDA tensors, or CPU tensors under ``TRITON_INTERPRET=1``) or ``"auto"`` (Triton for
            CUDA tensors when it is installed, otherwise torch).
        distributed: ``"global"`` (when ``torch.distributed`` is initialized and ``group`` has more than one
            rank, the loss of the batch of all ranks: statistics and C of the concatenated batch, the same value
            on every rank; see :mod:`redundancy.distributed`) or ``"local"`` (each rank's own batch). Without
            ``torch.distributed``, or with one rank, both are the single-process loss and nothing is communicated.
        strategy: how ranks combine under ``distributed="global"``: ``"all_reduce"`` (sum C, D² elements per
            step, cross algorithm), ``"all_gather"`` (gather the standardized views, 2·N·D elements, and run
            ``algorithm`` on the whole batch) or ``"auto"`` (by bytes moved and FLOPs,
            :func:`redundancy.cost.choose_strategy`).
        gradient_convention: ``"global"`` (after DDP's gradient averaging, parameter gradients equal those of one
            process training on the concatenated batch, so learning rates carry over between 1 and W GPUs; input
            gradients are W times ``∂L/∂z`` of this rank's rows) or ``"official"`` (``∂L/∂z`` itself, 1/W of the
            former, as the official script's in-place all-reduce of C outside autograd gives).
        group: the process group of the global batch; ``None`` for the default group.

    Shape:
        ``z1``, ``z2``: ``(N, D)`` with ``N >= 2``; under ``distributed="global"`` with several ranks, each rank
        passes its own rows ``(N_r, D)`` (``N_r`` may be 0 or 1) and the global ``N = Σ N_r >= 2``.
        Output: ``()``.

    Returns:
        The loss as a 0-dim tensor, float64 for float64 inputs and float32 otherwise (half-precision inputs
        are accumulated in float32; their gradients come back in their own dtype).

    Example:
        >>> z1, z2 = torch.randn(256, 2048), torch.randn(256, 2048)
        >>> loss = barlow_twins_loss(z1, z2)
        >>> loss.shape, loss.dtype
        (torch.Size([]), torch.float32)
    """
    return barlow_twins_terms(
        z1,
        z2,
        lambd=lambd,
        scale=scale,
        eps=eps,
        normalization=normalization,
        off_diagonal_target=off_diagonal_target,
        algorithm=algorithm,
        backend=backend,
        distributed=distributed,
        strategy=strategy,
        gradient_convention=gradient_convention,
        group=group,
    ).loss


def batch_standardize(z: torch.Tensor, *, normalization: str = "batchnorm", eps: float = 1e-5) -> torch.Tensor:
    r"""Standardize each feature (column) of ``z`` over the batch: :math:`(z - \mu) / \sqrt{\sigma^2 + \epsilon}`.

    ``"batchnorm"`` uses the biased variance (``BatchNorm1d`` in training mode without affine parameters),
    ``"std"`` the unbiased one; ``"none"`` returns ``z`` unchanged. Statistics are accumulated in float32
    (float64 for float64 inputs); the result has the dtype of ``z``. The backward is closed-form.

    Args:
        z: embeddings, shape ``(N, D)`` with ``N >= 2``.
        normalization: ``"batchnorm"``, ``"std"`` or ``"none"``.
        eps: added to the variance before the square root.

    Example:
        >>> a = batch_standardize(torch.randn(64, 8) * 3 + 1)
        >>> mean, var = a.mean(0), a.var(0, correction=0)
        >>> torch.allclose(mean, torch.zeros(8), atol=1e-6), torch.allclose(var, torch.ones(8), atol=1e-4)
        (True, True)
    """
    _check_choice("normalization", normalization, NORMALIZATIONS)
    _check_real("eps", eps, nonnegative=True)
    _check_embedding("z", z, min_rows=2)
    with no_autocast(z.device):
        return _standardize_view(z.to(_compute_dtype(z)), normalization, eps).to(z.dtype)


def cross_correlation(
    z1: torch.Tensor, z2: torch.Tensor, *, normalization: str = "batchnorm", eps: float = 1e-5
) -> torch.Tensor:
    r"""The D×D cross-correlation matrix :math:`C = A^\top B / N` of the standardized views, for analysis.

    This materializes C (D² elements); the loss functions do not need it. Float32 for half-precision inputs.

    Args:
        z1: embeddings of the first view, shape ``(N, D)``.
        z2: embeddings of the second view, same shape.
        normalization: ``"batchnorm"``, ``"std"`` or ``"none"``, as in :func:`barlow_twins_loss`.
        eps: added to the variance before the square root.

    Example:
        >>> z = torch.randn(128, 16)
        >>> torch.allclose(cross_correlation(z, z).diagonal(), torch.ones(16), atol=1e-4)
        True
    """
    _check_choice("normalization", normalization, NORMALIZATIONS)
    _check_real("eps", eps, nonnegative=True)
    _check_views(z1, z2)
    dtype = _compute_dtype(z1, z2)
    with no_autocast(z1.device):
        a = _standardize_view(z1.to(dtype), normalization, eps)
        b = _standardize_view(z2.to(dtype), normalization, eps)
        return torch.mm(a.t(), b).div_(z1.shape[0])


def off_diagonal(x: torch.Tensor) -> torch.Tensor:
    """The off-diagonal entries of a square matrix, row by row, as a new 1-D tensor of ``n·(n-1)`` elements.

    A copy built by indexing (O(n²) memory), with the same order as the official implementation's
    ``off_diagonal``; the loss functions never call it.

    Example:
        >>> off_diagonal(torch.arange(9.0).view(3, 3))
        tensor([1., 2., 3., 5., 6., 7.])
    """
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"x must be a torch.Tensor, got {type(x).__name__}")
    if x.ndim != 2 or x.shape[0] != x.shape[1]:
        raise ValueError(f"x must be a square matrix, got shape {tuple(x.shape)}")
    keep = ~torch.eye(x.shape[0], dtype=torch.bool, device=x.device)
    return x[keep]
