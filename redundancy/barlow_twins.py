r"""Barlow Twins (Zbontar et al., 2021): the loss of two views, of several views, and their Modules.

Each view is standardized per feature over the batch (``A``, ``B``), their cross-correlation is ``C = AᵀB / N``
and the loss pushes C towards the identity. One computation serves two views and V ≥ 2 views (the mean over the
V(V-1)/2 pairs), one process and many (the batch of all ranks), whole views and views split by features:

- ``feature_group`` given: the grid form (:mod:`redundancy._ops.feature_shards`);
- otherwise the options are resolved for the batch (algorithm, strategy, backend: :func:`_plan`), then the Triton
  kernels run each pair, or the torch ops run the views together (:mod:`redundancy._ops.multiview`, which is the
  two-view op of :mod:`redundancy._ops.gram` or :mod:`redundancy._ops.cross` for two views).
"""

import dataclasses
from collections.abc import Sequence
from typing import Any
from typing import Literal
from typing import NamedTuple

import torch

from redundancy import cost
from redundancy._batch import GlobalBatch
from redundancy._batch import ProcessGroup
from redundancy._frame import FEATURE_GROUP
from redundancy._frame import NONNEGATIVE
from redundancy._frame import Algorithm
from redundancy._frame import Backend
from redundancy._frame import Correction
from redundancy._frame import Distributed
from redundancy._frame import GradientConvention
from redundancy._frame import Loss
from redundancy._frame import LossModule
from redundancy._frame import Options
from redundancy._frame import Strategy
from redundancy._frame import Views
from redundancy._frame import ViewsArgument
from redundancy._frame import ViewSequence
from redundancy._frame import algorithm_on_the_grid
from redundancy._frame import eager_on_a_grid
from redundancy._frame import module_options
from redundancy._frame import multiview_form_of
from redundancy._frame import same_arguments_as
from redundancy._ops._autocast import no_autocast
from redundancy._ops.feature_shards import barlow_twins_terms_over_features
from redundancy._ops.multiview import multiview_cross_terms
from redundancy._ops.multiview import multiview_gram_terms
from redundancy._ops.multiview import view_pairs
from redundancy._ops.standardize import Standardization
from redundancy._ops.standardize import standardization_of_options
from redundancy._ops.standardize import standardize_each
from redundancy._triton import barlow_twins_terms_triton
from redundancy._triton import select_backend

__all__ = [
    "BarlowTwinsLoss",
    "BarlowTwinsTerms",
    "MultiviewBarlowTwinsLoss",
    "barlow_twins_loss",
    "barlow_twins_terms",
    "multiview_barlow_twins_loss",
    "multiview_barlow_twins_terms",
]


