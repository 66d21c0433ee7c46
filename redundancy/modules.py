"""Thin :class:`torch.nn.Module` wrappers: they store the options and call :mod:`redundancy.functional`."""

import torch
from torch import nn

from redundancy import functional as F

__all__ = ["BarlowTwinsLoss"]


class BarlowTwinsLoss(nn.Module):
    r"""The Barlow Twins loss as a module; ``forward(z1, z2)`` is :func:`redundancy.barlow_twins_loss`.

    The options are those of :func:`redundancy.barlow_twins_loss` and are checked here, at construction.
    The module has no parameters or buffers.

    Example:
        >>> criterion = BarlowTwinsLoss(lambd=0.0051)
        >>> z1, z2 = torch.randn(64, 128, requires_grad=True), torch.randn(64, 128)
        >>> criterion(z1, z2).backward()
        >>> criterion.terms(z1, z2).invariance.item() > 0
        True
    """

    def __init__(
        self,
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
    ) -> None:
        super().__init__()
        self.options = dict(
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
        F.check_barlow_twins_options(**self.options)

    def forward(self, z1: torch.Tensor, z2: torch.Tensor) -> torch.Tensor:
        return F.barlow_twins_loss(z1, z2, **self.options)

    def terms(self, z1: torch.Tensor, z2: torch.Tensor) -> F.BarlowTwinsTerms:
        """The loss with its invariance and redundancy terms (:func:`redundancy.barlow_twins_terms`)."""
        return F.barlow_twins_terms(z1, z2, **self.options)

    def extra_repr(self) -> str:
        return ", ".join(f"{name}={value!r}" for name, value in self.options.items())
