"""The energy of a cross product, ``F = ‖XᵀY‖_F²``, with its Gram dual ``⟨X Xᵀ, Y Yᵀ⟩_F``.

For X (N×P) and Y (N×Q), ``K = XᵀY`` is P×Q; the Gram form uses the two N×N matrices ``G_X = X Xᵀ`` and
``G_Y = Y Yᵀ``. Backward, in closed form::

    dF/dX = 2 Y Kᵀ = 2 G_Y X,    dF/dY = 2 X K = 2 G_X Y

The Mixed Barlow Twins regularizer applies it to the mixing residual and each view (P = Q = D); the spectral
contrastive loss to the transposed views (the N×N pairwise products and their D×D dual).
"""

import torch
from torch.autograd.function import once_differentiable

from redundancy._ops._autocast import no_autocast


class _CrossProductEnergy(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: torch.Tensor, y: torch.Tensor, algorithm: str):
        with no_autocast(x.device):
            if algorithm == "cross":
                product = torch.mm(x.t(), y)
                flat = product.reshape(-1)
                energy = flat.dot(flat)
                ctx.save_for_backward(x, y, product)
            else:
                gram_x, gram_y = torch.mm(x, x.t()), torch.mm(y, y.t())
                energy = gram_x.reshape(-1).dot(gram_y.reshape(-1))
                ctx.save_for_backward(x, y, gram_x, gram_y)
        ctx.algorithm = algorithm
        return energy

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_energy: torch.Tensor):
        scale = grad_energy * 2.0
        with no_autocast(grad_energy.device):
            if ctx.algorithm == "cross":
                x, y, product = ctx.saved_tensors
                dx = torch.mm(y, product.t()).mul_(scale) if ctx.needs_input_grad[0] else None
                dy = torch.mm(x, product).mul_(scale) if ctx.needs_input_grad[1] else None
            else:
                x, y, gram_x, gram_y = ctx.saved_tensors
                dx = torch.mm(gram_y, x).mul_(scale) if ctx.needs_input_grad[0] else None
                dy = torch.mm(gram_x, y).mul_(scale) if ctx.needs_input_grad[1] else None
        return dx, dy, None


def cross_product_energy(x: torch.Tensor, y: torch.Tensor, *, algorithm: str) -> torch.Tensor:
    """``‖xᵀy‖_F²`` of ``x`` (N×P) and ``y`` (N×Q) through ``xᵀy`` (``"cross"``) or two N×N Grams (``"gram"``)."""
    return _CrossProductEnergy.apply(x, y, algorithm)
