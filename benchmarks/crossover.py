"""Where the Gram algorithm stops being faster than the cross algorithm: the measured N/D crossover.

For each D it times forward+backward of both algorithms over a grid of N around the FLOP-model crossover
(N = 0.75·D, see :mod:`redundancy.cost`) and reports the smallest N at which ``cross`` is at least as fast as
``gram``, as a fraction of D. Writes ``crossover.json`` (every timing) into a new folder under
``benchmarks/results/local/`` (which git ignores) or the folder ``--output`` names.

    python -m benchmarks.crossover --device cpu
    python -m benchmarks.crossover --ds 512 2048 --ratios 0.25 0.5 0.75 1 1.5
"""

import argparse
import functools
import json

import torch

from benchmarks.common import add_output_option
from benchmarks.common import environment
from benchmarks.common import forward_backward
from benchmarks.common import make_views
from benchmarks.common import time_function
from redundancy import barlow_twins_loss


def measure(d: int, ratios: list[float], device: torch.device, min_time: float) -> list[dict]:
    points = []
    for ratio in ratios:
        n = max(2, round(ratio * d))
        z1, z2 = make_views(n, d, device=device)
        sync = (lambda: torch.cuda.synchronize(device)) if device.type == "cuda" else None
        times = {}
        for algorithm in ("cross", "gram"):
            full = forward_backward(functools.partial(barlow_twins_loss, algorithm=algorithm), z1, z2)
            times[algorithm] = time_function(full, sync=sync, min_time=min_time).median
        points.append({"n": n, "d": d, "ratio": n / d, "cross_s": times["cross"], "gram_s": times["gram"]})
        print(f"D={d:<5} N={n:<5} N/D={n / d:.3f} cross {times['cross'] * 1e3:9.2f} ms  "
              f"gram {times['gram'] * 1e3:9.2f} ms", flush=True)
    return points


def crossover_ratio(points: list[dict]) -> float | None:
    """The first N/D at which cross is at least as fast as gram (None if gram wins everywhere measured)."""
    for point in sorted(points, key=lambda p: p["ratio"]):
        if point["cross_s"] <= point["gram_s"]:
            return point["ratio"]
    return None


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.crossover",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--ds", nargs="+", type=int, default=[128, 512, 2048, 8192])
    parser.add_argument("--ratios", nargs="+", type=float, default=[0.25, 0.375, 0.5, 0.625, 0.75, 0.875, 1.0, 1.25])
    parser.add_argument("--min-time", type=float, default=0.5)
    add_output_option(parser, "crossover")
    return parser


def main(argv=None) -> None:
    args = build_parser().parse_args(argv)

    device = torch.device(args.device)
    env = environment()
    print(" ".join(f"{key}={value}" for key, value in env.items()))
    summary = {}
    points = []
    for d in args.ds:
        measured = measure(d, args.ratios, device, args.min_time)
        points += measured
        summary[d] = crossover_ratio(measured)
    print()
    print("| D | measured crossover N/D (cross at least as fast as gram) |")
    print("|---:|---:|")
    for d, ratio in summary.items():
        print(f"| {d} | {'> ' + str(args.ratios[-1]) if ratio is None else f'{ratio:.3f}'} |")
    args.output.mkdir(parents=True, exist_ok=True)
    saved = args.output / "crossover.json"
    saved.write_text(json.dumps({"environment": env, "points": points, "crossover": summary}, indent=2))
    print(f"wrote {saved}")


if __name__ == "__main__":
    main()
