"""redundancy: the exact Barlow Twins loss and the redundancy-reduction family as PyTorch ops."""

from redundancy.cca_ssg import CCASSGTerms, cca_ssg_loss, cca_ssg_terms
from redundancy.diagnostics import (
    CrossCorrelationSummary,
    cross_correlation_summary,
    effective_rank,
    feature_std,
)
from redundancy.functional import (
    BarlowTwinsTerms,
    barlow_twins_loss,
    barlow_twins_terms,
    batch_standardize,
    cross_correlation,
    off_diagonal,
)
from redundancy.mixed_barlow_twins import mixed_barlow_twins_regularizer
from redundancy.modules import (
    BarlowTwinsLoss,
    CCASSGLoss,
    DeCovLoss,
    MixedBarlowTwinsRegularizer,
    MultiviewBarlowTwinsLoss,
    MultiviewVICRegLoss,
    SpectralContrastiveLoss,
    TotalCodingRate,
    VICRegLoss,
)
from redundancy.multiview import (
    multiview_barlow_twins_loss,
    multiview_barlow_twins_terms,
    multiview_vicreg_loss,
    multiview_vicreg_terms,
)
from redundancy.regularizers import decov_loss, total_coding_rate
from redundancy.spectral_contrastive import (
    SpectralContrastiveTerms,
    spectral_contrastive_loss,
    spectral_contrastive_terms,
)
from redundancy.vicreg import (
    VICRegTerms,
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
    "MixedBarlowTwinsRegularizer",
    "MultiviewBarlowTwinsLoss",
    "MultiviewVICRegLoss",
    "SpectralContrastiveLoss",
    "SpectralContrastiveTerms",
    "TotalCodingRate",
    "VICRegLoss",
    "VICRegTerms",
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
    "mixed_barlow_twins_regularizer",
    "multiview_barlow_twins_loss",
    "multiview_barlow_twins_terms",
    "multiview_vicreg_loss",
    "multiview_vicreg_terms",
    "off_diagonal",
    "spectral_contrastive_loss",
    "spectral_contrastive_terms",
    "total_coding_rate",
    "vicreg_covariance_loss",
    "vicreg_loss",
    "vicreg_terms",
    "vicreg_variance_loss",
]
