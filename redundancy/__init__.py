"""redundancy: the exact Barlow Twins loss and the redundancy-reduction family as PyTorch ops."""

from redundancy._batch import get_collective_timeout, set_collective_timeout
from redundancy.barlow_twins import (
    BarlowTwinsLoss,
    BarlowTwinsTerms,
    MultiviewBarlowTwinsLoss,
    barlow_twins_loss,
    barlow_twins_terms,
    multiview_barlow_twins_loss,
    multiview_barlow_twins_terms,
)
from redundancy.cca_ssg import CCASSGLoss, CCASSGTerms, cca_ssg_loss, cca_ssg_terms
from redundancy.correlation import batch_standardize, cross_correlation, off_diagonal
from redundancy.diagnostics import (
    CrossCorrelationSummary,
    cross_correlation_summary,
    effective_rank,
    feature_std,
)
from redundancy.mixed_barlow_twins import MixedBarlowTwinsRegularizer, mixed_barlow_twins_regularizer
from redundancy.mmcr import MMCRLoss, MMCRTerms, mmcr_loss, mmcr_terms
from redundancy.regularizers import DeCovLoss, TotalCodingRate, decov_loss, total_coding_rate
from redundancy.sigreg import LeJEPALoss, LeJEPATerms, SIGRegLoss, lejepa_loss, lejepa_terms, sigreg_loss
from redundancy.spectral_contrastive import (
    SpectralContrastiveLoss,
    SpectralContrastiveTerms,
    spectral_contrastive_loss,
    spectral_contrastive_terms,
)
from redundancy.vicreg import (
    MultiviewVICRegLoss,
    VICRegCovarianceLoss,
    VICRegLoss,
    VICRegTerms,
    VICRegVarianceLoss,
    multiview_vicreg_loss,
    multiview_vicreg_terms,
    vicreg_covariance_loss,
    vicreg_loss,
    vicreg_terms,
    vicreg_variance_loss,
)

__version__ = "0.1.0.dev0"

__all__ = [
    "BarlowTwinsLoss",
    "BarlowTwinsTerms",
    "CCASSGLoss",
    "CCASSGTerms",
    "CrossCorrelationSummary",
    "DeCovLoss",
    "LeJEPALoss",
    "LeJEPATerms",
    "MMCRLoss",
    "MMCRTerms",
    "MixedBarlowTwinsRegularizer",
    "MultiviewBarlowTwinsLoss",
    "MultiviewVICRegLoss",
    "SIGRegLoss",
    "SpectralContrastiveLoss",
    "SpectralContrastiveTerms",
    "TotalCodingRate",
    "VICRegCovarianceLoss",
    "VICRegLoss",
    "VICRegTerms",
    "VICRegVarianceLoss",
    "__version__",
    "barlow_twins_loss",
    "barlow_twins_terms",
    "batch_standardize",
    "cca_ssg_loss",
    "cca_ssg_terms",
    "cross_correlation",
    "cross_correlation_summary",
    "decov_loss",
    "effective_rank",
    "feature_std",
    "get_collective_timeout",
    "lejepa_loss",
    "lejepa_terms",
    "mixed_barlow_twins_regularizer",
    "mmcr_loss",
    "mmcr_terms",
    "multiview_barlow_twins_loss",
    "multiview_barlow_twins_terms",
    "multiview_vicreg_loss",
    "multiview_vicreg_terms",
    "off_diagonal",
    "set_collective_timeout",
    "sigreg_loss",
    "spectral_contrastive_loss",
    "spectral_contrastive_terms",
    "total_coding_rate",
    "vicreg_covariance_loss",
    "vicreg_loss",
    "vicreg_terms",
    "vicreg_variance_loss",
]
