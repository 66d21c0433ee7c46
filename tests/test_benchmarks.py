"""The pure-Python pieces of the CPU benchmark suite (the measurements themselves run in CI's smoke run)."""

import json
import pathlib

import pytest
import torch

from benchmarks import common
from benchmarks import gram_products
from benchmarks import report
from benchmarks import suite


def _timing(median, repeats=5):
    return {"median_s": median, "p20_s": median * 0.9, "p80_s": median * 1.1, "repeats": repeats}


def test_one_round_is_kept_as_measured():
    only = {"full": _timing(2.0)}
    assert suite.combine_rounds([only]) is only


def test_rounds_combine_into_the_median_of_their_medians():
    rounds = [{"forward": _timing(m), "full": _timing(2 * m, repeats=7)} for m in (3.0, 1.0, 9.0, 2.0, 4.0)]
    combined = suite.combine_rounds(rounds)
    assert combined["forward"]["median_s"] == 3.0
    assert combined["full"]["median_s"] == 6.0
    assert combined["full"]["round_medians_s"] == [6.0, 2.0, 18.0, 4.0, 8.0]
    assert combined["full"]["repeats"] == 35
    for mode in ("forward", "full"):
        timing = combined[mode]
        assert min(timing["round_medians_s"]) <= timing["p20_s"] <= timing["median_s"] <= timing["p80_s"]
        assert timing["p80_s"] <= max(timing["round_medians_s"])


def test_the_table_says_how_many_rounds():
    results = {
        "environment": {
            "processor": "cpu",
            "torch_threads": 2,
            "torch": "x",
            "redundancy": "y",
            "date": "z",
            "matmul_gflops": 100.0,
        },
        "device": "cpu",
        "dtype": "float32",
        "rounds": 5,
        "results": [],
    }
    assert "5 interleaved rounds" in report.markdown(results)
    assert "interleaved" not in report.markdown({**results, "rounds": 1})


def test_rounds_must_be_positive(tmp_path, capsys):
    with pytest.raises(SystemExit):
        suite.main(["--rounds", "0", "--quick", "--no-memory", "--no-plots", "--output", str(tmp_path)])
    assert "--rounds must be at least 1" in capsys.readouterr().err
    assert not (tmp_path / "results.json").exists()


@pytest.mark.parametrize(("n", "d"), [(256, 2048), (300, 1024), (64, 64)])
def test_the_block_row_gram_it_compares_against_is_the_same_product(n, d):
    x = torch.randn(n, d, dtype=torch.float64)
    torch.testing.assert_close(gram_products.gram_by_block_rows(x), x @ x.T, rtol=1e-12, atol=1e-12 * d)


def test_gram_products_times_every_method_and_writes_json(tmp_path, capsys):
    output, table = tmp_path / "gram_products.json", tmp_path / "gram_products.md"
    options = ["--rounds", "3", "--calls", "1", "--output", str(tmp_path)]
    gram_products.main(["--shapes", "256x2048", "40x64", *options])
    saved = json.loads(output.read_text())
    assert [(r["n"], r["d"], r["blocks"]) for r in saved["results"]] == [(256, 2048, 4), (40, 64, 1)]
    for result in saved["results"]:
        methods = result["methods"]
        assert set(methods) == {"full", "block-rows", "block-columns"}
        assert methods["full"]["flops"] == 2 * result["n"] ** 2 * result["d"]
        assert methods["block-rows"]["flops"] == methods["block-columns"]["flops"] <= methods["full"]["flops"]
        for timing in methods.values():
            assert 0 < timing["p20_s"] <= timing["median_s"] <= timing["p80_s"]
    assert saved["results"][0]["methods"]["block-columns"]["flops"] == (1 + 1 / 4) * 256 * 256 * 2048
    assert "| 256 | 2048 | 4 | block-columns |" in capsys.readouterr().out
    assert "3 interleaved rounds, 1 call(s) per method and round" in table.read_text()
    assert "| 40 | 64 | 1 | full |" in table.read_text()


