r"""VICReg (Bardes et al., 2022): the loss of two views, of several views, its two regularizers, and the Modules.

Each view ``z`` (N×D) is centred per feature over the batch, ``X = z - mean_n z``; from ``X`` come the
per-feature standard deviation ``s_i = sqrt(Σ_n X_ni² / (N - c) + ε)`` and the off-diagonal energy of the
covariance ``Σ_{i≠j} Cov_ij²`` with ``Cov = XᵀX / (N - c)`` (:func:`redundancy._ops.off_diagonal_energy`, through
the D×D or the N×N product, whichever is cheaper). The defaults are those of the official implementation,
``facebookresearch/vicreg`` ``main_vicreg.py``.

One computation serves two views and V ≥ 2 views (the mean of the two-view loss over the V(V-1)/2 pairs): the
variance and covariance terms are per view, so each is computed once and weighted by the number of pairs it
belongs to, and the pairs' mean squared differences come from the views' distances to their mean,
:math:`\sum_{u<v} \lVert z_u - z_v \rVert^2 = V \sum_v \lVert z_v - \bar z \rVert^2`, O(V·N·D) instead of
O(V²·N·D).

Under ``torch.distributed`` (``distributed="global"``, the default, with more than one rank in ``group``) every
rank gathers the rows of all ranks (one all-gather of the views) and evaluates the formula on the concatenated
batch: the invariance, the variances and the covariances are those of the global batch and every rank returns the
same value, with the gradient convention of :func:`redundancy.barlow_twins_loss`.
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
from redundancy._frame import Correction
from redundancy._frame import Distributed
from redundancy._frame import GradientConvention
from redundancy._frame import Loss
from redundancy._frame import LossModule
from redundancy._frame import Options
from redundancy._frame import Views
from redundancy._frame import ViewsArgument
from redundancy._frame import ViewSequence
from redundancy._frame import algorithm_on_the_grid
from redundancy._frame import eager_on_a_grid
from redundancy._frame import module_options
from redundancy._frame import multiview_form_of
from redundancy._frame import same_arguments_as
from redundancy._ops import off_diagonal_energy
from redundancy._ops._autocast import no_autocast
from redundancy._ops.feature_shards import off_diagonal_energy_from_parts
from redundancy._ops.feature_shards import off_diagonal_energy_parts
from redundancy._ops.standardize import center

__all__ = [
    "MultiviewVICRegLoss",
    "VICRegCovarianceLoss",
    "VICRegLoss",
    "VICRegTerms",
    "VICRegVarianceLoss",
    "multiview_vicreg_loss",
    "multiview_vicreg_terms",
    "vicreg_covariance_loss",
    "vicreg_loss",
    "vicreg_terms",
    "vicreg_variance_loss",
]

#: ``variance_reduction=``: the two views' variance hinges averaged (official) or summed (solo-learn).
VarianceReduction = Literal["mean", "sum"]


class VICRegTerms(NamedTuple):
    """The VICReg loss and its three terms, as :func:`vicreg_terms` returns them.

    ``loss = invariance_weight * invariance + variance_weight * variance + covariance_weight * covariance``;
    the terms are unweighted. All four are 0-dim tensors and carry gradients.

    Example:
        >>> import torch
        >>> from redundancy import vicreg_terms
        >>> z1, z2 = torch.randn(32, 16), torch.randn(32, 16)
        >>> loss, invariance, variance, covariance = vicreg_terms(z1, z2)
        >>> torch.allclose(loss, 25 * invariance + 25 * variance + 1 * covariance)
        True
    """

    loss: torch.Tensor
    """The loss, as :func:`vicreg_loss` returns it."""
    invariance: torch.Tensor
    """Mean squared difference of the two views, over the N·D entries."""
    variance: torch.Tensor
    """Hinge on the per-feature standard deviation, averaged over features and over (or summed across) views."""
    covariance: torch.Tensor
    """Off-diagonal energy of each view's covariance divided by D, summed over the two views."""