class BarlowTwinsTerms(NamedTuple):
    """The Barlow Twins loss and its two terms, as :func:`barlow_twins_terms` returns them.

    ``loss = scale * (invariance + lambd * redundancy)``; the terms are unscaled, so they read the same
    whatever ``lambd`` and ``scale`` are. All three are 0-dim tensors and carry gradients.

    Example:
        >>> import torch
        >>> from redundancy import barlow_twins_terms
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


@dataclasses.dataclass(frozen=True, kw_only=True)
class BarlowTwinsOptions(Options):
    """The options of :func:`barlow_twins_loss` (documented there), declared once."""

    lambd: float | Literal["auto"] = dataclasses.field(default=0.0051, metadata=NONNEGATIVE)
    scale: float = dataclasses.field(default=1.0, metadata=NONNEGATIVE)
    eps: float = dataclasses.field(default=1e-5, metadata=NONNEGATIVE)
    correction: Correction = 0
    standardize: bool = True
    off_diagonal_target: float = 0.0
    algorithm: Algorithm = "auto"
    backend: Backend = "auto"
    strategy: Strategy = "auto"
    distributed: Distributed = "global"
    gradient_convention: GradientConvention = "global"
    group: ProcessGroup | None = None
    feature_group: ProcessGroup | None = dataclasses.field(default=None, metadata=FEATURE_GROUP)

    def check_combination(self) -> None:
        if self.strategy == "all_reduce" and self.algorithm == "gram":
            raise ValueError(
                "strategy='all_reduce' sums C over the ranks, which is the cross algorithm; use algorithm='cross' "
                "or 'auto' with it, or strategy='all_gather' (or 'auto') with algorithm='gram'"
            )
        if self.feature_group is not None and (self.backend == "triton" or self.strategy != "auto"):
            raise ValueError(
                "with feature_group, the rows of each rank's columns are gathered and the terms are computed by the "
                f"torch backend: leave backend and strategy at 'auto' (got backend={self.backend!r}, "
                f"strategy={self.strategy!r})"
            )


BARLOW_TWINS = Loss("barlow_twins_loss", BarlowTwinsOptions, Views("z1", "z2"))

#: What Barlow Twins sends and computes on a grid of row and feature shards (:mod:`redundancy.cost`): the cross
#: form gathers the second view's columns; both forms sum the invariance and ``Σ c_i²`` (or the off-diagonal
#: energy), and ``ΣC°`` with a nonzero target; 8·N²·D_f FLOPs for the two Grams, 6·N·D_f·D for the block row of C.
FEATURE_PARALLEL_COST = cost.FeatureParallelCost(
    name="barlow_twins_loss",
    data_parallel_with_one_feature_rank=True,
    gathered_views=1,
    scalars=2,
    target_scalars=1,
    gram_flops=8,
    cross_flops=6,
    autocorrelation=False,
)
MULTIVIEW_BARLOW_TWINS = Loss("multiview_barlow_twins_loss", BarlowTwinsOptions, ViewSequence())


# ------------------------------------------------------------------------------------------------ computation


class _Plan(NamedTuple):
    """How one evaluation computes the terms: the ``"auto"`` options resolved for this batch."""

    standardization: Standardization | None
    algorithm: str
    strategy: str
    backend: str


def _plan(options: BarlowTwinsOptions, batch: GlobalBatch, views: Sequence[torch.Tensor]) -> _Plan:
    """Resolve ``algorithm``, ``strategy`` and ``backend`` for V views of ``batch`` (by bytes moved and FLOPs)."""
    n, d, world_size, count = batch.count, batch.dim, batch.world_size, len(views)
    algorithm: str = options.algorithm
    strategy: str = options.strategy
    if world_size == 1:
        strategy = "all_gather"  # the whole batch is here: nothing to combine
    elif strategy == "auto":
        strategy = cost.choose_multiview_strategy(n, d, world_size, count, batch.dtype, algorithm=algorithm)
    if algorithm == "auto":
        algorithm = "cross" if strategy == "all_reduce" else cost.choose_multiview_algorithm(n, d, count)
    if world_size > 1:
        if options.backend == "triton":
            raise ValueError(
                "backend='triton' does not compute the global-batch loss of several ranks yet; "
                "use backend='auto' or 'torch' with distributed='global', or distributed='local'"
            )
        backend = "torch"
    elif options.backend == "auto" and count > 2:
        backend = "torch"  # the torch op shares the views' Grams; the kernels take two views
    else:
        backend = select_backend(options.backend, views[0], algorithm=algorithm)
    return _Plan(standardization_of_options(options), algorithm, strategy, backend)


def _terms_torch(plan: _Plan, target: float, batch: GlobalBatch, views: Sequence[torch.Tensor]):
    """``(invariance, redundancy)`` by the torch ops, the views sharing their work."""
    views = [z.to(batch.dtype) for z in views]
    standardization = plan.standardization
    if plan.strategy == "all_reduce":
        return multiview_cross_terms(views, target=target, standardization=standardization, batch=batch)
    if batch.world_size > 1:  # standardized with the global statistics, then gathered
        views = list(batch.gather(*standardize_each(views, standardization, batch=batch)))
        standardization = None
    compute_terms = multiview_gram_terms if plan.algorithm == "gram" else multiview_cross_terms
    return compute_terms(views, target=target, standardization=standardization)


def _terms_triton(plan: _Plan, target: float, views: Sequence[torch.Tensor]):
    """``(invariance, redundancy)`` by the Triton kernels, the mean over the pairs (nothing shared)."""
    pairs = [
        barlow_twins_terms_triton(
            views[u], views[v], standardization=plan.standardization, target=target, algorithm=plan.algorithm
        )
        for u, v in view_pairs(len(views))
    ]
    if len(pairs) == 1:
        return pairs[0]
    return torch.stack([pair[0] for pair in pairs]).mean(), torch.stack([pair[1] for pair in pairs]).mean()


def _terms_over_features(options: BarlowTwinsOptions, batch: GlobalBatch, views: Sequence[torch.Tensor]):
    """``(invariance, redundancy)`` when the features are split over ``feature_group``: every rank gathers the rows
    of its columns (over ``group``), standardizes them, and the columns meet in the grid's op."""
    features = batch.features
    assert features is not None
    algorithm = algorithm_on_the_grid(options.algorithm, batch, FEATURE_PARALLEL_COST)
    views = batch.gather_in_dtype(*views)
    with no_autocast(views[0].device):
        return barlow_twins_terms_over_features(
            standardize_each(views, standardization_of_options(options)),
            target=options.off_diagonal_target,
            features=features,
            algorithm=algorithm,
        )


