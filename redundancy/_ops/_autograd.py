"""Whether a backward may write into the tensors its forward saved."""

import torch


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
