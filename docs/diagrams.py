"""Draw the documentation's diagrams: ``python docs/diagrams.py`` (matplotlib, from the ``bench`` or ``examples``
extra) writes them into ``docs/_static/diagrams/``, where the pages find them; ``--output DIR`` writes elsewhere.

- ``feature_grid.svg`` (:doc:`feature_parallel`): a 2×2 grid of row and feature shards, and what each collective
  carries;
- ``gram_identity.svg`` (:doc:`algorithms`): ``‖AᵀB‖_F² = ⟨AAᵀ, BBᵀ⟩_F`` with the matrices drawn to scale for
  N = 2048 rows and D = 8192 features, and their sizes in float32.

The SVGs keep their text as text and carry no date, so that drawing them again gives the same files
(``tests/test_docs.py`` checks that the committed ones are what this script draws). They are drawn narrow, with
large type, to stay readable on a phone's screen.
"""

from __future__ import annotations

import argparse
import pathlib

import matplotlib

matplotlib.use("svg")
import matplotlib.pyplot as plt
from matplotlib import patches

OUTPUT = pathlib.Path(__file__).resolve().parent / "_static" / "diagrams"
FONT = 13
ROW_COLOUR = "#1f77b4"  # the row group's collective
FEATURE_COLOUR = "#d95f02"  # the feature group's collective
BLOCK_COLOURS = ("#dbe9f6", "#fde0c5", "#cfe8d5", "#e8dff5")
STYLE = {
    "svg.fonttype": "none",  # text stays text: smaller files, the reader's font
    "svg.hashsalt": "redundancy-docs",  # the same element ids at every run
    "font.size": FONT,
    "font.family": "DejaVu Sans",
}


def _save(figure: plt.Figure, path: pathlib.Path) -> pathlib.Path:
    figure.savefig(path, format="svg", metadata={"Date": None}, bbox_inches="tight", pad_inches=0.05)
    plt.close(figure)
    return path


def _arrow(axes, start, end, colour, width=2.5):
    axes.add_patch(
        patches.FancyArrowPatch(
            start, end, arrowstyle="<|-|>", mutation_scale=18, linewidth=width, color=colour, shrinkA=0, shrinkB=0
        )
    )


def _outline(axes, x0, y0, x1, y1, colour):
    axes.add_patch(
        patches.FancyBboxPatch((x0, y0), x1 - x0, y1 - y0, boxstyle="round,pad=0,rounding_size=0.25",
                               facecolor="none", edgecolor=colour, linewidth=3, linestyle=(0, (5, 2)))
    )  # fmt: skip


def feature_grid(path: pathlib.Path) -> pathlib.Path:
    """The N×D views split over 2 row ranks × 2 feature ranks, and the collectives of one loss evaluation."""
    width, height = 4.6, 2.4
    figure, axes = plt.subplots(figsize=(6.4, 8.4))
    axes.set_xlim(-1.3, 2 * width + 1.3)
    axes.set_ylim(-10.8, 2 * height + 1.4)
    axes.set_aspect("equal")
    axes.axis("off")

    # The grid: rank r·F + f holds rows r and columns f of each view.
    for row in range(2):
        for feature in range(2):
            x, y = feature * width, (1 - row) * height
            rank = 2 * row + feature
            axes.add_patch(
                patches.Rectangle((x, y), width, height, facecolor=BLOCK_COLOURS[rank], edgecolor="black", lw=1.5)
            )
            axes.text(x + width / 2, y + height / 2 + 0.4, f"rank {rank}", ha="center", va="center",
                      fontsize=FONT + 2, fontweight="bold")  # fmt: skip
            axes.text(x + width / 2, y + height / 2 - 0.45, f"rows {row}, columns {feature}", ha="center",
                      va="center")  # fmt: skip
    # A feature group is a row of the grid (same rows, other columns); a row group a column (same columns).
    _arrow(axes, (0.4, 2 * height + 0.35), (2 * width - 0.4, 2 * height + 0.35), FEATURE_COLOUR)
    axes.text(width, 2 * height + 0.65, "feature group: ranks 0, 1 (same rows)", ha="center", va="bottom",
              color=FEATURE_COLOUR, fontweight="bold")  # fmt: skip
    _arrow(axes, (2 * width + 0.35, 0.3), (2 * width + 0.35, 2 * height - 0.3), ROW_COLOUR)
    axes.text(2 * width + 0.8, height, "row group: ranks 1, 3", rotation=-90, ha="center", va="center",
              color=ROW_COLOUR, fontweight="bold")  # fmt: skip
    axes.text(width, -0.6, "D features, split by columns", ha="center", va="top")
    axes.annotate("", xy=(0, -0.35), xytext=(2 * width, -0.35), arrowprops={"arrowstyle": "<->", "lw": 1.2})
    axes.text(-0.85, height, "N rows, split by rows", rotation=90, ha="center", va="center")
    axes.annotate("", xy=(-0.45, 0), xytext=(-0.45, 2 * height), arrowprops={"arrowstyle": "<->", "lw": 1.2})

    legend = [
        (ROW_COLOUR, "Over each row group",
         "an all-gather of both views' raw rows:\neach rank then holds all N rows of its\n"
         "D/F columns, and standardizes them"),
        (FEATURE_COLOUR, "Over each feature group",
         "an all-reduce of the two N×N Grams AAᵀ\nand BBᵀ (2·N² elements, whatever D is)\n"
         "and of a few scalars (diagonal terms, ΣC)"),
        ("0.35", "Over both, first",
         "a header all-gather (32 float64 values):\na bad input on one rank raises on all"),
    ]  # fmt: skip
    y = -2.0
    for colour, title, text in legend:
        axes.add_patch(patches.Rectangle((-1.1, y - 0.45), 0.4, 0.4, facecolor=colour, edgecolor="none"))
        axes.text(-0.45, y - 0.25, title, ha="left", va="center", fontweight="bold", color=colour)
        axes.text(-0.45, y - 0.75, text, ha="left", va="top", linespacing=1.35)
        y -= 2.85
    axes.text(-1.1, y + 0.5, "The Gram path's backward pass sends nothing more.", ha="left", va="top",
              fontsize=FONT - 1, style="italic")  # fmt: skip
    return _save(figure, path)