@dataclasses.dataclass(frozen=True, kw_only=True)
class VICRegOptions(Options):
    """The options of :func:`vicreg_loss` (documented there), declared once."""

    invariance_weight: float = dataclasses.field(default=25.0, metadata=NONNEGATIVE)
    variance_weight: float = dataclasses.field(default=25.0, metadata=NONNEGATIVE)
    covariance_weight: float = dataclasses.field(default=1.0, metadata=NONNEGATIVE)
    gamma: float = dataclasses.field(default=1.0, metadata=NONNEGATIVE)
    eps: float = dataclasses.field(default=1e-4, metadata=NONNEGATIVE)
    correction: Correction = 1
    variance_reduction: VarianceReduction = "mean"
    algorithm: Algorithm = "auto"
    distributed: Distributed = "global"
    gradient_convention: GradientConvention = "global"
    group: ProcessGroup | None = None
    feature_group: ProcessGroup | None = dataclasses.field(default=None, metadata=FEATURE_GROUP)


@dataclasses.dataclass(frozen=True, kw_only=True)
class VICRegVarianceOptions(Options):
    """The options of :func:`vicreg_variance_loss`."""

    gamma: float = dataclasses.field(default=1.0, metadata=NONNEGATIVE)
    eps: float = dataclasses.field(default=1e-4, metadata=NONNEGATIVE)
    correction: Correction = 1
    distributed: Distributed = "global"
    gradient_convention: GradientConvention = "global"
    group: ProcessGroup | None = None


@dataclasses.dataclass(frozen=True, kw_only=True)
class VICRegCovarianceOptions(Options):
    """The options of :func:`vicreg_covariance_loss`."""

    correction: Correction = 1
    algorithm: Algorithm = "auto"
    distributed: Distributed = "global"
    gradient_convention: GradientConvention = "global"
    group: ProcessGroup | None = None


VICREG = Loss("vicreg_loss", VICRegOptions, Views("z1", "z2"))

#: What VICReg sends and computes on a grid of row and feature shards (:mod:`redundancy.cost`): the cross form
#: gathers both views' columns; four scalars are summed (the distances, the hinges, the two energies); 8·N²·D_f
#: FLOPs for the two views' Grams, 8·N·D_f·D for their block rows of the covariances.
FEATURE_PARALLEL_COST = cost.FeatureParallelCost(
    name="vicreg_loss",
    data_parallel_with_one_feature_rank=False,
    gathered_views=2,
    scalars=4,
    target_scalars=0,
    gram_flops=8,
    cross_flops=8,
    autocorrelation=True,
)
MULTIVIEW_VICREG = Loss("multiview_vicreg_loss", VICRegOptions, ViewSequence())
VICREG_VARIANCE = Loss("vicreg_variance_loss", VICRegVarianceOptions, Views("z"))
VICREG_COVARIANCE = Loss("vicreg_covariance_loss", VICRegCovarianceOptions, Views("z"))


# ------------------------------------------------------------------------------------------------ computation


def _feature_hinges(x: torch.Tensor, divisor: int, gamma: float, eps: float) -> torch.Tensor:
    """``relu(γ - sqrt(Σ_n x_ni² / divisor + ε))`` of each feature i of centred ``x``."""
    variance = torch.linalg.vecdot(x, x, dim=0) / divisor
    return torch.relu(gamma - torch.sqrt(variance + eps))


def _variance_hinge(x: torch.Tensor, divisor: int, gamma: float, eps: float) -> torch.Tensor:
    """``mean_i relu(γ - sqrt(Σ_n x_ni² / divisor + ε))`` of centred ``x``."""
    return _feature_hinges(x, divisor, gamma, eps).mean()


def _covariance_penalty(x: torch.Tensor, divisor: int, algorithm: str) -> torch.Tensor:
    """``Σ_{i≠j} Cov_ij² / D`` with ``Cov = xᵀx / divisor`` of centred ``x``."""
    n, d = x.shape
    if algorithm == "auto":
        algorithm = cost.choose_autocorrelation_algorithm(n, d)
    return off_diagonal_energy(x, algorithm=algorithm) / (divisor * divisor * d)  # ints: no float() in a trace


