"""Bytes each rank sends per step, FLOPs and the largest tensors of the loss, for every way to lay out W ranks.

Three layouts of W ranks, counted with the cost model of :mod:`redundancy.cost` (nothing is run or timed):

- **data-parallel** (W×1): each rank holds N/W rows of all D features; the loss uses the strategy
  ``strategy="auto"`` picks (:func:`redundancy.cost.choose_strategy`), counted by
  :func:`redundancy.cost.communication_bytes`;
- **feature-parallel** (1×W): each rank holds all N rows of D/W features (``feature_group=`` alone);
- **2-D** (R×F = W): N/R rows of D/F features (``group=`` for the rows and ``feature_group=``), for the grids whose
  two sides are within a factor 4 of each other;

the last two with the algorithm ``algorithm="auto"`` picks (:func:`redundancy.cost.choose_feature_parallel_algorithm`),
counted by :func:`redundancy.cost.feature_parallel_bytes` and :func:`redundancy.cost.feature_parallel_flops`.
Beside the bytes: the matrix-product FLOPs per rank, the loss's matrix on each rank (the D×D C of the cross
algorithm, the N×N Grams of the Gram algorithm, or a feature rank's D/F×D block row of C) and the largest view a
rank holds for the loss (its rows, the gathered rows, or the gathered columns). The batch is split evenly; the
widest share is counted where it is not.

    python -m benchmarks.parallel_layouts
    python -m benchmarks.parallel_layouts --n 2048 --d 8192 32768 65536 --world-sizes 8 64 \\
        --output benchmarks/results/cpu

It prints the documentation's table and writes it as ``parallel_layouts.rst``, beside ``parallel_layouts.json``
(every figure), into a new folder under ``benchmarks/results/local/`` (which git ignores) or the folder
``--output`` names.
"""

import argparse
import json
import math

import torch

from benchmarks.common import add_output_option
from benchmarks.report import list_table
from redundancy import cost
from redundancy.barlow_twins import FEATURE_PARALLEL_COST

MIB = 2**20


