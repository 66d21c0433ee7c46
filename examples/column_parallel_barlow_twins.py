"""Barlow Twins with a column-parallel projector on a 2-D grid of CPU processes: rows × features.

The projector's last Linear layer, the widest of a Barlow Twins model, is split by its output columns over the
ranks of a *feature group*, as tensor-parallel training stacks split wide layers; the batch is split by rows over
the ranks of a *row group*, as in data-parallel training. With 4 processes as 2×2, rank ``r·F + f`` holds rows
``r`` of the global batch and output columns ``f`` of the projector::

                       columns 0      columns 1        (feature group: the ranks of one row of the grid)
        rows 0         rank 0         rank 1
        rows 1         rank 2         rank 3
                   (row group: the ranks of one column of the grid)

:func:`redundancy.barlow_twins_loss` with ``group=`` (rows) and ``feature_group=`` (columns) computes the loss of
the full N×D embeddings on every rank without any rank holding them (docs: "Feature-parallel training").

Two gradients need care, and both are here:

- The backbone and the projector's first layers are replicated over the feature group: their output ``h`` feeds
  every column slice. In one process ``∂L/∂h`` is the sum of what each column slice sends back, so the
  column-parallel layer's input goes through :class:`CopyToFeatureGroup` (identity forward, all-reduce of the
  gradient over the feature group backward), after which every rank of a feature group holds the same gradient
  for the replicated layers.
- The loss's gradients follow its gradient convention over the row group only (the ranks of a feature group hold
  different parameters), so DDP averages over the row group (``process_group=``), for the replicated layers and
  for each rank's column slice alike. After it, every parameter's gradient is that of one process on the global
  batch, so learning rates carry over.

Data: scikit-learn's bundled digits (no download), with the augmentations of ``digits_barlow_twins.py``. To make
the run comparable with one process, every rank draws the same global batch and the same two views from the same
seed and keeps its own rows; the data loader of a real run would read each row group's rows only. The model
normalizes each sample on its own (GroupNorm, LayerNorm): no layer but the loss couples the rows of a batch, so
the 2×2 run computes what one process computes. (BatchNorm would need its statistics synchronized over the row
group: ``torch.nn.SyncBatchNorm`` with ``process_group=`` on GPUs.)

Run::

    torchrun --nproc-per-node 4 examples/column_parallel_barlow_twins.py      # 2×2: 2 row ranks × 2 feature ranks
    python examples/column_parallel_barlow_twins.py                          # the same training in one process

(with ``redundancy`` installed, or from a checkout with ``PYTHONPATH=.``). Rank 0 prints the loss of each logged
step, then the test accuracy of a linear probe (scikit-learn's logistic regression, all training labels) on the
trained backbone's features and on the same backbone at initialization; ``--out FILE`` writes every step's loss and
the accuracies as JSON. With the same ``--seed`` the two commands compute the same losses: with ``--dtype float64``
to rounding (the test suite checks the first steps at 1e-9 relative); in float32 the rounding of the reductions
differs between the two, and AdamW's normalized steps amplify it from step to step.
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import sys
import time

import torch
import torch.distributed as dist
from torch import nn
from torch.nn import functional as F

import redundancy

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
from digits_barlow_twins import augment  # data and probe
from digits_barlow_twins import embed  # data and probe
from digits_barlow_twins import linear_probe_accuracy  # data and probe
from digits_barlow_twins import load_digits_split  # data and probe

# ------------------------------------------------------------------------------------------------ the grid


class Grid:
    """This rank's place in an R×F grid: ``rank = r·F + f``, its row group and its feature group.

    Every rank creates every group (``new_group`` is collective), in the same order, and keeps its own two.
    In one process (no torch.distributed) the grid is 1×1 and both groups are ``None``.
    """

    def __init__(self, feature_ranks: int) -> None:
        if not dist.is_initialized():
            self.rows, self.features, self.row, self.feature = 1, 1, 0, 0
            self.row_group = self.feature_group = None
            return
        world_size, rank = dist.get_world_size(), dist.get_rank()
        if feature_ranks < 1 or world_size % feature_ranks:
            raise ValueError(f"--feature-ranks must divide the world size {world_size}, got {feature_ranks}")
        self.features, self.rows = feature_ranks, world_size // feature_ranks
        self.row, self.feature = divmod(rank, self.features)
        self.row_group = self.feature_group = None
        for f in range(self.features):  # the ranks of one column of the grid: the same features, other rows
            group = dist.new_group([r * self.features + f for r in range(self.rows)])
            if f == self.feature:
                self.row_group = group
        for r in range(self.rows):  # the ranks of one row of the grid: the same rows, other features
            group = dist.new_group([r * self.features + f for f in range(self.features)])
            if r == self.row:
                self.feature_group = group

    def loss_groups(self) -> dict:
        """``group=`` and ``feature_group=`` of the loss; ``None`` for a dimension that is not split."""
        return {
            "group": self.row_group if self.rows > 1 else None,
            "feature_group": self.feature_group if self.features > 1 else None,
        }


def own_slice(length: int, parts: int, index: int) -> slice:
    """The ``index``-th of ``parts`` contiguous slices of ``range(length)``, the first ones one longer if uneven."""
    base, extra = divmod(length, parts)
    start = index * base + min(index, extra)
    return slice(start, start + base + (index < extra))


# ------------------------------------------------------------------------------------- column parallelism


class CopyToFeatureGroup(torch.autograd.Function):
    """Identity in forward; in backward, the sum of the incoming gradient over the ranks of the feature group.

    Put in front of a column-parallel layer, whose input ``h`` is replicated over the feature group while each rank
    applies its own columns: the loss depends on ``h`` through every rank's columns, so ``∂L/∂h`` is the sum of each
    rank's part. (The "copy to the tensor-parallel region" operator of column-parallel layers.) First derivatives
    only: the backward's all-reduce is not recorded for a second one, which the loss refuses across the ranks of a
    feature group anyway.
    """

    @staticmethod
    def forward(h: torch.Tensor, group) -> torch.Tensor:
        return h.view_as(h)

    @staticmethod
    def setup_context(ctx, inputs, output) -> None:
        ctx.group = inputs[1]

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        grad = grad.contiguous().clone()
        dist.all_reduce(grad, group=ctx.group)
        return grad, None


class ColumnParallelLinear(nn.Module):
    """A bias-free ``nn.Linear`` of which this rank holds the output columns ``columns`` (rows of the weight).

    ``group`` is the feature group; ``None`` (one process) makes this a plain Linear layer of the given columns.
    """

    def __init__(self, full: nn.Linear, columns: slice, group=None) -> None:
        super().__init__()
        if full.bias is not None:
            raise ValueError("ColumnParallelLinear takes a Linear layer without bias")
        self.weight = nn.Parameter(full.weight.detach()[columns].clone())
        self.group = group

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        if self.group is not None:
            h = CopyToFeatureGroup.apply(h, self.group)
        return F.linear(h, self.weight)


# ------------------------------------------------------------------------------------------------- the model


def encoder(width: int) -> nn.Sequential:
    """A small CNN for 8×8 digits with per-sample normalization: 8×8 → 4×4 → global average, 4·width features."""

    def block(in_channels: int, out_channels: int) -> list[nn.Module]:
        return [
            nn.Conv2d(in_channels, out_channels, 3, padding=1, bias=False),
            nn.GroupNorm(4, out_channels),
            nn.ReLU(),
        ]

    return nn.Sequential(
        *block(1, width),
        *block(width, 2 * width),
        nn.MaxPool2d(2),
        *block(2 * width, 4 * width),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
    )


def build_model(width: int, hidden: int, embedding_dim: int, grid: Grid) -> nn.Sequential:
    """Backbone, projector hidden layer (replicated) and the projector's last layer (this rank's columns).

    Every rank builds the full model from the same seed and keeps its columns of the last layer, so that a grid run
    starts from the weights of the one-process run. (A model too wide for one device would initialize its slice.)
    """
    torch.manual_seed(0)
    backbone = encoder(width)
    last = nn.Linear(hidden, embedding_dim, bias=False)
    head = [nn.Linear(4 * width, hidden, bias=False), nn.LayerNorm(hidden), nn.ReLU()]
    columns = own_slice(embedding_dim, grid.features, grid.feature)
    return nn.Sequential(backbone, *head, ColumnParallelLinear(last, columns, grid.feature_group))


# ------------------------------------------------------------------------------------------------- training


def train(args: argparse.Namespace, grid: Grid, images: torch.Tensor) -> tuple[nn.Module, list[float]]:
    """Train for ``args.steps`` steps; return the backbone and the loss of every step (the same on every rank)."""
    if not 2 <= args.batch_size <= len(images):
        raise ValueError(f"--batch-size must be between 2 and {len(images)}, got {args.batch_size}")
    dtype = getattr(torch, args.dtype)
    model = build_model(args.width, args.hidden, args.embedding_dim, grid).to(dtype)
    if grid.rows > 1:
        model = nn.parallel.DistributedDataParallel(model, process_group=grid.row_group)
    criterion = redundancy.BarlowTwinsLoss(lambd=args.lambd, **grid.loss_groups())
    optimizer = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=args.weight_decay)
    generator = torch.Generator().manual_seed(args.seed)  # the same global batches and views on every rank
    rows = own_slice(args.batch_size, grid.rows, grid.row)
    leader = not dist.is_initialized() or dist.get_rank() == 0
    losses = []
    start = time.perf_counter()
    for step in range(args.steps):
        batch = images[torch.randperm(len(images), generator=generator)[: args.batch_size]].to(dtype)
        view1, view2 = augment(batch, generator), augment(batch, generator)
        z = model(torch.cat([view1[rows], view2[rows]]))  # one pass over both views of this rank's rows
        z1, z2 = z.chunk(2)
        loss = criterion(z1, z2)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
        if leader and (step % args.log_every == 0 or step == args.steps - 1):
            print(f"step {step:4d}  loss {losses[-1]:.6f}  ({time.perf_counter() - start:.1f} s)", flush=True)
    backbone = (model.module if grid.rows > 1 else model)[0]
    return backbone, losses


def probe_accuracy(backbone: nn.Module, split) -> float:
    """Test accuracy of a logistic-regression probe on the backbone's frozen features, with every training label."""
    backbone = backbone.float()
    return linear_probe_accuracy(
        embed(backbone, split.train_images),
        split.train_labels,
        embed(backbone, split.test_images),
        split.test_labels,
        inverse_regularization=0.1,
    )


