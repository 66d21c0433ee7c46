"""benchmarks.nuclear_norm: the script runs on tiny shapes and records every timing; the committed run is whole."""

import json
import pathlib
import subprocess
import sys

ROOT = pathlib.Path(__file__).resolve().parents[1]


def test_the_script_runs_on_tiny_shapes(tmp_path):
    output = tmp_path / "nuclear_norm.json"
    arguments = ["--shapes", "24x8", "6x3x10", "--rounds", "2", "--threads", "1", "--json", str(output)]
    command = [sys.executable, "-m", "benchmarks.nuclear_norm", *arguments]
    completed = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert completed.returncode == 0, completed.stderr
    assert "| 6×3×10 | op |" in completed.stdout
    results = json.loads(output.read_text())["results"]
    assert [result["shape"] for result in results] == [[24, 8], [6, 3, 10]]
    for result in results:
        assert set(result["methods"]) == {"op", "svdvals", "svdvals_float64"}
        for timing in result["methods"].values():
            assert len(timing["round_s"]) == 2 and timing["relative_error"] <= 1e-5


def test_the_committed_nuclear_norm_run_is_whole():
    saved = json.loads((ROOT / "benchmarks" / "results" / "cpu-mmcr" / "nuclear_norm.json").read_text())
    shapes = [result["shape"] for result in saved["results"]]
    assert shapes == [[2048, 512], [512, 2048], [2048, 2, 512], [32, 40, 128], [256, 4, 8192]]
    for result in saved["results"]:
        for timing in result["methods"].values():
            assert len(timing["round_s"]) == 7
