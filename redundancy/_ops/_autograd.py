"""What a backward may do: write into the tensors its forward saved, or build a graph of its own.

Every op of :mod:`redundancy._ops` has two backwards. The fast one runs when the caller builds no graph (the usual
``loss.backward()``): it works on the tensors the forward saved, in place where it may. The differentiable one
runs when the caller builds a graph (``create_graph=True``, a gradient penalty, ``torch.func.grad``): it recomputes
the closed-form gradient from the op's saved *inputs* with differentiable torch operations, so that autograd
differentiates the gradient itself and second derivatives are exact.
"""

import inspect
from typing import Any
from typing import cast

import torch

try:  # the pieces of torch's own Function.apply that the direct path reuses (torch 2.13's Python apply)
    from torch._functorch.utils import unwrap_dead_wrappers

    _GENERIC_APPLY = cast(Any, torch.autograd.Function.apply).__func__
    #: Whether :func:`with_direct_apply` can skip the binding: with a torch whose ``Function.apply`` is a Python
    #: classmethod and whose functorch helpers it calls are there; otherwise every call takes torch's own ``apply``.
    DIRECT_APPLY = hasattr(torch._C, "_are_functorch_transforms_active")
except (ImportError, AttributeError):
    DIRECT_APPLY = False


def with_cached_signature(function: type[torch.autograd.Function]) -> type[torch.autograd.Function]:
    """Store the signature of ``function.forward`` on it, for :meth:`torch.autograd.Function.apply`.

    A Function in the ``setup_context`` form binds its arguments to ``forward``'s signature on every call, and
    :func:`inspect.signature` rebuilds that signature each time unless the function carries it: about 20 µs per
    call on the CPU, as much as the whole loss of a small batch.
    """
    cast(Any, function.forward).__signature__ = inspect.signature(function.forward)
    return function


def with_direct_apply(function: type[torch.autograd.Function]) -> type[torch.autograd.Function]:
    """:func:`with_cached_signature`, and an ``apply`` that skips the binding where it has nothing to do.

    :meth:`torch.autograd.Function.apply` of the ``setup_context`` form binds the arguments to ``forward``'s
    signature on every call (to fill in defaults and keywords) before it hands them to autograd's own ``apply``:
    about 10 µs of Python per call, a tenth of a whole small loss. A call that passes every parameter of
    ``forward`` by position, outside the transforms of :mod:`torch.func` and outside ``torch.compile``, has nothing
    to bind: it goes straight to autograd's ``apply`` (after the same unwrapping of tensors left over from finished
    :mod:`torch.func` transforms). Every other call takes the generic path.
    """
    with_cached_signature(function)
    parameters = inspect.signature(function.forward).parameters.values()
    variadic = any(p.kind == p.VAR_POSITIONAL for p in parameters)
    fixed = sum(p.kind == p.POSITIONAL_OR_KEYWORD for p in parameters)
    if any(p.kind not in (p.POSITIONAL_OR_KEYWORD, p.VAR_POSITIONAL) for p in parameters):
        raise TypeError(f"{function.__name__}.forward must take positional parameters only")
    if not DIRECT_APPLY:
        return function
    generic_apply = _GENERIC_APPLY

    def apply(cls, *args, **kwargs):
        if (
            kwargs
            or len(args) < fixed
            or (len(args) > fixed and not variadic)
            or torch._C._are_functorch_transforms_active()
            or torch.compiler.is_compiling()
        ):
            return generic_apply(cls, *args, **kwargs)
        return super(torch.autograd.Function, cls).apply(*unwrap_dead_wrappers(args))

    apply.__doc__ = torch.autograd.Function.apply.__doc__
    cast(Any, function).apply = classmethod(apply)
    return function


def saved_tensors_die_after_backward() -> bool:
    """``True`` inside a backward run without ``retain_graph``: the tensors the forward saved are released once
    it returns, so an op may reuse the memory of those it created itself (never of its inputs) for its
    gradients, as AOTAutograd's donated buffers do. ``False`` when the graph is kept for another backward, when
    PyTorch cannot say, and while ``torch.compile`` traces the backward (the compiled graph plans its own memory).
    """
    if torch.compiler.is_compiling():
        return False
    try:
        return not torch._C._autograd._get_current_graph_task_keep_graph()
    except (AttributeError, RuntimeError):
        return False


def builds_graph() -> bool:
    """``True`` inside a backward whose result must itself be differentiable (``create_graph=True``, the
    transforms of :mod:`torch.func`): autograd runs the backward with gradient recording on exactly then."""
    return torch.is_grad_enabled()


def refuse_graph_with_collectives(batch, what: str) -> None:
    """Raise when a graph of the backward is asked for while ``batch`` spreads the op over several processes.

    The backward of a batch split over ranks sums over the ranks outside autograd, so its own derivative would miss
    the other ranks' share: an error is better than a silently wrong second derivative.
    """
    if batch is not None and builds_graph():
        raise RuntimeError(
            f"{what}: second derivatives (create_graph=True, torch.func transforms) are not supported for the "
            "global batch of several processes; call the loss with distributed='local', or differentiate "
            "without create_graph"
        )
