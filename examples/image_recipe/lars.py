"""LARS (You et al., 2017) as the Barlow Twins paper uses it, and its learning-rate schedule.

For every parameter ``w`` with gradient ``g`` of a group that is adapted:

    u = g + wd·w,   u ← u · η‖w‖/‖u‖ (when both norms are positive),   m ← μ·m + u,   w ← w − lr·m.

Biases and normalization parameters (every 1-D parameter) are excluded from both weight decay and the trust
ratio and get their own learning rate, as in the paper: 0.2 for weights and 0.0048 for biases per 256 images of
global batch, 10 epochs of linear warm-up, then cosine decay to 1/1000 of the peak.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

import torch
from torch import nn

WEIGHTS_LR_PER_256 = 0.2
BIASES_LR_PER_256 = 0.0048


class LARS(torch.optim.Optimizer):
    """Layer-wise adaptive rate scaling with momentum; a group with ``exclude=True`` is plain SGD + momentum.

    Args:
        params: parameters or parameter groups (a group may set ``exclude``, ``lr``, ``weight_decay``...).
        lr: learning rate.
        weight_decay: decoupled from nothing, added to the gradient before the trust ratio.
        momentum: heavy-ball momentum μ.
        eta: trust coefficient η.
        exclude: default for groups that do not say: skip weight decay and the trust ratio.
    """

    def __init__(
        self,
        params: Iterable[torch.Tensor] | Iterable[dict],
        *,
        lr: float,
        weight_decay: float = 1.5e-6,
        momentum: float = 0.9,
        eta: float = 0.001,
        exclude: bool = False,
    ) -> None:
        for name, value in (("lr", lr), ("weight_decay", weight_decay), ("momentum", momentum), ("eta", eta)):
            if value < 0:
                raise ValueError(f"{name} must be non-negative, got {value!r}")
        defaults = dict(lr=lr, weight_decay=weight_decay, momentum=momentum, eta=eta, exclude=exclude)
        super().__init__(params, defaults)

    @torch.no_grad()
    def step(self, closure=None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is None:
                    continue
                update = p.grad
                if not group["exclude"]:
                    update = update.add(p, alpha=group["weight_decay"])
                    param_norm = torch.linalg.vector_norm(p)
                    update_norm = torch.linalg.vector_norm(update)
                    one = torch.ones_like(param_norm)
                    trust = torch.where(
                        (param_norm > 0) & (update_norm > 0), group["eta"] * param_norm / update_norm, one
                    )
                    update = update.mul(trust)
                state = self.state[p]
                if "momentum_buffer" not in state:
                    state["momentum_buffer"] = torch.zeros_like(p)
                buffer = state["momentum_buffer"]
                buffer.mul_(group["momentum"]).add_(update)
                p.add_(buffer, alpha=-group["lr"])
        return loss


def lars_parameter_groups(
    model: nn.Module,
    *,
    weights_lr: float = WEIGHTS_LR_PER_256,
    biases_lr: float = BIASES_LR_PER_256,
    batch_size: int = 256,
) -> list[dict]:
    """Two groups: weights (≥2-D, adapted) and biases/normalization parameters (1-D, excluded).

    The learning rates are per 256 images and are scaled linearly with ``batch_size`` (the global batch).
    Each group keeps its peak rate in ``base_lr`` for :func:`adjust_learning_rate`.
    """
    weights = [p for p in model.parameters() if p.requires_grad and p.ndim > 1]
    biases = [p for p in model.parameters() if p.requires_grad and p.ndim <= 1]
    scale = batch_size / 256
    return [
        dict(params=weights, lr=weights_lr * scale, base_lr=weights_lr * scale, exclude=False),
        dict(params=biases, lr=biases_lr * scale, base_lr=biases_lr * scale, exclude=True),
    ]


def learning_rate_factor(step: int, *, total_steps: int, warmup_steps: int, final_factor: float = 0.001) -> float:
    """Linear warm-up from 0 to 1 over ``warmup_steps``, then cosine decay to ``final_factor`` at ``total_steps``.

    Example:
        >>> learning_rate_factor(0, total_steps=100, warmup_steps=10)
        0.0
        >>> learning_rate_factor(10, total_steps=100, warmup_steps=10)
        1.0
        >>> round(learning_rate_factor(100, total_steps=100, warmup_steps=10), 6)
        0.001
    """
    if step < warmup_steps:
        return step / warmup_steps
    progress = min(1.0, (step - warmup_steps) / max(1, total_steps - warmup_steps))
    return final_factor + (1 - final_factor) * 0.5 * (1 + math.cos(math.pi * progress))


def adjust_learning_rate(optimizer: torch.optim.Optimizer, factor: float) -> None:
    """Set every group's ``lr`` to its ``base_lr`` times ``factor``."""
    for group in optimizer.param_groups:
        group["lr"] = group["base_lr"] * factor
