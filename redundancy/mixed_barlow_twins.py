"""The Mixed Barlow Twins regularizer (Bandara et al., 2023), on the shared primitives.

The embeddings of a mixed batch ``x_m = α x₁ + (1 - α) x₂[π]`` should correlate with each view as the same
mixture of the views' own correlations. With ``A, B, M`` the standardized embeddings of the two views and of
the mixed batch, both targets are linear in the residual ``R = M - α A - (1 - α) B[π]``::

    C(M, A) - (α C(A, A) + (1 - α) C(B[π], A)) = Rᵀ A / N     (and the same with B)

so the regularizer is ``‖RᵀA‖² + ‖RᵀB‖²`` over N², computed through the D×D products or their N×N Gram dual
(:func:`redundancy._ops.cross_product_energy`). The defaults are those of ``wgcban/mix-bt`` ``main.py``.
"""

import torch

from redundancy import cost
from redundancy._ops import cross_product_energy
from redundancy._ops._autocast import no_autocast
from redundancy.functional import (
    ALGORITHMS,
    NORMALIZATIONS,
    _check_choice,
    _check_embedding,
    _check_real,
    _check_views,
    _compute_dtype,
    _standardize_view,
)

__all__ = ["check_mixed_barlow_twins_options", "mixed_barlow_twins_regularizer"]


def check_mixed_barlow_twins_options(
    *, lambd: float, scale: float, normalization: str, eps: float, algorithm: str
) -> None:
    """Raise a :class:`ValueError` or :class:`TypeError` naming the first bad option (used by the Module too).

    Example:
        >>> check_mixed_barlow_twins_options(lambd=0.005, scale=5.0, normalization="layer", eps=0.0, algorithm="auto")
        Traceback (most recent call last):
            ...
        ValueError: normalization must be one of ('batchnorm', 'std', 'none'), got 'layer'
    """
    _check_real("lambd", lambd, nonnegative=True)
    _check_real("scale", scale, nonnegative=True)
    _check_choice("normalization", normalization, NORMALIZATIONS)
    _check_real("eps", eps, nonnegative=True)
    _check_choice("algorithm", algorithm, ALGORITHMS)


def _check_mixing(z1: torch.Tensor, z_mixed: object, permutation: object, alpha: object) -> None:
    _check_embedding("z_mixed", z_mixed, min_rows=2)
    if z_mixed.shape != z1.shape:
        raise ValueError(
            f"z_mixed must have the shape of z1, got z_mixed {tuple(z_mixed.shape)} and z1 {tuple(z1.shape)}"
        )
    if z_mixed.device != z1.device:
        raise ValueError(f"z_mixed must be on the device of z1, got {z_mixed.device} and {z1.device}")
    if not isinstance(permutation, torch.Tensor) or permutation.dtype not in (torch.int64, torch.int32):
        raise TypeError(f"permutation must be an int64 or int32 torch.Tensor, got {permutation!r:.80}")
    if permutation.shape != (z1.shape[0],):
        raise ValueError(
            f"permutation must have shape ({z1.shape[0]},) (one index per row), got {tuple(permutation.shape)}"
        )
    if permutation.device != z1.device:
        raise ValueError(f"permutation must be on the device of z1, got {permutation.device} and {z1.device}")
    _check_real("alpha", alpha, nonnegative=True)
    if alpha > 1:
        raise ValueError(f"alpha must be in [0, 1], got {alpha!r}")


def mixed_barlow_twins_regularizer(
    z1: torch.Tensor,
    z2: torch.Tensor,
    z_mixed: torch.Tensor,
    permutation: torch.Tensor,
    alpha: float,
    *,
    lambd: float = 0.005,
    scale: float = 5.0,
    normalization: str = "std",
    eps: float = 0.0,
    algorithm: str = "auto",
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
        permutation: the row indices ``π`` used to mix (shape ``(N,)``, integer, on the device of ``z1``).
        alpha: the mixing coefficient α in [0, 1] (mix-bt draws it from Beta(1, 1)).
        lambd: λ, as in the Barlow Twins loss it accompanies.
        scale: s, mix-bt's ``mixup_loss_scale``.
        normalization: ``"std"`` (unbiased, mix-bt), ``"batchnorm"`` or ``"none"``, as in
            :func:`redundancy.barlow_twins_loss`.
        eps: added to the variance before the square root.
        algorithm: ``"cross"`` (D×D), ``"gram"`` (N×N) or ``"auto"`` (``gram`` when N < ``GRAM_CROSSOVER``·D).

    Returns:
        A 0-dim tensor, float64 for float64 inputs and float32 otherwise.

    Example:
        >>> z1, z2 = torch.randn(16, 8), torch.randn(16, 8)
        >>> permutation, alpha = torch.randperm(16), 0.3
        >>> z_mixed = alpha * z1 + (1 - alpha) * z2[permutation]  # a linear encoder: the regularizer is 0
        >>> mixed_barlow_twins_regularizer(z1, z2, z_mixed, permutation, alpha, normalization="none").abs() < 1e-6
        tensor(True)
    """
    check_mixed_barlow_twins_options(
        lambd=lambd, scale=scale, normalization=normalization, eps=eps, algorithm=algorithm
    )
    _check_views(z1, z2)
    _check_mixing(z1, z_mixed, permutation, alpha)
    n, d = z1.shape
    if algorithm == "auto":
        algorithm = cost.choose_algorithm(n, d)
    dtype = _compute_dtype(z1, z2, z_mixed)
    with no_autocast(z1.device):
        a = _standardize_view(z1.to(dtype), normalization, eps)
        b = _standardize_view(z2.to(dtype), normalization, eps)
        m = _standardize_view(z_mixed.to(dtype), normalization, eps)
        residual = m - a * alpha - b[permutation] * (1.0 - alpha)
        energy = cross_product_energy(residual, a, algorithm=algorithm) + cross_product_energy(
            residual, b, algorithm=algorithm
        )
        return energy * (scale * lambd / (n * n))
