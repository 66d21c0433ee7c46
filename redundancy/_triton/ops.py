"""``torch.library`` custom ops of the Triton backend, their fake kernels, and the autograd Function over them.

Two custom ops, so that ``torch.compile`` sees opaque, shape-known calls and never traces into Triton:

- ``redundancy::barlow_twins_terms_forward(z1, z2, standardize, correction, eps, target, algorithm)`` returns the
  invariance and redundancy terms and what the backward reads: the (5, D) statistics
  ``mean1, rstd1, mean2, rstd2, diag(C)``, the two N×N Grams (Gram algorithm; empty for cross) and the
  (2, N) row sums of the standardized views (Gram algorithm with a non-zero target; empty otherwise).
- ``redundancy::barlow_twins_terms_backward(...)`` returns ``dz1, dz2`` (empty when not needed).

:class:`BarlowTwinsTermsFunction` differentiates the forward op with the backward op. It is an autograd
Function in the ``setup_context`` form, with a ``vmap`` rule, so ``torch.func.grad`` and ``vmap`` transform
the loss; its backward is first-order (a second derivative raises an error naming ``create_graph``).

The options are those of the public functions: ``standardize`` (``False``: the views are used as they are),
``correction`` (the variance divided by ``N - correction``, as :func:`torch.var`) and ``eps``.

This module imports torch only; the implementations import :mod:`redundancy._triton.launch` (and so
Triton) when they first run. Nothing imports this module back: the dependency goes one way.
"""

import torch

from redundancy._ops._autograd import with_cached_signature
from redundancy._validation import compute_dtype

# ------------------------------------------------------------------------------------------- custom ops


def _launch():
    """:mod:`redundancy._triton.launch`, which imports Triton: imported when an op first runs."""
    from redundancy._triton import launch

    return launch