def _weighted(options: VICRegOptions, invariance, variance, covariance) -> VICRegTerms:
    loss = (
        invariance * options.invariance_weight
        + variance * options.variance_weight
        + covariance * options.covariance_weight
    )
    return VICRegTerms(loss, invariance, variance, covariance)


def _vicreg_terms(options: VICRegOptions, batch: GlobalBatch, views: Sequence[torch.Tensor]) -> VICRegTerms:
    """The terms of V ≥ 2 views (each the mean over the pairs) for the batch of all ranks."""
    if batch.features is not None:
        return _terms_over_features(options, batch, views)
    views = batch.gather_in_dtype(*views)
    count = len(views)
    pairs = count * (count - 1) // 2
    divisor = batch.count - options.correction  # N >= 2 and correction <= 1: never 0
    if count == 2:
        invariance = (views[0] - views[1]).square().mean()
    else:  # Σ_{u<v} ‖z_u - z_v‖² = V Σ_v ‖z_v - z̄‖²: each pair's mean squared difference, summed, from V passes.
        mean_view = torch.stack(views).mean(dim=0)
        invariance = torch.stack([(z - mean_view).square().mean() for z in views]).sum() * (count / pairs)
    centred = [center(z) for z in views]
    # Each view belongs to V - 1 of the P pairs: the pairs' mean of a per-view term is 2/V times the sum over views.
    hinges = torch.stack([_variance_hinge(x, divisor, options.gamma, options.eps) for x in centred]).sum()
    variance = hinges * ((1.0 if options.variance_reduction == "mean" else 2.0) / count)
    penalties = torch.stack([_covariance_penalty(x, divisor, options.algorithm) for x in centred]).sum()
    return _weighted(options, invariance, variance, penalties * (2.0 / count))


def _terms_over_features(options: VICRegOptions, batch: GlobalBatch, views: Sequence[torch.Tensor]) -> VICRegTerms:
    """The terms when the features are split over ``feature_group``: each rank gathers the rows of its columns
    (over ``group``); the per-feature parts stay local, and one all-reduce over the feature group sums them with the
    covariance energy's parts (:mod:`redundancy._ops.feature_shards`)."""
    features = batch.features
    assert features is not None
    algorithm = algorithm_on_the_grid(options.algorithm, batch, FEATURE_PARALLEL_COST)
    views = batch.gather_in_dtype(*views)
    count = len(views)
    divisor = batch.count - options.correction
    with no_autocast(views[0].device):
        mean_view = torch.stack(views).mean(dim=0)
        distances = torch.stack([(z - mean_view).square().sum() for z in views]).sum()
        centred = [center(z) for z in views]
        hinges = torch.cat([_feature_hinges(x, divisor, options.gamma, options.eps) for x in centred]).sum()
        energy_parts = [off_diagonal_energy_parts(x, features=features, algorithm=algorithm) for x in centred]
        size = len(energy_parts[0])
        distances, hinges, *summed = features.sum(
            distances, hinges, *(part for parts in energy_parts for part in parts)
        )
        parts = [summed[v * size : (v + 1) * size] for v in range(count)]
        energies = torch.stack([off_diagonal_energy_from_parts(part, algorithm=algorithm) for part in parts]).sum()
    dim, pairs = batch.dim, count * (count - 1) // 2
    # Σ_{u<v} ‖z_u - z_v‖² = V Σ_v ‖z_v - z̄‖², and a view belongs to V - 1 of the P pairs.
    invariance = distances * (count / pairs) / (batch.count * dim)
    variance = hinges * ((1.0 if options.variance_reduction == "mean" else 2.0) / count) / dim
    covariance = energies * (2.0 / count) / (divisor * divisor * dim)
    return _weighted(options, invariance, variance, covariance)


# ------------------------------------------------------------------------------------------------ two views


