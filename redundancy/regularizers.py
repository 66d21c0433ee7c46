"""Regularizers usable alone: DeCov (Cogswell et al., 2016) and the total coding rate (TCR).

Both are reductions of one view's auto-correlation: DeCov its off-diagonal energy
(:func:`redundancy._ops.off_diagonal_energy`), TCR its log-determinant
(:func:`redundancy._ops.half_logdet_identity_plus_gram`), each through the D×D or the N×N form, whichever is
smaller. VICReg's own variance and covariance terms are :func:`redundancy.vicreg_variance_loss` and
:func:`redundancy.vicreg_covariance_loss`. Under ``torch.distributed`` both are, by default, those of the batch
of all ranks, as :func:`redundancy.vicreg_loss` is.
"""

import torch

from redundancy import cost
from redundancy import distributed as distributed_ops
from redundancy._ops import half_logdet_identity_plus_gram, off_diagonal_energy
from redundancy._ops._autocast import no_autocast
from redundancy.functional import (
    ALGORITHMS,
    _check_choice,
    _check_distributed_options,
    _check_embedding,
    _check_real,
    _compute_dtype,
    _is_global,
)
from redundancy.vicreg import _check_correction

__all__ = ["check_decov_options", "check_total_coding_rate_options", "decov_loss", "total_coding_rate"]


def check_decov_options(
    *,
    correction: int,
    algorithm: str,
    distributed: str = "global",
    gradient_convention: str = "global",
    group: object = None,
) -> None:
    """Raise a :class:`ValueError` or :class:`TypeError` naming the first bad option of :func:`redundancy.decov_loss`.

    Example:
        >>> check_decov_options(correction=2, algorithm="auto")
        Traceback (most recent call last):
            ...
        ValueError: correction must be 0 (divide by N) or 1 (divide by N - 1), got 2
    """
    _check_correction(correction)
    _check_choice("algorithm", algorithm, ALGORITHMS)
    _check_distributed_options(distributed=distributed, gradient_convention=gradient_convention, group=group)


def check_total_coding_rate_options(
    *,
    eps: float,
    algorithm: str,
    distributed: str = "global",
    gradient_convention: str = "global",
    group: object = None,
) -> None:
    """Raise a :class:`ValueError` or :class:`TypeError` naming the first bad option of the coding rate.

    The options are those of :func:`redundancy.total_coding_rate`.

    Example:
        >>> check_total_coding_rate_options(eps=0.0, algorithm="auto")
        Traceback (most recent call last):
            ...
        ValueError: eps must be positive (the coding rate scales ZᵀZ by D / (N·eps)), got 0
    """
    _check_real("eps", eps, nonnegative=True)
    if eps == 0:
        raise ValueError("eps must be positive (the coding rate scales ZᵀZ by D / (N·eps)), got 0")
    _check_choice("algorithm", algorithm, ALGORITHMS)
    _check_distributed_options(distributed=distributed, gradient_convention=gradient_convention, group=group)


