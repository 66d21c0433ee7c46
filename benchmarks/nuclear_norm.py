"""MMCR's nuclear norms: the op against ``torch.linalg.svdvals`` (what the official code calls), forward and backward.

``op`` is :func:`redundancy._ops.nuclear_norm.nuclear_norm` (float32 inputs: the smaller Gram in float64 and its
eigendecomposition); ``svdvals`` is ``torch.linalg.svdvals(x).sum()`` in the input's dtype, whose backward computes
the singular vectors as well; ``svdvals_float64`` the same on the float64 copy. Each shape is a matrix of centroids
(N×D) or a batch of per-sample matrices (N×V×D), unit rows as MMCR makes them. The methods take turns in interleaved
rounds; the error is each method's relative error from the float64 SVD::

    python -m benchmarks.nuclear_norm
    python -m benchmarks.nuclear_norm --shapes 2048x512 2048x2x512 256x4x8192 --threads 1 --rounds 7 \\
        --json benchmarks/results/cpu-mmcr/nuclear_norm.json --markdown benchmarks/results/cpu-mmcr/nuclear_norm.md
"""

import argparse
import json
import os
import pathlib
import time
from typing import Any

import torch

from benchmarks.common import environment
from benchmarks.common import median_p20_p80
from redundancy._ops.nuclear_norm import nuclear_norm


def svdvals_nuclear_norm(x: torch.Tensor) -> torch.Tensor:
    return torch.linalg.svdvals(x).sum(dim=-1)


METHODS = {
    "op": nuclear_norm,
    "svdvals": svdvals_nuclear_norm,
    "svdvals_float64": lambda x: svdvals_nuclear_norm(x.double()),
}


def parse_dims(text: str) -> tuple[int, ...]:
    """``"2048x2x512"`` -> ``(2048, 2, 512)``."""
    try:
        dims = tuple(int(part) for part in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"a shape is NxD or NxVxD, for example 2048x2x512, got {text!r}") from None
    if len(dims) not in (2, 3):
        raise argparse.ArgumentTypeError(f"a shape is NxD or NxVxD, got {text!r}")
    return dims


def measure(shape: tuple[int, ...], rounds: int) -> dict:
    generator = torch.Generator().manual_seed(0)
    x = torch.nn.functional.normalize(torch.randn(*shape, generator=generator), dim=-1).requires_grad_(True)
    exact = svdvals_nuclear_norm(x.detach().double()).sum()

    def step_of(method):
        def step() -> torch.Tensor:
            value = method(x).sum()
            value.backward()
            x.grad = None
            return value.detach()

        return step

    steps = {name: step_of(method) for name, method in METHODS.items()}
    errors = {name: (abs(step().double() - exact) / exact).item() for name, step in steps.items()}  # also warm-up
    times: dict[str, list[float]] = {name: [] for name in steps}
    names = list(steps)
    for round_index in range(rounds):
        for name in names if round_index % 2 == 0 else names[::-1]:
            start = time.perf_counter()
            steps[name]()
            times[name].append(time.perf_counter() - start)
    result: dict[str, Any] = {"shape": list(shape), "methods": {}}
    for name in names:
        median, p20, p80 = median_p20_p80(times[name])
        result["methods"][name] = {
            "median_s": median,
            "p20_s": p20,
            "p80_s": p80,
            "round_s": times[name],
            "relative_error": errors[name],
        }
    return result


def markdown(results: list[dict]) -> str:
    lines = ["| shape | method | ms (p20–p80) | relative error |", "|:---|:---|---:|---:|"]
    for result in results:
        shape = "×".join(str(dim) for dim in result["shape"])
        for name, timing in result["methods"].items():
            lines.append(
                f"| {shape} | {name} | {timing['median_s'] * 1e3:.1f} "
                f"({timing['p20_s'] * 1e3:.1f}–{timing['p80_s'] * 1e3:.1f}) | {timing['relative_error']:.1e} |"
            )
    return "\n".join(lines)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shapes", nargs="+", type=parse_dims, default=[(2048, 512), (2048, 2, 512)])
    parser.add_argument("--threads", type=int, help="torch.set_num_threads (default: torch's own)")
    parser.add_argument("--rounds", type=int, default=7, help="rounds in which the methods take turns")
    parser.add_argument("--json", type=pathlib.Path, help="write the environment and every timing here")
    parser.add_argument("--markdown", type=pathlib.Path, help="write the table (with the environment) here")
    args = parser.parse_args(argv)
    if args.rounds < 1:
        parser.error("--rounds must be at least 1")
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    env = environment()
    print(" ".join(f"{key}={value}" for key, value in env.items()), flush=True)
    load_before = os.getloadavg()
    results = [measure(shape, args.rounds) for shape in args.shapes]
    env["load_average_1min"] = {"before": load_before[0], "after": os.getloadavg()[0]}
    table = markdown(results)
    print(table)
    if args.markdown:
        header = (
            f"Device: {env['processor']} ({env['torch_threads']} threads), float32 inputs, torch {env['torch']}, "
            f"{env['date']}, load average (1 min) {env['load_average_1min']['before']:.1f} before and "
            f"{env['load_average_1min']['after']:.1f} after the run. Nuclear norm (summed over the batch) and its "
            f"backward; {args.rounds} interleaved rounds, median and p20–p80; the error is relative to the float64 SVD."
        )
        args.markdown.write_text(f"{header}\n\n{table}\n")
    if args.json:
        args.json.write_text(json.dumps({"environment": env, "results": results}, indent=2) + "\n")


if __name__ == "__main__":
    main()
