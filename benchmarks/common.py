"""Measurement helpers shared by the benchmark scripts: timing percentiles, peak memory, environment, gloo groups of
spawned processes (the tests use them too)."""

import argparse
import ctypes
import datetime
import gc
import os
import pathlib
import platform
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

import redundancy

#: Where a run writes when ``--output`` names no folder: a new folder per run under ``benchmarks/results/local/``,
#: which git ignores, so that a run never changes the committed results. To commit a run, name its folder with
#: ``--output``.
LOCAL_RESULTS = pathlib.Path(__file__).resolve().parent / "results" / "local"

#: Input dtypes of the CPU suite and of its memory probe, by the names the command line takes.
DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16, "float64": torch.float64}


def add_output_option(parser: argparse.ArgumentParser, name: str) -> None:
    """Add ``--output FOLDER`` to an entry point's parser, by default a new folder of :data:`LOCAL_RESULTS` named
    by the time (UTC) and ``name``: ``benchmarks/results/local/20260107T153012-suite``."""
    stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y%m%dT%H%M%S")
    parser.add_argument(
        "--output",
        type=pathlib.Path,
        default=LOCAL_RESULTS / f"{stamp}-{name}",
        metavar="FOLDER",
        help="write the results into this folder (default: a new folder under benchmarks/results/local/, which git "
        "ignores; name a folder of benchmarks/results/ to replace its committed results)",
    )


@dataclass(frozen=True)
class Timing:
    """Wall-clock seconds of repeated calls: median with the 20th and 80th percentiles."""

    median: float
    p20: float
    p80: float
    repeats: int


def time_function(
    fn: Callable[..., object],
    *,
    setup: Callable[[], tuple] | None = None,
    sync: Callable[[], None] | None = None,
    min_time: float = 1.0,
    min_repeats: int = 5,
    warmup: int = 1,
) -> Timing:
    """Time ``fn(*setup())``: ``warmup`` calls, then at least ``min_repeats`` and for at least ``min_time`` seconds.

    ``setup`` runs untimed before each call (for example the forward pass when timing the backward);
    ``sync`` waits for the device (``torch.cuda.synchronize``) before the clock is read.
    """
    sync = sync or (lambda: None)
    setup = setup or tuple
    for _ in range(warmup):
        fn(*setup())
    sync()
    times: list[float] = []
    start = time.perf_counter()
    while len(times) < min_repeats or time.perf_counter() - start < min_time:
        args = setup()
        sync()
        t0 = time.perf_counter()
        fn(*args)
        sync()
        times.append(time.perf_counter() - t0)
    return Timing(*median_p20_p80(times), len(times))


def median_p20_p80(samples: list[float]) -> tuple[float, float, float]:
    """The median and the 20th and 80th percentiles of ``samples`` (all three the sample itself when alone)."""
    if len(samples) == 1:
        return samples[0], samples[0], samples[0]
    deciles = statistics.quantiles(samples, n=10, method="inclusive")
    return statistics.median(samples), deciles[1], deciles[7]


def parse_shape(text: str) -> tuple[int, int]:
    """``"256x8192"`` -> ``(256, 8192)``; for the ``--shapes`` option of the benchmark scripts."""
    try:
        n, d = (int(part) for part in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"a shape is NxD, for example 256x8192, got {text!r}") from None
    return n, d


_M_MMAP_THRESHOLD = -3


def use_mmap_for_large_allocations() -> None:
    """Make glibc serve allocations of 64 KiB and more with mmap, so that freeing them lowers the RSS.

    Without it glibc's dynamic threshold keeps freed blocks of up to 32 MiB in the heap, and the resident set
    size stops following the tensors alive. Call once, before measuring :func:`peak_memory_cpu`.
    """
    ctypes.CDLL("libc.so.6").mallopt(_M_MMAP_THRESHOLD, 64 * 1024)


def _resident_kib() -> tuple[int, int]:
    """``(VmRSS, VmHWM)`` of this process in KiB."""
    values = {}
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith(("VmRSS:", "VmHWM:")):
                key, value = line.split(":")
                values[key] = int(value.split()[0])
    return values["VmRSS"], values["VmHWM"]


def peak_memory_cpu(fn: Callable[[], object]) -> int:
    """Peak resident memory (bytes) that one call of ``fn`` adds to what is alive before it.

    Resets the kernel's high-water mark (``/proc/self/clear_refs``), so it measures this call only.
    """
    gc.collect()
    with open("/proc/self/clear_refs", "w") as clear_refs:
        clear_refs.write("5")
    baseline, _ = _resident_kib()
    fn()
    _, peak = _resident_kib()
    return max(peak - baseline, 0) * 1024


