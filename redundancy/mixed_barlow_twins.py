"""The Mixed Barlow Twins regularizer (Bandara et al., 2023), on the shared primitives.

The embeddings of a mixed batch ``x_m = α x₁ + (1 - α) x₂[π]`` should correlate with each view as the same
mixture of the views' own correlations. With ``A, B, M`` the standardized embeddings of the two views and of
the mixed batch, both targets are linear in the residual ``R = M - α A - (1 - α) B[π]``::

    C(M, A) - (α C(A, A) + (1 - α) C(B[π], A)) = Rᵀ A / N     (and the same with B)

so the regularizer is ``‖RᵀA‖² + ‖RᵀB‖²`` over N², computed through the D×D products or their N×N Gram dual
(:func:`redundancy._ops.cross_product_energy`). The defaults are those of ``wgcban/mix-bt`` ``main.py``.

Under ``torch.distributed`` the regularizer is that of the batch of all ranks (every rank gathers the three views).
Each rank's ``permutation`` permutes that rank's own rows (each rank mixes its own images, as mix-bt does), so over
the global batch the permutation is block-diagonal: row ``i`` of rank ``r`` is mixed with row ``π_r(i)`` of the same
rank.
"""

import dataclasses
from typing import Any

import torch

from redundancy import cost
from redundancy._batch import GlobalBatch
from redundancy._batch import ProcessGroup
from redundancy._exchange import Shared
from redundancy._exchange import as_number
from redundancy._frame import NONNEGATIVE
from redundancy._frame import Algorithm
from redundancy._frame import Correction
from redundancy._frame import Distributed
from redundancy._frame import GradientConvention
from redundancy._frame import Loss
from redundancy._frame import LossModule
from redundancy._frame import Options
from redundancy._frame import Views
from redundancy._frame import module_options
from redundancy._ops import cross_product_energy
from redundancy._ops.standardize import standardization_of_options
from redundancy._ops.standardize import standardize_each
from redundancy._validation import check_real

__all__ = ["MixedBarlowTwinsRegularizer", "mixed_barlow_twins_regularizer"]


@dataclasses.dataclass(frozen=True, kw_only=True)
class MixedBarlowTwinsOptions(Options):
    """The options of :func:`mixed_barlow_twins_regularizer` (documented there), declared once."""

    lambd: float = dataclasses.field(default=0.005, metadata=NONNEGATIVE)
    scale: float = dataclasses.field(default=5.0, metadata=NONNEGATIVE)
    correction: Correction = 1
    standardize: bool = True
    eps: float = dataclasses.field(default=0.0, metadata=NONNEGATIVE)
    algorithm: Algorithm = "auto"
    distributed: Distributed = "global"
    gradient_convention: GradientConvention = "global"
    group: ProcessGroup | None = None


class MixingInputs(Views):
    """The views ``z1, z2, z_mixed`` and how they were mixed: ``permutation`` (this rank's own rows) and ``alpha``,
    which every rank must pass alike."""

    def __init__(self) -> None:
        super().__init__("z1", "z2", "z_mixed", extra=("permutation", "alpha"))

    def check_extra(self, views: tuple[torch.Tensor, ...], extra: tuple) -> tuple[Shared, ...]:
        z1 = views[0]
        permutation, alpha = extra
        if not isinstance(permutation, torch.Tensor) or permutation.dtype not in (torch.int64, torch.int32):
            raise TypeError(f"permutation must be an int64 or int32 torch.Tensor, got {permutation!r:.80}")
        if permutation.shape != (z1.shape[0],):
            raise ValueError(
                f"permutation must have shape ({z1.shape[0]},) (one index per row), got {tuple(permutation.shape)}"
            )
        if permutation.device != z1.device:
            raise ValueError(f"permutation must be on the device of z1, got {permutation.device} and {z1.device}")
        if not torch.compiler.is_compiling():  # a host read: checked eagerly only
            rows = z1.shape[0]
            if not torch.equal(permutation.sort().values, torch.arange(rows, device=permutation.device)):
                raise ValueError(
                    f"permutation must be a permutation of 0..{rows - 1} (this rank's own rows), got "
                    f"{permutation!r:.120}"
                )
        check_real("alpha", alpha, nonnegative=True)
        if not alpha <= 1:
            raise ValueError(f"alpha must be in [0, 1], got {alpha!r}")
        return (Shared("alpha", float(alpha), as_number),)


MIXED_BARLOW_TWINS = Loss("mixed_barlow_twins_regularizer", MixedBarlowTwinsOptions, MixingInputs())


def _mixed_barlow_twins(
    options: MixedBarlowTwinsOptions,
    batch: GlobalBatch,
    z1: torch.Tensor,
    z2: torch.Tensor,
    z_mixed: torch.Tensor,
    permutation: torch.Tensor,
    alpha: float,
) -> torch.Tensor:
    views = [z.to(batch.dtype) for z in (z1, z2, z_mixed)]
    if batch.world_size > 1:
        # z2[π] before the gather: each rank permutes its own rows, so the gathered rows are z2[π] of the global
        # batch for the block-diagonal π, and they standardize like z2 (the same rows, reordered).
        views.append(views[1][permutation])
    views = list(batch.gather(*views))
    n, d = views[0].shape
    algorithm = cost.choose_algorithm(n, d) if options.algorithm == "auto" else options.algorithm
    views = standardize_each(views, standardization_of_options(options))
    a, b, m, *permuted = views
    b_permuted = permuted[0] if permuted else b[permutation]
    residual = m - a * alpha - b_permuted * (1.0 - alpha)
    energy = cross_product_energy(residual, a, algorithm=algorithm) + cross_product_energy(
        residual, b, algorithm=algorithm
    )
    return energy * (options.scale * options.lambd / (n * n))


