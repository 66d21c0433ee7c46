"""Barlow Twins with DistributedDataParallel: the loss of the global batch, whatever the number of processes.

Launch with one process per device (gloo on CPU, NCCL on GPUs)::

    torchrun --nproc_per_node=2 examples/ddp_barlow_twins.py --steps 20

(with ``redundancy`` installed, or from a checkout with ``PYTHONPATH=.``).

Each rank draws its own shard of synthetic data (two noisy views of the same points), a tiny MLP encoder embeds
both views, and :class:`redundancy.BarlowTwinsLoss` computes the loss of the batch of *all* ranks: the statistics
and the cross-correlation C are those of the concatenated batch and every rank gets the same value. Its default
gradient convention makes DDP's averaged gradients equal to those of one process on the whole batch, so the
learning rate does not depend on the number of processes. Rank 0 prints the loss of each step.
"""

import argparse
import os

import torch
import torch.distributed as dist
from torch import nn

from redundancy import BarlowTwinsLoss


def parse_arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=20, help="optimizer steps")
    parser.add_argument("--batch-size", type=int, default=64, help="rows per rank")
    parser.add_argument("--input-dim", type=int, default=32, help="features of the synthetic data")
    parser.add_argument("--embedding-dim", type=int, default=128, help="D of the embeddings")
    parser.add_argument("--lr", type=float, default=0.05, help="SGD learning rate")
    parser.add_argument(
        "--strategy", default="auto", choices=["auto", "all_reduce", "all_gather"], help="collective of the loss"
    )
    return parser.parse_args()


def encoder(input_dim: int, embedding_dim: int) -> nn.Module:
    """A tiny MLP encoder and projector; BatchNorm is left to the loss's own standardization."""
    return nn.Sequential(nn.Linear(input_dim, 64), nn.ReLU(), nn.Linear(64, embedding_dim))


def two_views(points: torch.Tensor, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Two "augmentations" of the same points: independent noise and a random feature dropout."""
    views = []
    for _ in range(2):
        noise = 0.2 * torch.randn(points.shape, generator=generator, device=points.device)
        keep = torch.rand(points.shape, generator=generator, device=points.device) > 0.1
        views.append((points + noise) * keep)
    return views[0], views[1]


def main() -> None:
    arguments = parse_arguments()
    use_cuda = torch.cuda.is_available()
    dist.init_process_group("nccl" if use_cuda else "gloo")
    rank, world_size = dist.get_rank(), dist.get_world_size()
    if use_cuda:
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0)))
        torch.cuda.set_device(device)
    else:
        device = torch.device("cpu")

    torch.manual_seed(0)  # the same initial weights on every rank (DDP also broadcasts rank 0's)
    model = nn.parallel.DistributedDataParallel(
        encoder(arguments.input_dim, arguments.embedding_dim).to(device),
        device_ids=[device.index] if use_cuda else None,
    )
    criterion = BarlowTwinsLoss(strategy=arguments.strategy)  # global batch, global gradient convention
    optimizer = torch.optim.SGD(model.parameters(), lr=arguments.lr, momentum=0.9)

    data = torch.Generator(device=device).manual_seed(1000 + rank)  # a different shard on every rank
    centres = torch.randn(
        8, arguments.input_dim, generator=torch.Generator(device=device).manual_seed(1), device=device
    )
    for step in range(arguments.steps):
        labels = torch.randint(len(centres), (arguments.batch_size,), generator=data, device=device)
        points = centres[labels] + 0.5 * torch.randn(
            arguments.batch_size, arguments.input_dim, generator=data, device=device
        )
        x1, x2 = two_views(points, data)
        loss = criterion(model(x1), model(x2))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        if rank == 0:
            print(f"step {step:4d}  global batch {arguments.batch_size * world_size:5d}  loss {loss.item():.4f}")

    dist.barrier()  # every rank has finished its last step before the group is destroyed
    dist.destroy_process_group()


if __name__ == "__main__":
    main()