def peak_memory_cuda(fn: Callable[[], object], device: torch.device) -> int:
    """Peak CUDA memory (bytes) that one call of ``fn`` allocates beyond what is alive before it."""
    torch.cuda.synchronize(device)
    baseline = torch.cuda.memory_allocated(device)
    torch.cuda.reset_peak_memory_stats(device)
    fn()
    torch.cuda.synchronize(device)
    return torch.cuda.max_memory_allocated(device) - baseline


#: Environment variables that change how the C allocator serves and returns memory, recorded with every run: on
#: the CPU a fresh N×D buffer costs page faults whenever glibc has returned the freed one to the system, and
#: ``MALLOC_TRIM_THRESHOLD_`` / ``MALLOC_MMAP_THRESHOLD_`` (or another allocator through ``LD_PRELOAD``) decide that.
ALLOCATOR_VARIABLES = ("MALLOC_TRIM_THRESHOLD_", "MALLOC_MMAP_THRESHOLD_", "GLIBC_TUNABLES", "LD_PRELOAD")


def environment() -> dict:
    """Device, library versions and date, recorded beside every result."""
    info = {
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "redundancy": redundancy.__version__,
        "torch": torch.__version__,
        "python": platform.python_version(),
        "machine": platform.machine(),
        "processor": _cpu_name(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
    }
    if torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name()
    allocator = {name: os.environ[name] for name in ALLOCATOR_VARIABLES if name in os.environ}
    if allocator:
        info["allocator"] = allocator
    return info


def _cpu_name() -> str:
    try:
        with open("/proc/cpuinfo") as cpuinfo:
            for line in cpuinfo:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor()


def forward_backward(loss_fn: Callable[..., torch.Tensor], z1: torch.Tensor, z2: torch.Tensor) -> Callable[[], None]:
    """A closure running ``loss_fn(z1, z2).backward()`` and dropping the gradients."""

    def run() -> None:
        loss_fn(z1, z2).backward()
        z1.grad = None
        z2.grad = None

    return run


def make_views(n: int, d: int, *, dtype=torch.float32, device="cpu", seed: int = 0):
    """Two correlated embeddings ``(N, D)`` that require gradients."""
    generator = torch.Generator(device=device).manual_seed(seed)
    z1 = torch.randn(n, d, generator=generator, device=device, dtype=torch.float32)
    z2 = 0.8 * z1 + 0.6 * torch.randn(n, d, generator=generator, device=device, dtype=torch.float32)
    return z1.to(dtype).requires_grad_(True), z2.to(dtype).requires_grad_(True)


# torch 2.13's gloo processes sometimes abort while the interpreter shuts down, after all their work is done
# ("terminate called without an active exception", SIGABRT), with or without this project's code (a plain DDP
# script does it too, in about one run of ten on a loaded 2-core machine). Each spawned rank marks that it has left
# the group; the abort after that mark is ignored, and a run aborted before it is repeated.


def spawn_gloo(body, world_size: int, directory: pathlib.Path, *, attempts: int = 3, timeout: float = 60.0) -> list:
    """Run ``body(rank, world_size)`` in ``world_size`` spawned processes of one gloo group on CPU.

    ``body`` must be a module-level function (it is pickled by name) that returns what ``torch.save`` can store;
    the result is the list of what each rank returned, in rank order. ``directory`` holds the rendezvous file
    and the results; ``timeout`` (seconds) is the process group's, after which a rank left waiting in a collective
    fails. A run whose process aborts at gloo's teardown (below) before all ranks are done is
    repeated, at most ``attempts`` runs in all.
    """
    for attempt in range(1, attempts + 1):
        run_directory = directory / f"attempt{attempt}"  # a fresh rendezvous file each time
        run_directory.mkdir()
        try:
            mp.start_processes(
                _run_rank,
                args=(body, world_size, run_directory, timeout),
                nprocs=world_size,
                join=True,
                start_method="spawn",
            )
        except mp.ProcessExitedException as error:
            # The gloo teardown abort described below: harmless once every rank has left the group; otherwise the
            # other ranks were stopped with the aborted one, and the run is repeated.
            if error.signal_name != "SIGABRT":
                raise
            if not all((run_directory / f"rank{rank}.left").exists() for rank in range(world_size)):
                if attempt == attempts:
                    raise
                continue
        return [torch.load(run_directory / f"rank{rank}.pt") for rank in range(world_size)]
    raise AssertionError("unreachable: the last attempt returns or raises")


def _run_rank(rank: int, body, world_size: int, directory: pathlib.Path, timeout: float) -> None:
    torch.set_num_threads(1)
    dist.init_process_group(
        "gloo",
        init_method=f"file://{os.path.join(directory, 'store')}",
        rank=rank,
        world_size=world_size,
        timeout=datetime.timedelta(seconds=timeout),
    )
    try:
        torch.save(body(rank, world_size), os.path.join(directory, f"rank{rank}.pt"))
    finally:
        dist.destroy_process_group()
    (directory / f"rank{rank}.left").touch()  # results saved and the group destroyed
