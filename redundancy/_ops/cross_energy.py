"""The energy of a cross product, ``F = ‖XᵀY‖_F²``, with its Gram dual ``⟨X Xᵀ, Y Yᵀ⟩_F``.

For X (N×P) and Y (N×Q), ``K = XᵀY`` is P×Q; the Gram form uses the two N×N matrices ``G_X = X Xᵀ`` and
``G_Y = Y Yᵀ``. Backward, in closed form::

    dF/dX = 2 Y Kᵀ = 2 G_Y X,    dF/dY = 2 X K = 2 G_X Y

The Mixed Barlow Twins regularizer applies it to the mixing residual and each view (P = Q = D); the spectral
contrastive loss to the transposed views (the N×N pairwise products and their D×D dual). When the caller builds
a graph of the backward (``create_graph=True``), the backward recomputes the same closed form in differentiable
operations. The energies are summed pairwise (:mod:`redundancy._ops.reductions`), not in a few long float32 sums.
"""

import torch

from redundancy._ops._autocast import no_autocast
from redundancy._ops._autograd import builds_graph
from redundancy._ops._autograd import with_direct_apply
from redundancy._ops.reductions import sum_of_products
from redundancy._ops.reductions import sum_of_squares


@with_direct_apply
class _CrossProductEnergy(torch.autograd.Function):
    generate_vmap_rule = True

    @staticmethod
    def forward(x: torch.Tensor, y: torch.Tensor, algorithm: str):
        with no_autocast(x.device):
            if algorithm == "cross":
                product = torch.mm(x.t(), y)
                return sum_of_squares(product), product
            gram_x, gram_y = torch.mm(x, x.t()), torch.mm(y, y.t())
            return sum_of_products(gram_x, gram_y), gram_x, gram_y

    @staticmethod
    def setup_context(ctx, inputs, output):
        x, y, algorithm = inputs
        ctx.mark_non_differentiable(*output[1:])
        ctx.set_materialize_grads(False)
        ctx.save_for_backward(x, y, *output[1:])
        ctx.algorithm = algorithm

    @staticmethod
    def backward(ctx, grad_energy: torch.Tensor, *_):
        x, y, *saved = ctx.saved_tensors
        if grad_energy is None:
            return None, None, None
        scale = grad_energy * 2.0
        need_x, need_y = ctx.needs_input_grad[0], ctx.needs_input_grad[1]
        with no_autocast(grad_energy.device):
            if builds_graph():
                if ctx.algorithm == "cross":
                    product = torch.mm(x.t(), y)
                    dx = torch.mm(y, product.t()) * scale if need_x else None
                    dy = torch.mm(x, product) * scale if need_y else None
                else:
                    dx = torch.mm(torch.mm(y, y.t()), x) * scale if need_x else None
                    dy = torch.mm(torch.mm(x, x.t()), y) * scale if need_y else None
                return dx, dy, None
            if ctx.algorithm == "cross":
                (product,) = saved
                dx = torch.mm(y, product.t()).mul_(scale) if need_x else None
                dy = torch.mm(x, product).mul_(scale) if need_y else None
            else:
                gram_x, gram_y = saved
                dx = torch.mm(gram_y, x).mul_(scale) if need_x else None
                dy = torch.mm(gram_x, y).mul_(scale) if need_y else None
        return dx, dy, None


def cross_product_energy(x: torch.Tensor, y: torch.Tensor, *, algorithm: str) -> torch.Tensor:
    """``‖xᵀy‖_F²`` of ``x`` (N×P) and ``y`` (N×Q) through ``xᵀy`` (``"cross"``) or two N×N Grams (``"gram"``)."""
    return _CrossProductEnergy.apply(x, y, algorithm)[0]
