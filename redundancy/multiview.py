r"""Barlow Twins and VICReg over several views: the mean of the two-view loss over every pair of views.

Multi-crop training gives each image V views (V ≥ 2); the loss of a batch is the mean over the
:math:`P = V(V-1)/2` pairs ``u < v`` of the two-view loss with the same options:

.. math::

    L(z_1, \dots, z_V) = \frac{1}{P} \sum_{u < v} L(z_u, z_v),

and each term of the ``terms`` form is likewise the mean over the pairs. The views share their work instead of
recomputing it per pair: each is standardized once, and on the Gram path (Barlow Twins) the V views share V Gram
matrices in forward and V products in backward (``redundancy._ops.multiview``), against two of each per pair
for the loop. VICReg's variance and covariance terms are per view, so each is computed once and weighted by the
number of pairs it belongs to, and the mean squared difference over the pairs is
:math:`\sum_{u<v} \lVert z_u - z_v \rVert^2 = V \sum_v \lVert z_v - \bar z \rVert^2` (:math:`\bar z` the mean view),
O(V·N·D) instead of O(V²·N·D).

Every option, the distributed modes (the global batch of several ranks, uneven shards included, or each rank's own)
and the gradient convention are those of :func:`redundancy.barlow_twins_loss` and :func:`redundancy.vicreg_loss`.
The ranks of a process group must pass the same number of views.
"""

from collections.abc import Sequence

import torch

from redundancy._loss import Loss, takes_options_of
from redundancy._ops.multiview import multiview_cross_terms, multiview_gram_terms, view_pairs
from redundancy._triton import barlow_twins_terms_triton, select_backend
from redundancy.functional import (
    BarlowTwinsOptions,
    BarlowTwinsTerms,
    barlow_twins_over_features,
    barlow_twins_plan,
    standardize_view,
)
from redundancy.vicreg import (
    VICRegOptions,
    VICRegTerms,
    _covariance_penalty,
    _variance_hinge,
    center,
    vicreg_over_features,
)

__all__ = [
    "multiview_barlow_twins_loss",
    "multiview_barlow_twins_terms",
    "multiview_vicreg_loss",
    "multiview_vicreg_terms",
]


def unpack_views(inputs: tuple) -> tuple[tuple[torch.Tensor, ...], tuple[str, ...]]:
    """The views of a multi-view call, ``(views, names)``: a sequence of tensors, or the slices of a 3-D tensor.

    Raises a :class:`TypeError` or :class:`ValueError` naming ``views`` unless it holds at least two views; each
    view is then checked as a two-view loss checks its inputs, under the name ``views[i]``.

    Example:
        >>> views, names = unpack_views((torch.zeros(3, 8, 4),))
        >>> len(views), names
        (3, ('views[0]', 'views[1]', 'views[2]'))
    """
    (views,) = inputs
    if isinstance(views, torch.Tensor):
        if views.ndim != 3:
            raise ValueError(
                f"views must be a sequence of (N, D) tensors or one (V, N, D) tensor, got a tensor of shape "
                f"{tuple(views.shape)}"
            )
        views = tuple(views.unbind(0))
    elif isinstance(views, Sequence) and not isinstance(views, str):
        views = tuple(views)
    else:
        raise TypeError(
            f"views must be a sequence of (N, D) tensors or one (V, N, D) tensor, got {type(views).__name__}"
        )
    if len(views) < 2:
        raise ValueError(f"views must hold at least 2 views (the loss is a mean over pairs), got {len(views)}")
    return views, tuple(f"views[{index}]" for index in range(len(views)))


# ------------------------------------------------------------------------------------------------ Barlow Twins


def _multiview_barlow_twins(options: BarlowTwinsOptions, batch, *views: torch.Tensor) -> BarlowTwinsTerms:
    if batch.features is not None:
        return barlow_twins_over_features(options, batch, *views)
    count = len(views)
    lambd, target, standardization, algorithm, strategy = barlow_twins_plan(options, batch, views=count)
    # The shared-Gram op is a torch op: "auto" is torch on every device, and "triton" runs the two-view kernels
    # on each pair (nothing shared).
    backend = options.backend
    if backend != "auto" and batch.world_size == 1:
        backend = select_backend(backend, views[0])
    if backend == "triton":
        if batch.world_size > 1:
            raise ValueError(
                "backend='triton' does not compute the global-batch loss of several ranks yet; "
                "use backend='auto' or 'torch' with distributed='global', or distributed='local'"
            )
        pairs = [
            barlow_twins_terms_triton(
                views[u],
                views[v],
                standardization=standardization,
                target=target,
                algorithm=algorithm,
            )
            for u, v in view_pairs(count)
        ]
        invariance = torch.stack([pair[0] for pair in pairs]).mean()
        redundancy = torch.stack([pair[1] for pair in pairs]).mean()
    else:
        views = [z.to(batch.dtype) for z in views]
        if strategy == "all_reduce":
            invariance, redundancy = multiview_cross_terms(
                views, target=target, standardization=standardization, batch=batch
            )
        else:
            if batch.world_size > 1:  # standardized with the global statistics, then gathered
                views = [standardize_view(z, standardization, batch) for z in views]
                views = batch.gather(*views)
                standardization = None
            compute_terms = multiview_gram_terms if algorithm == "gram" else multiview_cross_terms
            invariance, redundancy = compute_terms(views, target=target, standardization=standardization)
    loss = (invariance + redundancy * lambd) * options.scale
    return BarlowTwinsTerms(loss, invariance, redundancy)


