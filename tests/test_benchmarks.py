"""The pure-Python pieces of the CPU benchmark suite (the measurements themselves run in CI's smoke run)."""

import json

import pytest
import torch

from benchmarks import gram_products, report, suite


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
    options = ["--rounds", "3", "--calls", "1", "--json", str(output), "--markdown", str(table)]
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
