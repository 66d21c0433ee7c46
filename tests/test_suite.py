"""The test suite itself: each test has one name in the whole suite, so that a name found in a report (or given to
``pytest -k``) leads to one test, and a test defined twice in one file does not hide the first."""

import ast
import collections
import pathlib

TESTS = pathlib.Path(__file__).resolve().parent


def _test_names(path: pathlib.Path) -> list[str]:
    """The names of the tests ``path`` defines: its ``test_*`` functions and the ``test_*`` methods of its ``Test*``
    classes (as ``Class.method``)."""
    names = []
    for node in ast.parse(path.read_text(), filename=str(path)).body:
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and node.name.startswith("test"):
            names.append(node.name)
        elif isinstance(node, ast.ClassDef) and node.name.startswith("Test"):
            methods = (item for item in node.body if isinstance(item, ast.FunctionDef | ast.AsyncFunctionDef))
            names += [f"{node.name}.{item.name}" for item in methods if item.name.startswith("test")]
    return names


def test_no_test_name_is_defined_twice_in_the_suite():
    files = collections.defaultdict(list)
    for path in sorted(TESTS.rglob("test_*.py")):
        for name in _test_names(path):
            files[name].append(path.relative_to(TESTS).as_posix())
    assert files, "no tests found"
    twice = {name: where for name, where in sorted(files.items()) if len(where) > 1}
    assert not twice, "tests defined more than once: " + "; ".join(f"{n} in {', '.join(w)}" for n, w in twice.items())
