"""DTensor views: their placements name the process groups that ``group=`` and ``feature_group=`` name otherwise.

Views given as :class:`torch.distributed.tensor.DTensor` on a 1-D or 2-D :class:`~torch.distributed.DeviceMesh`
hold the global N×D matrices. A mesh dimension with placement ``Shard(0)`` splits the rows: its process group is
the loss's ``group``. One with ``Shard(1)`` splits the features: its group is ``feature_group`` (the losses that take
it). ``Replicate()`` repeats the block on the ranks of that dimension, which compute the same loss. The loss runs on
the local blocks (:meth:`DTensor.to_local`, differentiable) and comes back as a 0-dim DTensor replicated over the
mesh, with its terms alike; the views' gradients come back as DTensors with the views' placements. The gradient
convention is that of the explicit groups.
"""

from collections.abc import Callable
from collections.abc import Sequence
from typing import Any

import torch

try:
    from torch.distributed.tensor import DTensor
    from torch.distributed.tensor import Replicate
    from torch.distributed.tensor import Shard

    _DTENSOR_AVAILABLE = True
except ImportError:  # a build of torch without torch.distributed
    _DTENSOR_AVAILABLE = False


def is_dtensor(value: object) -> bool:
    """Whether ``value`` is a :class:`~torch.distributed.tensor.DTensor`."""
    return _DTENSOR_AVAILABLE and isinstance(value, DTensor)


def unwrap(
    loss_name: str, option_names: frozenset[str], names: Sequence[str], views: Sequence[Any], options: dict[str, Any]
) -> tuple[tuple[torch.Tensor, ...], dict[str, Any], Callable[[Any], Any]]:
    """``(local views, options, wrap)`` for DTensor ``views``; ``wrap(outputs)`` makes the outputs replicated DTensors.

    Raises a :class:`TypeError` or :class:`ValueError` naming the argument when the views mix DTensors and tensors,
    lie on different meshes or placements, use a placement other than ``Shard(0)``, ``Shard(1)`` and
    ``Replicate()``, split one axis over two mesh dimensions, or come with an explicit ``group``,
    ``feature_group`` or ``distributed`` (the placements say those).
    """
    views = views[: len(names)]
    first = views[0]
    for name, view in zip(names, views, strict=True):
        if not is_dtensor(view):
            kind = type(view).__name__
            raise TypeError(f"{loss_name}: {names[0]} is a DTensor, so {name} must be one too, got {kind}")
        if view.device_mesh != first.device_mesh or tuple(view.placements) != tuple(first.placements):
            raise ValueError(
                f"{loss_name}: {name} must be on the device mesh of {names[0]} with the same placements, got "
                f"{tuple(view.placements)} on {view.device_mesh} and {tuple(first.placements)} on {first.device_mesh}"
            )
    for option, default in (("group", None), ("feature_group", None), ("distributed", "global")):
        if options.get(option, default) != default:
            raise ValueError(
                f"{loss_name}: {option}= does not go with DTensor views: their placements say which ranks hold "
                "which rows (Shard(0)) and features (Shard(1))"
            )
    mesh = first.device_mesh
    axes: dict[int, list[int]] = {0: [], 1: []}  # tensor dimension -> mesh dimensions that split it
    for mesh_dim, placement in enumerate(first.placements):
        if isinstance(placement, Shard) and placement.dim in (0, 1, -1, -2):
            axes[placement.dim % 2].append(mesh_dim)
        elif not isinstance(placement, Replicate):
            raise ValueError(
                f"{loss_name}: {names[0]} has placement {placement!r} on mesh dimension {mesh_dim}; the loss takes "
                "Shard(0) (rows), Shard(1) (features) and Replicate()"
            )
    for axis, what in ((0, "rows"), (1, "features")):
        if len(axes[axis]) > 1:
            raise ValueError(
                f"{loss_name}: {names[0]} splits its {what} over mesh dimensions {axes[axis]}; the loss takes one mesh "
                f"dimension per axis (flatten them into one)"
            )
    options = dict(options)
    if axes[1]:
        if "feature_group" not in option_names:
            raise ValueError(
                f"{loss_name} does not take views split by features (Shard(1)); barlow_twins_loss and vicreg_loss do"
            )
        options["feature_group"] = mesh.get_group(axes[1][0])
    if axes[0]:
        options["group"] = mesh.get_group(axes[0][0])
    elif not axes[1]:  # replicated everywhere: every rank holds the whole batch
        options["distributed"], options["group"] = "local", mesh.get_group(0)
    local = tuple(view.to_local() for view in views)

    def wrap(outputs):
        replicated = [Replicate()] * mesh.ndim

        def as_dtensor(tensor: torch.Tensor):
            return DTensor.from_local(tensor, mesh, replicated, run_check=False)

        if isinstance(outputs, torch.Tensor):
            return as_dtensor(outputs)
        return type(outputs)(*(as_dtensor(tensor) for tensor in outputs))

    return local, options, wrap
