"""Turn saved benchmark results into the tables and plots that the README and the documentation show.

``python -m benchmarks.report benchmarks/results/cpu/results.json`` redraws a saved run of the suite: its markdown
table (``results.md``), the reStructuredText tables the documentation includes (``summary.rst``: one row per shape;
``table.rst``: every case), and its plots. Given a JSON file of ``python -m benchmarks.gram_products``, it writes
that file's table as ``gram_products.rst``. They go into a new folder under ``benchmarks/results/local/`` (which
git ignores) or the folder ``--output`` names: ``--output benchmarks/results/cpu`` replaces the committed ones.

``python -m benchmarks.report --headline docs/_static/headline.png GRID.json [REPEAT.json ...]`` draws the
headline figure: speed-up and peak-memory reduction of ``redundancy`` (auto) over the reference against D, at the
paper's batch sizes, from the saved results (repeat runs of some of the shapes drawn as hollow markers), and its
narrow variant for phones, the two panels stacked (``docs/_static/headline-narrow.png``).
``python -m benchmarks.report --runs RUNS.rst RUN.json RUN.json ...`` writes one table of repeat runs of the same
shapes, side by side.
"""

import argparse
import json
import pathlib

from benchmarks.common import add_output_option

BASELINE = "reference"
HEADLINE = "redundancy-auto-torch"
#: Batch sizes of the headline figure: the paper's default batch (2048) and a small batch of its batch-size study
#: (256).
HEADLINE_BATCHES = (256, 2048)
OWN_PREFIX = "redundancy-"


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


def environment_lines(results: dict) -> list[str]:
    """What was measured where: device, dtype, versions, date, the machine's matmul throughput, rounds."""
    env = results["environment"]
    return [
        f"Device: {results['device']} ({env.get('gpu', env['processor'])}, {env['torch_threads']} threads), "
        f"dtype {results['dtype']}, torch {env['torch']}, redundancy {env['redundancy']}, {env['date']}.",
        f"Measured matmul throughput: {env['matmul_gflops']:.1f} GFLOP/s{_matmul_samples(env)}.",
        *([f"Allocator settings: {_allocator(env)}."] if env.get("allocator") else []),
        *([_rounds(results["rounds"])] if results.get("rounds", 1) > 1 else []),
    ]


def speedup(baseline: dict, result: dict) -> float:
    """How many times faster than ``baseline`` one forward+backward step of ``result`` is (median times)."""
    return baseline["full"]["median_s"] / result["full"]["median_s"]


def memory_ratio(baseline: dict, result: dict) -> float | None:
    """Peak memory of ``result`` as a fraction of the baseline's; None where either was not measured."""
    if result["peak_bytes"] is None or not baseline["peak_bytes"]:
        return None
    return result["peak_bytes"] / baseline["peak_bytes"]


GRID_HEADER = (
    "N",
    "D",
    "case",
    "algorithm",
    "forward ms",
    "backward ms",
    "full ms (p20–p80)",
    "speed-up",
    "peak MiB",
    "memory vs reference",
    "GFLOP/s",
    "% of matmul",
)


def grid_rows(results: dict) -> list[tuple[str, ...]]:
    """One row per shape and case: times (median, p20–p80), speed-up and memory against the reference."""
    matmul = results["environment"]["matmul_gflops"]
    rows = []
    for row in results["results"]:
        baseline = row["cases"].get(BASELINE)
        for name, result in row["cases"].items():
            faster = ratio = "–"
            if baseline is not None:
                faster = f"{speedup(baseline, result):.1f}×"
                memory = memory_ratio(baseline, result)
                ratio = "–" if memory is None else f"{memory:.3f}"
            rows.append(
                (
                    str(row["n"]),
                    str(row["d"]),
                    name,
                    result["algorithm"],
                    f"{result['forward']['median_s'] * 1e3:.2f}",
                    f"{result['backward']['median_s'] * 1e3:.2f}",
                    _ms(result, "full"),
                    faster,
                    _mib(result),
                    ratio,
                    f"{result['gflops_per_s']:.1f}",
                    f"{100 * result['gflops_per_s'] / matmul:.0f}%",
                )
            )
    return rows


def markdown(results: dict) -> str:
    """The run's environment, then one table row per shape and case (the suite prints it and saves it)."""
    aligns = ["---:", "---:", ":---", ":---", *["---:"] * (len(GRID_HEADER) - 4)]
    lines = [
        *environment_lines(results),
        "",
        "| " + " | ".join(GRID_HEADER) + " |",
        "|" + "|".join(aligns) + "|",
        *("| " + " | ".join(row) + " |" for row in grid_rows(results)),
    ]
    return "\n".join(lines) + "\n"