def test_gram_products_rounds_must_be_positive(capsys):
    with pytest.raises(SystemExit):
        gram_products.main(["--rounds", "0"])
    assert "--rounds and --calls must be at least 1" in capsys.readouterr().err


def test_gram_products_names_a_bad_shape(capsys):
    with pytest.raises(SystemExit):
        gram_products.main(["--shapes", "256-8192"])
    assert "a shape is NxD, for example 256x8192, got '256-8192'" in capsys.readouterr().err


# ------------------------------------------------------------------------------------------------- report

RESULTS = pathlib.Path(__file__).resolve().parents[1] / "benchmarks" / "results"
SUITE_RUNS = sorted(path.parent for path in RESULTS.glob("*/results.json"))


def _case(full_s, peak_bytes, algorithm="cross", gflops=10.0):
    return {
        "algorithm": algorithm,
        "forward": _timing(full_s / 2),
        "backward": _timing(full_s / 2),
        "full": _timing(full_s),
        "peak_bytes": peak_bytes,
        "gflops_per_s": gflops,
    }


def _run(rows):
    environment = {"processor": "cpu", "torch_threads": 2, "torch": "x", "redundancy": "y", "date": "z"}
    return {
        "environment": {**environment, "matmul_gflops": 100.0},
        "device": "cpu",
        "dtype": "float32",
        "results": [{"n": n, "d": d, "cases": cases} for n, d, cases in rows],
    }


def test_the_runs_are_committed_in_folders_named_by_what_they_hold():
    assert [path.name for path in SUITE_RUNS] == [
        "cpu",
        "cpu-d8192-interleaved-1",
        "cpu-d8192-interleaved-2",
        "cpu-d8192-interleaved-3",
        "cpu-d8192-interleaved-4",
        "cpu-nine-shapes",
        "cpu-small-call",
    ]


@pytest.mark.parametrize("folder", SUITE_RUNS, ids=lambda path: path.name)
def test_the_committed_tables_are_those_the_report_makes_from_the_committed_json(folder, tmp_path):
    saved = json.loads((folder / "results.json").read_text())
    report.write_tables(saved, tmp_path)
    for written in sorted(tmp_path.iterdir()):
        committed = folder / written.name
        assert committed.is_file(), f"{committed} is missing: run python -m benchmarks.report {folder}/results.json"
        assert committed.read_text() == written.read_text(), (
            f"{committed} is not what the report makes of results.json: "
            f"run python -m benchmarks.report {folder}/results.json"
        )


def test_the_committed_gram_products_table_is_the_one_the_report_makes():
    saved = json.loads((RESULTS / "cpu" / "gram_products.json").read_text())
    assert (RESULTS / "cpu" / "gram_products.rst").read_text() == report.gram_products_rst(saved)


def test_the_summary_takes_the_fastest_case_of_the_library_per_shape():
    mib = 2**20
    run = _run(
        [
            (
                256,
                8192,
                {
                    "reference": _case(3.0, 1600 * mib),
                    "reference-compiled": _case(0.01, 1800 * mib),  # faster, but not a case of the library
                    "redundancy-auto-torch": _case(0.04, 26 * mib, "gram"),
                    "redundancy-gram-torch": _case(0.03, 32 * mib, "gram"),
                    "redundancy-cross-torch": _case(0.5, 400 * mib),
                },
            ),
            (32, 128, {"reference": _case(1e-3, 0), "redundancy-auto-torch": _case(5e-4, None, "gram")}),
        ]
    )
    first, second = report.summary_rows(run)
    assert first == ("256", "8192", "3000.00", "1600.0", "gram-torch (gram)", "30.00", "32.0", "100.0×", "0.020")
    assert second == ("32", "128", "1.00", "0.0", "auto-torch (gram)", "0.50", "–", "2.0×", "–")