def _barlow_twins_terms(
    options: BarlowTwinsOptions, batch: GlobalBatch, views: Sequence[torch.Tensor]
) -> BarlowTwinsTerms:
    """The terms of V ≥ 2 views (each the mean over the pairs) for the batch of all ranks."""
    target = options.off_diagonal_target
    if batch.features is not None:
        invariance, redundancy = _terms_over_features(options, batch, views)
    else:
        plan = _plan(options, batch, views)
        if plan.backend == "triton":
            invariance, redundancy = _terms_triton(plan, target, views)
        else:
            invariance, redundancy = _terms_torch(plan, target, batch, views)
    lambd = 1.0 / batch.dim if options.lambd == "auto" else options.lambd
    return BarlowTwinsTerms((invariance + redundancy * lambd) * options.scale, invariance, redundancy)


# ------------------------------------------------------------------------------------------------ two views


def barlow_twins_loss(
    z1: torch.Tensor,
    z2: torch.Tensor,
    *,
    lambd: float | Literal["auto"] = 0.0051,
    scale: float = 1.0,
    eps: float = 1e-5,
    correction: Correction = 0,
    standardize: bool = True,
    off_diagonal_target: float = 0.0,
    algorithm: Algorithm = "auto",
    backend: Backend = "auto",
    strategy: Strategy = "auto",
    distributed: Distributed = "global",
    gradient_convention: GradientConvention = "global",
    group: ProcessGroup | None = None,
    feature_group: ProcessGroup | None = None,
) -> torch.Tensor:
    r"""The Barlow Twins loss (Zbontar et al., 2021) of two embeddings of the same batch.

    Each view is standardized per feature over the batch (``A``, ``B``), their cross-correlation is
    :math:`C = A^\top B / N` and

    .. math::

        L = s \Big( \sum_i (1 - C_{ii})^2 + \lambda \sum_{i \ne j} (C_{ij} - t)^2 \Big).

    The defaults reproduce the official implementation (``facebookresearch/barlowtwins`` ``main.py``).
    C is never built unless the cross algorithm is the cheaper one, and even then no copy of it is made.

    Args:
        z1: embeddings of the first view, shape ``(N, D)``, floating point. Under ``distributed="global"`` with
            several ranks, each rank passes its own rows ``(N_r, D)`` (``N_r`` may be 0 or 1, the global
            ``N = Σ N_r >= 2``); with ``feature_group``, its block ``(N_r, D_p)`` of the full views. DTensors on a
            1-D or 2-D device mesh with placements ``Shard(0)`` (rows), ``Shard(1)`` (features) and
            ``Replicate()`` say what ``group`` and ``feature_group`` say; the loss then comes back as a 0-dim
            DTensor replicated over the mesh.
        z2: embeddings of the second view, same shape and device as ``z1``.
        lambd: weight :math:`\lambda` of the redundancy term, or ``"auto"`` for ``1 / D``.
        scale: factor :math:`s` on the whole loss (solo-learn's ``scale_loss``).
        eps: added to the variance before the square root.
        correction: the variance divisor ``N - correction`` of the standardization, as in :func:`torch.var`:
            ``0`` (biased variance, as ``BatchNorm1d`` in the official code) or ``1`` (unbiased, the paper's
            Algorithm 1; use ``eps=0`` to match it exactly).
        standardize: standardize each view (``True``) or use the inputs as they are (``False``: the caller
            standardized them).
        off_diagonal_target: target :math:`t` of the off-diagonal entries; ``-1`` gives the HSIC variant
            (Tsai et al., 2021).
        algorithm: ``"cross"`` (through the D×D matrix C, 6·N·D² FLOPs), ``"gram"`` (through two N×N Gram
            matrices, 8·N²·D FLOPs) or ``"auto"`` (the cheaper, see :func:`redundancy.cost.choose_algorithm`).
        backend: ``"torch"`` (PyTorch operations, any device), ``"triton"`` (fused kernels that never
            materialize C; CUDA tensors, or CPU tensors under ``TRITON_INTERPRET=1``) or ``"auto"`` (the torch
            backend, except where a committed GPU benchmark measured the kernels faster for the GPU, dtype and
            algorithm; none has yet).
        strategy: how ranks combine under ``distributed="global"``: ``"all_reduce"`` (sum C, D² elements per
            step, cross algorithm), ``"all_gather"`` (gather the standardized views, 2·N·D elements, and run
            ``algorithm`` on the whole batch) or ``"auto"`` (by bytes moved and FLOPs,
            :func:`redundancy.cost.choose_strategy`).
        distributed: ``"global"`` (when ``torch.distributed`` is initialized and ``group`` has more than one
            rank, the loss of the batch of all ranks: statistics and C of the concatenated batch, the same value
            on every rank; see :doc:`/distributed`) or ``"local"`` (each rank's own batch). Without
            ``torch.distributed``, or with one rank, both are the single-process loss and nothing is communicated.
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

    Returns:
        The loss as a 0-dim tensor, float64 for float64 inputs and float32 otherwise (half-precision inputs
        are accumulated in float32; their gradients come back in their own dtype).

    Example:
        >>> import torch
        >>> from redundancy import barlow_twins_loss
        >>> z1, z2 = torch.randn(256, 2048), torch.randn(256, 2048)
        >>> loss = barlow_twins_loss(z1, z2)
        >>> loss.shape, loss.dtype
        (torch.Size([]), torch.float32)
    """
    return barlow_twins_terms(**locals()).loss  # every argument, by name