def list_table(header: tuple[str, ...], rows: list[tuple[str, ...]], *, text_columns: tuple[int, ...]) -> str:
    """A reStructuredText ``list-table``; the documentation's style sheet aligns every column but the text
    columns (1-based) to the right."""
    classes = " ".join(["numbers", *(f"text-{column}" for column in text_columns)])
    lines = [".. list-table::", "   :header-rows: 1", f"   :class: {classes}", ""]
    for row in (header, *rows):
        lines.append(f"   * - {row[0]}")
        lines.extend(f"     - {cell}" for cell in row[1:])
    return "\n".join(lines) + "\n"


def _environment_paragraph(results: dict) -> str:
    return " ".join(environment_lines(results)) + "\n"


#: The columns of :data:`GRID_HEADER` that the documentation's tables show, so that they fit a 1280-pixel page;
#: the forward and backward times and the share of the matmul throughput are in ``results.md``, every column.
PAGE_COLUMNS = (
    "N",
    "D",
    "case",
    "algorithm",
    "full ms (p20–p80)",
    "speed-up",
    "peak MiB",
    "memory vs reference",
    "GFLOP/s",
)


def table_rst(results: dict) -> str:
    """The run's environment and every shape and case, as the documentation includes it (the columns of
    :data:`PAGE_COLUMNS`)."""
    keep = [GRID_HEADER.index(column) for column in PAGE_COLUMNS]
    rows = [tuple(row[index] for index in keep) for row in grid_rows(results)]
    return _environment_paragraph(results) + "\n" + list_table(PAGE_COLUMNS, rows, text_columns=(3, 4))


SUMMARY_HEADER = (
    "N",
    "D",
    "reference ms",
    "reference MiB",
    "fastest redundancy case",
    "its ms",
    "its MiB",
    "speed-up",
    "memory vs reference",
)


def summary_rows(results: dict) -> list[tuple[str, ...]]:
    """Per shape: the reference, the fastest case of ``redundancy`` (lowest median forward+backward time), how many
    times faster it is and its peak memory as a fraction of the reference's."""
    rows = []
    for row in results["results"]:
        baseline = row["cases"][BASELINE]
        own = {name: result for name, result in row["cases"].items() if name.startswith(OWN_PREFIX)}
        name, best = min(own.items(), key=lambda item: item[1]["full"]["median_s"])
        memory = memory_ratio(baseline, best)
        rows.append(
            (
                str(row["n"]),
                str(row["d"]),
                f"{baseline['full']['median_s'] * 1e3:.2f}",
                _mib(baseline),
                f"{name.removeprefix(OWN_PREFIX)} ({best['algorithm']})",
                f"{best['full']['median_s'] * 1e3:.2f}",
                _mib(best),
                f"{speedup(baseline, best):.1f}×",
                "–" if memory is None else f"{memory:.3f}",
            )
        )
    return rows


def summary_rst(results: dict) -> str:
    """One row per shape: the reference against the fastest ``redundancy`` case, as the documentation includes it."""
    return list_table(SUMMARY_HEADER, summary_rows(results), text_columns=(5,))


GRAM_PRODUCTS_HEADER = ("N", "D", "k", "method", "ms (p20–p80)", "vs full", "GFLOP/s")


def gram_products_rst(saved: dict) -> str:
    """The timings of ``python -m benchmarks.gram_products`` (its saved JSON) as the documentation includes them."""
    env = saved["environment"]
    intro = (
        f"Device: {env.get('gpu', env['processor'])} ({env['torch_threads']} threads), {saved['dtype']}, "
        f"torch {env['torch']}, {env['date']}. Median and p20–p80 over the rounds.\n"
    )
    rows = []
    for result in saved["results"]:
        full = result["methods"]["full"]["median_s"]
        for name, timing in result["methods"].items():
            rows.append(
                (
                    str(result["n"]),
                    str(result["d"]),
                    str(result["blocks"]),
                    name,
                    f"{timing['median_s'] * 1e3:.2f} ({timing['p20_s'] * 1e3:.2f}–{timing['p80_s'] * 1e3:.2f})",
                    f"{full / timing['median_s']:.2f}×",
                    f"{timing['gflops_per_s']:.1f}",
                )
            )
    return intro + "\n" + list_table(GRAM_PRODUCTS_HEADER, rows, text_columns=(4,))


RUNS_HEADER = (
    "N",
    "D",
    "run",
    "started",
    "matmul GFLOP/s",
    "reference ms",
    "auto ms (p20–p80)",
    "speed-up",
    "memory vs reference",
    "% of matmul",
)


