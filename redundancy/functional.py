"""The public functions: argument validation and dispatch to the algorithms of :mod:`redundancy._ops`."""

from typing import Any, NamedTuple

import torch

from redundancy import cost
from redundancy import distributed as distributed_ops
from redundancy._deprecated import NORMALIZATION, accepts_deprecated
from redundancy._loss import (
    ALGORITHMS,
    Loss,
    Options,
    choice_option,
    correction_option,
    flag_option,
    option,
    options_dataclass,
    real,
    real_or_auto_option,
    takes_options_of,
)
from redundancy._ops import Standardization, cross_correlation_terms, gram_terms, standardization_of, standardize
from redundancy._ops._autocast import no_autocast
from redundancy._ops.feature_shards import barlow_twins_terms_over_features, terms_algorithm
from redundancy._triton import barlow_twins_terms_triton, select_backend
from redundancy._validation import (
    check_bool,
    check_correction,
    check_embedding,
    check_real,
    check_same_batch,
    compute_dtype,
)

__all__ = [
    "BarlowTwinsTerms",
    "barlow_twins_loss",
    "barlow_twins_terms",
    "batch_standardize",
    "cross_correlation",
    "off_diagonal",
]

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


# ------------------------------------------------------------------------------------------------ options


@options_dataclass
class BarlowTwinsOptions(Options):
    """The options of :func:`barlow_twins_loss` (documented there), declared once."""

    lambd: float | str = real_or_auto_option(0.0051, nonnegative=True)
    scale: float = option(1.0, real(nonnegative=True))
    eps: float = option(1e-5, real(nonnegative=True))
    correction: int = correction_option(0)
    standardize: bool = flag_option(True)
    off_diagonal_target: float = option(0.0, real())
    algorithm: str = choice_option("auto", ALGORITHMS)
    backend: str = choice_option("auto", BACKENDS)
    strategy: str = choice_option("auto", distributed_ops.STRATEGIES)
    feature_group: Any = option(
        None,
        distributed_ops.check_group,
        encode=distributed_ops.feature_group_size,
        decode=distributed_ops.describe_feature_group,
    )

    aliases = (NORMALIZATION,)

    def check_combination(self) -> None:
        if self.strategy == "all_reduce" and self.algorithm == "gram":
            raise ValueError(
                "strategy='all_reduce' sums C over the ranks, which is the cross algorithm; use algorithm='cross' "
                "or 'auto' with it, or strategy='all_gather' (or 'auto') with algorithm='gram'"
            )


def standardize_view(z: torch.Tensor, standardization: "Standardization | None", batch=None) -> torch.Tensor:
    """Standardize an already upcast view (the identity for ``None``), over the global batch when given."""
    return z if standardization is None else standardize(z, standardization, batch=batch)


def standardization_of_options(options) -> "Standardization | None":
    """The standardization that ``options`` (``standardize``, ``correction``, ``eps``) ask for."""
    return standardization_of(standardize=options.standardize, correction=options.correction, eps=options.eps)


class BarlowTwinsPlan(NamedTuple):
    """How one evaluation computes the Barlow Twins terms: the options resolved for this batch."""

    lambd: float
    target: float
    standardization: "Standardization | None"
    algorithm: str
    strategy: str


def barlow_twins_plan(options: BarlowTwinsOptions, batch, views: int = 2) -> BarlowTwinsPlan:
    """Resolve ``"auto"`` options for a batch of ``views`` views (the two-view loss, or the multi-view one)."""
    n, d, world_size = batch.count, batch.dim, batch.world_size
    algorithm, strategy = options.algorithm, options.strategy
    if world_size == 1:
        strategy = "all_gather"  # the whole batch is here: nothing to combine
    elif strategy == "auto" and views == 2:
        strategy = cost.choose_strategy(n, d, world_size, batch.dtype, algorithm=algorithm)
    elif strategy == "auto":
        strategy = cost.choose_multiview_strategy(n, d, world_size, views, batch.dtype, algorithm=algorithm)
    if algorithm == "auto":
        if strategy == "all_reduce":
            algorithm = "cross"
        else:
            algorithm = cost.choose_algorithm(n, d) if views == 2 else cost.choose_multiview_algorithm(n, d, views)
    return BarlowTwinsPlan(
        lambd=1.0 / d if options.lambd == "auto" else options.lambd,
        target=options.off_diagonal_target,
        standardization=standardization_of_options(options),
        algorithm=algorithm,
        strategy=strategy,
    )