MULTIVIEW_BARLOW_TWINS = Loss(
    "multiview_barlow_twins_loss", BarlowTwinsOptions, ("views",), _multiview_barlow_twins, unpack=unpack_views
)


@takes_options_of(MULTIVIEW_BARLOW_TWINS)
def multiview_barlow_twins_terms(views, **options) -> BarlowTwinsTerms:
    r"""The multi-view Barlow Twins loss with its invariance and redundancy terms, each the mean over the pairs.

    Takes the same arguments as :func:`multiview_barlow_twins_loss`; ``terms.loss`` is exactly what that returns.

    Returns:
        :class:`~redundancy.BarlowTwinsTerms` ``(loss, invariance, redundancy)``, each a 0-dim tensor with
        gradients, each the mean over the V(V-1)/2 pairs of what :func:`~redundancy.barlow_twins_terms` returns.

    Example:
        >>> views = [torch.randn(32, 64) for _ in range(3)]
        >>> terms = multiview_barlow_twins_terms(views)
        >>> torch.allclose(terms.loss, terms.invariance + 0.0051 * terms.redundancy)
        True
    """
    return MULTIVIEW_BARLOW_TWINS.run((views,), options)


@takes_options_of(MULTIVIEW_BARLOW_TWINS)
def multiview_barlow_twins_loss(views, **options) -> torch.Tensor:
    r"""The Barlow Twins loss of V ≥ 2 views of one batch: the mean over the V(V-1)/2 pairs of the two-view loss.

    .. math::

        L = \frac{2}{V(V-1)} \sum_{u < v} L_{\mathrm{BT}}(z_u, z_v),

    with :math:`L_{\mathrm{BT}}` the loss of :func:`~redundancy.barlow_twins_loss` and the same options. Each view
    is standardized once. With ``algorithm="gram"`` the views share their V N×N Gram matrices in forward and V
    products in backward, ``V·(F_sym + 2·N²·D)`` matrix-product FLOPs (``F_sym ≤ 2·N²·D`` one symmetric Gram)
    instead of ``V(V-1)/2·(2·F_sym + 4·N²·D)`` for the loop over pairs, V - 1 times fewer; ``algorithm="cross"``
    forms each pair's D×D matrix (``V(V-1)/2·6·N·D²``). ``"auto"`` takes the Gram path for
    ``N < 0.875·(V-1)·D`` (:func:`redundancy.cost.choose_multiview_algorithm`).

    The options ``lambd``, ``scale``, ``eps``, ``correction``, ``standardize``, ``off_diagonal_target``, ``algorithm``,
    ``distributed``, ``gradient_convention`` and ``group`` are those of :func:`~redundancy.barlow_twins_loss`.

    With ``feature_group`` (:doc:`/feature_parallel`), each rank passes its block of every view, and the views share
    their Gram matrices (or their gathered columns) across the feature group.

    Args:
        views: the views, a sequence of V ≥ 2 tensors of shape ``(N, D)`` (same shape and device), or one tensor
            of shape ``(V, N, D)``.
        strategy: as in :func:`~redundancy.barlow_twins_loss`: ``"all_reduce"`` sums each pair's C over the ranks
            (``V(V-1)/2·D²`` elements), ``"all_gather"`` gathers the V standardized views (``V·N·D``), ``"auto"``
            weighs the two (:func:`redundancy.cost.choose_multiview_strategy`).
        backend: ``"auto"`` and ``"torch"`` run the shared-Gram op above (PyTorch operations, any device);
            ``"triton"`` runs the two-view Triton kernels on each pair, sharing nothing.

    Shape:
        ``views``: V × ``(N, D)`` with ``N >= 2``; under ``distributed="global"`` with several ranks, each rank
        passes its own rows ``(N_r, D)`` of every view and the same V, and with ``feature_group`` its block
        ``(N_r, D_p)`` of every view. Output: ``()``.

    Returns:
        The loss as a 0-dim tensor, float64 for float64 inputs and float32 otherwise.

    Example:
        >>> from redundancy import barlow_twins_loss
        >>> views = torch.randn(4, 64, 256)  # four views of a batch of 64
        >>> loss = multiview_barlow_twins_loss(views, lambd="auto")
        >>> pairs = [barlow_twins_loss(views[u], views[v], lambd="auto") for u in range(4) for v in range(u + 1, 4)]
        >>> torch.allclose(loss, torch.stack(pairs).mean())
        True
    """
    return MULTIVIEW_BARLOW_TWINS.run((views,), options).loss