def runs_rst(runs: list[dict]) -> str:
    """Several runs of the same shapes side by side: per shape, one row per run with its start, the machine's
    measured matmul throughput, and ``redundancy`` (auto) against the reference, as the documentation includes it."""
    rows = []
    shapes = sorted({(row["n"], row["d"]) for run in runs for row in run["results"]})
    days = {run["environment"]["date"][:10] for run in runs}
    header = RUNS_HEADER if len(days) > 1 else tuple(
        f"started {next(iter(days))}" if name == "started" else name for name in RUNS_HEADER
    )
    for n, d in shapes:
        for number, run in enumerate(runs, start=1):
            env = run["environment"]
            for row in run["results"]:
                cases = row["cases"]
                if (row["n"], row["d"]) != (n, d) or BASELINE not in cases or HEADLINE not in cases:
                    continue
                baseline, own = cases[BASELINE], cases[HEADLINE]
                memory = memory_ratio(baseline, own)
                rows.append(
                    (
                        str(n),
                        str(d),
                        str(number),
                        env["date"][:16].replace("T", " ") if len(days) > 1 else env["date"][11:16],
                        f"{env['matmul_gflops']:.1f}",
                        f"{baseline['full']['median_s'] * 1e3:.2f}",
                        _ms(own, "full"),
                        f"{speedup(baseline, own):.1f}×",
                        "–" if memory is None else f"{memory:.3f}",
                        f"{100 * own['gflops_per_s'] / env['matmul_gflops']:.0f}%",
                    )
                )
    return list_table(header, rows, text_columns=(4,))


def write_tables(results: dict, folder: pathlib.Path) -> str:
    """Write ``results.md``, ``summary.rst`` (when the run has the reference) and ``table.rst`` into ``folder``;
    returns the markdown table."""
    table = markdown(results)
    (folder / "results.md").write_text(table)
    (folder / "table.rst").write_text(table_rst(results))
    if results["results"] and all(BASELINE in row["cases"] for row in results["results"]):
        (folder / "summary.rst").write_text(summary_rst(results))
    return table


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
            grid[ns.index(row["n"])][ds.index(row["d"])] = speedup(cases[BASELINE], cases[HEADLINE])
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


def headline_points(results: dict, batches=HEADLINE_BATCHES) -> dict[int, list[tuple[int, float, float]]]:
    """``{N: [(D, speed-up, memory reduction), ...]}`` of ``redundancy`` (auto) against the reference, for the
    given batch sizes: the reference's forward+backward time and peak memory divided by those of ``auto``."""
    points: dict[int, list[tuple[int, float, float]]] = {n: [] for n in batches}
    for row in results["results"]:
        cases = row["cases"]
        if row["n"] not in points or BASELINE not in cases or HEADLINE not in cases:
            continue
        memory = memory_ratio(cases[BASELINE], cases[HEADLINE])
        if memory is None or memory == 0:
            raise ValueError(f"the run has no peak memory of {HEADLINE} at N={row['n']}, D={row['d']}")
        points[row["n"]].append((row["d"], speedup(cases[BASELINE], cases[HEADLINE]), 1 / memory))
    for n, found in points.items():
        if not found:
            raise ValueError(f"the run has no shape with N={n} and both {BASELINE} and {HEADLINE}")
        found.sort()
    return points


def narrow_path(path: pathlib.Path) -> pathlib.Path:
    """Where the narrow variant of the headline figure at ``path`` goes: ``headline.png`` → ``headline-narrow.png``."""
    return path.with_name(f"{path.stem}-narrow{path.suffix}")