def test_the_rst_tables_hold_every_row_and_cell():
    mib = 2**20
    cases = {"reference": _case(2e-3, mib), "redundancy-auto-torch": _case(1e-3, mib // 2)}
    run = _run([(8, 64, cases), (9, 64, cases)])
    text = report.table_rst(run)
    assert text.startswith("Device: cpu (cpu, 2 threads), dtype float32")
    table = text[text.index(".. list-table::") :]
    assert ":class: numbers text-3 text-4" in table
    cells = [line[7:] for line in table.splitlines() if line.startswith(("   * - ", "     - "))]
    columns = len(report.PAGE_COLUMNS)
    assert cells[:columns] == list(report.PAGE_COLUMNS) and set(report.PAGE_COLUMNS) <= set(report.GRID_HEADER)
    assert len(cells) == columns * (1 + 4)
    assert cells[columns * 4 : columns * 4 + 3] == ["9", "64", "redundancy-auto-torch"]
    assert "2.0×" in cells and "0.500" in cells
    markdown = report.markdown(run)  # the full table: every column
    assert "| " + " | ".join(report.GRID_HEADER) + " |" in markdown


def test_the_headline_points_are_speedup_and_memory_reduction_per_d():
    mib = 2**20
    run = _run(
        [
            (n, d, {"reference": _case(d * 1e-3, d * mib), "redundancy-auto-torch": _case(1e-3, n * mib, "gram")})
            for n in (32, 256, 2048)
            for d in (8192, 128)
        ]
    )
    points = report.headline_points(run)
    assert list(points) == [256, 2048]
    assert points[256] == [(128, pytest.approx(128.0), pytest.approx(0.5)), (8192, pytest.approx(8192.0), 32.0)]
    with pytest.raises(ValueError, match="no shape with N=512"):
        report.headline_points(run, batches=(512,))


def test_the_headline_figure_is_drawn_from_the_runs(tmp_path, capsys):
    pytest.importorskip("matplotlib")
    grid = tmp_path / "grid.json"
    repeat = tmp_path / "repeat.json"
    mib = 2**20
    cases = {"reference": _case(1.0, 8 * mib), "redundancy-auto-torch": _case(0.1, mib)}
    grid.write_text(json.dumps(_run([(n, d, cases) for n in (256, 2048) for d in (128, 8192)])))
    repeat.write_text(json.dumps(_run([(n, 8192, cases) for n in (256, 2048)])))
    figure = tmp_path / "headline.png"
    report.main(["--headline", str(figure), str(grid), str(repeat)])
    narrow = tmp_path / "headline-narrow.png"
    assert figure.read_bytes().startswith(b"\x89PNG") and narrow.read_bytes().startswith(b"\x89PNG")
    output = capsys.readouterr().out
    assert f"wrote {figure}" in output and f"wrote {narrow}" in output
    from PIL import Image

    (wide_width, wide_height), (narrow_width, narrow_height) = Image.open(figure).size, Image.open(narrow).size
    assert wide_width > wide_height and narrow_height > narrow_width  # side by side, and stacked for a phone


def test_the_report_names_a_missing_results_file(tmp_path, capsys):
    with pytest.raises(SystemExit):
        report.main([str(tmp_path / "nothing.json")])
    assert f"no such results file: {tmp_path / 'nothing.json'}" in capsys.readouterr().err


def test_the_committed_comparison_of_the_interleaved_runs_is_the_one_the_report_makes():
    runs = [json.loads((RESULTS / f"cpu-d8192-interleaved-{i}" / "results.json").read_text()) for i in (1, 2, 3, 4)]
    assert (RESULTS / "cpu-d8192-interleaved-runs.rst").read_text() == report.runs_rst(runs)


def test_the_runs_table_puts_each_shape_of_every_run_side_by_side(tmp_path):
    mib = 2**20

    def run(date, auto_s):
        cases = {"reference": _case(2.0, 10 * mib), "redundancy-auto-torch": _case(auto_s, mib, "gram", gflops=50.0)}
        saved = _run([(2048, 8192, cases), (256, 8192, cases)])
        saved["environment"]["date"] = date
        return saved

    first, second = run("2026-01-02T03:04:05+00:00", 0.5), run("2026-01-02T04:00:00+00:00", 0.25)
    paths = [tmp_path / "first.json", tmp_path / "second.json"]
    for path, saved in zip(paths, (first, second), strict=True):
        path.write_text(json.dumps(saved))
    output = tmp_path / "runs.rst"
    report.main(["--runs", str(output), *map(str, paths)])
    cells = [line[7:] for line in output.read_text().splitlines() if line.startswith(("   * - ", "     - "))]
    width = len(report.RUNS_HEADER)
    rows = [cells[i : i + width] for i in range(width, len(cells), width)]
    assert cells[3] == "started 2026-01-02"  # one day: the date once, the time in the rows
    assert [(row[0], row[2], row[3], row[7], row[8], row[9]) for row in rows] == [
        ("256", "1", "03:04", "4.0×", "0.100", "50%"),
        ("256", "2", "04:00", "8.0×", "0.100", "50%"),
        ("2048", "1", "03:04", "4.0×", "0.100", "50%"),
        ("2048", "2", "04:00", "8.0×", "0.100", "50%"),
    ]
    second["environment"]["date"] = "2026-01-03T00:00:00+00:00"
    assert "     - 2026-01-03 00:00" in report.runs_rst([first, second])


def test_the_headline_figure_names_the_batch_size_a_run_lacks(tmp_path, capsys):
    cases = {"reference": _case(1.0, 2**20), "redundancy-auto-torch": _case(0.1, 2**19)}
    grid = tmp_path / "grid.json"
    grid.write_text(json.dumps(_run([(2048, 8192, cases)])))
    with pytest.raises(SystemExit):
        report.main(["--headline", str(tmp_path / "headline.png"), str(grid)])
    assert "--headline: the run has no shape with N=256 and both reference and redundancy-auto-torch" in (
        capsys.readouterr().err
    )
    assert not (tmp_path / "headline.png").exists()


# ------------------------------------------------------------------------------------------------ spawn_gloo


def _fake_runs(outcomes: list[str]):
    """A stand-in for ``torch.multiprocessing.start_processes``: run ``k`` has the outcome ``outcomes[k]``: "ok"
    (every rank saved its result and left), "abort after" (the same, then SIGABRT at teardown), "abort before"
    (SIGABRT while rank 1 was still working) or "error" (a rank raised)."""
    runs = iter(outcomes)

    def start_processes(_fn, args, nprocs, **_):
        _body, _world_size, directory, _timeout = args
        outcome = next(runs)
        for rank in range(nprocs):
            if outcome == "abort before" and rank == 1:
                break
            torch.save(f"{directory.name} rank {rank}", directory / f"rank{rank}.pt")
            (directory / f"rank{rank}.left").touch()
        if outcome.startswith("abort"):
            raise torch.multiprocessing.ProcessExitedException("aborted", 0, 1, -6, "SIGABRT")
        if outcome == "error":
            raise torch.multiprocessing.ProcessRaisedException("a rank raised", 0, 1)

    return start_processes


@pytest.mark.parametrize(
    ("outcomes", "expected"),
    [
        (["ok"], ["attempt1 rank 0", "attempt1 rank 1"]),
        (["abort after"], ["attempt1 rank 0", "attempt1 rank 1"]),
        (["abort before", "ok"], ["attempt2 rank 0", "attempt2 rank 1"]),
        (["abort before", "abort before", "abort after"], ["attempt3 rank 0", "attempt3 rank 1"]),
    ],
)
def test_spawn_gloo_keeps_a_run_that_aborted_only_at_teardown(monkeypatch, tmp_path, outcomes, expected):
    monkeypatch.setattr(common.mp, "start_processes", _fake_runs(outcomes))
    assert common.spawn_gloo(print, 2, tmp_path) == expected


@pytest.mark.parametrize(
    ("outcomes", "error"),
    [
        (["abort before"] * 3, torch.multiprocessing.ProcessExitedException),
        (["error", "ok"], torch.multiprocessing.ProcessRaisedException),
    ],
)
def test_spawn_gloo_raises_a_run_that_failed(monkeypatch, tmp_path, outcomes, error):
    monkeypatch.setattr(common.mp, "start_processes", _fake_runs(outcomes))
    with pytest.raises(error):
        common.spawn_gloo(print, 2, tmp_path)
