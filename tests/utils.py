"""Helpers shared by the tests: the dtype tolerance table, relative comparisons, spawned gloo process groups."""

import datetime
import os
import pathlib
import subprocess
import sys

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

#: Input dtype -> relative tolerance of the loss against the float64 reference evaluated on the same
#: (already rounded) inputs. The torch backend accumulates half-precision inputs in float32, so every dtype
#: is held to float32 accuracy; the loss is a sum of D + D(D-1) squares, hence the D-independent bound.
LOSS_RTOL = {torch.float64: 1e-10, torch.float32: 1e-5, torch.bfloat16: 1e-5, torch.float16: 1e-5}

#: Input dtype -> (rtol, atol) of input gradients against the float64 reference's gradients, after the
#: reference gradient is rounded to that dtype (half-precision gradients come back in their own dtype).
GRAD_TOL = {
    torch.float64: (1e-8, 0.0),
    torch.float32: (1e-4, 1e-6),
    torch.bfloat16: (2e-2, 1e-4),
    torch.float16: (2e-3, 1e-5),
}


#: The three standardizations of the views, by name: the options that ask for each.
STANDARDIZATIONS = {"biased": {"correction": 0}, "unbiased": {"correction": 1}, "none": {"standardize": False}}


def relative_error(actual: torch.Tensor, expected: torch.Tensor) -> float:
    """``|actual - expected| / |expected|`` in float64 (the max-norm for tensors)."""
    actual, expected = actual.detach().double(), expected.detach().double()
    return ((actual - expected).abs().max() / expected.abs().max().clamp_min(1e-300)).item()


def assert_relative(actual: torch.Tensor, expected: torch.Tensor, rtol: float, what: str = "value") -> None:
    error = relative_error(actual, expected)
    assert error <= rtol, f"{what}: relative error {error:.3e} > {rtol:.1e}"


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


# torch 2.13's gloo processes sometimes abort while the interpreter shuts down, after all their work is done
# ("terminate called without an active exception", SIGABRT), with or without this project's code (a plain DDP
# script does it too, in about one run of ten on a loaded 2-core machine). A torchrun launch that reports it is
# repeated; any other failure, or the same abort three times, still fails the test. Spawned processes
# (spawn_gloo) mark that they have left the group, and the abort after that mark is ignored.
_TEARDOWN_ABORT = "terminate called without an active exception"


def run_torchrun(arguments: list[str], *, env: dict, timeout: float, attempts: int = 3):
    """``python -m torch.distributed.run --standalone ARGUMENTS``, repeated only after the teardown abort above."""
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", *arguments]
    for _ in range(attempts):
        completed = subprocess.run(command, env=env, capture_output=True, text=True, timeout=timeout)
        if completed.returncode == 0 or _TEARDOWN_ABORT not in completed.stderr:
            return completed
    return completed
