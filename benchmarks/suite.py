"""The benchmark suite: every case of :mod:`benchmarks.cases` at every shape, side by side in one run.

For each shape, dtype and case it measures forward, backward and full (forward+backward) time as the median
with the 20th and 80th percentiles, the peak memory one full step adds beyond the inputs (CPU: the resident-set
high-water mark of a child process per case, reset after a warm-up step; CUDA: ``max_memory_allocated``), and
the achieved GFLOP/s from the FLOP count of the algorithm the case runs, next to this machine's measured
matmul throughput. Results go to JSON, a markdown table and plots, in a new folder under
``benchmarks/results/local/`` (which git ignores) or the folder ``--output`` names.

With ``--rounds R`` every case of a shape is timed R times, the cases taking turns within each round, and each
timing is the median of the R rounds' medians (p20–p80 across the rounds). On a shared machine whose speed drifts
over seconds, this compares the cases under the same conditions instead of giving each its own stretch of time.

    python -m benchmarks --device cpu --quick                 # smoke run (CI), under a minute
    python -m benchmarks --device cpu                         # the full CPU grid
    python -m benchmarks --shapes 256x8192 2048x8192 --cases reference redundancy-auto-torch --rounds 5
"""

import argparse
import json
import pathlib
import subprocess
import sys

import torch

from benchmarks import report
from benchmarks.cases import all_cases
from benchmarks.common import DTYPES
from benchmarks.common import add_output_option
from benchmarks.common import environment
from benchmarks.common import forward_backward
from benchmarks.common import make_views
from benchmarks.common import median_p20_p80
from benchmarks.common import parse_shape
from benchmarks.common import time_function
from benchmarks.memory_probe import measure as measure_peak_memory
from redundancy import cost

FULL_SHAPES = [(n, d) for n in (32, 128, 512, 2048) for d in (128, 512, 2048, 8192)]
QUICK_SHAPES = [(32, 64), (64, 256)]


def _sync(device: torch.device):
    return (lambda: torch.cuda.synchronize(device)) if device.type == "cuda" else None


def time_case(loss_fn, n: int, d: int, dtype: torch.dtype, device: torch.device, min_time: float, repeats: int) -> dict:
    """Forward, backward and full timings of one case at one shape (at least ``repeats`` calls each)."""
    z1, z2 = make_views(n, d, dtype=dtype, device=device)
    sync = _sync(device)

    def forward():
        return loss_fn(z1, z2)

    def backward(loss):
        loss.backward()

    def drop_gradients_then_forward():
        z1.grad = z2.grad = None
        return (loss_fn(z1, z2),)

    timed = {"sync": sync, "min_time": min_time, "min_repeats": repeats}
    timings = {
        "forward": time_function(forward, **timed),
        "backward": time_function(backward, setup=drop_gradients_then_forward, **timed),
        "full": time_function(forward_backward(loss_fn, z1, z2), **timed),
    }
    return {
        mode: {"median_s": t.median, "p20_s": t.p20, "p80_s": t.p80, "repeats": t.repeats}
        for mode, t in timings.items()
    }


def combine_rounds(rounds: list[dict]) -> dict:
    """One case's timings over interleaved rounds (each a :func:`time_case` result).

    Per mode: the median of the rounds' medians, the 20th and 80th percentiles across those medians, the calls
    timed in all, and the rounds' medians themselves. A single round is returned as it is.
    """
    if len(rounds) == 1:
        return rounds[0]
    combined = {}
    for mode in rounds[0]:
        medians = [timing[mode]["median_s"] for timing in rounds]
        median, p20, p80 = median_p20_p80(medians)
        combined[mode] = {
            "median_s": median,
            "p20_s": p20,
            "p80_s": p80,
            "repeats": sum(timing[mode]["repeats"] for timing in rounds),
            "round_medians_s": medians,
        }
    return combined


def peak_memory(case_name: str, n: int, d: int, dtype: str, device: torch.device) -> int:
    """Peak bytes one full step adds beyond its inputs, measured in a child process (CPU) or here (CUDA)."""
    if device.type == "cuda":
        return measure_peak_memory(case_name, n, d, dtype, str(device))
    probe = [sys.executable, "-m", "benchmarks.memory_probe", case_name, str(n), str(d), dtype, str(device)]
    done = subprocess.run(probe, capture_output=True, text=True, check=True, cwd=pathlib.Path(__file__).parents[1])
    return int(done.stdout.strip().splitlines()[-1])


