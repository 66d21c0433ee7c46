"""``lightly.loss.BarlowTwinsLoss`` and ``lightly.loss.VICRegLoss`` as thin modules over ``redundancy``.

Swap ``from lightly.loss import BarlowTwinsLoss`` for ``from redundancy.compat.lightly import BarlowTwinsLoss``:
the constructor arguments, their defaults and the attribute names are lightly's, and the single-process value
is the one lightly computes (each view standardized with ``F.batch_norm``, ε = 1e-5, for Barlow Twins;
``main_vicreg.py``'s formula for VICReg).

Differences, all intended:

- Distributed runs: ``gather_distributed=True`` is ``distributed="global"``, the loss of the global batch
  (statistics and C of the concatenated batch of all ranks, with the ``"global"`` gradient convention of
  :func:`redundancy.barlow_twins_loss`), where lightly averages the per-rank cross-correlations (Barlow Twins)
  or gathers the embeddings only for the variance and covariance terms, keeping each rank's own invariance
  term (VICReg). ``gather_distributed=False`` is ``distributed="local"``, each rank's own loss, as in lightly.
- Bad inputs raise :class:`ValueError` / :class:`TypeError` naming the argument instead of ``AssertionError``.
- Only 2-D embeddings ``(N, D)`` are accepted (lightly's VICReg also takes ``(N, ..., D)``).
"""

import torch
import torch.distributed as dist
from torch import nn

from redundancy.functional import BarlowTwinsOptions, barlow_twins_loss
from redundancy.vicreg import VICRegOptions, vicreg_loss

__all__ = ["BarlowTwinsLoss", "VICRegLoss"]


def _check_gather_distributed(gather_distributed: object) -> None:
    if not isinstance(gather_distributed, bool):
        raise TypeError(f"gather_distributed must be a bool, got {type(gather_distributed).__name__}")
    if gather_distributed and not dist.is_available():
        raise ValueError(
            "gather_distributed is True but torch.distributed is not available; "
            "set gather_distributed=False or install a torch build with distributed support"
        )


def _distributed(gather_distributed: bool) -> str:
    """lightly's ``gather_distributed`` as this library's ``distributed`` option."""
    return "global" if gather_distributed else "local"


class BarlowTwinsLoss(nn.Module):
    r"""lightly's ``BarlowTwinsLoss`` computed by :func:`redundancy.barlow_twins_loss`.

    .. math::

        L = \sum_i (1 - C_{ii})^2 + \lambda \sum_{i \ne j} C_{ij}^2, \qquad
        C = \mathrm{bn}(z_a)^\top \mathrm{bn}(z_b) / N.

    Args:
        lambda_param: λ, weight of the redundancy term (lightly's default 5e-3; the official value is 0.0051).
        gather_distributed: ``True``: the loss of the global batch under ``torch.distributed``
            (``distributed="global"``; see the module docstring for how this differs from lightly); ``False``: each
            rank's own loss (``distributed="local"``).

    Example:
        >>> import redundancy
        >>> criterion = BarlowTwinsLoss()
        >>> z_a, z_b = torch.randn(32, 16), torch.randn(32, 16)
        >>> torch.allclose(criterion(z_a, z_b), redundancy.barlow_twins_loss(z_a, z_b, lambd=5e-3))
        True
    """

    def __init__(self, lambda_param: float = 5e-3, gather_distributed: bool = False) -> None:
        super().__init__()
        BarlowTwinsOptions(lambd=lambda_param).check()
        _check_gather_distributed(gather_distributed)
        self.lambda_param = lambda_param
        self.gather_distributed = gather_distributed

    def forward(self, z_a: torch.Tensor, z_b: torch.Tensor) -> torch.Tensor:
        return barlow_twins_loss(z_a, z_b, lambd=self.lambda_param, distributed=_distributed(self.gather_distributed))

    def extra_repr(self) -> str:
        return f"lambda_param={self.lambda_param!r}, gather_distributed={self.gather_distributed!r}"


class VICRegLoss(nn.Module):
    r"""lightly's ``VICRegLoss`` computed by :func:`redundancy.vicreg_loss`.

    .. math::

        L = \lambda\, \mathrm{mse}(z_a, z_b) + \mu\, \tfrac12 \big(v(z_a) + v(z_b)\big) + \nu \big(c(z_a) + c(z_b)\big)

    with :math:`v` and :math:`c` the variance and covariance terms of :func:`redundancy.vicreg_loss` (unbiased,
    γ = 1).

    Args:
        lambda_param: λ, weight of the invariance term.
        mu_param: μ, weight of the variance term.
        nu_param: ν, weight of the covariance term.
        gather_distributed: ``True``: the loss of the global batch under ``torch.distributed``
            (``distributed="global"``); ``False``: each rank's own loss (``distributed="local"``).
        eps: ε, added to the variance before the square root.

    Example:
        >>> import redundancy
        >>> criterion = VICRegLoss()
        >>> z_a, z_b = torch.randn(32, 16), torch.randn(32, 16)
        >>> torch.allclose(criterion(z_a, z_b), redundancy.vicreg_loss(z_a, z_b))
        True
    """

    def __init__(
        self,
        lambda_param: float = 25.0,
        mu_param: float = 25.0,
        nu_param: float = 1.0,
        gather_distributed: bool = False,
        eps: float = 0.0001,
    ) -> None:
        super().__init__()
        VICRegOptions(
            invariance_weight=lambda_param, variance_weight=mu_param, covariance_weight=nu_param, eps=eps
        ).check()
        _check_gather_distributed(gather_distributed)
        self.lambda_param = lambda_param
        self.mu_param = mu_param
        self.nu_param = nu_param
        self.gather_distributed = gather_distributed
        self.eps = eps

    def forward(self, z_a: torch.Tensor, z_b: torch.Tensor) -> torch.Tensor:
        return vicreg_loss(
            z_a,
            z_b,
            invariance_weight=self.lambda_param,
            variance_weight=self.mu_param,
            covariance_weight=self.nu_param,
            eps=self.eps,
            distributed=_distributed(self.gather_distributed),
        )

    def extra_repr(self) -> str:
        return (
            f"lambda_param={self.lambda_param!r}, mu_param={self.mu_param!r}, nu_param={self.nu_param!r}, "
            f"gather_distributed={self.gather_distributed!r}, eps={self.eps!r}"
        )