def vicreg_loss(
    z1: torch.Tensor,
    z2: torch.Tensor,
    *,
    invariance_weight: float = 25.0,
    variance_weight: float = 25.0,
    covariance_weight: float = 1.0,
    gamma: float = 1.0,
    eps: float = 1e-4,
    correction: Correction = 1,
    variance_reduction: VarianceReduction = "mean",
    algorithm: Algorithm = "auto",
    distributed: Distributed = "global",
    gradient_convention: GradientConvention = "global",
    group: ProcessGroup | None = None,
    feature_group: ProcessGroup | None = None,
) -> torch.Tensor:
    r"""The VICReg loss (Bardes et al., 2022) of two embeddings of the same batch.

    With :math:`X^{(v)}` the view :math:`z^{(v)}` centred per feature over the batch,
    :math:`\mathrm{Cov}^{(v)} = X^{(v)\top} X^{(v)} / (N - c)` and
    :math:`s^{(v)}_i = \sqrt{\mathrm{Cov}^{(v)}_{ii} + \epsilon}`:

    .. math::

        L = \lambda \frac{1}{ND} \sum_{n,i} (z^{(1)}_{ni} - z^{(2)}_{ni})^2
          + \mu \frac{1}{2} \sum_{v=1}^{2} \frac{1}{D} \sum_i \max(0, \gamma - s^{(v)}_i)
          + \nu \sum_{v=1}^{2} \frac{1}{D} \sum_{i \ne j} \big(\mathrm{Cov}^{(v)}_{ij}\big)^2.

    The defaults reproduce ``facebookresearch/vicreg`` ``main_vicreg.py`` (λ, μ, ν = 25, 25, 1; ε = 1e-4;
    γ = 1; unbiased covariance, c = 1; the variance term averaged over the two views). The covariance term is
    computed through the D×D covariance or, when N < D, through the N×N Gram matrix; neither is returned.

    Args:
        z1: embeddings of the first view, shape ``(N, D)``, floating point; each rank's ``(N_r, D)`` rows of the
            global batch, its ``(N_r, D_p)`` block with ``feature_group``, or DTensors, as in
            :func:`redundancy.barlow_twins_loss`.
        z2: embeddings of the second view, same shape and device as ``z1``.
        invariance_weight: λ, weight of the mean squared difference (official ``sim_coeff``).
        variance_weight: μ, weight of the variance hinge (official ``std_coeff``).
        covariance_weight: ν, weight of the covariance penalty (official ``cov_coeff``).
        gamma: γ, target standard deviation of each feature.
        eps: ε, added to the variance before the square root.
        correction: ``1`` divides the variance and covariance by ``N - 1`` (official), ``0`` by ``N``.
        variance_reduction: ``"mean"`` halves the sum of the two views' variance hinges (official, lightly);
            ``"sum"`` keeps the sum (solo-learn's ``vicreg_loss_func``).
        algorithm: ``"cross"`` (D×D covariance, 4·N·D² FLOPs per view), ``"gram"`` (N×N Gram matrix,
            4·N²·D FLOPs per view) or ``"auto"`` (``gram`` when N < D).
        distributed: ``"global"`` (when ``torch.distributed`` is initialized and ``group`` has more than one
            rank, the loss of the batch of all ranks: the mean squared difference, the variances and the
            covariances of the concatenated batch, the same value on every rank; every rank gathers the views of
            all ranks, 2·N·D elements) or ``"local"`` (each rank's own batch, as ``main_vicreg.py`` computes the
            invariance term). Without ``torch.distributed``, or with one rank, both are the single-process loss
            and nothing is communicated.
        gradient_convention: ``"global"`` (after DDP's gradient averaging, parameter gradients equal those of one
            process training on the concatenated batch; input gradients are W times ``∂L/∂z`` of this rank's
            rows) or ``"official"`` (``∂L/∂z`` itself, 1/W of the former), as in
            :func:`redundancy.barlow_twins_loss`.
        group: the process group of the global batch; ``None`` for the default group.
        feature_group: the ranks that hold the other features of this rank's rows, as in
            :func:`redundancy.barlow_twins_loss`; the covariance term then comes from the N×N Grams summed over
            them, or from each rank's block row of the covariance (``algorithm``).

    Returns:
        The loss, a 0-dim tensor, float64 for float64 inputs and float32 otherwise.

    Example:
        >>> import torch
        >>> from redundancy import vicreg_loss
        >>> z1, z2 = torch.randn(64, 32), torch.randn(64, 32)
        >>> loss = vicreg_loss(z1, z2)
        >>> loss.shape, loss.dtype
        (torch.Size([]), torch.float32)
    """
    return vicreg_terms(**locals()).loss  # every argument, by name