def matmul_gflops(dtype: torch.dtype, device: torch.device, size: int, min_time: float) -> float:
    """This machine's measured throughput of one ``size``³ matrix product, in GFLOP/s."""
    a = torch.randn(size, size, device=device).to(dtype)
    b = torch.randn(size, size, device=device).to(dtype)
    timing = time_function(lambda: torch.mm(a, b), sync=_sync(device), min_time=min_time)
    return 2 * size**3 / timing.median / 1e9


def run(args) -> dict:
    device = torch.device(args.device)
    dtype = DTYPES[args.dtype]
    cases = all_cases(device)
    names = args.cases or [name for name in cases if not (args.quick and name == "reference-compiled")]
    unknown = [name for name in names if name not in cases]
    if unknown:
        raise SystemExit(f"unknown or unavailable case(s) {unknown}; available: {sorted(cases)}")
    if "lightly" not in cases:
        print("note: lightly is not installed, its case is skipped")
    env = environment()
    # The machine's matmul throughput is measured before the cases and again after each shape; the highest
    # measurement is the reference for "% of matmul" (on a shared machine a single one can catch a slow moment).
    matmul_size = 512 if args.quick else 2048
    samples = [matmul_gflops(dtype, device, matmul_size, args.min_time)]
    print(" ".join(f"{key}={value}" for key, value in env.items()), f"matmul_gflops={samples[0]:.1f}", flush=True)

    rows = []
    for n, d in args.shapes:
        row = {"n": n, "d": d, "dtype": args.dtype, "cases": {}}
        loss_fns = {name: cases[name].make() for name in names}
        rounds = {name: [] for name in names}
        for round_index in range(args.rounds):
            for name in names:
                rounds[name].append(time_case(loss_fns[name], n, d, dtype, device, args.min_time, args.repeats))
            if round_index < args.rounds - 1:
                samples.append(matmul_gflops(dtype, device, matmul_size, args.min_time))
        for name in names:
            case = cases[name]
            result = combine_rounds(rounds[name])
            algorithm = case.algorithm(n, d)
            result["algorithm"] = algorithm
            result["gflops_per_s"] = cost.barlow_twins_flops(algorithm, n, d) / result["full"]["median_s"] / 1e9
            result["peak_bytes"] = None if args.no_memory else peak_memory(name, n, d, args.dtype, device)
            row["cases"][name] = result
            print(report.progress_line(n, d, name, result), flush=True)
        rows.append(row)
        samples.append(matmul_gflops(dtype, device, matmul_size, args.min_time))
    env["matmul_gflops"] = max(samples)
    env["matmul_gflops_samples"] = samples
    return {
        "environment": env,
        "device": str(device),
        "dtype": args.dtype,
        "quick": args.quick,
        "rounds": args.rounds,
        "results": rows,
    }


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dtype", choices=sorted(DTYPES), default="float32")
    parser.add_argument("--shapes", nargs="+", type=parse_shape, metavar="NxD", help="default: the full grid")
    parser.add_argument("--cases", nargs="+", metavar="CASE", help="default: every available case")
    parser.add_argument("--min-time", type=float, default=None, help="seconds of timed calls per measurement")
    parser.add_argument("--repeats", type=int, default=5, help="at least this many timed calls per measurement")
    parser.add_argument(
        "--rounds", type=int, default=1, help="time the cases of each shape this many times, taking turns"
    )
    parser.add_argument("--quick", action="store_true", help="tiny shapes and short timings: a smoke test")
    parser.add_argument("--no-memory", action="store_true", help="skip the peak-memory measurements")
    add_output_option(parser, "suite")
    parser.add_argument("--no-plots", action="store_true")
    return parser


def main(argv=None) -> None:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.rounds < 1:
        parser.error(f"--rounds must be at least 1, got {args.rounds}")
    if args.shapes is None:
        args.shapes = QUICK_SHAPES if args.quick else FULL_SHAPES
    if args.min_time is None:
        args.min_time = 0.05 if args.quick else 1.0

    results = run(args)
    args.output.mkdir(parents=True, exist_ok=True)
    (args.output / "results.json").write_text(json.dumps(results, indent=2))
    table = report.write_tables(results, args.output)
    print()
    print(table)
    if not args.no_plots:
        for path in report.plots(results, args.output):
            print(f"wrote {path}")
    print(f"wrote {args.output / 'results.json'} and {args.output / 'results.md'}")
