"""The family, one entry per loss: what the tests, the benchmarks and the docs iterate over.

Each :class:`Member` names a loss's frame declaration (:class:`redundancy._frame.Loss`: its options and inputs),
its public function, its ``terms`` form (if it has one), its Module and its reference in
:mod:`redundancy.reference`. Adding a loss to the family is one entry here; the test harness
(``tests/family.py``) then runs the whole battery on it.
"""

from collections.abc import Callable
from typing import Any
from typing import NamedTuple

from redundancy import barlow_twins
from redundancy import cca_ssg
from redundancy import mixed_barlow_twins
from redundancy import mmcr
from redundancy import reference
from redundancy import regularizers
from redundancy import sigreg
from redundancy import spectral_contrastive
from redundancy import vicreg
from redundancy._frame import Loss
from redundancy._frame import LossModule


class Member(NamedTuple):
    """A loss of the family: its declaration, its public function, terms form and Module, and its reference."""

    loss: Loss
    function: Callable[..., Any]
    terms: Callable[..., Any] | None
    module: type[LossModule]
    reference: Callable[..., Any]

    @property
    def name(self) -> str:
        return self.loss.name


FAMILY: tuple[Member, ...] = (
    Member(
        barlow_twins.BARLOW_TWINS,
        barlow_twins.barlow_twins_loss,
        barlow_twins.barlow_twins_terms,
        barlow_twins.BarlowTwinsLoss,
        reference.barlow_twins_loss_reference,
    ),
    Member(
        barlow_twins.MULTIVIEW_BARLOW_TWINS,
        barlow_twins.multiview_barlow_twins_loss,
        barlow_twins.multiview_barlow_twins_terms,
        barlow_twins.MultiviewBarlowTwinsLoss,
        reference.multiview_barlow_twins_loss_reference,
    ),
    Member(
        vicreg.VICREG,
        vicreg.vicreg_loss,
        vicreg.vicreg_terms,
        vicreg.VICRegLoss,
        reference.vicreg_loss_reference,
    ),
    Member(
        vicreg.MULTIVIEW_VICREG,
        vicreg.multiview_vicreg_loss,
        vicreg.multiview_vicreg_terms,
        vicreg.MultiviewVICRegLoss,
        reference.multiview_vicreg_loss_reference,
    ),
    Member(
        vicreg.VICREG_VARIANCE,
        vicreg.vicreg_variance_loss,
        None,
        vicreg.VICRegVarianceLoss,
        reference.vicreg_variance_loss_reference,
    ),
    Member(
        vicreg.VICREG_COVARIANCE,
        vicreg.vicreg_covariance_loss,
        None,
        vicreg.VICRegCovarianceLoss,
        reference.vicreg_covariance_loss_reference,
    ),
    Member(
        cca_ssg.CCA_SSG,
        cca_ssg.cca_ssg_loss,
        cca_ssg.cca_ssg_terms,
        cca_ssg.CCASSGLoss,
        reference.cca_ssg_loss_reference,
    ),
    Member(
        regularizers.DECOV,
        regularizers.decov_loss,
        None,
        regularizers.DeCovLoss,
        reference.decov_loss_reference,
    ),
    Member(
        regularizers.TOTAL_CODING_RATE,
        regularizers.total_coding_rate,
        None,
        regularizers.TotalCodingRate,
        reference.total_coding_rate_reference,
    ),
    Member(
        mixed_barlow_twins.MIXED_BARLOW_TWINS,
        mixed_barlow_twins.mixed_barlow_twins_regularizer,
        None,
        mixed_barlow_twins.MixedBarlowTwinsRegularizer,
        reference.mixed_barlow_twins_regularizer_reference,
    ),
    Member(
        spectral_contrastive.SPECTRAL_CONTRASTIVE,
        spectral_contrastive.spectral_contrastive_loss,
        spectral_contrastive.spectral_contrastive_terms,
        spectral_contrastive.SpectralContrastiveLoss,
        reference.spectral_contrastive_loss_reference,
    ),
    Member(
        sigreg.SIGREG,
        sigreg.sigreg_loss,
        None,
        sigreg.SIGRegLoss,
        reference.sigreg_loss_reference,
    ),
    Member(
        sigreg.LEJEPA,
        sigreg.lejepa_loss,
        sigreg.lejepa_terms,
        sigreg.LeJEPALoss,
        reference.lejepa_loss_reference,
    ),
    Member(
        mmcr.MMCR,
        mmcr.mmcr_loss,
        mmcr.mmcr_terms,
        mmcr.MMCRLoss,
        reference.mmcr_loss_reference,
    ),
)