@torch.library.custom_op("redundancy::barlow_twins_terms_forward", mutates_args=())
def barlow_twins_terms_forward(
    z1: torch.Tensor,
    z2: torch.Tensor,
    standardize: bool,
    correction: int,
    eps: float,
    target: float,
    algorithm: str,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(invariance, redundancy, stats, gram_a, gram_b, row_sums)`` of raw views z1, z2 (module docstring)."""
    return _launch().forward(**locals())  # every argument, by name


@barlow_twins_terms_forward.register_fake
def _(z1, z2, standardize, correction, eps, target, algorithm):
    n, d = z1.shape
    acc_dtype = compute_dtype(z1)
    gram_shape = (n, n) if algorithm == "gram" else (0,)
    row_shape = (2, n) if algorithm == "gram" and target != 0.0 else (0,)
    return (
        z1.new_empty((), dtype=acc_dtype),
        z1.new_empty((), dtype=acc_dtype),
        z1.new_empty((5, d), dtype=acc_dtype),
        z1.new_empty(gram_shape, dtype=acc_dtype),
        z1.new_empty(gram_shape, dtype=acc_dtype),
        z1.new_empty(row_shape, dtype=acc_dtype),
    )


@torch.library.custom_op("redundancy::barlow_twins_terms_backward", mutates_args=())
def barlow_twins_terms_backward(
    grad_invariance: torch.Tensor,
    grad_redundancy: torch.Tensor,
    z1: torch.Tensor,
    z2: torch.Tensor,
    stats: torch.Tensor,
    gram_a: torch.Tensor,
    gram_b: torch.Tensor,
    row_sums: torch.Tensor,
    standardize: bool,
    correction: int,
    target: float,
    algorithm: str,
    needs_grad_z1: bool,
    needs_grad_z2: bool,
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(dz1, dz2)`` in the dtype of the views; an empty tensor for a view whose gradient is not needed."""
    return _launch().backward(**locals())  # every argument, by name


@barlow_twins_terms_backward.register_fake
def _(grad_invariance, grad_redundancy, z1, z2, stats, gram_a, gram_b, row_sums, standardize, correction, target,
      algorithm, needs_grad_z1, needs_grad_z2):  # fmt: skip
    dz1 = torch.empty_like(z1, memory_format=torch.contiguous_format) if needs_grad_z1 else z1.new_empty(0)
    dz2 = torch.empty_like(z2, memory_format=torch.contiguous_format) if needs_grad_z2 else z2.new_empty(0)
    return dz1, dz2


@barlow_twins_terms_backward.register_vmap
def _(info, in_dims, *arguments):
    """``torch.func.vmap`` of the backward (``vmap(grad(loss))``): a loop over the batch of views."""
    results = [
        barlow_twins_terms_backward(
            *(
                argument.select(dim, index) if dim is not None else argument
                for argument, dim in zip(arguments, in_dims, strict=True)
            )
        )
        for index in range(info.batch_size)
    ]
    return tuple(torch.stack(parts) for parts in zip(*results, strict=True)), (0, 0)


class BarlowTwinsTermsFunction(torch.autograd.Function):
    """The differentiable ``(invariance, redundancy, ...)`` of the forward custom op (``setup_context`` form, so
    ``torch.func.grad`` can transform it); its backward is the backward custom op.

    The backward is first-order only: asked for a graph of the gradient (``create_graph=True``, a gradient
    penalty) it returns gradients whose own differentiation raises (:class:`_FirstOrderGradient`), never a
    gradient whose derivative would be silently wrong.
    """

    @staticmethod
    def forward(z1, z2, standardize, correction, eps, target, algorithm):
        return barlow_twins_terms_forward(z1, z2, standardize, correction, eps, target, algorithm)

    @staticmethod
    def setup_context(ctx, inputs, output):
        z1, z2, standardize, correction, _eps, target, algorithm = inputs
        _invariance, _redundancy, stats, gram_a, gram_b, row_sums = output
        ctx.mark_non_differentiable(stats, gram_a, gram_b, row_sums)
        ctx.save_for_backward(z1, z2, stats, gram_a, gram_b, row_sums)
        ctx.options = (standardize, correction, target, algorithm)  # in the order the backward op takes them

    @staticmethod
    def vmap(info, in_dims, z1, z2, standardize, correction, eps, target, algorithm):
        """``torch.func.vmap``: the kernels take one pair of views, so a batch of pairs is a loop over it."""
        dim1, dim2 = in_dims[0], in_dims[1]
        results = [
            BarlowTwinsTermsFunction.apply(
                z1.select(dim1, index) if dim1 is not None else z1,
                z2.select(dim2, index) if dim2 is not None else z2,
                standardize,
                correction,
                eps,
                target,
                algorithm,
            )
            for index in range(info.batch_size)
        ]
        return tuple(torch.stack(parts) for parts in zip(*results, strict=True)), (0,) * 6

    @staticmethod
    def backward(ctx, grad_invariance, grad_redundancy, *_unused_grads):
        saved = ctx.saved_tensors  # z1, z2, stats, gram_a, gram_b, row_sums: in the order the backward op takes
        z1, z2, stats = saved[:3]
        needs_grad_z1, needs_grad_z2 = ctx.needs_input_grad[0], ctx.needs_input_grad[1]
        if grad_invariance is None:
            grad_invariance = torch.zeros((), dtype=stats.dtype, device=stats.device)
        if grad_redundancy is None:
            grad_redundancy = torch.zeros((), dtype=stats.dtype, device=stats.device)
        with torch.no_grad():  # the op has no autograd formula: _FirstOrderGradient stands for one
            dz1, dz2 = barlow_twins_terms_backward(
                grad_invariance, grad_redundancy, *saved, *ctx.options, needs_grad_z1, needs_grad_z2
            )
        dz1, dz2 = dz1 if needs_grad_z1 else None, dz2 if needs_grad_z2 else None
        depends_on = [tensor for tensor in (z1, z2, grad_invariance, grad_redundancy) if tensor.requires_grad]
        if torch.is_grad_enabled() and depends_on:  # create_graph=True: the gradients must not look constant
            dz1, dz2 = (None if dz is None else _FirstOrderGradient.apply(dz, *depends_on) for dz in (dz1, dz2))
        return (dz1, dz2, None, None, None, None, None)


@with_cached_signature
class _FirstOrderGradient(torch.autograd.Function):
    """A gradient of the Triton backward, linked to what it depends on so that differentiating it raises.

    Used when the caller asks for a graph of the gradient (``create_graph=True``; ``torch.func.grad`` does so
    too): the first-order gradient is right, and a second derivative through it is an error, never zeros.
    """

    generate_vmap_rule = True  # forward is a clone: vmap batches it like any torch operation

    @staticmethod
    def forward(gradient, *depends_on):
        return gradient.clone()

    @staticmethod
    def setup_context(ctx, inputs, output):
        pass

    @staticmethod
    def backward(ctx, *grads):
        raise RuntimeError(
            "backend='triton' computes first derivatives only: a gradient it returned under create_graph=True "
            "(a gradient penalty, double backward, nested torch.func transforms) cannot be differentiated "
            "again; use backend='torch', whose backward is differentiable"
        )