def headline(grid: dict, repeats: list[dict], path: pathlib.Path, *, narrow: bool = False) -> pathlib.Path:
    """Speed-up and memory reduction against D at the headline batch sizes, from ``grid`` (lines, values written
    at the points) and ``repeats`` (other runs of some of the same shapes, hollow markers); returns ``path``.

    The two panels side by side, or with ``narrow=True`` one above the other, for a phone's screen."""
    lines = headline_points(grid)  # a run without the figure's shapes is named before matplotlib is needed
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    env = grid["environment"]
    if narrow:
        fig, axes = plt.subplots(2, 1, figsize=(3.8, 6.8))
    else:
        fig, axes = plt.subplots(1, 2, figsize=(9.6, 3.9))
    for column, (ax, label) in enumerate(
        zip(axes, ("× faster than the reference", "× less peak memory than the reference"), strict=True)
    ):
        highest = {}  # D -> the highest value drawn there; its label goes above the point, the others below
        for points in lines.values():
            for d, *values in points:
                highest[d] = max(highest.get(d, 0.0), values[column])
        for index, (n, points) in enumerate(lines.items()):
            colour = f"C{index}"
            again: dict[int, list[float]] = {}
            for run in repeats:
                for d, *values in headline_points(run, batches=(n,))[n]:
                    again.setdefault(d, []).append(values[column])
            ax.plot([d for d, *_ in points], [values[column] for _, *values in points], marker="o", color=colour,
                    label=f"N = {n}")
            for d, *values in points:
                value, text = values[column], f"{values[column]:.1f}×"
                if d in again:  # the range over all runs of this shape, beside the point
                    every = [f"{v:.1f}" for v in sorted([value, *again[d]])]
                    spread = every[0] if every[0] == every[-1] else f"{every[0]}–{every[-1]}"
                    text += f"\n({spread}× in {len(every)} runs)"
                    ax.plot([d] * len(again[d]), again[d], linestyle="none", marker="o", markerfacecolor="none",
                            color=colour, alpha=0.8)
                    place = {"xytext": (-7, 3), "ha": "right", "va": "bottom", "multialignment": "right"}
                elif value == highest[d]:
                    place = {"xytext": (0, 7), "ha": "center", "va": "bottom"}
                else:
                    place = {"xytext": (0, -8), "ha": "center", "va": "top"}
                ax.annotate(text, (d, value), textcoords="offset points", fontsize="small", color=colour, **place)
        ax.axhline(1, color="grey", linewidth=0.8)
        ax.set(xscale="log", yscale="log", xlabel="D (projector width)", title=label)
        ax.set_xticks(sorted({d for points in lines.values() for d, *_ in points}))
        ax.get_xaxis().set_major_formatter(matplotlib.ticker.ScalarFormatter())
        ax.get_xaxis().set_minor_locator(matplotlib.ticker.NullLocator())
        ax.set_ylim(bottom=0.5, top=ax.get_ylim()[1] * 2)
        ax.grid(alpha=0.3)
    if repeats:
        axes[0].plot([], [], linestyle="none", marker="o", markerfacecolor="none", color="grey", label="repeat runs")
    axes[0].legend(loc="upper left", fontsize="small")
    fig.suptitle(
        f"redundancy (auto) against the official formula,{chr(10) if narrow else ' '}{grid['dtype']} "
        f"forward+backward, {env.get('gpu', env['processor'])} ({env['torch_threads']} threads)",
        fontsize="medium",
    )
    fig.tight_layout()
    fig.savefig(path, dpi=150 if narrow else 110)
    plt.close(fig)
    return path


def _is_gram_products(saved: dict) -> bool:
    return bool(saved["results"]) and "methods" in saved["results"][0]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.report", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("results", nargs="+", type=pathlib.Path, help="saved results.json (or gram_products.json)")
    parser.add_argument(
        "--headline",
        type=pathlib.Path,
        metavar="PNG",
        help="draw the headline figure here from the first results (lines) and the others (repeat runs) instead, "
        "and its narrow variant (the panels stacked) beside it, NAME-narrow.png",
    )
    parser.add_argument(
        "--runs",
        type=pathlib.Path,
        metavar="RST",
        help="write one table comparing the runs (repeat runs of the same shapes) here instead",
    )
    parser.add_argument("--no-plots", action="store_true", help="write the tables only")
    add_output_option(parser, "report")
    return parser


def main(argv: list[str] | None = None) -> None:
    parser = build_parser()
    args = parser.parse_args(argv)
    missing = [str(path) for path in args.results if not path.is_file()]
    if missing:
        parser.error(f"no such results file: {', '.join(missing)}")
    saved = [json.loads(path.read_text()) for path in args.results]

    if (args.headline or args.runs) and any(_is_gram_products(run) for run in saved):
        parser.error("--headline and --runs take results of the suite (python -m benchmarks), not of gram_products")
    if args.headline is not None:
        try:
            print(f"wrote {headline(saved[0], saved[1:], args.headline)}")
            print(f"wrote {headline(saved[0], saved[1:], narrow_path(args.headline), narrow=True)}")
        except ValueError as error:  # a run without the shapes the figure needs
            parser.error(f"--headline: {error}")
    if args.runs is not None:
        args.runs.write_text(runs_rst(saved))
        print(f"wrote {args.runs}")
    if args.headline is not None or args.runs is not None:
        return
    if sum(not _is_gram_products(run) for run in saved) > 1:
        parser.error("give one results.json of the suite per --output folder (each run's tables have the same names)")
    args.output.mkdir(parents=True, exist_ok=True)
    for path, run in zip(args.results, saved, strict=True):
        if _is_gram_products(run):
            written = [args.output / path.with_suffix(".rst").name]
            written[0].write_text(gram_products_rst(run))
        else:
            write_tables(run, args.output)
            written = [args.output / name for name in ("results.md", "table.rst", "summary.rst")]
            written = [file for file in written if file.exists()]
            if not args.no_plots:
                written += plots(run, args.output)
        for file in written:
            print(f"wrote {file}")


if __name__ == "__main__":
    main()
