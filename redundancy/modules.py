"""Thin :class:`torch.nn.Module` wrappers: they store the options and call :mod:`redundancy.functional`."""

import torch
from torch import nn

from redundancy import cca_ssg, mixed_barlow_twins, regularizers, spectral_contrastive, vicreg
from redundancy import functional as F

__all__ = [
    "BarlowTwinsLoss",
    "CCASSGLoss",
    "DeCovLoss",
    "MixedBarlowTwinsRegularizer",
    "SpectralContrastiveLoss",
    "TotalCodingRate",
    "VICRegLoss",
]


class _OptionsModule(nn.Module):
    """A loss module whose state is its options (``self.options``, shown in its repr); no parameters."""

    options: dict

    def extra_repr(self) -> str:
        return ", ".join(f"{name}={value!r}" for name, value in self.options.items())


class BarlowTwinsLoss(_OptionsModule):
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


class VICRegLoss(_OptionsModule):
    r"""The VICReg loss as a module; ``forward(z1, z2)`` is :func:`redundancy.vicreg_loss`.

    The options are those of :func:`redundancy.vicreg_loss` (official ``main_vicreg.py`` defaults) and are
    checked here, at construction. The module has no parameters or buffers.

    Example:
        >>> criterion = VICRegLoss()
        >>> z1, z2 = torch.randn(64, 128, requires_grad=True), torch.randn(64, 128)
        >>> criterion(z1, z2).backward()
        >>> criterion.terms(z1, z2).variance.item() >= 0
        True
    """

    def __init__(
        self,
        *,
        invariance_weight: float = 25.0,
        variance_weight: float = 25.0,
        covariance_weight: float = 1.0,
        gamma: float = 1.0,
        eps: float = 1e-4,
        correction: int = 1,
        variance_reduction: str = "mean",
        algorithm: str = "auto",
        distributed: str = "global",
        gradient_convention: str = "global",
        group: "torch.distributed.ProcessGroup | None" = None,
    ) -> None:
        super().__init__()
        self.options = dict(
            invariance_weight=invariance_weight,
            variance_weight=variance_weight,
            covariance_weight=covariance_weight,
            gamma=gamma,
            eps=eps,
            correction=correction,
            variance_reduction=variance_reduction,
            algorithm=algorithm,
            distributed=distributed,
            gradient_convention=gradient_convention,
            group=group,
        )
        vicreg.check_vicreg_options(**self.options)

    def forward(self, z1: torch.Tensor, z2: torch.Tensor) -> torch.Tensor:
        return vicreg.vicreg_loss(z1, z2, **self.options)

    def terms(self, z1: torch.Tensor, z2: torch.Tensor) -> vicreg.VICRegTerms:
        """The loss with its invariance, variance and covariance terms (:func:`redundancy.vicreg_terms`)."""
        return vicreg.vicreg_terms(z1, z2, **self.options)


class DeCovLoss(_OptionsModule):
    r"""DeCov as a module; ``forward(h)`` is :func:`redundancy.decov_loss`.

    Example:
        >>> criterion = DeCovLoss()
        >>> h = torch.randn(64, 32, requires_grad=True)
        >>> criterion(h).backward()
    """

    def __init__(
        self,
        *,
        correction: int = 0,
        algorithm: str = "auto",
        distributed: str = "global",
        gradient_convention: str = "global",
        group: "torch.distributed.ProcessGroup | None" = None,
    ) -> None:
        super().__init__()
        self.options = dict(
            correction=correction,
            algorithm=algorithm,
            distributed=distributed,
            gradient_convention=gradient_convention,
            group=group,
        )
        regularizers.check_decov_options(**self.options)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return regularizers.decov_loss(h, **self.options)