def mixed_barlow_twins_regularizer(
    z1: torch.Tensor,
    z2: torch.Tensor,
    z_mixed: torch.Tensor,
    permutation: torch.Tensor,
    alpha: float,
    *,
    lambd: float = 0.005,
    scale: float = 5.0,
    correction: Correction = 1,
    standardize: bool = True,
    eps: float = 0.0,
    algorithm: Algorithm = "auto",
    distributed: Distributed = "global",
    gradient_convention: GradientConvention = "global",
    group: ProcessGroup | None = None,
) -> torch.Tensor:
    r"""The Mixed Barlow Twins regularizer (Bandara et al., 2023), added to the Barlow Twins loss.

    The caller mixes the inputs, ``x_m = alpha * x1 + (1 - alpha) * x2[permutation]``, and embeds them
    (``z_mixed``). With ``A, B, M`` the standardized ``z1, z2, z_mixed`` and
    :math:`R = M - \alpha A - (1 - \alpha) B_{\pi}`:

    .. math::

        L = s \lambda \Big( \big\lVert C(M, A) - \alpha C(A, A) - (1 - \alpha) C(B_\pi, A) \big\rVert_F^2
            + \big\lVert C(M, B) - \alpha C(A, B) - (1 - \alpha) C(B_\pi, B) \big\rVert_F^2 \Big)
          = \frac{s \lambda}{N^2} \big( \lVert R^\top A \rVert_F^2 + \lVert R^\top B \rVert_F^2 \big),

    with :math:`C(X, Y) = X^\top Y / N`. The defaults are those of ``wgcban/mix-bt`` ``main.py``
    (λ = 0.005, mixup loss scale s = 5, unbiased standard deviation without ε). When N < D the two products
    are computed through N×N Gram matrices; no D×D tensor is held then.

    Args:
        z1: embeddings of the first view, shape ``(N, D)``.
        z2: embeddings of the second view, same shape.
        z_mixed: embeddings of the mixed inputs, same shape.
        permutation: the row indices ``π`` used to mix (shape ``(N,)``, integer, on the device of ``z1``); under
            ``torch.distributed``, this rank's own ``(N_r,)`` indices into its own rows.
        alpha: the mixing coefficient α in [0, 1] (mix-bt draws it from Beta(1, 1)).
        lambd: λ, as in the Barlow Twins loss it accompanies.
        scale: s, mix-bt's ``mixup_loss_scale``.
        correction: the variance divisor ``N - correction`` of the standardization: ``1`` (unbiased, mix-bt)
            or ``0`` (biased, as ``BatchNorm1d``).
        standardize: standardize each view (``True``) or use the inputs as they are (``False``).
        eps: added to the variance before the square root.
        algorithm: ``"cross"`` (D×D), ``"gram"`` (N×N) or ``"auto"`` (``gram`` when N < ``GRAM_CROSSOVER``·D).
        distributed, gradient_convention, group: the batch of all ranks under ``torch.distributed`` (every rank
            gathers the rows of all ranks; each rank's ``permutation`` permutes its own rows) or each rank's own, as in
            :func:`redundancy.barlow_twins_loss`.

    Returns:
        A 0-dim tensor, float64 for float64 inputs and float32 otherwise.

    Example:
        >>> import torch
        >>> from redundancy import mixed_barlow_twins_regularizer
        >>> z1, z2 = torch.randn(16, 8), torch.randn(16, 8)
        >>> permutation, alpha = torch.randperm(16), 0.3
        >>> z_mixed = alpha * z1 + (1 - alpha) * z2[permutation]  # a linear encoder: the regularizer is 0
        >>> loss = mixed_barlow_twins_regularizer(z1, z2, z_mixed, permutation, alpha, standardize=False)
        >>> loss.abs() < 1e-6
        tensor(True)
    """
    with MIXED_BARLOW_TWINS.open(locals()) as call:
        return call.finish(_mixed_barlow_twins(call.options, call.batch, *call.inputs))


class MixedBarlowTwinsRegularizer(LossModule):
    r"""The Mixed Barlow Twins regularizer as a module; ``forward(z1, z2, z_mixed, permutation, alpha)`` is
    :func:`redundancy.mixed_barlow_twins_regularizer`.

    Example:
        >>> import torch
        >>> from redundancy import MixedBarlowTwinsRegularizer
        >>> regularizer = MixedBarlowTwinsRegularizer(lambd=1 / 128)
        >>> z1, z2, z_mixed = torch.randn(16, 8), torch.randn(16, 8), torch.randn(16, 8, requires_grad=True)
        >>> regularizer(z1, z2, z_mixed, torch.randperm(16), 0.4).backward()
    """

    loss = MIXED_BARLOW_TWINS

    @module_options(MixedBarlowTwinsOptions)
    def __init__(self, **options: Any) -> None:
        super().__init__(**options)

    def forward(
        self,
        z1: torch.Tensor,
        z2: torch.Tensor,
        z_mixed: torch.Tensor,
        permutation: torch.Tensor,
        alpha: float,
    ) -> torch.Tensor:
        """The value of :func:`redundancy.mixed_barlow_twins_regularizer` with this module's options."""
        return mixed_barlow_twins_regularizer(z1, z2, z_mixed, permutation, alpha, **self.options)
