"""The float32 accuracy table of ``python -m benchmarks.precision``, at its small shapes."""

from benchmarks import precision


def test_the_quick_table_measures_every_row(capsys):
    precision.main(["--quick"])
    lines = capsys.readouterr().out.splitlines()
    rows = [line for line in lines if line.startswith("| ") and "×" in line and "N×D" not in line]
    assert len(rows) == len(precision.rows(quick=True))
    for row in rows:
        library, reference = (float(cell) for cell in row.strip("| ").split(" | ")[-2:])
        assert library <= 1e-5 and reference <= 1e-5, row
