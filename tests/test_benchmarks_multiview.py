"""benchmarks.multiview: both methods compute the same loss, every timing is recorded, and the saved run is whole."""

import json
import pathlib

import pytest
import torch

from benchmarks import multiview
from redundancy import cost

RESULTS = pathlib.Path(__file__).resolve().parents[1] / "benchmarks" / "results" / "cpu"


@pytest.mark.parametrize("loss", list(multiview.LOSSES))
@pytest.mark.parametrize("algorithm", ["auto", "gram", "cross"])
def test_the_two_methods_compute_the_same_loss_and_gradients(loss, algorithm):
    generator = torch.Generator().manual_seed(0)
    base = [torch.randn(24, 40, generator=generator, dtype=torch.float64) for _ in range(4)]
    grads = {}
    for name in ("multiview", "pairs"):
        views = [view.clone().requires_grad_() for view in base]
        multiview.methods(loss, views, algorithm)[name]()
        grads[name] = torch.stack([view.grad for view in views])
    torch.testing.assert_close(grads["multiview"], grads["pairs"], rtol=1e-10, atol=1e-14)


def test_flops_of_the_two_methods():
    flops = multiview.matrix_flops("barlow_twins", "auto", 256, 8192, 4)
    assert flops["pairs"] == 3 * flops["multiview"]
    # At N = D the loop's pairs take the cross path, the multi-view loss the shared Grams (N < 0.875·3·D).
    flops = multiview.matrix_flops("barlow_twins", "auto", 2048, 2048, 4)
    assert flops["pairs"] == 6 * cost.barlow_twins_flops("cross", 2048, 2048)
    assert flops["multiview"] == cost.multiview_barlow_twins_flops("gram", 2048, 2048, 4)
    flops = multiview.matrix_flops("vicreg", "gram", 64, 128, 3)
    assert flops["pairs"] == 2 * flops["multiview"]


def test_the_script_times_both_methods_and_writes_json_and_markdown(tmp_path, capsys):
    output, table = tmp_path / "multiview.json", tmp_path / "multiview.md"
    multiview.main(["--views", "2", "3", "--shapes", "32x48", "--rounds", "3", "--output", str(tmp_path)])
    saved = json.loads(output.read_text())
    assert [(r["views"], r["n"], r["d"]) for r in saved["results"]] == [(2, 32, 48), (3, 32, 48)]
    for result in saved["results"]:
        assert set(result["methods"]) == {"multiview", "pairs"}
        for timing in result["methods"].values():
            assert len(timing["round_s"]) == 3
            assert 0 < timing["p20_s"] <= timing["median_s"] <= timing["p80_s"]
        speedup = result["speedup"]
        assert speedup["p20"] <= speedup["median"] <= speedup["p80"]
        assert speedup["flop_ratio"] == result["views"] - 1
    assert "| barlow_twins | 3 | 32 | 48 | auto | multiview |" in capsys.readouterr().out
    assert "3 interleaved rounds, 1 call(s) per method and round" in table.read_text()


def test_multiview_benchmark_bad_arguments_are_named(capsys):
    for arguments, message in (
        (["--rounds", "0"], "--rounds and --calls must be at least 1"),
        (["--views", "1"], "--views must be at least 2"),
        (["--shapes", "256-8192"], "a shape is NxD, for example 256x8192, got '256-8192'"),
    ):
        with pytest.raises(SystemExit):
            multiview.main(arguments)
        assert message in capsys.readouterr().err


def test_the_committed_run_is_the_headline_shape_and_as_fast_as_claimed():
    saved = json.loads((RESULTS / "multiview.json").read_text())
    assert saved["dtype"] == "float32" and saved["environment"]["torch_threads"] == 2
    (result,) = [
        r for r in saved["results"] if (r["loss"], r["views"], r["n"], r["d"]) == ("barlow_twins", 4, 256, 8192)
    ]
    rounds = len(result["methods"]["multiview"]["round_s"])
    assert rounds >= 10
    assert result["speedup"]["median"] >= 2.0  # the figure docs/multiview.rst quotes
    assert f"{rounds} interleaved rounds" in (RESULTS / "multiview.md").read_text()


def docs_table_cells(result: dict) -> tuple[str, str, str]:
    """The cells of docs/multiview.rst's measured table for one result: multi-view ms, loop ms, speed-up."""
    cells = []
    for name in ("multiview", "pairs"):
        timing = result["methods"][name]
        cells.append(f"{timing['median_s'] * 1e3:.1f} ({timing['p20_s'] * 1e3:.1f}–{timing['p80_s'] * 1e3:.1f})")
    speedup = result["speedup"]
    cells.append(f"{speedup['median']:.2f}× ({speedup['p20']:.2f}–{speedup['p80']:.2f})")
    return tuple(cells)


def test_the_docs_quote_the_committed_run():
    saved = json.loads((RESULTS / "multiview.json").read_text())
    page = (pathlib.Path(__file__).resolve().parents[1] / "docs" / "multiview.rst").read_text()
    quoted = [r for r in saved["results"] if (r["loss"], r["n"], r["d"]) == ("barlow_twins", 256, 8192)]
    assert [r["views"] for r in quoted] == [2, 3, 4, 6]
    for result in quoted:
        rows = "\n".join(f"     - {cell}" for cell in docs_table_cells(result))
        assert f"   * - {result['views']}\n{rows}\n" in page, f"V = {result['views']}: {docs_table_cells(result)}"


def test_the_docs_quote_the_committed_vicreg_run():
    (result,) = json.loads((RESULTS / "multiview_vicreg.json").read_text())["results"]
    assert (result["loss"], result["views"], result["n"], result["d"]) == ("vicreg", 4, 256, 8192)
    speedup = result["speedup"]
    page = (pathlib.Path(__file__).resolve().parents[1] / "docs" / "multiview.rst").read_text()
    assert f"{speedup['median']:.2f}× ({speedup['p20']:.2f}–{speedup['p80']:.2f})" in " ".join(page.split())