def parse_arguments(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=100, help="optimizer steps (default: %(default)s)")
    parser.add_argument(
        "--batch-size", type=int, default=256, help="global batch, all row ranks (default: %(default)s)"
    )
    parser.add_argument("--width", type=int, default=16, help="encoder width; 4·width features (default: %(default)s)")
    parser.add_argument("--hidden", type=int, default=512, help="projector hidden width (default: %(default)s)")
    parser.add_argument(
        "--embedding-dim", type=int, default=2048, help="D, split over the feature ranks (default: %(default)s)"
    )
    parser.add_argument("--feature-ranks", type=int, default=2, help="F; the row ranks are W/F (default: %(default)s)")
    parser.add_argument("--lambd", type=float, default=0.0051, help="redundancy weight λ (default: %(default)s)")
    parser.add_argument("--lr", type=float, default=1e-3, help="AdamW learning rate (default: %(default)s)")
    parser.add_argument("--weight-decay", type=float, default=1e-4, help="AdamW weight decay (default: %(default)s)")
    parser.add_argument(
        "--dtype",
        default="float32",
        choices=["float32", "float64"],
        help="of the model and data (default: %(default)s)",
    )
    parser.add_argument("--seed", type=int, default=0, help="seed of the batches and views (default: %(default)s)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads per process (default: %(default)s)")
    parser.add_argument("--log-every", type=int, default=10, help="print every this many steps (default: %(default)s)")
    parser.add_argument(
        "--single-process", action="store_true", help="one process on the full model, even under torchrun"
    )
    parser.add_argument("--no-probe", action="store_true", help="skip the linear probe after training")
    parser.add_argument("--out", type=pathlib.Path, help="write the loss of every step here (JSON, rank 0)")
    args = parser.parse_args(argv)
    for name in ("steps", "width", "hidden", "embedding_dim", "feature_ranks", "threads", "log_every"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be at least 1, got {getattr(args, name)}")
    return args


def main(argv: list[str] | None = None) -> list[float]:
    args = parse_arguments(argv)
    torch.set_num_threads(args.threads)
    launched = "WORLD_SIZE" in os.environ and not args.single_process  # torchrun sets it
    if launched:
        dist.init_process_group("gloo")
    grid = Grid(args.feature_ranks)
    if args.embedding_dim < grid.features:
        raise ValueError(f"--embedding-dim ({args.embedding_dim}) must be at least --feature-ranks ({grid.features})")
    leader = not launched or dist.get_rank() == 0
    if leader:
        print(
            f"grid: {grid.rows} row rank(s) × {grid.features} feature rank(s); global batch {args.batch_size}, "
            f"D = {args.embedding_dim}",
            flush=True,
        )
    split = load_digits_split()
    backbone, losses = train(args, grid, split.train_images)
    record = {"grid": [grid.rows, grid.features], "losses": losses}
    if leader and not args.no_probe:
        trained = probe_accuracy(backbone, split)
        initial = probe_accuracy(build_model(args.width, args.hidden, args.embedding_dim, grid)[0], split)
        record["probe_accuracy"] = {"trained": trained, "initialization": initial}
        print(
            f"linear probe on the backbone's features, all {len(split.train_labels)} training labels: test accuracy "
            f"{trained:.1%} (the same backbone at initialization: {initial:.1%})",
            flush=True,
        )
    if args.out is not None and leader:
        args.out.write_text(json.dumps(record, indent=1))
    if launched:
        dist.barrier()  # every rank has finished before the groups are destroyed
        dist.destroy_process_group()
    return losses


if __name__ == "__main__":
    main()