def decov_loss(
    h: torch.Tensor,
    *,
    correction: int = 0,
    algorithm: str = "auto",
    distributed: str = "global",
    gradient_convention: str = "global",
    group: "torch.distributed.ProcessGroup | None" = None,
) -> torch.Tensor:
    r"""DeCov (Cogswell et al., 2016): half the off-diagonal energy of the activations' batch covariance.

    .. math::

        L = \frac12 \big(\lVert C \rVert_F^2 - \lVert \operatorname{diag} C \rVert_2^2\big), \qquad
        C = \frac{(h - \bar h)^\top (h - \bar h)}{N - \mathrm{correction}}.

    The paper divides by N (``correction=0``, the default). Computed through the D×D covariance or, when
    N < D, through the N×N Gram matrix of the centred activations; neither is returned.

    Args:
        h: hidden activations, shape ``(N, D)`` with ``N >= 2``.
        correction: ``0`` divides by ``N`` (paper), ``1`` by ``N - 1``.
        algorithm: ``"cross"`` (D×D), ``"gram"`` (N×N) or ``"auto"`` (``gram`` when N < D).
        distributed: ``"global"`` (the covariance of the batch of all ranks under ``torch.distributed``) or
            ``"local"``, as in :func:`redundancy.vicreg_loss`.
        gradient_convention: ``"global"`` or ``"official"``, as in :func:`redundancy.vicreg_loss`.
        group: the process group of the global batch; ``None`` for the default group.

    Returns:
        A 0-dim tensor, float64 for float64 inputs and float32 otherwise.

    Example:
        >>> h = torch.tensor([[1.0, 1.0], [-1.0, -1.0]])  # two perfectly correlated units, variance 1
        >>> decov_loss(h)
        tensor(1.)
    """
    check_decov_options(
        correction=correction,
        algorithm=algorithm,
        distributed=distributed,
        gradient_convention=gradient_convention,
        group=group,
    )
    global_batch = _is_global(distributed, group)
    _check_embedding("h", h, min_rows=0 if global_batch else 2)  # the global N >= 2 is checked by the exchange
    with no_autocast(h.device):
        h = h.to(_compute_dtype(h))
        if global_batch:
            h, batch = distributed_ops._gather_one_view(
                "decov_loss", h, "h", group, correction=correction, algorithm=algorithm, gradient=gradient_convention
            )
        n, d = h.shape
        if algorithm == "auto":
            algorithm = cost.choose_autocorrelation_algorithm(n, d)
        energy = off_diagonal_energy(h - h.mean(dim=0), algorithm=algorithm)
        loss = energy / (2.0 * float(n - correction) ** 2)
        if global_batch:
            (loss,) = distributed_ops.apply_gradient_convention(gradient_convention, batch, loss)
        return loss


def total_coding_rate(
    z: torch.Tensor,
    *,
    eps: float = 0.2,
    algorithm: str = "auto",
    distributed: str = "global",
    gradient_convention: str = "global",
    group: "torch.distributed.ProcessGroup | None" = None,
) -> torch.Tensor:
    r"""The total coding rate of a batch of embeddings (Ma et al., 2007; Yu et al., 2020; EMP-SSL, Tong et al., 2023).

    .. math::

        R(z) = \frac12 \log\det\Big(I_D + \frac{D}{N \epsilon} z^\top z\Big)
             = \frac12 \log\det\Big(I_N + \frac{D}{N \epsilon} z z^\top\Big),

    the second form (Sylvester's identity) being used when N < D. The log-determinant comes from a Cholesky
    factorization in float32 (float64 for float64 inputs). ``eps`` is the ε of the EMP-SSL code (and lightly's
    ``tcr_eps``), which is ε² of the papers. Maximize it (the TCR loss is :math:`-R`); the rows of ``z`` are
    usually L2-normalized first, as EMP-SSL does.

    Args:
        z: embeddings, shape ``(N, D)``.
        eps: the distortion ε, positive.
        algorithm: ``"cross"`` (D×D form), ``"gram"`` (N×N form) or ``"auto"`` (the smaller, ``gram`` when N < D).
        distributed: ``"global"`` (the coding rate of the batch of all ranks under ``torch.distributed``, N
            being the global batch size, which must then be at least 2) or ``"local"``, as in
            :func:`redundancy.vicreg_loss`.
        gradient_convention: ``"global"`` or ``"official"``, as in :func:`redundancy.vicreg_loss`.
        group: the process group of the global batch; ``None`` for the default group.

    Returns:
        A 0-dim tensor, float64 for float64 inputs and float32 otherwise.

    Example:
        >>> z = torch.nn.functional.normalize(torch.randn(32, 128), dim=1)
        >>> loss = -total_coding_rate(z)
        >>> loss.shape
        torch.Size([])
    """
    check_total_coding_rate_options(
        eps=eps, algorithm=algorithm, distributed=distributed, gradient_convention=gradient_convention, group=group
    )
    global_batch = _is_global(distributed, group)
    _check_embedding("z", z, min_rows=0 if global_batch else 1)
    with no_autocast(z.device):
        z = z.to(_compute_dtype(z))
        if global_batch:
            z, batch = distributed_ops._gather_one_view(
                "total_coding_rate", z, "z", group, eps=eps, algorithm=algorithm, gradient=gradient_convention
            )
        n, d = z.shape
        if algorithm == "auto":
            algorithm = cost.choose_autocorrelation_algorithm(n, d)
        rate = half_logdet_identity_plus_gram(z, alpha=d / (n * eps), algorithm=algorithm)
        if global_batch:
            (rate,) = distributed_ops.apply_gradient_convention(gradient_convention, batch, rate)
        return rate