@eager_on_a_grid
@same_arguments_as(barlow_twins_loss, BarlowTwinsTerms)
def barlow_twins_terms(z1: torch.Tensor, z2: torch.Tensor, **options: Any) -> BarlowTwinsTerms:
    r"""The Barlow Twins loss together with its invariance and redundancy terms, for logging.

    Takes the arguments of :func:`barlow_twins_loss`; ``terms.loss`` is exactly what that returns.

    Returns:
        :class:`BarlowTwinsTerms` ``(loss, invariance, redundancy)``, each a 0-dim tensor with gradients.

    Example:
        >>> import torch
        >>> from redundancy import barlow_twins_terms
        >>> z1, z2 = torch.randn(32, 64), torch.randn(32, 64)
        >>> terms = barlow_twins_terms(z1, z2)
        >>> torch.allclose(terms.loss, terms.invariance + 0.0051 * terms.redundancy)
        True
    """
    with BARLOW_TWINS.open(dict(options, z1=z1, z2=z2)) as call:
        return call.finish(_barlow_twins_terms(call.options, call.batch, call.inputs))


class BarlowTwinsLoss(LossModule):
    r"""The Barlow Twins loss as a module; ``forward(z1, z2)`` is :func:`redundancy.barlow_twins_loss`.

    The options are those of :func:`redundancy.barlow_twins_loss`, stored as attributes of the same names and
    checked here, at construction. The module has no parameters or buffers.

    Example:
        >>> import torch
        >>> from redundancy import BarlowTwinsLoss
        >>> criterion = BarlowTwinsLoss(lambd=0.0051)
        >>> z1, z2 = torch.randn(64, 128, requires_grad=True), torch.randn(64, 128)
        >>> criterion(z1, z2).backward()
        >>> criterion.terms(z1, z2).invariance.item() > 0
        True
    """

    loss = BARLOW_TWINS

    @module_options(BarlowTwinsOptions)
    def __init__(self, **options: Any) -> None:
        super().__init__(**options)

    def forward(self, z1: torch.Tensor, z2: torch.Tensor) -> torch.Tensor:
        """The value of :func:`redundancy.barlow_twins_loss` with this module's options."""
        return barlow_twins_loss(z1, z2, **self.options)

    def terms(self, z1: torch.Tensor, z2: torch.Tensor) -> BarlowTwinsTerms:
        """The loss with its terms, as :func:`redundancy.barlow_twins_terms` returns them."""
        return barlow_twins_terms(z1, z2, **self.options)


# ------------------------------------------------------------------------------------------------ several views