# ------------------------------------------------------------------------------------------------ VICReg


def _multiview_vicreg(options: VICRegOptions, batch, *views: torch.Tensor) -> VICRegTerms:
    if batch.features is not None:
        return vicreg_over_features(options, batch, *views)
    views = batch.gather(*(z.to(batch.dtype) for z in views))
    count = len(views)
    pairs = count * (count - 1) // 2
    divisor = batch.count - options.correction  # N >= 2 and correction <= 1: never 0
    # Σ_{u<v} ‖z_u - z_v‖² = V Σ_v ‖z_v - z̄‖²: each pair's mean squared difference, summed, from V passes.
    mean_view = torch.stack(views).mean(dim=0)
    invariance = torch.stack([(z - mean_view).square().mean() for z in views]).sum() * (count / pairs)
    centred = [center(z) for z in views]
    # Each view belongs to V - 1 of the P pairs: the pairs' mean of a per-view term is 2/V times the sum over views.
    hinges = torch.stack([_variance_hinge(x, divisor, options.gamma, options.eps) for x in centred]).sum()
    variance = hinges * ((1.0 if options.variance_reduction == "mean" else 2.0) / count)
    penalties = torch.stack([_covariance_penalty(x, divisor, options.algorithm) for x in centred]).sum()
    covariance = penalties * (2.0 / count)
    loss = (
        invariance * options.invariance_weight
        + variance * options.variance_weight
        + covariance * options.covariance_weight
    )
    return VICRegTerms(loss, invariance, variance, covariance)


MULTIVIEW_VICREG = Loss("multiview_vicreg_loss", VICRegOptions, ("views",), _multiview_vicreg, unpack=unpack_views)


@takes_options_of(MULTIVIEW_VICREG)
def multiview_vicreg_terms(views, **options) -> VICRegTerms:
    r"""The multi-view VICReg loss with its three terms, each the mean over the pairs of views.

    Takes the same arguments as :func:`multiview_vicreg_loss`; ``terms.loss`` is exactly what that returns.

    Returns:
        :class:`~redundancy.VICRegTerms` ``(loss, invariance, variance, covariance)``, each a 0-dim tensor with
        gradients, each the mean over the V(V-1)/2 pairs of what :func:`~redundancy.vicreg_terms` returns.

    Example:
        >>> t = multiview_vicreg_terms([torch.randn(32, 16) for _ in range(3)])
        >>> torch.allclose(t.loss, 25 * t.invariance + 25 * t.variance + t.covariance)
        True
    """
    return MULTIVIEW_VICREG.run((views,), options)


@takes_options_of(MULTIVIEW_VICREG)
def multiview_vicreg_loss(views, **options) -> torch.Tensor:
    r"""The VICReg loss of V ≥ 2 views of one batch: the mean over the V(V-1)/2 pairs of the two-view loss.

    .. math::

        L = \frac{2}{V(V-1)} \sum_{u < v} L_{\mathrm{VICReg}}(z_u, z_v),

    with :math:`L_{\mathrm{VICReg}}` the loss of :func:`~redundancy.vicreg_loss` and the same options. Each view's
    variance hinge and covariance penalty are computed once (a view belongs to V - 1 pairs), and the pairs' mean
    squared differences come from the views' distances to their mean, so the cost grows with V, not with V².

    The options ``invariance_weight``, ``variance_weight``, ``covariance_weight``, ``gamma``, ``eps``,
    ``correction``, ``variance_reduction``, ``algorithm``, ``distributed``, ``gradient_convention`` and ``group``
    are those of :func:`~redundancy.vicreg_loss`; under ``distributed="global"`` every rank gathers the V views of
    all ranks (``V·N·D`` elements). With ``feature_group`` (:doc:`/feature_parallel`), each rank passes its block
    of every view.

    Args:
        views: the views, a sequence of V ≥ 2 tensors of shape ``(N, D)`` (same shape and device), or one
            tensor of shape ``(V, N, D)``.

    Shape:
        As :func:`multiview_barlow_twins_loss`.

    Returns:
        The loss as a 0-dim tensor, float64 for float64 inputs and float32 otherwise.

    Example:
        >>> from redundancy import vicreg_loss
        >>> views = torch.randn(3, 64, 32)
        >>> loss = multiview_vicreg_loss(views)
        >>> pairs = [vicreg_loss(views[u], views[v]) for u in range(3) for v in range(u + 1, 3)]
        >>> torch.allclose(loss, torch.stack(pairs).mean())
        True
    """
    return MULTIVIEW_VICREG.run((views,), options).loss