def grids(world_size: int) -> list[tuple[int, int]]:
    """The layouts of ``world_size`` ranks as (row ranks, feature ranks): W×1, 1×W, then the 2-D grids.

    The 2-D grids are the R×F = W with R, F > 1 whose sides are within a factor 4 of each other.

    Example:
        >>> grids(8), grids(64)
        ([(8, 1), (1, 8), (2, 4), (4, 2)], [(64, 1), (1, 64), (4, 16), (8, 8), (16, 4)])
    """
    if isinstance(world_size, bool) or not isinstance(world_size, int) or world_size < 2:
        raise ValueError(f"world_size must be an integer >= 2, got {world_size!r}")
    two_d = [
        (rows, world_size // rows)
        for rows in range(2, world_size // 2 + 1)
        if world_size % rows == 0 and max(rows, world_size // rows) <= 4 * min(rows, world_size // rows)
    ]
    return [(world_size, 1), (1, world_size), *two_d]


def layout_name(rows: int, features: int) -> str:
    if features == 1:
        return "data-parallel"
    return "feature-parallel" if rows == 1 else "2-D"


def matrix(name: str, height: int, width: int, itemsize: int) -> dict:
    return {"name": name, "shape": [height, width], "mib": height * width * itemsize / MIB}


def layout(n: int, d: int, rows: int, features: int, dtype: torch.dtype) -> dict:
    """The cost model's figures for one layout of ``rows × features`` ranks (see the module docstring)."""
    itemsize = 8 if dtype == torch.float64 else 4  # the loss computes in float32 for half inputs
    world_size = rows * features
    result = {"n": n, "d": d, "world_size": world_size, "rows": rows, "features": features}
    result["layout"] = layout_name(rows, features)
    if features == 1:
        strategy = cost.choose_strategy(n, d, world_size, dtype)
        algorithm = "cross" if strategy == "all_reduce" else cost.choose_algorithm(n, d)
        result.update(
            strategy=strategy,
            algorithm=algorithm,
            bytes_per_rank=cost.communication_bytes(strategy, n, d, world_size, dtype),
            flops_per_rank=cost.strategy_flops(strategy, n, d, world_size, algorithm=algorithm),
        )
        view_rows = math.ceil(n / world_size) if strategy == "all_reduce" else n
        result["view"] = matrix("rows" if strategy == "all_reduce" else "gathered rows", view_rows, d, itemsize)
        result["loss_matrix"] = matrix("C", d, d, itemsize) if algorithm == "cross" else matrix("Gram", n, n, itemsize)
        return result
    algorithm = cost.choose_feature_parallel_algorithm(n, d, rows, features, dtype, loss=FEATURE_PARALLEL_COST)
    result.update(
        strategy=None,
        algorithm=algorithm,
        bytes_per_rank=cost.feature_parallel_bytes(algorithm, n, d, rows, features, dtype, loss=FEATURE_PARALLEL_COST),
        flops_per_rank=cost.feature_parallel_flops(algorithm, n, d, rows, features, loss=FEATURE_PARALLEL_COST),
    )
    columns = math.ceil(d / features)
    if algorithm == "gram":
        result["view"] = matrix("gathered rows" if rows > 1 else "rows", n, columns, itemsize)
        result["loss_matrix"] = matrix("Gram", n, n, itemsize)
    else:
        result["view"] = matrix("gathered columns", n, d, itemsize)
        result["loss_matrix"] = matrix("block row of C", columns, d, itemsize)
    return result


def table(n: int, dims: list[int], world_sizes: list[int], dtype: torch.dtype = torch.float32) -> list[dict]:
    """Every layout of every world size at every D, with its bytes relative to data-parallel's."""
    results = []
    for world_size in world_sizes:
        for d in dims:
            rows = [layout(n, d, r, f, dtype) for r, f in grids(world_size)]
            for row in rows:
                row["bytes_vs_data_parallel"] = row["bytes_per_rank"] / rows[0]["bytes_per_rank"]
            results += rows
    return results


def _shape(entry: dict) -> str:
    height, width = entry["shape"]
    return f"{entry['name']} {height:,}×{width:,}".replace(",", " ")


def rst(results: list[dict], dtype_name: str) -> str:
    """The tables of the documentation, one row per layout grouped by world size and D: what each rank sends and
    computes, then what it holds (two tables of seven columns rather than one of eleven, to fit a page)."""
    traffic_header = (
        "W", "D", "layout R×F", "algorithm (strategy)", "MiB sent per rank", "vs data-parallel", "GFLOP per rank",
    )  # fmt: skip
    memory_header = ("W", "D", "layout R×F", "loss matrix", "MiB", "largest view", "MiB")
    traffic, memory = [], []
    for r in results:
        layout = (str(r["world_size"]), f"{r['d']:,}".replace(",", " "), f"{r['layout']} {r['rows']}×{r['features']}")
        traffic.append(
            (
                *layout,
                f"{r['algorithm']} ({r['strategy']})" if r["strategy"] else r["algorithm"],
                f"{r['bytes_per_rank'] / MIB:,.1f}".replace(",", " "),
                f"{r['bytes_vs_data_parallel']:.3f}×",
                f"{r['flops_per_rank'] / 1e9:,.1f}".replace(",", " "),
            )
        )
        memory.append(
            (
                *layout,
                _shape(r["loss_matrix"]),
                f"{r['loss_matrix']['mib']:,.1f}".replace(",", " "),
                _shape(r["view"]),
                f"{r['view']['mib']:,.1f}".replace(",", " "),
            )
        )
    n = results[0]["n"]
    intro = (
        f"Cost model of ``redundancy.cost`` (nothing measured): global batch N = {n}, {dtype_name}, ring collectives. "
        "Generated by ``python -m benchmarks.parallel_layouts``.\n\n"
        "What each rank sends per training step (MiB = 2²⁰ bytes, forward and backward, headers included), against "
        "the data-parallel layout of the same ranks, and the matrix-product GFLOP it spends:\n\n"
    )
    held = "\nWhat each rank holds for the loss: the loss's matrix and the largest single view:\n\n"
    return (
        intro
        + list_table(traffic_header, traffic, text_columns=(3, 4))
        + held
        + list_table(memory_header, memory, text_columns=(3, 4, 6))
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.parallel_layouts",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--n", type=int, default=2048, help="global batch N (default: %(default)s)")
    parser.add_argument("--d", type=int, nargs="+", default=[8192, 32768, 65536], help="feature dimensions D")
    parser.add_argument("--world-sizes", type=int, nargs="+", default=[8, 64], help="numbers of ranks W")
    parser.add_argument("--dtype", default="float32", choices=["float32", "bfloat16", "float16", "float64"])
    add_output_option(parser, "parallel_layouts")
    return parser


def main(argv=None) -> list[dict]:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.n < 2:
        parser.error(f"--n must be at least 2, got {args.n}")
    if min(args.d) < 1:
        parser.error(f"--d must be at least 1, got {min(args.d)}")
    if min(args.world_sizes) < 2:
        parser.error(f"--world-sizes must be at least 2, got {min(args.world_sizes)}")
    dtype = getattr(torch, args.dtype)
    results = table(args.n, args.d, args.world_sizes, dtype)
    rendered = rst(results, args.dtype)
    print(rendered)
    args.output.mkdir(parents=True, exist_ok=True)
    (args.output / "parallel_layouts.rst").write_text(rendered)
    (args.output / "parallel_layouts.json").write_text(
        json.dumps({"dtype": args.dtype, "results": results}, indent=1) + "\n"
    )
    print(f"wrote {args.output / 'parallel_layouts.json'} and {args.output / 'parallel_layouts.rst'}")
    return results


if __name__ == "__main__":
    main()
