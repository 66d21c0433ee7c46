"""Forward+backward time and peak memory of ``barlow_twins_loss`` against the reference, side by side.

Both run in this one process on the same inputs, one shape after the other; peak memory is what one
forward+backward adds to the resident set beyond the inputs (CPU) or to the allocated CUDA memory.

    python -m benchmarks.versus_reference                       # the grid N in {32, 256, 2048} x D in {128, 1024, 8192}
    python -m benchmarks.versus_reference --shapes 256x8192 --json out.json
"""

import argparse
import json

import torch

from benchmarks.common import (
    environment,
    forward_backward,
    make_views,
    peak_memory_cpu,
    peak_memory_cuda,
    time_function,
    use_mmap_for_large_allocations,
)
from redundancy import barlow_twins_loss, cost
from redundancy.reference import barlow_twins_loss_reference

DEFAULT_SHAPES = [(n, d) for n in (32, 256, 2048) for d in (128, 1024, 8192)]
DTYPES = {"float32": torch.float32, "float64": torch.float64, "bfloat16": torch.bfloat16}


def parse_shape(text: str) -> tuple[int, int]:
    n, d = text.lower().split("x")
    return int(n), int(d)


def measure(n: int, d: int, *, dtype: torch.dtype, device: torch.device, min_time: float) -> dict:
    z1, z2 = make_views(n, d, dtype=dtype, device=device)
    cases = {
        "reference": barlow_twins_loss_reference,
        "redundancy": barlow_twins_loss,
    }
    row = {"n": n, "d": d, "dtype": str(dtype).removeprefix("torch."), "algorithm": cost.choose_algorithm(n, d)}
    for name, loss_fn in cases.items():
        run = forward_backward(loss_fn, z1, z2)
        if device.type == "cuda":
            run_synced = run

            def run(run_synced=run_synced):
                run_synced()
                torch.cuda.synchronize(device)

            memory = peak_memory_cuda(run, device)
        else:
            memory = peak_memory_cpu(run)
        timing = time_function(run, min_time=min_time, min_repeats=3)
        row[name] = {"median_s": timing.median, "p20_s": timing.p20, "p80_s": timing.p80,
                     "repeats": timing.repeats, "peak_bytes": memory}
    flops = cost.barlow_twins_flops(row["algorithm"], n, d)
    row["redundancy"]["gflops_per_s"] = flops / row["redundancy"]["median_s"] / 1e9
    row["speedup"] = row["reference"]["median_s"] / row["redundancy"]["median_s"]
    row["memory_ratio"] = row["redundancy"]["peak_bytes"] / max(row["reference"]["peak_bytes"], 1)
    return row


def markdown_table(rows: list[dict]) -> str:
    lines = [
        "| N | D | algorithm | reference ms (p20–p80) | redundancy ms (p20–p80) | speed-up | "
        "reference peak MiB | redundancy peak MiB | memory ratio | GFLOP/s |",
        "|---:|---:|:---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for row in rows:
        ref, ours = row["reference"], row["redundancy"]
        lines.append(
            f"| {row['n']} | {row['d']} | {row['algorithm']} "
            f"| {ref['median_s'] * 1e3:.2f} ({ref['p20_s'] * 1e3:.2f}–{ref['p80_s'] * 1e3:.2f}) "
            f"| {ours['median_s'] * 1e3:.2f} ({ours['p20_s'] * 1e3:.2f}–{ours['p80_s'] * 1e3:.2f}) "
            f"| {row['speedup']:.1f}× | {ref['peak_bytes'] / 2**20:.1f} | {ours['peak_bytes'] / 2**20:.1f} "
            f"| {row['memory_ratio']:.3f} | {ours['gflops_per_s']:.1f} |"
        )
    return "\n".join(lines)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shapes", nargs="+", type=parse_shape, default=DEFAULT_SHAPES, metavar="NxD")
    parser.add_argument("--dtype", choices=sorted(DTYPES), default="float32")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--min-time", type=float, default=1.0, help="seconds of timed calls per case (default 1)")
    parser.add_argument("--json", help="also write the results here")
    args = parser.parse_args(argv)

    device = torch.device(args.device)
    if device.type == "cpu":
        use_mmap_for_large_allocations()
    env = environment()
    print(" ".join(f"{key}={value}" for key, value in env.items()))
    rows = []
    for n, d in args.shapes:
        rows.append(measure(n, d, dtype=DTYPES[args.dtype], device=device, min_time=args.min_time))
        print(markdown_table(rows[-1:]).splitlines()[-1], flush=True)
    print()
    print(markdown_table(rows))
    if args.json:
        with open(args.json, "w") as out:
            json.dump({"environment": env, "dtype": args.dtype, "device": str(device), "results": rows}, out, indent=2)


if __name__ == "__main__":
    main()
