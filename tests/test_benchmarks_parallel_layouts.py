"""benchmarks.parallel_layouts: its figures are the cost model's, and the committed table is the current one."""

import json
import math
import pathlib

import pytest
import torch

from benchmarks import parallel_layouts
from redundancy import cost
from redundancy.barlow_twins import FEATURE_PARALLEL_COST

ROOT = pathlib.Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results" / "cpu"
MIB = 2**20


@pytest.mark.parametrize("world_size", [2, 6, 8, 12, 64])
def test_grids_are_every_layout_of_the_ranks(world_size):
    layouts = parallel_layouts.grids(world_size)
    assert layouts[:2] == [(world_size, 1), (1, world_size)]
    assert all(rows * features == world_size for rows, features in layouts)
    assert len(set(layouts)) == len(layouts)
    for rows, features in layouts[2:]:
        assert rows > 1 and features > 1 and max(rows, features) <= 4 * min(rows, features)
    assert parallel_layouts.grids(8)[2:] == [(2, 4), (4, 2)]
    assert parallel_layouts.grids(64)[2:] == [(4, 16), (8, 8), (16, 4)]


def test_grids_reject_a_single_rank():
    with pytest.raises(ValueError, match="world_size"):
        parallel_layouts.grids(1)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize(("n", "d"), [(2048, 8192), (2048, 65536), (4096, 1000), (37, 70)])
def test_every_figure_is_the_cost_models(n, d, dtype):
    itemsize = 8 if dtype == torch.float64 else 4
    for result in parallel_layouts.table(n, [d], [8, 12], dtype):
        rows, features, world_size = result["rows"], result["features"], result["world_size"]
        assert rows * features == world_size
        algorithm = result["algorithm"]
        if features == 1:
            assert result["layout"] == "data-parallel"
            strategy = cost.choose_strategy(n, d, world_size, dtype)
            assert result["strategy"] == strategy
            assert result["bytes_per_rank"] == cost.communication_bytes(strategy, n, d, world_size, dtype)
            assert result["flops_per_rank"] == cost.strategy_flops(strategy, n, d, world_size, algorithm=algorithm)
            assert algorithm == ("cross" if strategy == "all_reduce" else cost.choose_algorithm(n, d))
            held_rows = math.ceil(n / world_size) if strategy == "all_reduce" else n
            assert result["view"]["shape"] == [held_rows, d]
            product = [d, d] if algorithm == "cross" else [n, n]
        else:
            assert result["layout"] == ("feature-parallel" if rows == 1 else "2-D")
            chosen = cost.choose_feature_parallel_algorithm(n, d, rows, features, dtype, loss=FEATURE_PARALLEL_COST)
            assert algorithm == chosen
            assert result["bytes_per_rank"] == cost.feature_parallel_bytes(
                algorithm, n, d, rows, features, dtype, loss=FEATURE_PARALLEL_COST
            )
            assert result["flops_per_rank"] == cost.feature_parallel_flops(
                algorithm, n, d, rows, features, loss=FEATURE_PARALLEL_COST
            )
            columns = math.ceil(d / features)
            assert result["view"]["shape"] == ([n, columns] if algorithm == "gram" else [n, d])
            product = [n, n] if algorithm == "gram" else [columns, d]
        assert result["loss_matrix"]["shape"] == product
        for entry in (result["loss_matrix"], result["view"]):
            assert entry["mib"] == math.prod(entry["shape"]) * itemsize / MIB


def test_bytes_are_relative_to_the_data_parallel_layout_of_the_same_ranks_and_width():
    results = parallel_layouts.table(2048, [8192, 65536], [8, 64])
    for result in results:
        (data_parallel,) = [
            r for r in results if (r["world_size"], r["d"], r["features"]) == (result["world_size"], result["d"], 1)
        ]
        assert result["bytes_vs_data_parallel"] == result["bytes_per_rank"] / data_parallel["bytes_per_rank"]


@pytest.mark.parametrize("d", [8192, 32768, 65536])
@pytest.mark.parametrize("world_size", [8, 64])
def test_for_the_loss_alone_features_only_is_the_cheapest_layout(world_size, d):
    """What docs/feature_parallel.rst says of the table: 1×W sends the fewest bytes and spends the fewest FLOPs."""
    results = parallel_layouts.table(2048, [d], [world_size])
    (features_only,) = [r for r in results if r["rows"] == 1]
    for key in ("bytes_per_rank", "flops_per_rank"):
        assert features_only[key] == min(r[key] for r in results), key
    assert features_only["bytes_per_rank"] < results[0]["bytes_per_rank"] / 7  # data-parallel's, at least 7× more


def test_the_script_writes_json_and_the_rst_table(tmp_path, capsys):
    output, rendered = tmp_path / "parallel_layouts.json", tmp_path / "parallel_layouts.rst"
    arguments = ["--n", "64", "--d", "96", "200", "--world-sizes", "4", "--output", str(tmp_path)]
    results = parallel_layouts.main(arguments)
    saved = json.loads(output.read_text())
    assert saved == {"dtype": "float32", "results": results}
    assert [(r["d"], r["rows"], r["features"]) for r in results] == [
        (d, rows, features) for d in (96, 200) for rows, features in [(4, 1), (1, 4), (2, 2)]
    ]
    table = rendered.read_text()
    assert table in capsys.readouterr().out
    assert table.count("   * - 4\n") == 2 * len(results)  # one row per layout in each table, after the headers
    assert "     - 2-D 2×2\n" in table


def test_layouts_benchmark_bad_arguments_are_named(capsys):
    for arguments, message in (
        (["--n", "1"], "--n must be at least 2"),
        (["--d", "0"], "--d must be at least 1"),
        (["--world-sizes", "1"], "--world-sizes must be at least 2"),
    ):
        with pytest.raises(SystemExit):
            parallel_layouts.main(arguments)
        assert message in capsys.readouterr().err


def test_the_committed_table_is_the_current_cost_model():
    """The table the docs include is what the script gives now (regenerate it when the cost model changes)."""
    saved = json.loads((RESULTS / "parallel_layouts.json").read_text())
    current = parallel_layouts.table(2048, [8192, 32768, 65536], [8, 64])
    assert saved == {"dtype": "float32", "results": current}
    assert (RESULTS / "parallel_layouts.rst").read_text() == parallel_layouts.rst(current, "float32")
    page = (ROOT / "docs" / "feature_parallel.rst").read_text()
    assert ".. include:: ../benchmarks/results/cpu/parallel_layouts.rst" in page
