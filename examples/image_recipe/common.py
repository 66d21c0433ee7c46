"""Pieces shared by ``train.py`` and ``linear_eval.py``: process setup, sampling, checkpoints, logging."""

from __future__ import annotations

import json
import os
import pathlib
import time
from collections.abc import Iterator

import torch
import torch.distributed as dist
from torch.utils.data import DataLoader
from torch.utils.data import Dataset
from torch.utils.data import Sampler


class Process:
    """This process's place in the run: rank, world size and device (``torchrun`` sets the environment)."""

    def __init__(self, device: str = "auto") -> None:
        if device not in ("auto", "cuda", "cpu"):
            raise ValueError(f"device must be 'auto', 'cuda' or 'cpu', got {device!r}")
        if device == "cuda" and not torch.cuda.is_available():
            raise ValueError("device 'cuda' was asked for but torch.cuda.is_available() is False")
        self.distributed = int(os.environ.get("WORLD_SIZE", "1")) > 1
        use_cuda = torch.cuda.is_available() if device == "auto" else device == "cuda"
        self.local_rank = int(os.environ.get("LOCAL_RANK", "0"))
        if use_cuda:
            torch.cuda.set_device(self.local_rank)
            self.device = torch.device("cuda", self.local_rank)
        else:
            self.device = torch.device("cpu")
        if self.distributed and not dist.is_initialized():
            dist.init_process_group(backend="nccl" if use_cuda else "gloo")
        self.rank = dist.get_rank() if self.distributed else 0
        self.world_size = dist.get_world_size() if self.distributed else 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def local_batch_size(self, global_batch_size: int) -> int:
        if global_batch_size % self.world_size:
            raise ValueError(
                f"batch size {global_batch_size} must be divisible by the number of processes ({self.world_size})"
            )
        return global_batch_size // self.world_size

    def sum(self, values: list[float]) -> list[float]:
        """Elementwise sum over all processes (the values themselves in a single process)."""
        if not self.distributed:
            return values
        tensor = torch.tensor(values, dtype=torch.float64, device=self.device)
        dist.all_reduce(tensor)
        return tensor.tolist()

    def close(self) -> None:
        if self.distributed and dist.is_initialized():
            dist.barrier()  # every process has finished before the group is destroyed
            dist.destroy_process_group()


class ShardSampler(Sampler[int]):
    """Each process's share of a seeded permutation per epoch, resumable at a batch within the epoch.

    The permutation is the same on every process (seed + epoch); process ``r`` takes positions
    ``r, r + W, r + 2W, ...`` of it, truncated so that every process gets the same whole number of batches.
    """

    def __init__(self, size: int, *, rank: int, world_size: int, batch_size: int, seed: int = 0, shuffle=True) -> None:
        self.size, self.rank, self.world_size = size, rank, world_size
        self.batch_size, self.seed, self.shuffle = batch_size, seed, shuffle
        self.batches_per_epoch = size // (world_size * batch_size)
        if self.batches_per_epoch < 1:
            raise ValueError(
                f"the data set has {size} images, fewer than one global batch ({world_size} × {batch_size})"
            )
        self.epoch, self.start_batch = 0, 0

    def set_epoch(self, epoch: int, start_batch: int = 0) -> None:
        self.epoch, self.start_batch = epoch, start_batch

    def __iter__(self) -> Iterator[int]:
        if self.shuffle:
            order = torch.randperm(self.size, generator=torch.Generator().manual_seed(self.seed + self.epoch))
        else:
            order = torch.arange(self.size)
        mine = order[self.rank :: self.world_size][: self.batches_per_epoch * self.batch_size]
        return iter(mine[self.start_batch * self.batch_size :].tolist())

    def __len__(self) -> int:
        return (self.batches_per_epoch - self.start_batch) * self.batch_size


def make_loader(dataset: Dataset, sampler: Sampler, batch_size: int, workers: int, device: torch.device) -> DataLoader:
    return DataLoader(
        dataset,
        batch_size=batch_size,
        sampler=sampler,
        num_workers=workers,
        pin_memory=device.type == "cuda",
        drop_last=True,
        persistent_workers=False,
    )


def evaluation_loader(dataset: Dataset, process: Process, batch_size: int, workers: int) -> DataLoader:
    """Every image exactly once over all processes (process r takes r, r + W, ...), in order."""
    indices = list(range(process.rank, len(dataset), process.world_size))
    subset = torch.utils.data.Subset(dataset, indices)
    return DataLoader(subset, batch_size=batch_size, num_workers=workers, pin_memory=process.device.type == "cuda")


def save_checkpoint(path: pathlib.Path, state: dict) -> None:
    """Write ``state`` atomically (to a temporary file, then renamed)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_suffix(".tmp")
    torch.save(state, temporary)
    temporary.replace(path)


class Logger:
    """JSON lines to stdout and to ``folder/stats.jsonl``, from the main process only."""

    def __init__(self, folder: pathlib.Path, enabled: bool) -> None:
        self.enabled = enabled
        self.start = time.time()
        self.path = folder / "stats.jsonl"
        if enabled:
            folder.mkdir(parents=True, exist_ok=True)

    def __call__(self, **record) -> None:
        if not self.enabled:
            return
        record = {"time": round(time.time() - self.start, 1), **record}
        line = json.dumps(record)
        print(line, flush=True)
        with open(self.path, "a") as file:
            file.write(line + "\n")
