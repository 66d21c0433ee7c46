"""Thin :class:`torch.nn.Module` wrappers: the options as plain attributes, ``forward`` one call of the function.

Each Module takes the keyword options of its function (checked at construction), stores them as attributes of
the same names and calls the function in ``forward``; ``terms`` returns the loss with its terms where the function
has a ``*_terms`` form. The Modules have no parameters or buffers.
"""

from redundancy._loss import LossModule
from redundancy.cca_ssg import cca_ssg_terms
from redundancy.functional import barlow_twins_terms
from redundancy.mixed_barlow_twins import mixed_barlow_twins_regularizer
from redundancy.multiview import multiview_barlow_twins_terms, multiview_vicreg_terms
from redundancy.regularizers import decov_loss, total_coding_rate
from redundancy.spectral_contrastive import spectral_contrastive_terms
from redundancy.vicreg import vicreg_terms

__all__ = [
    "BarlowTwinsLoss",
    "CCASSGLoss",
    "DeCovLoss",
    "MixedBarlowTwinsRegularizer",
    "MultiviewBarlowTwinsLoss",
    "MultiviewVICRegLoss",
    "SpectralContrastiveLoss",
    "TotalCodingRate",
    "VICRegLoss",
]


class BarlowTwinsLoss(LossModule, function=barlow_twins_terms):
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


class VICRegLoss(LossModule, function=vicreg_terms):
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


class DeCovLoss(LossModule, function=decov_loss):
    r"""DeCov as a module; ``forward(h)`` is :func:`redundancy.decov_loss`.

    Example:
        >>> criterion = DeCovLoss()
        >>> h = torch.randn(64, 32, requires_grad=True)
        >>> criterion(h).backward()
    """


class TotalCodingRate(LossModule, function=total_coding_rate):
    r"""The total coding rate as a module; ``forward(z)`` is :func:`redundancy.total_coding_rate` (maximize it).

    Example:
        >>> tcr = TotalCodingRate(eps=0.2)
        >>> z = torch.randn(64, 32, requires_grad=True)
        >>> (-tcr(z)).backward()
    """


class MixedBarlowTwinsRegularizer(LossModule, function=mixed_barlow_twins_regularizer):
    r"""The Mixed Barlow Twins regularizer as a module; ``forward(z1, z2, z_mixed, permutation, alpha)`` is
    :func:`redundancy.mixed_barlow_twins_regularizer`.

    Example:
        >>> regularizer = MixedBarlowTwinsRegularizer(lambd=1 / 128)
        >>> z1, z2, z_mixed = torch.randn(16, 8), torch.randn(16, 8), torch.randn(16, 8, requires_grad=True)
        >>> regularizer(z1, z2, z_mixed, torch.randperm(16), 0.4).backward()
    """


class CCASSGLoss(LossModule, function=cca_ssg_terms):
    r"""The CCA-SSG loss as a module; ``forward(z1, z2)`` is :func:`redundancy.cca_ssg_loss`.

    Example:
        >>> criterion = CCASSGLoss(lambd=5e-4)
        >>> z1, z2 = torch.randn(64, 16, requires_grad=True), torch.randn(64, 16)
        >>> criterion(z1, z2).backward()
    """


class SpectralContrastiveLoss(LossModule, function=spectral_contrastive_terms):
    r"""The spectral contrastive loss as a module; ``forward(z1, z2)`` is :func:`redundancy.spectral_contrastive_loss`.

    Example:
        >>> criterion = SpectralContrastiveLoss(mu=1.0)
        >>> z1, z2 = torch.randn(64, 16, requires_grad=True), torch.randn(64, 16)
        >>> criterion(z1, z2).backward()
    """


class MultiviewBarlowTwinsLoss(LossModule, function=multiview_barlow_twins_terms):
    r"""The multi-view Barlow Twins loss as a module; ``forward(views)`` is
    :func:`redundancy.multiview_barlow_twins_loss`.

    Example:
        >>> criterion = MultiviewBarlowTwinsLoss(lambd="auto")
        >>> views = torch.randn(4, 64, 128, requires_grad=True)  # (V, N, D), or a list of V (N, D) tensors
        >>> criterion(views).backward()
        >>> criterion.terms(views).invariance.item() > 0
        True
    """


class MultiviewVICRegLoss(LossModule, function=multiview_vicreg_terms):
    r"""The multi-view VICReg loss as a module; ``forward(views)`` is :func:`redundancy.multiview_vicreg_loss`.

    Example:
        >>> criterion = MultiviewVICRegLoss()
        >>> views = [torch.randn(64, 32, requires_grad=True) for _ in range(3)]
        >>> criterion(views).backward()
    """
