"""A benchmark run never changes the committed results: unless ``--output`` names a folder, every entry point
writes into a new folder under ``benchmarks/results/local/``, which git ignores. Nothing here is timed."""

import os
import pathlib
import shutil
import subprocess
import sys

import pytest
import torch

from benchmarks import crossover
from benchmarks import gpu
from benchmarks import gram_products
from benchmarks import multiview
from benchmarks import parallel_layouts
from benchmarks import report
from benchmarks import suite
from benchmarks.common import LOCAL_RESULTS

ROOT = pathlib.Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"

#: Every entry point that writes results, and the arguments it needs besides its options.
ENTRY_POINTS = {
    "python -m benchmarks": (suite, []),
    "benchmarks.crossover": (crossover, []),
    "benchmarks.gpu": (gpu, []),
    "benchmarks.gram_products": (gram_products, []),
    "benchmarks.multiview": (multiview, []),
    "benchmarks.parallel_layouts": (parallel_layouts, []),
    "benchmarks.report": (report, ["results.json"]),
}


def _git(*arguments: str) -> subprocess.CompletedProcess:
    return subprocess.run(["git", "-C", str(ROOT), *arguments], capture_output=True, text=True, check=False)


@pytest.fixture(scope="module")
def git_work_tree():
    """Skips where the project is not a git work tree (an unpacked source archive): there is nothing to ignore."""
    if shutil.which("git") is None or _git("rev-parse", "--is-inside-work-tree").stdout.strip() != "true":
        pytest.skip("not a git work tree: what git ignores cannot be asked")


def _assert_ignored_and_untracked(folder: pathlib.Path) -> None:
    probe = folder / "results.json"
    assert _git("check-ignore", "--quiet", "--no-index", str(probe)).returncode == 0, f"git does not ignore {probe}"
    assert _git("ls-files", "--", str(folder)).stdout == "", f"{folder} holds committed files"


def test_the_local_results_folder_is_in_gitignore_and_holds_nothing_committed():
    assert "benchmarks/results/local/" in (ROOT / ".gitignore").read_text().splitlines()
    assert LOCAL_RESULTS == RESULTS / "local"


@pytest.mark.parametrize("name", ENTRY_POINTS)
def test_the_default_output_is_a_new_folder_that_git_ignores(name, git_work_tree):
    module, arguments = ENTRY_POINTS[name]
    folder = module.build_parser().parse_args(arguments).output
    assert folder.parent == LOCAL_RESULTS, f"{name} writes into {folder} by default"
    _assert_ignored_and_untracked(folder)


@pytest.mark.parametrize("name", ENTRY_POINTS)
def test_output_names_the_folder(name, tmp_path):
    module, arguments = ENTRY_POINTS[name]
    assert module.build_parser().parse_args([*arguments, "--output", str(tmp_path)]).output == tmp_path


def _run_with_the_default_output(run) -> list[pathlib.Path]:
    """Run ``run()`` and return the new folders of LOCAL_RESULTS it made, checking that git sees no other change."""
    before_status = _git("status", "--porcelain", "--untracked-files=all", "--", "benchmarks").stdout
    before = set(LOCAL_RESULTS.iterdir()) if LOCAL_RESULTS.is_dir() else set()
    try:
        run()
        made = sorted(set(LOCAL_RESULTS.iterdir()) - before) if LOCAL_RESULTS.is_dir() else []
        assert _git("status", "--porcelain", "--untracked-files=all", "--", "benchmarks").stdout == before_status
        return made
    finally:
        for folder in set(LOCAL_RESULTS.iterdir()) - before if LOCAL_RESULTS.is_dir() else ():
            shutil.rmtree(folder)


def test_a_run_without_output_leaves_the_committed_results_as_they_are(git_work_tree, capsys):
    made = _run_with_the_default_output(lambda: parallel_layouts.main(["--n", "64", "--d", "96", "--world-sizes", "4"]))
    assert [folder.name.endswith("-parallel_layouts") for folder in made] == [True]
    assert f"wrote {made[0] / 'parallel_layouts.json'}" in capsys.readouterr().out


def test_the_report_of_a_committed_run_writes_beside_it_only_when_output_names_its_folder(git_work_tree, capsys):
    committed = RESULTS / "cpu-small-call"
    made = _run_with_the_default_output(lambda: report.main([str(committed / "results.json"), "--no-plots"]))
    assert len(made) == 1 and made[0].name.endswith("-report")
    out = capsys.readouterr().out
    assert f"wrote {made[0] / 'table.rst'}" in out and str(committed) not in out


def test_the_report_takes_one_run_of_the_suite_per_folder(tmp_path, capsys):
    runs = [RESULTS / "cpu-small-call" / "results.json", RESULTS / "cpu-nine-shapes" / "results.json"]
    with pytest.raises(SystemExit):
        report.main([*map(str, runs), "--no-plots", "--output", str(tmp_path)])
    assert "give one results.json of the suite per --output folder" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []


def test_the_report_writes_a_run_and_its_gram_products_into_the_output_folder(tmp_path):
    committed = RESULTS / "cpu"
    report.main([str(committed / "results.json"), str(committed / "gram_products.json"), "--no-plots",
                 "--output", str(tmp_path)])  # fmt: skip
    for name in ("results.md", "table.rst", "summary.rst", "gram_products.rst"):
        assert (tmp_path / name).read_text() == (committed / name).read_text(), name


@pytest.mark.skipif(shutil.which("bash") is None, reason="needs bash")
def test_the_gpu_check_without_a_folder_writes_into_a_new_ignored_folder(git_work_tree):
    if torch.cuda.is_available():
        pytest.skip("with CUDA the script runs the whole GPU check")
    command = ["bash", str(ROOT / "benchmarks" / "gpu_check.sh")]
    environment = {**os.environ, "PYTHON": sys.executable}
    done = []
    made = _run_with_the_default_output(
        lambda: done.append(subprocess.run(command, capture_output=True, text=True, check=False, env=environment))
    )
    assert done[0].returncode == 2, done[0].stdout + done[0].stderr  # no CUDA: it stops after the environment
    assert len(made) == 1 and made[0].name.endswith("-gpu-check")
