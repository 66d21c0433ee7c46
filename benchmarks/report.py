"""Turn the suite's results into a markdown table and plots.

``python -m benchmarks.report benchmarks/results/cpu/results.json`` redraws the table and plots of a saved run.
"""

import json
import pathlib
import sys

BASELINE = "reference"
HEADLINE = "redundancy-auto-torch"


def _ms(result: dict, mode: str) -> str:
    t = result[mode]
    return f"{t['median_s'] * 1e3:.2f} ({t['p20_s'] * 1e3:.2f}–{t['p80_s'] * 1e3:.2f})"


def _mib(result: dict) -> str:
    return "–" if result["peak_bytes"] is None else f"{result['peak_bytes'] / 2**20:.1f}"


def progress_line(n: int, d: int, name: str, result: dict) -> str:
    return (
        f"N={n:<5} D={d:<5} {name:<26} full {_ms(result, 'full')} ms  "
        f"{result['gflops_per_s']:.1f} GFLOP/s  peak {_mib(result)} MiB"
    )


def _allocator(env: dict) -> str:
    return ", ".join(f"{name}={value}" for name, value in env["allocator"].items())


def _matmul_samples(env: dict) -> str:
    samples = env.get("matmul_gflops_samples", [])
    if len(samples) < 2:
        return ""
    return f" (the highest of {len(samples)} measurements during the run, {min(samples):.1f}–{max(samples):.1f})"


def _rounds(rounds: int) -> str:
    return (
        f"Each shape's cases were timed in {rounds} interleaved rounds: times are the median of the rounds' "
        "medians, p20–p80 across the rounds."
    )


def markdown(results: dict) -> str:
    """One row per shape and case: times (median, p20–p80), speed-up and memory against the reference."""
    env = results["environment"]
    lines = [
        f"Device: {results['device']} ({env.get('gpu', env['processor'])}, {env['torch_threads']} threads), "
        f"dtype {results['dtype']}, torch {env['torch']}, redundancy {env['redundancy']}, {env['date']}.",
        f"Measured matmul throughput: {env['matmul_gflops']:.1f} GFLOP/s{_matmul_samples(env)}.",
        *([f"Allocator settings: {_allocator(env)}."] if env.get("allocator") else []),
        *([_rounds(results["rounds"])] if results.get("rounds", 1) > 1 else []),
        "",
        "| N | D | case | algorithm | forward ms | backward ms | full ms (p20–p80) | speed-up | peak MiB | "
        "memory vs reference | GFLOP/s | % of matmul |",
        "|---:|---:|:---|:---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for row in results["results"]:
        baseline = row["cases"].get(BASELINE)
        for name, result in row["cases"].items():
            speedup = memory = "–"
            if baseline is not None:
                speedup = f"{baseline['full']['median_s'] / result['full']['median_s']:.1f}×"
                if result["peak_bytes"] is not None and baseline["peak_bytes"]:
                    memory = f"{result['peak_bytes'] / baseline['peak_bytes']:.3f}"
            lines.append(
                f"| {row['n']} | {row['d']} | {name} | {result['algorithm']} "
                f"| {result['forward']['median_s'] * 1e3:.2f} | {result['backward']['median_s'] * 1e3:.2f} "
                f"| {_ms(result, 'full')} | {speedup} | {_mib(result)} | {memory} "
                f"| {result['gflops_per_s']:.1f} | {100 * result['gflops_per_s'] / env['matmul_gflops']:.0f}% |"
            )
    return "\n".join(lines) + "\n"


def plots(results: dict, folder: pathlib.Path) -> list[pathlib.Path]:
    """Time against D for each N, the speed-up heat map over N×D and memory against D; returns the files."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = results["results"]
    ns = sorted({row["n"] for row in rows})
    ds = sorted({row["d"] for row in rows})
    names = list(rows[0]["cases"])
    written = []

    fig, axes = plt.subplots(1, len(ns), figsize=(4 * len(ns), 3.5), squeeze=False, sharey=True)
    for ax, n in zip(axes[0], ns, strict=True):
        for name in names:
            points = [(row["d"], row["cases"][name]["full"]["median_s"] * 1e3) for row in rows if row["n"] == n]
            ax.plot(*zip(*points, strict=True), marker="o", label=name)
        ax.set(xscale="log", yscale="log", xlabel="D", title=f"N = {n}")
    axes[0][0].set_ylabel("forward+backward ms")
    axes[0][-1].legend(fontsize="small")
    fig.tight_layout()
    written.append(folder / "time_vs_d.png")
    fig.savefig(written[-1], dpi=110)
    plt.close(fig)

    if BASELINE in names and HEADLINE in names:
        grid = [[float("nan")] * len(ds) for _ in ns]
        for row in rows:
            cases = row["cases"]
            grid[ns.index(row["n"])][ds.index(row["d"])] = (
                cases[BASELINE]["full"]["median_s"] / cases[HEADLINE]["full"]["median_s"]
            )
        fig, ax = plt.subplots(figsize=(1.2 * len(ds) + 2, 0.8 * len(ns) + 1.5))
        image = ax.imshow(grid, cmap="viridis", origin="lower", norm=matplotlib.colors.LogNorm())
        ax.set(xticks=range(len(ds)), xticklabels=ds, yticks=range(len(ns)), yticklabels=ns, xlabel="D", ylabel="N",
               title=f"speed-up of {HEADLINE} over {BASELINE}")
        for i, line in enumerate(grid):
            for j, value in enumerate(line):
                ax.text(j, i, f"{value:.1f}×", ha="center", va="center", color="white", fontsize="small")
        fig.colorbar(image)
        fig.tight_layout()
        written.append(folder / "speedup_heatmap.png")
        fig.savefig(written[-1], dpi=110)
        plt.close(fig)

    if all(result["peak_bytes"] is not None for row in rows for result in row["cases"].values()):
        fig, axes = plt.subplots(1, len(ns), figsize=(4 * len(ns), 3.5), squeeze=False, sharey=True)
        for ax, n in zip(axes[0], ns, strict=True):
            for name in names:
                points = [(row["d"], max(row["cases"][name]["peak_bytes"], 1) / 2**20) for row in rows if row["n"] == n]
                ax.plot(*zip(*points, strict=True), marker="o", label=name)
            ax.set(xscale="log", yscale="log", xlabel="D", title=f"N = {n}")
        axes[0][0].set_ylabel("peak MiB beyond the inputs")
        axes[0][-1].legend(fontsize="small")
        fig.tight_layout()
        written.append(folder / "memory_vs_d.png")
        fig.savefig(written[-1], dpi=110)
        plt.close(fig)
    return written


if __name__ == "__main__":
    path = pathlib.Path(sys.argv[1])
    saved = json.loads(path.read_text())
    (path.parent / "results.md").write_text(markdown(saved))
    for written in plots(saved, path.parent):
        print(f"wrote {written}")