@eager_on_a_grid
@same_arguments_as(vicreg_loss, VICRegTerms)
def vicreg_terms(z1: torch.Tensor, z2: torch.Tensor, **options: Any) -> VICRegTerms:
    r"""The VICReg loss together with its invariance, variance and covariance terms, for logging.

    Takes the arguments of :func:`vicreg_loss`; ``terms.loss`` is exactly what that returns.

    Returns:
        :class:`VICRegTerms` ``(loss, invariance, variance, covariance)``, each a 0-dim tensor with gradients.

    Example:
        >>> import torch
        >>> from redundancy import vicreg_terms
        >>> z1, z2 = torch.randn(32, 16), torch.randn(32, 16)
        >>> t = vicreg_terms(z1, z2)
        >>> torch.allclose(t.loss, 25 * t.invariance + 25 * t.variance + t.covariance)
        True
    """
    with VICREG.open(dict(options, z1=z1, z2=z2)) as call:
        return call.finish(_vicreg_terms(call.options, call.batch, call.inputs))


class VICRegLoss(LossModule):
    r"""The VICReg loss as a module; ``forward(z1, z2)`` is :func:`redundancy.vicreg_loss`.

    The options are those of :func:`redundancy.vicreg_loss` (official ``main_vicreg.py`` defaults), stored as
    attributes of the same names and checked here, at construction. The module has no parameters or buffers.

    Example:
        >>> import torch
        >>> from redundancy import VICRegLoss
        >>> criterion = VICRegLoss(variance_reduction="sum")  # solo-learn's sum of the two hinges
        >>> list(criterion.parameters()), criterion.state_dict()  # nothing to train, nothing to save
        ([], OrderedDict())
        >>> terms = criterion.terms(torch.randn(64, 128), torch.randn(64, 128))
        >>> torch.allclose(terms.loss, 25 * terms.invariance + 25 * terms.variance + terms.covariance)
        True
    """

    loss = VICREG

    @module_options(VICRegOptions)
    def __init__(self, **options: Any) -> None:
        super().__init__(**options)

    def forward(self, z1: torch.Tensor, z2: torch.Tensor) -> torch.Tensor:
        """The value of :func:`redundancy.vicreg_loss` with this module's options."""
        return vicreg_loss(z1, z2, **self.options)

    def terms(self, z1: torch.Tensor, z2: torch.Tensor) -> VICRegTerms:
        """The loss with its terms, as :func:`redundancy.vicreg_terms` returns them."""
        return vicreg_terms(z1, z2, **self.options)


# ------------------------------------------------------------------------------------------------ several views


@multiview_form_of(vicreg_loss)
def multiview_vicreg_loss(views: ViewsArgument, **options: Any) -> torch.Tensor:
    r"""The VICReg loss of V ≥ 2 views of one batch: the mean over the V(V-1)/2 pairs of the two-view loss.

    .. math::

        L = \frac{2}{V(V-1)} \sum_{u < v} L_{\mathrm{VICReg}}(z_u, z_v),

    with :math:`L_{\mathrm{VICReg}}` the loss of :func:`~redundancy.vicreg_loss` and the same options. Each view's
    variance hinge and covariance penalty are computed once (a view belongs to V - 1 pairs), and the pairs' mean
    squared differences come from the views' distances to their mean, so the cost grows with V, not with V².
    Under ``distributed="global"`` every rank gathers the V views of all ranks (``V·N·D`` elements).

    Args:
        views: the views, a sequence of V ≥ 2 tensors of shape ``(N, D)`` (same shape and device), or one
            tensor of shape ``(V, N, D)``; each rank's rows (or block, with ``feature_group``) of every view, as in
            :func:`multiview_barlow_twins_loss`.
        invariance_weight, variance_weight, covariance_weight, gamma, eps: as in :func:`~redundancy.vicreg_loss`.
        correction, variance_reduction, algorithm: as in :func:`~redundancy.vicreg_loss`.
        distributed, gradient_convention, group, feature_group: as in :func:`~redundancy.vicreg_loss`.

    Returns:
        The loss as a 0-dim tensor, float64 for float64 inputs and float32 otherwise.

    Example:
        >>> import torch
        >>> from redundancy import multiview_vicreg_loss, vicreg_loss
        >>> views = torch.randn(3, 64, 32)
        >>> loss = multiview_vicreg_loss(views)
        >>> pairs = [vicreg_loss(views[u], views[v]) for u in range(3) for v in range(u + 1, 3)]
        >>> torch.allclose(loss, torch.stack(pairs).mean())
        True
    """
    return multiview_vicreg_terms(views, **options).loss


