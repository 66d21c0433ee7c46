r"""MMCR (Yerxa et al., 2023): maximum manifold capacity representations, the loss and its Module.

Each sample n has V views; its embeddings, each divided by its norm, form a V×D matrix :math:`Z_n` whose mean row is
the sample's centroid :math:`c_n`. MMCR maximizes the nuclear norm of the N×D matrix of centroids (the centroids
spread over many directions) and, with ``lmbda > 0``, penalizes that of each sample's views (they collapse onto
their centroid). The formula and the defaults are those of ``ThomasYerxa/mmcr`` (``loss_mmcr.py``, the training
scripts' ``--lmbda``).

Nuclear norms come from ``redundancy._ops.nuclear_norm``, whose gradient is defined everywhere: where singular
values vanish (identical views, collapsed centroids, N < D) it is the subgradient of least norm, and where they
repeat it is the polar factor ``U_r V_rᵀ``, which does not depend on the basis of their subspace.

Under ``torch.distributed`` (``distributed="global"``, the default, with more than one rank in ``group``) the loss is
that of the global batch: the per-sample norms are each rank's own and their sum is all-reduced; the centroids of all
ranks are gathered (``N·D`` numbers) and every rank takes the nuclear norm of the global N×D matrix, whose backward
hands each rank the gradient of its own rows. The official code gathers the embeddings without autograd and puts
its own rows back in its slot: the same value, and each rank's gradient is that of its own rows, the
``gradient_convention="official"`` of this library (after DDP's averaging, 1/W of one process on the whole batch).
"""

import dataclasses
from collections.abc import Sequence
from typing import Any
from typing import NamedTuple

import torch
from torch.nn import functional as F

from redundancy._batch import GlobalBatch
from redundancy._batch import ProcessGroup
from redundancy._frame import NONNEGATIVE
from redundancy._frame import Distributed
from redundancy._frame import GradientConvention
from redundancy._frame import Loss
from redundancy._frame import LossModule
from redundancy._frame import Options
from redundancy._frame import ViewsArgument
from redundancy._frame import ViewSequence
from redundancy._frame import module_options
from redundancy._frame import same_arguments_as
from redundancy._ops.nuclear_norm import nuclear_norm

__all__ = ["MMCRLoss", "MMCRTerms", "mmcr_loss", "mmcr_terms"]


class MMCRTerms(NamedTuple):
    """The MMCR loss and its two nuclear norms, as :func:`mmcr_terms` returns them.

    ``loss = lmbda * samples / N - centroids``. All three are 0-dim tensors and carry gradients.

    Example:
        >>> import torch
        >>> from redundancy import mmcr_terms
        >>> views = torch.randn(2, 64, 16)
        >>> loss, samples, centroids = mmcr_terms(views, lmbda=0.1)
        >>> torch.allclose(loss, 0.1 * samples / 64 - centroids)
        True
    """

    loss: torch.Tensor
    """The loss, as :func:`mmcr_loss` returns it."""
    samples: torch.Tensor
    """``Σ_n ‖Z_n‖_*``: the nuclear norms of the samples' V×D matrices of views, summed over the N samples."""
    centroids: torch.Tensor
    """``‖C‖_*``: the nuclear norm of the N×D matrix of the samples' centroids (the mean of their views)."""


@dataclasses.dataclass(frozen=True, kw_only=True)
class MMCROptions(Options):
    """The options of :func:`mmcr_loss` (documented there), declared once."""

    lmbda: float = dataclasses.field(default=0.0, metadata=NONNEGATIVE)
    normalize: bool = True
    distributed: Distributed = "global"
    gradient_convention: GradientConvention = "global"
    group: ProcessGroup | None = None


MMCR = Loss("mmcr_loss", MMCROptions, ViewSequence(), min_rows=1)


def _mmcr_terms(options: MMCROptions, batch: GlobalBatch, views: Sequence[torch.Tensor]) -> MMCRTerms:
    per_sample = torch.stack([view.to(batch.dtype) for view in views], dim=1)  # (N_r, V, D)
    if options.normalize:
        per_sample = F.normalize(per_sample, dim=-1)
    (samples,) = batch.sum(nuclear_norm(per_sample).sum())
    (centroids,) = batch.gather(per_sample.mean(dim=1))
    centroid_norm = nuclear_norm(centroids)
    loss = samples / batch.count * options.lmbda - centroid_norm
    return MMCRTerms(loss, samples, centroid_norm)