@multiview_form_of(barlow_twins_loss)
def multiview_barlow_twins_loss(views: ViewsArgument, **options: Any) -> torch.Tensor:
    r"""The Barlow Twins loss of V ≥ 2 views of one batch: the mean over the V(V-1)/2 pairs of the two-view loss.

    .. math::

        L = \frac{2}{V(V-1)} \sum_{u < v} L_{\mathrm{BT}}(z_u, z_v),

    with :math:`L_{\mathrm{BT}}` the loss of :func:`~redundancy.barlow_twins_loss` and the same options. Each view
    is standardized once. With ``algorithm="gram"`` the views share their V N×N Gram matrices in forward and V
    products in backward, ``V·(F_sym + 2·N²·D)`` matrix-product FLOPs (``F_sym ≤ 2·N²·D`` one symmetric Gram)
    instead of ``V(V-1)/2·(2·F_sym + 4·N²·D)`` for the loop over pairs, V - 1 times fewer; ``algorithm="cross"``
    forms each pair's D×D matrix (``V(V-1)/2·6·N·D²``). ``"auto"`` takes the Gram path for
    ``N < 0.875·(V-1)·D`` (:func:`redundancy.cost.choose_multiview_algorithm`).

    Args:
        views: the views, a sequence of V ≥ 2 tensors of shape ``(N, D)`` (same shape and device), or one tensor
            of shape ``(V, N, D)``. Under ``distributed="global"`` with several ranks, each rank passes its own rows
            ``(N_r, D)`` of every view and the same V; with ``feature_group`` its block ``(N_r, D_p)`` of every
            view, and the views share their Gram matrices (or their gathered columns) across the feature group.
        lambd, scale, eps, correction, standardize, off_diagonal_target: as in :func:`~redundancy.barlow_twins_loss`.
        algorithm, distributed, gradient_convention, group, feature_group: as in :func:`~redundancy.barlow_twins_loss`.
        backend: ``"auto"`` and ``"torch"`` run the torch op that shares the views' work (any device);
            ``"triton"`` runs the two-view Triton kernels on each pair, sharing nothing.
        strategy: as in :func:`~redundancy.barlow_twins_loss`: ``"all_reduce"`` sums each pair's C over the ranks
            (``V(V-1)/2·D²`` elements), ``"all_gather"`` gathers the V standardized views (``V·N·D``), ``"auto"``
            weighs the two (:func:`redundancy.cost.choose_multiview_strategy`).

    Returns:
        The loss as a 0-dim tensor, float64 for float64 inputs and float32 otherwise.

    Example:
        >>> import torch
        >>> from redundancy import barlow_twins_loss, multiview_barlow_twins_loss
        >>> views = torch.randn(4, 64, 256)  # four views of a batch of 64
        >>> loss = multiview_barlow_twins_loss(views, lambd="auto")
        >>> pairs = [(u, v) for u in range(4) for v in range(u + 1, 4)]
        >>> losses = [barlow_twins_loss(views[u], views[v], lambd="auto") for u, v in pairs]
        >>> torch.allclose(loss, torch.stack(losses).mean())
        True
    """
    return multiview_barlow_twins_terms(views, **options).loss


@eager_on_a_grid
@multiview_form_of(barlow_twins_terms)
def multiview_barlow_twins_terms(views: ViewsArgument, **options: Any) -> BarlowTwinsTerms:
    r"""The multi-view Barlow Twins loss with its invariance and redundancy terms, each the mean over the pairs.

    Takes the arguments of :func:`multiview_barlow_twins_loss`; ``terms.loss`` is exactly what that returns.

    Returns:
        :class:`~redundancy.BarlowTwinsTerms` ``(loss, invariance, redundancy)``, each a 0-dim tensor with
        gradients, each the mean over the V(V-1)/2 pairs of what :func:`~redundancy.barlow_twins_terms` returns.

    Example:
        >>> import torch
        >>> from redundancy import multiview_barlow_twins_terms
        >>> views = [torch.randn(32, 64) for _ in range(3)]
        >>> terms = multiview_barlow_twins_terms(views)
        >>> torch.allclose(terms.loss, terms.invariance + 0.0051 * terms.redundancy)
        True
    """
    with MULTIVIEW_BARLOW_TWINS.open(dict(options, views=views)) as call:
        return call.finish(_barlow_twins_terms(call.options, call.batch, call.inputs))


class MultiviewBarlowTwinsLoss(LossModule):
    r"""The multi-view Barlow Twins loss as a module; ``forward(views)`` is
    :func:`redundancy.multiview_barlow_twins_loss`.

    Example:
        >>> import torch
        >>> from redundancy import MultiviewBarlowTwinsLoss
        >>> criterion = MultiviewBarlowTwinsLoss(lambd="auto")
        >>> views = torch.randn(4, 64, 128, requires_grad=True)  # (V, N, D), or a list of V (N, D) tensors
        >>> criterion(views).backward()
        >>> criterion.terms(views).invariance.item() > 0
        True
    """

    loss = MULTIVIEW_BARLOW_TWINS

    @module_options(BarlowTwinsOptions)
    def __init__(self, **options: Any) -> None:
        super().__init__(**options)

    def forward(self, views: ViewsArgument) -> torch.Tensor:
        """The value of :func:`redundancy.multiview_barlow_twins_loss` with this module's options."""
        return multiview_barlow_twins_loss(views, **self.options)

    def terms(self, views: ViewsArgument) -> BarlowTwinsTerms:
        """The loss with its terms, as :func:`redundancy.multiview_barlow_twins_terms` returns them."""
        return multiview_barlow_twins_terms(views, **self.options)