def _barlow_twins(options: BarlowTwinsOptions, batch, z1: torch.Tensor, z2: torch.Tensor) -> BarlowTwinsTerms:
    """The terms of :func:`barlow_twins_terms` for the batch of all ranks (one rank: this process's batch)."""
    if batch.features is not None:
        return barlow_twins_over_features(options, batch, z1, z2)
    lambd, target, standardization, algorithm, strategy = barlow_twins_plan(options, batch)
    backend = select_backend(options.backend, z1, algorithm=algorithm) if batch.world_size == 1 else options.backend
    if backend == "triton":
        if batch.world_size > 1:
            raise ValueError(
                "backend='triton' does not compute the global-batch loss of several ranks yet; "
                "use backend='auto' or 'torch' with distributed='global', or distributed='local'"
            )
        invariance, redundancy = barlow_twins_terms_triton(
            z1, z2, standardization=standardization, target=target, algorithm=algorithm
        )
    else:
        a, b = z1.to(batch.dtype), z2.to(batch.dtype)
        if strategy == "all_reduce":
            invariance, redundancy = cross_correlation_terms(
                a, b, target=target, batch=batch, standardization=standardization
            )
        else:
            if batch.world_size > 1:  # standardized with the global statistics, then gathered
                a = standardize_view(a, standardization, batch)
                b = standardize_view(b, standardization, batch)
                a, b = batch.gather(a, b)
                standardization = None
            compute_terms = gram_terms if algorithm == "gram" else cross_correlation_terms
            invariance, redundancy = compute_terms(a, b, target=target, standardization=standardization)
    loss = (invariance + redundancy * lambd) * options.scale
    return BarlowTwinsTerms(loss, invariance, redundancy)


def barlow_twins_over_features(options: BarlowTwinsOptions, batch, *views: torch.Tensor) -> BarlowTwinsTerms:
    """The terms of two views (or the mean over the pairs of several) when the features are split over
    ``feature_group``: every rank gathers the rows of its columns (over ``group``), standardizes them, and the
    columns meet in :func:`barlow_twins_terms_over_features`."""
    if options.backend == "triton" or options.strategy != "auto":
        raise ValueError(
            "with feature_group, the rows of each rank's columns are gathered and the terms are computed by the torch "
            f"backend: leave backend and strategy at 'auto' (got backend={options.backend!r}, "
            f"strategy={options.strategy!r})"
        )
    features = batch.features
    algorithm = options.algorithm
    if algorithm == "auto":
        algorithm = cost.choose_feature_parallel_algorithm(
            batch.count, batch.dim, batch.world_size, features.world_size, batch.dtype
        )
    algorithm = terms_algorithm(algorithm, batch.count, batch.dim)
    views = batch.gather(*(z.to(batch.dtype) for z in views))
    standardization = standardization_of_options(options)
    if standardization is not None:
        views = [standardize(z, standardization) for z in views]
    invariance, redundancy = barlow_twins_terms_over_features(
        list(views), target=options.off_diagonal_target, features=features, algorithm=algorithm
    )
    lambd = 1.0 / batch.dim if options.lambd == "auto" else options.lambd
    return BarlowTwinsTerms((invariance + redundancy * lambd) * options.scale, invariance, redundancy)


BARLOW_TWINS = Loss("barlow_twins_loss", BarlowTwinsOptions, ("z1", "z2"), _barlow_twins)


# ------------------------------------------------------------------------------------------------ public


@takes_options_of(BARLOW_TWINS)
def barlow_twins_terms(z1: torch.Tensor, z2: torch.Tensor, **options) -> BarlowTwinsTerms:
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
    return BARLOW_TWINS.run((z1, z2), options)