def mmcr_loss(
    views: ViewsArgument,
    *,
    lmbda: float = 0.0,
    normalize: bool = True,
    distributed: Distributed = "global",
    gradient_convention: GradientConvention = "global",
    group: ProcessGroup | None = None,
) -> torch.Tensor:
    r"""The MMCR loss (Yerxa et al., 2023) of V ≥ 2 views of one batch.

    With :math:`Z_n` the V×D matrix of sample n's views, each row divided by its norm, and :math:`C` the N×D matrix
    of the centroids :math:`c_n = \frac1V \sum_v Z_n[v]`:

    .. math::

        L = \frac{\lambda}{N} \sum_n \lVert Z_n \rVert_* - \lVert C \rVert_*,

    :math:`\lVert\cdot\rVert_*` the nuclear norm (the sum of the singular values). The defaults reproduce
    ``ThomasYerxa/mmcr`` ``loss_mmcr.py`` with ``lmbda=0``, the default of both official training scripts
    (``--lmbda``; the loss class has none). The gradient of a nuclear norm is :math:`U_r V_r^\top` over the
    nonzero singular values, also where singular values vanish (there it is the subgradient of least norm: identical
    views, collapsed centroids, N < D) or repeat (it does not depend on the basis of their subspace), with exact
    second derivatives. Cost: the nuclear norm of C through its
    ``min(N, D)``-sided Gram matrix, ``2·N·D·min(N, D)`` FLOPs and an eigendecomposition of that size (in float64
    for float32 inputs, so that nearly rank-deficient centroids keep float32 accuracy), and N V×V ones for the
    samples.

    Args:
        views: the views, a sequence of V ≥ 2 tensors of shape ``(N, D)`` (same shape and device), or one tensor of
            shape ``(V, N, D)``: row n of every view is the same sample. The official ``MMCR_Loss`` takes the
            ``(N·V, D)`` matrix grouped by sample, that is ``views.transpose(0, 1).reshape(N * V, D)``; lightly's
            ``MMCRLoss`` takes ``(N, V, D)`` tensors. Under ``distributed="global"`` with several ranks, each rank
            passes its own rows ``(N_r, D)`` of every view (``N_r`` may be 0) and the same V.
        lmbda: λ ≥ 0, the weight of the samples' nuclear norms (official ``lmbda``; lightly's ``lmda`` is 5e-3).
        normalize: divide every embedding by its Euclidean norm first (``F.normalize``, ε = 1e-12), as the official
            code does; ``False`` uses the embeddings as they are (lightly's ``MMCRLoss``).
        distributed: ``"global"`` (when ``torch.distributed`` is initialized and ``group`` has more than one rank,
            the loss of the batch of all ranks: the nuclear norm of the N×D centroids of every rank, N the global
            count, the same value on every rank; every rank gathers the centroids, ``N·D`` numbers) or ``"local"``
            (each rank's own batch). Without ``torch.distributed``, or with one rank, both are the single-process
            loss and nothing is communicated.
        gradient_convention: ``"global"`` (after DDP's gradient averaging, parameter gradients equal those of one
            process training on the concatenated batch; input gradients are W times ``∂L/∂z`` of this rank's
            rows) or ``"official"`` (``∂L/∂z`` itself, 1/W of the former, which is what the official code's
            ``all_gather`` without autograd gives), as in :func:`redundancy.barlow_twins_loss`.
        group: the process group of the global batch; ``None`` for the default group.

    Returns:
        The loss as a 0-dim tensor, float64 for float64 inputs and float32 otherwise (half-precision inputs are
        accumulated in float32; their gradients come back in their own dtype).

    Example:
        >>> import torch
        >>> from redundancy import mmcr_loss
        >>> views = torch.randn(2, 128, 32)  # two views of a batch of 128
        >>> loss = mmcr_loss(views)
        >>> same = torch.nn.functional.normalize(views[0], dim=-1)
        >>> bool(mmcr_loss(torch.stack([same, same])) < loss)  # identical views: centroids on the sphere
        True
    """
    return mmcr_terms(**locals()).loss  # every argument, by name


@same_arguments_as(mmcr_loss, MMCRTerms)
def mmcr_terms(views: ViewsArgument, **options: Any) -> MMCRTerms:
    r"""The MMCR loss together with its two nuclear norms, for logging.

    Takes the arguments of :func:`mmcr_loss`; ``terms.loss`` is exactly what that returns. Both norms are computed
    whatever ``lmbda`` (the official code reports 0 for the samples' when ``lmbda`` is 0).

    Returns:
        :class:`MMCRTerms` ``(loss, samples, centroids)``, each a 0-dim tensor with gradients.

    Example:
        >>> import torch
        >>> from redundancy import mmcr_terms
        >>> terms = mmcr_terms([torch.randn(32, 8) for _ in range(3)])
        >>> torch.equal(terms.loss, -terms.centroids)
        True
    """
    with MMCR.open(dict(options, views=views)) as call:
        return call.finish(_mmcr_terms(call.options, call.batch, call.inputs))


class MMCRLoss(LossModule):
    r"""The MMCR loss as a module; ``forward(views)`` is :func:`redundancy.mmcr_loss`.

    The options are those of :func:`redundancy.mmcr_loss`, stored as attributes of the same names and checked here,
    at construction. The module has no parameters or buffers.

    Example:
        >>> import torch
        >>> from redundancy import MMCRLoss
        >>> criterion = MMCRLoss(lmbda=0.01)
        >>> views = torch.randn(2, 64, 16, requires_grad=True)  # (V, N, D), or a list of V (N, D) tensors
        >>> criterion(views).backward()
        >>> criterion.terms(views).centroids.item() > 0
        True
    """

    loss = MMCR

    @module_options(MMCROptions)
    def __init__(self, **options: Any) -> None:
        super().__init__(**options)

    def forward(self, views: ViewsArgument) -> torch.Tensor:
        """The value of :func:`redundancy.mmcr_loss` with this module's options."""
        return mmcr_loss(views, **self.options)

    def terms(self, views: ViewsArgument) -> MMCRTerms:
        """The loss with its terms, as :func:`redundancy.mmcr_terms` returns them."""
        return mmcr_terms(views, **self.options)