class TotalCodingRate(_OptionsModule):
    r"""The total coding rate as a module; ``forward(z)`` is :func:`redundancy.total_coding_rate` (maximize it).

    Example:
        >>> tcr = TotalCodingRate(eps=0.2)
        >>> z = torch.randn(64, 32, requires_grad=True)
        >>> (-tcr(z)).backward()
    """

    def __init__(
        self,
        *,
        eps: float = 0.2,
        algorithm: str = "auto",
        distributed: str = "global",
        gradient_convention: str = "global",
        group: "torch.distributed.ProcessGroup | None" = None,
    ) -> None:
        super().__init__()
        self.options = dict(
            eps=eps,
            algorithm=algorithm,
            distributed=distributed,
            gradient_convention=gradient_convention,
            group=group,
        )
        regularizers.check_total_coding_rate_options(**self.options)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return regularizers.total_coding_rate(z, **self.options)


class MixedBarlowTwinsRegularizer(_OptionsModule):
    r"""The Mixed Barlow Twins regularizer as a module; ``forward(z1, z2, z_mixed, permutation, alpha)`` is
    :func:`redundancy.mixed_barlow_twins_regularizer`.

    Example:
        >>> regularizer = MixedBarlowTwinsRegularizer(lambd=1 / 128)
        >>> z1, z2, z_mixed = torch.randn(16, 8), torch.randn(16, 8), torch.randn(16, 8, requires_grad=True)
        >>> regularizer(z1, z2, z_mixed, torch.randperm(16), 0.4).backward()
    """

    def __init__(
        self,
        *,
        lambd: float = 0.005,
        scale: float = 5.0,
        normalization: str = "std",
        eps: float = 0.0,
        algorithm: str = "auto",
    ) -> None:
        super().__init__()
        self.options = dict(lambd=lambd, scale=scale, normalization=normalization, eps=eps, algorithm=algorithm)
        mixed_barlow_twins.check_mixed_barlow_twins_options(**self.options)

    def forward(
        self,
        z1: torch.Tensor,
        z2: torch.Tensor,
        z_mixed: torch.Tensor,
        permutation: torch.Tensor,
        alpha: float,
    ) -> torch.Tensor:
        return mixed_barlow_twins.mixed_barlow_twins_regularizer(z1, z2, z_mixed, permutation, alpha, **self.options)


class CCASSGLoss(_OptionsModule):
    r"""The CCA-SSG loss as a module; ``forward(z1, z2)`` is :func:`redundancy.cca_ssg_loss`.

    Example:
        >>> criterion = CCASSGLoss(lambd=5e-4)
        >>> z1, z2 = torch.randn(64, 16, requires_grad=True), torch.randn(64, 16)
        >>> criterion(z1, z2).backward()
    """

    def __init__(
        self, *, lambd: float = 1e-3, normalization: str = "std", eps: float = 0.0, algorithm: str = "auto"
    ) -> None:
        super().__init__()
        self.options = dict(lambd=lambd, normalization=normalization, eps=eps, algorithm=algorithm)
        cca_ssg.check_cca_ssg_options(**self.options)

    def forward(self, z1: torch.Tensor, z2: torch.Tensor) -> torch.Tensor:
        return cca_ssg.cca_ssg_loss(z1, z2, **self.options)


class SpectralContrastiveLoss(_OptionsModule):
    r"""The spectral contrastive loss as a module; ``forward(z1, z2)`` is :func:`redundancy.spectral_contrastive_loss`.

    Example:
        >>> criterion = SpectralContrastiveLoss(mu=1.0)
        >>> z1, z2 = torch.randn(64, 16, requires_grad=True), torch.randn(64, 16)
        >>> criterion(z1, z2).backward()
    """

    def __init__(self, *, mu: float = 1.0, algorithm: str = "auto") -> None:
        super().__init__()
        self.options = dict(mu=mu, algorithm=algorithm)
        spectral_contrastive.check_spectral_contrastive_options(**self.options)

    def forward(self, z1: torch.Tensor, z2: torch.Tensor) -> torch.Tensor:
        return spectral_contrastive.spectral_contrastive_loss(z1, z2, **self.options)