@takes_options_of(BARLOW_TWINS)
def barlow_twins_loss(z1: torch.Tensor, z2: torch.Tensor, **options) -> torch.Tensor:
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
        correction: the variance divisor ``N - correction`` of the standardization, as in :func:`torch.var`:
            ``0`` (biased variance, as ``BatchNorm1d`` in the official code) or ``1`` (unbiased, the paper's
            Algorithm 1; use ``eps=0`` to match it exactly).
        standardize: standardize each view (``True``) or use the inputs as they are (``False``: the caller
            standardized them).
        normalization: *deprecated*, removed in the next release: ``"batchnorm"`` is ``correction=0``,
            ``"std"`` ``correction=1`` and ``"none"`` ``standardize=False``; passing it warns
            (:class:`FutureWarning`), and passing it with ``correction`` or ``standardize`` is a :class:`TypeError`.
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
        feature_group: the ranks that hold the other features (columns) of this rank's rows, for a column-parallel
            projector (:doc:`/feature_parallel`): the loss is that of the full N×D views, whose columns are split
            over these ranks in their rank order (unevenly if need be). With it, ``group`` names the ranks that
            hold the other rows of this rank's columns, and ``None`` means that the rows are not split. ``algorithm``
            then chooses between summing the N×N Grams over ``feature_group`` and gathering the second view's
            columns (:func:`redundancy.cost.choose_feature_parallel_algorithm`); the torch backend computes it.

    Shape:
        ``z1``, ``z2``: ``(N, D)`` with ``N >= 2``; under ``distributed="global"`` with several ranks, each rank
        passes its own rows ``(N_r, D)`` (``N_r`` may be 0 or 1) and the global ``N = Σ N_r >= 2``; with
        ``feature_group``, its block ``(N_r, D_p)`` of the full views. Views may also be DTensors on a 1-D or 2-D
        device mesh with placements ``Shard(0)`` (rows), ``Shard(1)`` (features) and ``Replicate()``: the
        placements then say what ``group`` and ``feature_group`` say, and the loss comes back as a 0-dim DTensor
        replicated over the mesh. Output: ``()``.

    Returns:
        The loss as a 0-dim tensor, float64 for float64 inputs and float32 otherwise (half-precision inputs
        are accumulated in float32; their gradients come back in their own dtype).

    Example:
        >>> z1, z2 = torch.randn(256, 2048), torch.randn(256, 2048)
        >>> loss = barlow_twins_loss(z1, z2)
        >>> loss.shape, loss.dtype
        (torch.Size([]), torch.float32)
    """
    return BARLOW_TWINS.run((z1, z2), options).loss


@accepts_deprecated(NORMALIZATION)
def batch_standardize(
    z: torch.Tensor, *, correction: int = 0, standardize: bool = True, eps: float = 1e-5
) -> torch.Tensor:
    r"""Standardize each feature (column) of ``z`` over the batch: :math:`(z - \mu) / \sqrt{\sigma^2 + \epsilon}`.

    ``correction=0`` uses the biased variance (``BatchNorm1d`` in training mode without affine parameters),
    ``correction=1`` the unbiased one; ``standardize=False`` returns ``z`` unchanged. Statistics are accumulated in
    float32 (float64 for float64 inputs); the result has the dtype of ``z``. The backward is closed-form.

    Args:
        z: embeddings, shape ``(N, D)`` with ``N >= 2``.
        correction: the variance divisor ``N - correction``: ``0`` or ``1``.
        standardize: ``False`` returns ``z`` as it is.
        eps: added to the variance before the square root.
        normalization: *deprecated* alias of ``correction`` and ``standardize``, as in :func:`barlow_twins_loss`;
            removed in the next release.

    Example:
        >>> a = batch_standardize(torch.randn(64, 8) * 3 + 1)
        >>> mean, var = a.mean(0), a.var(0, correction=0)
        >>> torch.allclose(mean, torch.zeros(8), atol=1e-6), torch.allclose(var, torch.ones(8), atol=1e-4)
        (True, True)
    """
    standardization = checked_standardization(standardize, correction, eps)
    check_embedding("z", z)
    with no_autocast(z.device):
        return standardize_view(z.to(compute_dtype(z)), standardization).to(z.dtype)


def checked_standardization(standardize: bool, correction: int, eps: float) -> "Standardization | None":
    """The standardization of a helper's options, each checked (the errors name the option)."""
    check_bool("standardize", standardize)
    check_correction("correction", correction)
    check_real("eps", eps, nonnegative=True)
    return standardization_of(standardize=standardize, correction=correction, eps=eps)


@accepts_deprecated(NORMALIZATION)
def cross_correlation(
    z1: torch.Tensor, z2: torch.Tensor, *, correction: int = 0, standardize: bool = True, eps: float = 1e-5
) -> torch.Tensor:
    r"""The D×D cross-correlation matrix :math:`C = A^\top B / N` of the standardized views, for analysis.

    This materializes C (D² elements); the loss functions do not need it. Float32 for half-precision inputs.

    Args:
        z1: embeddings of the first view, shape ``(N, D)``.
        z2: embeddings of the second view, same shape.
        correction: the variance divisor ``N - correction`` (``0`` or ``1``), as in :func:`barlow_twins_loss`.
        standardize: ``False`` uses the views as they are.
        eps: added to the variance before the square root.
        normalization: *deprecated* alias of ``correction`` and ``standardize``, as in :func:`barlow_twins_loss`;
            removed in the next release.

    Example:
        >>> z = torch.randn(128, 16)
        >>> torch.allclose(cross_correlation(z, z).diagonal(), torch.ones(16), atol=1e-4)
        True
    """
    standardization = checked_standardization(standardize, correction, eps)
    check_embedding("z1", z1)
    check_embedding("z2", z2)
    check_same_batch(("z1", "z2"), (z1, z2))
    dtype = compute_dtype(z1, z2)
    with no_autocast(z1.device):
        a = standardize_view(z1.to(dtype), standardization)
        b = standardize_view(z2.to(dtype), standardization)
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
