"""Run by tests/test_feature_parallel.py under torchrun (4 processes): DTensor views on a CPU mesh that
``init_device_mesh`` creates by itself (its process group reports the backend ``"undefined"``), with a fault on the
last rank that only the third exchange of the grid carries to every rank. Prints one line per check."""

import torch
import torch.distributed as dist
from torch.distributed.tensor import Shard
from torch.distributed.tensor import distribute_tensor
from torch.distributed.tensor import init_device_mesh

import redundancy


def main() -> None:
    mesh = init_device_mesh("cpu", (2, 2))
    rank = dist.get_rank()
    generator = torch.Generator().manual_seed(0)
    z1, z2 = (torch.randn(10, 12, generator=generator, dtype=torch.float64) for _ in range(2))
    a, b = (distribute_tensor(z, mesh, [Shard(0), Shard(1)]) for z in (z1, z2))
    expected = redundancy.barlow_twins_loss(z1, z2)
    got = redundancy.barlow_twins_loss(a, b).to_local()
    print(f"rank {rank} equal {bool(torch.allclose(got, expected, rtol=1e-10, atol=0.0))}", flush=True)
    try:
        rows = 2 if rank == 3 else None  # rank 3 passes fewer rows than rank 2, its feature group's other rank
        blocks = (a.to_local()[:rows], b.to_local()[:rows])
        redundancy.barlow_twins_loss(*blocks, group=mesh.get_group(0), feature_group=mesh.get_group(1))
        print(f"rank {rank} raised none", flush=True)
    except ValueError as error:
        print(f"rank {rank} raised {'same rows' in str(error)}", flush=True)
    dist.destroy_process_group()


if __name__ == "__main__":
    main()
