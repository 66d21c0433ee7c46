"""The pure-Python pieces of the CPU benchmark suite (the measurements themselves run in CI's smoke run)."""

import pytest

from benchmarks import report, suite


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