@eager_on_a_grid
@multiview_form_of(vicreg_terms)
def multiview_vicreg_terms(views: ViewsArgument, **options: Any) -> VICRegTerms:
    r"""The multi-view VICReg loss with its three terms, each the mean over the pairs of views.

    Takes the arguments of :func:`multiview_vicreg_loss`; ``terms.loss`` is exactly what that returns.

    Returns:
        :class:`~redundancy.VICRegTerms` ``(loss, invariance, variance, covariance)``, each a 0-dim tensor with
        gradients, each the mean over the V(V-1)/2 pairs of what :func:`~redundancy.vicreg_terms` returns.

    Example:
        >>> import torch
        >>> from redundancy import multiview_vicreg_terms
        >>> t = multiview_vicreg_terms([torch.randn(32, 16) for _ in range(3)])
        >>> torch.allclose(t.loss, 25 * t.invariance + 25 * t.variance + t.covariance)
        True
    """
    with MULTIVIEW_VICREG.open(dict(options, views=views)) as call:
        return call.finish(_vicreg_terms(call.options, call.batch, call.inputs))


class MultiviewVICRegLoss(LossModule):
    r"""The multi-view VICReg loss as a module; ``forward(views)`` is :func:`redundancy.multiview_vicreg_loss`.

    Example:
        >>> import torch
        >>> from redundancy import MultiviewVICRegLoss, multiview_vicreg_loss
        >>> views = [torch.randn(64, 32, requires_grad=True) for _ in range(3)]
        >>> torch.equal(MultiviewVICRegLoss(gamma=0.5)(views), multiview_vicreg_loss(views, gamma=0.5))
        True
    """

    loss = MULTIVIEW_VICREG

    @module_options(VICRegOptions)
    def __init__(self, **options: Any) -> None:
        super().__init__(**options)

    def forward(self, views: ViewsArgument) -> torch.Tensor:
        """The value of :func:`redundancy.multiview_vicreg_loss` with this module's options."""
        return multiview_vicreg_loss(views, **self.options)

    def terms(self, views: ViewsArgument) -> VICRegTerms:
        """The loss with its terms, as :func:`redundancy.multiview_vicreg_terms` returns them."""
        return multiview_vicreg_terms(views, **self.options)


# ------------------------------------------------------------------------------------------------ regularizers


def vicreg_variance_loss(
    z: torch.Tensor,
    *,
    gamma: float = 1.0,
    eps: float = 1e-4,
    correction: Correction = 1,
    distributed: Distributed = "global",
    gradient_convention: GradientConvention = "global",
    group: ProcessGroup | None = None,
) -> torch.Tensor:
    r"""VICReg's variance regularizer of one view: a hinge on each feature's standard deviation.

    .. math::

        v(z) = \frac{1}{D} \sum_i \max\Big(0,\ \gamma - \sqrt{\mathrm{Var}(z_{:,i}) + \epsilon}\Big),

    with the variance over the batch divided by ``N - correction``. :func:`vicreg_loss` uses the average of
    this over its two views.

    Args:
        z: embeddings, shape ``(N, D)`` with ``N >= 2``.
        gamma: γ, target standard deviation.
        eps: ε, added to the variance before the square root.
        correction: ``1`` (unbiased variance, official) or ``0`` (biased).
        distributed, gradient_convention, group: the batch of all ranks under ``torch.distributed`` (every rank
            gathers the rows of all ranks) or each rank's own, as in :func:`redundancy.barlow_twins_loss`.

    Returns:
        A 0-dim tensor, float64 for float64 inputs and float32 otherwise.

    Example:
        >>> import torch
        >>> from redundancy import vicreg_variance_loss
        >>> vicreg_variance_loss(torch.zeros(8, 4))  # collapsed: every std is sqrt(eps)
        tensor(0.9900)
    """
    with VICREG_VARIANCE.open(locals()) as call:
        options, batch = call.options, call.batch
        (z,) = batch.gather_in_dtype(call.inputs[0])
        hinge = _variance_hinge(center(z), batch.count - options.correction, options.gamma, options.eps)
        return call.finish(hinge)


