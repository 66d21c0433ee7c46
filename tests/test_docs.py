"""The documentation stays true: its examples run, its tables are recomputed, every public name is documented.

- Every ``>>>`` example of ``docs/*.rst`` runs as a doctest (the docstring examples run through
  ``--doctest-modules``).
- Every value of the "loss on the shared input" tables is recomputed from the page's own source (options and
  printed value) on the golden ``small`` case, and checked against :mod:`redundancy.reference` and the values the
  published implementations give (``golden_cases``).
- Every public name has an ``Example`` in its docstring and an entry on the API reference page.
"""

import ast
import doctest
import inspect
import pathlib
import re

import pytest
import torch

import redundancy
from redundancy import (
    cca_ssg,
    cost,
    diagnostics,
    distributed,
    functional,
    mixed_barlow_twins,
    reference,
    regularizers,
    spectral_contrastive,
    vicreg,
)
from redundancy.compat import lightly, solo

DOCS = pathlib.Path(__file__).resolve().parents[1] / "docs"
PAGES = sorted(DOCS.glob("*.rst"))

#: Pages whose tables give a loss on the shared input, with the function that computes it and its reference.
TABLE_LOSSES = {
    "concepts.rst": (redundancy.barlow_twins_loss, reference.barlow_twins_loss_reference),
    "family.rst": (redundancy.vicreg_loss, reference.vicreg_loss_reference),
}

#: Options of a table row → the golden key holding the value the published implementation itself gives.
PUBLISHED_VALUES = {
    "concepts.rst": {
        (): "official_main_py (batchnorm, eps=1e-5, lambd=0.0051)",
        (("lambd", 5e-3),): "lightly BarlowTwinsLoss() default lambda_param=5e-3",
        (("eps", 0.0), ("normalization", "std")): "paper Algorithm 1 (unbiased std, no eps, lambd=0.0051)",
        (("off_diagonal_target", -1.0),): "HSIC variant (batchnorm, eps=1e-5, lambd=0.0051, off-diagonal target -1)",
        (("lambd", 5e-3), ("scale", 0.025)): "solo-learn barlow_loss_func defaults (lamb=5e-3, scale_loss=0.025)",
    },
    "family.rst": {
        (): "official VICReg main_vicreg.py (25/25/1, eps=1e-4)",
        (("variance_reduction", "sum"),): "solo-learn vicreg_loss_func defaults",
    },
}

#: Modules whose public functions and classes are the package's API.
API_MODULES = (
    redundancy,
    functional,
    vicreg,
    regularizers,
    mixed_barlow_twins,
    cca_ssg,
    spectral_contrastive,
    diagnostics,
    cost,
    distributed,
    reference,
    lightly,
    solo,
)


# --------------------------------------------------------------------------------------------- examples


@pytest.mark.parametrize("page", PAGES, ids=lambda path: path.name)
def test_page_examples_run(page):
    parser = doctest.DocTestParser()
    test = parser.get_doctest(page.read_text(), {}, page.name, str(page), 0)
    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    failures = []
    runner.run(test, out=failures.append)
    assert runner.failures == 0, "".join(failures)


# ------------------------------------------------------------------------------------------------ tables


def _list_tables(text: str) -> list[list[list[str]]]:
    """The rows (lists of cell texts) of every ``list-table`` of an rst page."""
    tables, rows = [], None
    for line in text.splitlines():
        if line.startswith(".. list-table::"):
            rows = []
            tables.append(rows)
        elif rows is None:
            continue
        elif line.startswith("   * - "):
            rows.append([line[len("   * - ") :].strip()])
        elif line.startswith("     - ") and rows:
            rows[-1].append(line[len("     - ") :].strip())
        elif line.startswith("       ") and rows:
            rows[-1][-1] += " " + line.strip()
        elif line and not line.startswith("   "):
            rows = None
    return tables


def _options(cell: str) -> dict:
    """``defaults`` or ``name=value, ...`` (in double back-quotes) as keyword arguments."""
    source = cell.replace("``", "").strip()
    if source == "defaults":
        return {}
    call = ast.parse(f"options({source})", mode="eval").body
    return {keyword.arg: ast.literal_eval(keyword.value) for keyword in call.keywords}


def _shared_input_rows(page: str) -> list[tuple[str, dict, str]]:
    """``(implementation, options, printed value)`` of the rows of the page's "loss on the shared input" tables."""
    rows = []
    for table in _list_tables((DOCS / page).read_text()):
        header = table[0]
        if "loss on the shared input" not in header:
            continue
        name, options, value = (
            header.index("implementation"),
            header.index("options"),
            header.index("loss on the shared input"),
        )
        rows += [(row[name], _options(row[options]), row[value]) for row in table[1:]]
    return rows


