"""redundancy: the exact Barlow Twins loss and the redundancy-reduction family as PyTorch ops."""

from redundancy._batch import get_collective_timeout
from redundancy._batch import set_collective_timeout
from redundancy.barlow_twins import BarlowTwinsLoss
from redundancy.barlow_twins import BarlowTwinsTerms
from redundancy.barlow_twins import MultiviewBarlowTwinsLoss
from redundancy.barlow_twins import barlow_twins_loss
from redundancy.barlow_twins import barlow_twins_terms
from redundancy.barlow_twins import multiview_barlow_twins_loss
from redundancy.barlow_twins import multiview_barlow_twins_terms
from redundancy.cca_ssg import CCASSGLoss
from redundancy.cca_ssg import CCASSGTerms
from redundancy.cca_ssg import cca_ssg_loss
from redundancy.cca_ssg import cca_ssg_terms
from redundancy.correlation import batch_standardize
from redundancy.correlation import cross_correlation
from redundancy.correlation import off_diagonal
from redundancy.diagnostics import CrossCorrelationSummary
from redundancy.diagnostics import cross_correlation_summary
from redundancy.diagnostics import effective_rank
from redundancy.diagnostics import feature_std
from redundancy.mixed_barlow_twins import MixedBarlowTwinsRegularizer
from redundancy.mixed_barlow_twins import mixed_barlow_twins_regularizer
from redundancy.mmcr import MMCRLoss
from redundancy.mmcr import MMCRTerms
from redundancy.mmcr import mmcr_loss
from redundancy.mmcr import mmcr_terms
from redundancy.regularizers import DeCovLoss
from redundancy.regularizers import TotalCodingRate
from redundancy.regularizers import decov_loss
from redundancy.regularizers import total_coding_rate
from redundancy.sigreg import LeJEPALoss
from redundancy.sigreg import LeJEPATerms
from redundancy.sigreg import SIGRegLoss
from redundancy.sigreg import lejepa_loss
from redundancy.sigreg import lejepa_terms
from redundancy.sigreg import sigreg_loss
from redundancy.spectral_contrastive import SpectralContrastiveLoss
from redundancy.spectral_contrastive import SpectralContrastiveTerms
from redundancy.spectral_contrastive import spectral_contrastive_loss
from redundancy.spectral_contrastive import spectral_contrastive_terms
from redundancy.vicreg import MultiviewVICRegLoss
from redundancy.vicreg import VICRegCovarianceLoss
from redundancy.vicreg import VICRegLoss
from redundancy.vicreg import VICRegTerms
from redundancy.vicreg import VICRegVarianceLoss
from redundancy.vicreg import multiview_vicreg_loss
from redundancy.vicreg import multiview_vicreg_terms
from redundancy.vicreg import vicreg_covariance_loss
from redundancy.vicreg import vicreg_loss
from redundancy.vicreg import vicreg_terms
from redundancy.vicreg import vicreg_variance_loss

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
