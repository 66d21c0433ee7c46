"""PyTorch implementations: the batch standardization, the two Barlow Twins algorithms, the one-view
auto-correlation energy, the log-determinant of the coding rate,
the energy of a cross product, SIGReg's characteristic-function sums, the nuclear norm of MMCR.

Each is an :class:`torch.autograd.Function` with a closed-form backward, in the ``setup_context`` form with a
generated vmap rule (so :func:`torch.func.grad`, :func:`torch.func.vmap` and :func:`torch.func.jacrev` work), whose
backward is itself differentiable when the caller builds a graph (:mod:`redundancy._ops._autograd`). They expect
already-validated inputs in their compute dtype (float32 or float64); the loss files (``redundancy.barlow_twins``,
...) are the public entry points.
"""

from redundancy._ops.autocorrelation import off_diagonal_energy
from redundancy._ops.cross import cross_correlation_terms
from redundancy._ops.cross_energy import cross_product_energy
from redundancy._ops.gram import gram_terms
from redundancy._ops.logdet import half_logdet_identity_plus_gram
from redundancy._ops.nuclear_norm import nuclear_norm
from redundancy._ops.sigreg import characteristic_sums
from redundancy._ops.sigreg import epps_pulley_from_sums
from redundancy._ops.sigreg import sliced_epps_pulley
from redundancy._ops.standardize import Standardization
from redundancy._ops.standardize import standardization_of
from redundancy._ops.standardize import standardize

__all__ = [
    "Standardization",
    "characteristic_sums",
    "cross_correlation_terms",
    "cross_product_energy",
    "epps_pulley_from_sums",
    "gram_terms",
    "half_logdet_identity_plus_gram",
    "nuclear_norm",
    "off_diagonal_energy",
    "sliced_epps_pulley",
    "standardization_of",
    "standardize",
]