@pytest.fixture(scope="module")
def shared_input(golden_cases):
    (case,) = [case for case in golden_cases if case["name"] == "small"]
    z1 = torch.tensor(case["z1"], dtype=torch.float64)
    z2 = torch.tensor(case["z2"], dtype=torch.float64)
    return z1, z2, case["expected"]


@pytest.mark.parametrize("page", sorted(TABLE_LOSSES))
def test_shared_input_tables_are_recomputed(page, shared_input):
    z1, z2, published = shared_input
    loss_function, reference_function = TABLE_LOSSES[page]
    rows = _shared_input_rows(page)
    assert len(rows) >= 3, f"no table of losses on the shared input found on {page}"
    checked_published = set()
    for implementation, options, printed in rows:
        value = loss_function(z1, z2, **options).item()
        assert f"{value:.10g}" == printed, f"{page}, {implementation}: the page says {printed}, the code gives {value}"
        expected = reference_function(z1, z2, **options).item()
        assert value == pytest.approx(expected, rel=1e-10), f"{page}, {implementation}: differs from the reference"
        key = tuple(sorted(options.items()))
        if key in PUBLISHED_VALUES[page]:
            golden = published[PUBLISHED_VALUES[page][key]]
            assert value == pytest.approx(golden, rel=1e-10), f"{page}, {implementation}: differs from {golden}"
            checked_published.add(key)
    missing = set(PUBLISHED_VALUES[page]) - checked_published
    assert not missing, f"{page} has no row for the published values of {missing}"


def test_table_parser_reads_options_and_values():
    rows = _shared_input_rows("concepts.rst")
    by_options = {tuple(sorted(options.items())): printed for _, options, printed in rows}
    assert (("lambd", 5e-3), ("scale", 0.025)) in by_options
    assert (("eps", 0.0), ("lambd", "auto"), ("normalization", "std"), ("off_diagonal_target", -1.0)) in by_options
    assert all(float(printed) > 0 for printed in by_options.values())


# ------------------------------------------------------------------------------------------- public names


def _public_objects() -> list[tuple[str, str, object]]:
    """``(module name, name, object)`` of every public function and class of the API modules."""
    found = []
    for module in API_MODULES:
        names = getattr(module, "__all__", None) or [name for name in vars(module) if not name.startswith("_")]
        for name in names:
            obj = getattr(module, name)
            if not (inspect.isfunction(obj) or inspect.isclass(obj)):
                continue
            if module is not redundancy and obj.__module__ != module.__name__:
                continue  # an import, documented where it is defined
            found.append((module.__name__, name, obj))
    return found


def _public_constants() -> list[tuple[str, str]]:
    return [
        (module.__name__, name)
        for module in (cost, distributed)
        for name, value in vars(module).items()
        if name.isupper() and not name.startswith("_") and isinstance(value, (int, float, tuple))
    ]


def _documented_names() -> set[str]:
    """Qualified names that the API page documents with an autodoc directive or an automodule member list."""
    text = (DOCS / "api.rst").read_text()
    documented = set(re.findall(r"^\.\. auto(?:function|class|data)::\s+(\S+)", text, re.M))
    for module, members in re.findall(
        r"^\.\. automodule::\s+(\S+)\n((?:   :members:.*\n(?:      .*\n)*)?)", text, re.M
    ):
        names = members.replace(":members:", "").replace("\n", " ")
        documented |= {f"{module}.{name.strip()}" for name in names.split(",") if name.strip()}
    return documented


def test_public_names_are_found():
    names = {name for _, name, _ in _public_objects()}
    assert {"barlow_twins_loss", "GlobalBatch", "communication_bytes", "barlow_loss_func"} <= names
    assert ("redundancy.cost", "GRAM_CROSSOVER") in _public_constants()


PUBLIC_OBJECTS = [pytest.param(module, name, obj, id=f"{module}.{name}") for module, name, obj in _public_objects()]


@pytest.mark.parametrize(("module", "name", "obj"), PUBLIC_OBJECTS)
def test_every_public_name_has_an_example(module, name, obj):
    assert "Example" in (inspect.getdoc(obj) or ""), f"{module}.{name} has no Example section"


@pytest.mark.parametrize(("module", "name", "obj"), PUBLIC_OBJECTS)
def test_every_public_name_is_in_the_api_reference(module, name, obj):
    documented = _documented_names()
    qualified = {f"{module}.{name}", f"redundancy.{name}" if getattr(redundancy, name, None) is obj else ""}
    assert qualified & documented, f"{module}.{name} is not on docs/api.rst"


@pytest.mark.parametrize(("module", "name"), _public_constants())
def test_every_public_constant_is_in_the_api_reference(module, name):
    api = (DOCS / "api.rst").read_text()
    assert f"{module}.{name}" in _documented_names(), f"{module}.{name} is not on docs/api.rst"
    assert re.search(rf">>> .*\b{name}\b", api), f"{module}.{name} has no example on docs/api.rst"
