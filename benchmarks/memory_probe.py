"""Peak memory of one full step of one case, run alone (``python -m benchmarks.memory_probe CASE N D DTYPE DEVICE``).

On the CPU it runs in its own process, so that no other case's allocations are counted: it makes the inputs,
runs one warm-up step (a compiled case compiles there), resets the resident-set high-water mark and prints the
peak bytes one more step adds. On CUDA the suite calls :func:`measure` in its own process.
"""

import sys

import torch

from benchmarks.cases import all_cases
from benchmarks.common import DTYPES
from benchmarks.common import forward_backward
from benchmarks.common import make_views
from benchmarks.common import peak_memory_cpu
from benchmarks.common import peak_memory_cuda
from benchmarks.common import use_mmap_for_large_allocations


def measure(case_name: str, n: int, d: int, dtype: str, device: str) -> int:
    device = torch.device(device)
    if device.type == "cpu":
        use_mmap_for_large_allocations()
    loss_fn = all_cases(device)[case_name].make()
    z1, z2 = make_views(n, d, dtype=DTYPES[dtype], device=device)

    step = forward_backward(loss_fn, z1, z2)
    step()  # warm-up
    if device.type == "cuda":
        return peak_memory_cuda(step, device)
    return peak_memory_cpu(step)


if __name__ == "__main__":
    case_name, n, d, dtype, device = sys.argv[1:6]
    print(measure(case_name, int(n), int(d), dtype, device))