def vicreg_covariance_loss(
    z: torch.Tensor,
    *,
    correction: Correction = 1,
    algorithm: Algorithm = "auto",
    distributed: Distributed = "global",
    gradient_convention: GradientConvention = "global",
    group: ProcessGroup | None = None,
) -> torch.Tensor:
    r"""VICReg's covariance regularizer of one view: the off-diagonal energy of its covariance, over D.

    .. math::

        c(z) = \frac{1}{D} \sum_{i \ne j} \mathrm{Cov}(z)_{ij}^2, \qquad
        \mathrm{Cov}(z) = \frac{(z - \bar z)^\top (z - \bar z)}{N - \mathrm{correction}}.

    :func:`vicreg_loss` uses the sum of this over its two views. No D×D matrix is formed when N < D.

    Args:
        z: embeddings, shape ``(N, D)`` with ``N >= 2``.
        correction: ``1`` (divide by ``N - 1``, official) or ``0`` (by ``N``).
        algorithm: ``"cross"``, ``"gram"`` or ``"auto"``, as in :func:`vicreg_loss`.
        distributed, gradient_convention, group: the batch of all ranks under ``torch.distributed`` (every rank
            gathers the rows of all ranks) or each rank's own, as in :func:`redundancy.barlow_twins_loss`.

    Returns:
        A 0-dim tensor, float64 for float64 inputs and float32 otherwise; zero for uncorrelated features.

    Example:
        >>> import torch
        >>> from redundancy import vicreg_covariance_loss
        >>> z = torch.randn(16, 1).repeat(1, 3)  # three copies of one feature
        >>> v = z.var(dim=0)[0]
        >>> torch.allclose(vicreg_covariance_loss(z), 6 * v**2 / 3)
        True
    """
    with VICREG_COVARIANCE.open(locals()) as call:
        options, batch = call.options, call.batch
        (z,) = batch.gather_in_dtype(call.inputs[0])
        return call.finish(_covariance_penalty(center(z), batch.count - options.correction, options.algorithm))


class VICRegVarianceLoss(LossModule):
    r"""VICReg's variance regularizer as a module; ``forward(z)`` is :func:`redundancy.vicreg_variance_loss`.

    Example:
        >>> import torch
        >>> from redundancy import VICRegVarianceLoss
        >>> criterion = VICRegVarianceLoss(gamma=1.0)
        >>> criterion(3 * torch.randn(256, 4))  # every feature's std above γ: no hinge is active
        tensor(0.)
    """

    loss = VICREG_VARIANCE

    @module_options(VICRegVarianceOptions)
    def __init__(self, **options: Any) -> None:
        super().__init__(**options)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        """The value of :func:`redundancy.vicreg_variance_loss` with this module's options."""
        return vicreg_variance_loss(z, **self.options)


class VICRegCovarianceLoss(LossModule):
    r"""VICReg's covariance regularizer as a module; ``forward(z)`` is :func:`redundancy.vicreg_covariance_loss`.

    Example:
        >>> from redundancy import VICRegCovarianceLoss
        >>> VICRegCovarianceLoss(correction=2)  # options are checked at construction
        Traceback (most recent call last):
          ...
        ValueError: correction must be 0 (divide by N) or 1 (divide by N - 1), got 2
    """

    loss = VICREG_COVARIANCE

    @module_options(VICRegCovarianceOptions)
    def __init__(self, **options: Any) -> None:
        super().__init__(**options)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        """The value of :func:`redundancy.vicreg_covariance_loss` with this module's options."""
        return vicreg_covariance_loss(z, **self.options)