def _matrix(axes, x, y, rows, columns, label, colour, *, fontsize=FONT + 1):
    """A matrix of ``rows``×``columns`` units with its lower left corner at (x, y)."""
    axes.add_patch(patches.Rectangle((x, y), columns, rows, facecolor=colour, edgecolor="black", lw=1.3))
    axes.text(x + columns / 2, y + rows / 2, label, ha="center", va="center", fontsize=fontsize)


def _sign(axes, x, y, sign):
    axes.text(x, y, sign, ha="center", va="center", fontsize=FONT + 8)


def gram_identity(path: pathlib.Path) -> pathlib.Path:
    """‖AᵀB‖² = ⟨AAᵀ, BBᵀ⟩: the D×D matrix C against two N×N Grams, to scale for N = 2048, D = 8192."""
    n, d = 1.0, 4.0  # N : D = 2048 : 8192
    view, gram, big = "#dbe9f6", "#cfe8d5", "#fde0c5"
    figure, axes = plt.subplots(figsize=(6.4, 9.0))
    axes.set_xlim(-0.2, 11.2)
    axes.set_ylim(-12.6, 4.4)
    axes.set_aspect("equal")
    axes.axis("off")

    axes.text(5.5, 4.3, "‖AᵀB‖² = ⟨AAᵀ, BBᵀ⟩", ha="center", va="top", fontsize=FONT + 9)
    axes.text(5.5, 3.0, "Frobenius norm and inner product, for the\nstandardized views A, B (N × D), to scale\n"
              "at N = 2048 rows and D = 8192 features", ha="center", va="top", linespacing=1.35)  # fmt: skip

    # Through C: Aᵀ (D×N) times B (N×D) is the D×D matrix C.
    top = -4.6
    axes.text(0, top + d + 0.35, "cross: the D × D matrix C", ha="left", va="bottom", fontweight="bold")
    _matrix(axes, 0, top, d, n, "Aᵀ", view)
    _sign(axes, 1.5, top + d / 2, "×")
    _matrix(axes, 2.0, top + (d - n) / 2, n, d, "B", view)
    _sign(axes, 6.5, top + d / 2, "=")
    _matrix(axes, 7.0, top, d, d, "C = AᵀB / N", big)
    axes.text(0, top - 0.3, "C: 256 MiB in float32; 2·N·D² FLOPs", ha="left", va="top")

    # Through the Grams: A (N×D) times Aᵀ (D×N) is the N×N matrix AAᵀ; the same for B.
    top = -11.2
    axes.text(0, top + d + 0.35, "gram: two N × N Gram matrices", ha="left", va="bottom", fontweight="bold")
    _matrix(axes, 0, top + (d - n) / 2, n, d, "A", view)
    _sign(axes, 4.5, top + d / 2, "×")
    _matrix(axes, 5.0, top, d, n, "Aᵀ", view)
    _sign(axes, 6.5, top + d / 2, "=")
    _matrix(axes, 7.0, top + (d - n) / 2, n, n, "AAᵀ", gram, fontsize=FONT - 1)
    axes.text(8.25, top + d / 2, "and BBᵀ\nlikewise", ha="left", va="center")
    axes.text(0, top - 0.3, "each Gram: 16 MiB in float32; 2·N²·D FLOPs,\nthen ⟨AAᵀ, BBᵀ⟩ sums N² products",
              ha="left", va="top", linespacing=1.35)  # fmt: skip
    return _save(figure, path)


DIAGRAMS = {"feature_grid.svg": feature_grid, "gram_identity.svg": gram_identity}


def draw(output: pathlib.Path = OUTPUT) -> list[pathlib.Path]:
    """Draw every diagram into ``output``; returns the files written."""
    output.mkdir(parents=True, exist_ok=True)
    with plt.rc_context(STYLE):
        return [draw_one(output / name) for name, draw_one in DIAGRAMS.items()]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--output", type=pathlib.Path, default=OUTPUT, help="default: docs/_static/diagrams")
    for path in draw(parser.parse_args(argv).output):
        print(f"wrote {path}")


if __name__ == "__main__":
    main()
