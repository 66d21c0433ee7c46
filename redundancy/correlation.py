"""The matrices the losses are defined on, materialized for analysis: the standardized views and their
cross-correlation (the losses themselves never form them unless that is the cheaper way)."""

import torch

from redundancy._frame import Correction
from redundancy._ops._autocast import no_autocast
from redundancy._ops.standardize import standardization_of
from redundancy._ops.standardize import standardize_each
from redundancy._validation import check_embedding
from redundancy._validation import check_standardization
from redundancy._validation import check_views
from redundancy._validation import compute_dtype

__all__ = ["batch_standardize", "cross_correlation", "off_diagonal"]


def batch_standardize(
    z: torch.Tensor, *, correction: Correction = 0, standardize: bool = True, eps: float = 1e-5
) -> torch.Tensor:
    r"""Standardize each feature (column) of ``z`` over the batch: :math:`(z - \mu) / \sqrt{\sigma^2 + \epsilon}`.

    ``correction=0`` uses the biased variance (``BatchNorm1d`` in training mode without affine parameters),
    ``correction=1`` the unbiased one; ``standardize=False`` returns ``z`` unchanged. Statistics are accumulated in
    float32 (float64 for float64 inputs); the result has the dtype of ``z``. The backward is closed-form.

    Args:
        z: embeddings, shape ``(N, D)`` with ``N >= 2``.
        correction: the variance divisor ``N - correction``: ``0`` or ``1``.
        standardize: ``False`` returns ``z`` as it is.
        eps: added to the variance before the square root.

    Example:
        >>> import torch
        >>> from redundancy import batch_standardize
        >>> a = batch_standardize(torch.randn(64, 8) * 3 + 1)
        >>> mean, var = a.mean(0), a.var(0, correction=0)
        >>> torch.allclose(mean, torch.zeros(8), atol=1e-6), torch.allclose(var, torch.ones(8), atol=1e-4)
        (True, True)
    """
    check_standardization(standardize, correction, eps)
    standardization = standardization_of(standardize=standardize, correction=correction, eps=eps)
    check_embedding("z", z)
    with no_autocast(z.device):
        (a,) = standardize_each([z.to(compute_dtype(z))], standardization)
        return a.to(z.dtype)


def cross_correlation(
    z1: torch.Tensor, z2: torch.Tensor, *, correction: Correction = 0, standardize: bool = True, eps: float = 1e-5
) -> torch.Tensor:
    r"""The D×D cross-correlation matrix :math:`C = A^\top B / N` of the standardized views, for analysis.

    This materializes C (D² elements); the loss functions do not need it. Float32 for half-precision inputs.

    Args:
        z1: embeddings of the first view, shape ``(N, D)``.
        z2: embeddings of the second view, same shape.
        correction: the variance divisor ``N - correction`` (``0`` or ``1``), as in
            :func:`redundancy.barlow_twins_loss`.
        standardize: ``False`` uses the views as they are.
        eps: added to the variance before the square root.

    Example:
        >>> import torch
        >>> from redundancy import cross_correlation
        >>> z = torch.randn(128, 16)
        >>> torch.allclose(cross_correlation(z, z).diagonal(), torch.ones(16), atol=1e-4)
        True
    """
    check_standardization(standardize, correction, eps)
    standardization = standardization_of(standardize=standardize, correction=correction, eps=eps)
    check_views(("z1", "z2"), (z1, z2))
    dtype = compute_dtype(z1, z2)
    with no_autocast(z1.device):
        a, b = standardize_each((z1.to(dtype), z2.to(dtype)), standardization)
        return torch.mm(a.t(), b).div_(z1.shape[0])


def off_diagonal(x: torch.Tensor) -> torch.Tensor:
    """The off-diagonal entries of a square matrix, row by row, as a new 1-D tensor of ``n·(n-1)`` elements.

    A copy built by indexing (O(n²) memory), with the same order as the official implementation's
    ``off_diagonal``; the loss functions never call it.

    Example:
        >>> import torch
        >>> from redundancy import off_diagonal
        >>> off_diagonal(torch.arange(9.0).view(3, 3))
        tensor([1., 2., 3., 5., 6., 7.])
    """
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"x must be a torch.Tensor, got {type(x).__name__}")
    if x.ndim != 2 or x.shape[0] != x.shape[1]:
        raise ValueError(f"x must be a square matrix, got shape {tuple(x.shape)}")
    keep = ~torch.eye(x.shape[0], dtype=torch.bool, device=x.device)
    return x[keep]
