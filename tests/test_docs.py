"""The documentation stays true: its examples run, its tables are recomputed, every public name is documented.

- Every ``>>>`` example of ``docs/*.rst`` runs as a doctest (the docstring examples run through
  ``--doctest-modules``).
- Every value of the "loss on the shared input" tables is recomputed from the page's own source (options and
  printed value) on the golden ``small`` case, and checked against :mod:`redundancy.reference` and the values the
  published implementations give (``golden_cases``).
- Every public name has an ``Example`` in its docstring and an entry on the API reference page.
- The built pages read well: literal blocks of the result pages fit the content column, wide tables scroll in their
  own box, Benchmarks opens with the headline figure and the generated summary table, the index and the README
  show the same headline figure and quote the numbers of the committed runs, Examples shows the digits figures.
"""

import ast
import doctest
import html
import html.parser
import importlib.metadata
import importlib.util
import inspect
import io
import json
import pathlib
import re
from typing import NamedTuple

import pytest
import torch

import redundancy
from redundancy import barlow_twins
from redundancy import cca_ssg
from redundancy import correlation
from redundancy import cost
from redundancy import diagnostics
from redundancy import mixed_barlow_twins
from redundancy import mmcr
from redundancy import reference
from redundancy import regularizers
from redundancy import sigreg
from redundancy import spectral_contrastive
from redundancy import vicreg
from redundancy.compat import lightly
from redundancy.compat import solo

DOCS = pathlib.Path(__file__).resolve().parents[1] / "docs"
PAGES = sorted(path for path in DOCS.rglob("*.rst") if "_build" not in path.parts)
API_PAGES = sorted((DOCS / "api").glob("*.rst"))

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
        (("correction", 1), ("eps", 0.0)): "paper Algorithm 1 (unbiased std, no eps, lambd=0.0051)",
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
    barlow_twins,
    correlation,
    vicreg,
    regularizers,
    mixed_barlow_twins,
    cca_ssg,
    spectral_contrastive,
    sigreg,
    mmcr,
    diagnostics,
    cost,
    reference,
    lightly,
    solo,
)


# --------------------------------------------------------------------------------------------- examples


@pytest.mark.parametrize("page", PAGES, ids=lambda path: str(path.relative_to(DOCS)))
def test_page_examples_run(page):
    parser = doctest.DocTestParser()
    test = parser.get_doctest(page.read_text(), {}, page.name, str(page), 0)
    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    failures = []
    runner.run(test, out=failures.append)
    assert runner.failures == 0, "".join(failures)


def _public_docstring_examples() -> list[doctest.DocTest]:
    """The examples of every public module, function, class, method and attribute docstring of the package."""
    finder = doctest.DocTestFinder()
    tests = []
    for module in {*API_MODULES, redundancy.compat}:
        for test in finder.find(module, module.__name__, globs={}):
            private = any(part.startswith("_") and not part.startswith("__") for part in test.name.split("."))
            if test.examples and not private:
                tests.append(test)
    return sorted(tests, key=lambda test: test.name)


PUBLIC_DOCSTRING_EXAMPLES = [pytest.param(test, id=test.name) for test in _public_docstring_examples()]


@pytest.mark.parametrize("test", PUBLIC_DOCSTRING_EXAMPLES)
def test_public_docstring_examples_run_as_pasted(test):
    """Each public example runs in an empty namespace, as it runs when pasted into a new interpreter: it imports
    what it uses (``--doctest-modules`` runs it with its module's globals, which would hide a missing import)."""
    test.globs = {}
    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    failures: list[str] = []
    torch.manual_seed(0)
    runner.run(test, out=failures.append, clear_globs=True)
    assert runner.failures == 0, "".join(failures)


def test_the_public_docstring_examples_are_found():
    names = {param.id for param in PUBLIC_DOCSTRING_EXAMPLES}
    assert {"redundancy.barlow_twins.barlow_twins_loss", "redundancy.cost.choose_algorithm"} <= names
    assert "redundancy.compat.solo.barlow_loss_func" in names
    assert not any("._" in name for name in names)


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
    assert (("correction", 1), ("eps", 0.0), ("lambd", "auto"), ("off_diagonal_target", -1.0)) in by_options
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
        for module in (cost,)
        for name, value in vars(module).items()
        if name.isupper() and not name.startswith("_") and isinstance(value, (int, float, tuple))
    ]


def test_public_names_are_found():
    names = {name for _, name, _ in _public_objects()}
    assert {"barlow_twins_loss", "communication_bytes", "barlow_loss_func"} <= names
    assert ("redundancy.cost", "GRAM_CROSSOVER") in _public_constants()


PUBLIC_OBJECTS = [pytest.param(module, name, obj, id=f"{module}.{name}") for module, name, obj in _public_objects()]


@pytest.mark.parametrize(("module", "name", "obj"), PUBLIC_OBJECTS)
def test_every_public_name_has_an_example(module, name, obj):
    assert "Example" in (inspect.getdoc(obj) or ""), f"{module}.{name} has no Example section"


@pytest.mark.parametrize(("module", "name", "obj"), PUBLIC_OBJECTS)
def test_every_public_name_is_on_an_api_page(built_objects, module, name, obj):
    qualified = {f"{module}.{name}", f"redundancy.{name}" if getattr(redundancy, name, None) is obj else ""}
    pages = {built_objects[q].docname for q in qualified if q in built_objects}
    assert pages, f"{module}.{name} is documented on no page (docs/api/*.rst)"
    assert all(page.startswith("api/") for page in pages), f"{module}.{name} is documented outside docs/api: {pages}"


@pytest.mark.parametrize(("module", "name"), _public_constants())
def test_every_public_constant_is_on_an_api_page(built_objects, module, name):
    assert f"{module}.{name}" in built_objects, f"{module}.{name} is on no API page"
    text = "\n".join(page.read_text() for page in API_PAGES)
    assert re.search(rf">>> .*\b{name}\b", text), f"{module}.{name} has no example on the API pages"


def test_no_private_name_is_documented(built_objects):
    """The distributed internals (``redundancy._batch``, ``_exchange``, ``_frame``) and every other private
    module or name stay undocumented: the distributed page explains their behaviour in prose."""
    private = sorted(name for name in built_objects if any(part.startswith("_") for part in name.split(".")))
    assert not private, f"private names documented: {private}"
    assert len(built_objects) > 80, "the API pages document fewer objects than the package has"


def test_each_loss_has_its_api_page_with_its_function_terms_and_module(built_objects):
    from redundancy._registry import FAMILY

    for member in FAMILY:
        names = [member.function, member.module] + ([member.terms] if member.terms is not None else [])
        pages = {built_objects[f"redundancy.{obj.__name__}"].docname for obj in names}
        assert len(pages) == 1, f"{member.name}: its function, terms form and Module are on {pages}, not one page"


# ------------------------------------------------------------------------------------ the rendered pages

ROOT = DOCS.parent
#: Characters of a literal block's longest line that the content column shows without scrolling.
LITERAL_COLUMNS = 100
HEADLINE_FIGURE = DOCS / "_static" / "headline.png"
DIGITS_FIGURES = ("loss.png", "cross_correlation.png", "probe_accuracy.png")


class _Page(html.parser.HTMLParser):
    """The parts of a built page that these tests read: literal blocks, images and tables, in page order."""

    def __init__(self) -> None:
        super().__init__()
        self.literal_blocks: list[str] = []
        self.order: list[tuple[str, str]] = []  # ("img", src) and ("table", "header | cells"), in page order
        self.tables_outside_a_scroll_box = 0
        self._open_divs: list[str] = []
        self._in_pre = self._in_head = self._in_header_cell = False
        self._in_article = 0  # depth inside the page's <article> (the content, without navigation)
        self._in_code = 0  # depth inside <pre>, <code> and math
        self.text = ""  # the text of the page's content
        self.prose = ""  # the same without code, literals and math: where no markup may show

    def handle_starttag(self, tag, attrs):
        attributes = dict(attrs)
        if tag == "article" or self._in_article:
            self._in_article += tag == "article"
        is_math = tag == "span" and "math" in (attributes.get("class") or "").split()
        if tag in ("pre", "code") or is_math or (self._in_code and tag == "span"):
            self._in_code += 1
        if tag == "div":
            self._open_divs.append(attributes.get("class") or "")
        elif tag == "pre":
            self._in_pre = True
            self.literal_blocks.append("")
        elif tag == "img":
            self.order.append(("img", attributes.get("src", "")))
        elif tag == "table":
            if not self._open_divs or "table-wrapper" not in self._open_divs[-1].split():
                self.tables_outside_a_scroll_box += 1
            self.order.append(("table", ""))
        elif tag == "thead":
            self._in_head = True
        elif tag == "th" and self._in_head and self.order and self.order[-1][0] == "table":
            self._in_header_cell = True
            cells = self.order[-1][1]
            self.order[-1] = ("table", f"{cells} | " if cells else "")

    def handle_endtag(self, tag):
        if tag == "article" and self._in_article:
            self._in_article -= 1
        if self._in_code and tag in ("pre", "code", "span"):
            self._in_code -= 1
        if tag == "div" and self._open_divs:
            self._open_divs.pop()
        elif tag == "pre":
            self._in_pre = False
        elif tag == "th":
            self._in_header_cell = False
        elif tag == "thead":
            self._in_head = False

    def handle_data(self, data):
        if self._in_article:
            self.text += data
            if not self._in_code:
                self.prose += data
        if self._in_pre:
            self.literal_blocks[-1] += data
        if self._in_header_cell:
            self.order[-1] = ("table", self.order[-1][1] + " ".join(data.split()))


class _Build(NamedTuple):
    pages: dict[str, _Page]  # by document name: "index", "api/barlow_twins", ...
    objects: dict  # the Python objects documented: full name -> Sphinx's entry (docname, node_id, objtype, aliased)
    warnings: str


@pytest.fixture(scope="module")
def build(tmp_path_factory) -> _Build:
    """Every page of the documentation built to HTML, parsed, with what the build documented and warned."""
    application = pytest.importorskip("sphinx.application")
    out = tmp_path_factory.mktemp("html")
    warnings = io.StringIO()
    app = application.Sphinx(
        str(DOCS), str(DOCS), str(out), str(out / ".doctrees"), "html", status=None, warning=warnings
    )
    app.build()
    pages = {}
    for path in out.rglob("*.html"):
        if path.relative_to(out).parts[0] in ("_modules", "_sources", "_static"):
            continue
        page = _Page()
        page.feed(path.read_text())
        pages[path.relative_to(out).with_suffix("").as_posix()] = page
    return _Build(pages, dict(app.env.get_domain("py").objects), warnings.getvalue())


@pytest.fixture(scope="module")
def built(build) -> dict[str, _Page]:
    return build.pages


@pytest.fixture(scope="module")
def built_objects(build) -> dict:
    return build.objects


def test_the_build_has_no_warnings(build):
    assert not build.warnings, build.warnings


@pytest.mark.parametrize("name", [path.relative_to(DOCS).with_suffix("").as_posix() for path in PAGES])
def test_literal_blocks_fit_the_content_column(built, name):
    too_wide = [
        line for block in built[name].literal_blocks for line in block.splitlines() if len(line) > LITERAL_COLUMNS
    ]
    assert not too_wide, f"{name}: literal lines wider than {LITERAL_COLUMNS} characters: {too_wide}"


def test_wide_tables_scroll_in_their_own_box(built):
    pytest.importorskip("furo", reason="the docs extra (furo) is not installed")
    assert redundancy_html_theme() == "furo", "another theme: check that its wide tables scroll, then update this test"
    pages = {name: built[name] for name in (path.relative_to(DOCS).with_suffix("").as_posix() for path in PAGES)}
    assert sum(len([kind for kind, _ in page.order if kind == "table"]) for page in pages.values()) > 10
    unboxed = {name: page.tables_outside_a_scroll_box for name, page in pages.items()}
    assert not any(unboxed.values()), f"tables outside a scrolling box: {unboxed}"


#: reStructuredText that shows as text when a construct fails (nested inline markup, a role without its target).
LEAKED_MARKUP = re.compile(r"``|:(?:func|class|meth|attr|mod|data|ref|doc|math|term):`|`_(?:_)?\b|\*\*\w[^*]*\w\*\*")


@pytest.mark.parametrize("page", [path.relative_to(DOCS).with_suffix("").as_posix() for path in PAGES])
def test_no_markup_shows_as_text(built, page):
    leaked = [match.group(0) for match in LEAKED_MARKUP.finditer(built[page].prose)]
    assert not leaked, f"{page}: markup shown as text: {leaked}"


def redundancy_html_theme() -> str:
    namespace: dict = {"__file__": str(DOCS / "conf.py")}
    exec(compile((DOCS / "conf.py").read_text(), str(DOCS / "conf.py"), "exec"), namespace)
    return namespace["html_theme"]


def test_benchmarks_opens_with_a_figure_then_the_summary_table(built):
    order = built["benchmarks"].order
    assert order[0][0] == "img" and order[0][1].endswith("headline.png"), order[:2]
    first_table = next(entry for entry in order if entry[0] == "table")
    assert first_table[1].startswith("N | D | reference ms | reference MiB | fastest redundancy case"), first_table
    assert not any("| N | D |" in block for block in built["benchmarks"].literal_blocks), "a pasted markdown table"


def test_the_index_readme_and_benchmarks_show_the_same_headline_figure(built):
    assert HEADLINE_FIGURE.is_file()
    readme = (ROOT / "README.md").read_text()
    images = re.findall(r'!\[[^\]]*\]\(([^)]+)\)|<img src="([^"]+)"', readme)
    assert [ROOT / "".join(image) for image in images][:1] == [HEADLINE_FIGURE]
    (narrow,) = re.findall(r'<source media="\(max-width: \d+px\)" srcset="([^"]+)">', readme)
    assert ROOT / narrow == HEADLINE_FIGURE.with_name("headline-narrow.png"), "the README's phone-sized figure"
    assert (ROOT / narrow).read_bytes().startswith(b"\x89PNG")
    for page in ("index", "benchmarks"):
        first, second = re.findall(r"^\.\. figure:: (\S+)", (DOCS / f"{page}.rst").read_text(), re.M)[:2]
        assert (DOCS / first).resolve() == HEADLINE_FIGURE.resolve(), page
        assert (DOCS / second).resolve() == HEADLINE_FIGURE.with_name("headline-narrow.png").resolve(), page
        images = [entry for entry in built[page].order if entry[0] == "img"]  # the index's peers table comes first
        assert images[:2] == [("img", "_images/headline.png"), ("img", "_images/headline-narrow.png")]


def test_the_headline_numbers_are_those_of_the_committed_runs():
    from benchmarks import report

    results = ROOT / "benchmarks" / "results"
    grid = report.headline_points(json.loads((results / "cpu-nine-shapes" / "results.json").read_text()))
    repeats = [
        report.headline_points(json.loads(path.read_text()))
        for path in sorted(results.glob("cpu-d8192-interleaved-*/results.json"))
    ]
    assert len(repeats) == 4
    (_, speed, memory), *_ = (point for point in grid[256] if point[0] == 8192)
    every_speed = [speed, *(point[1] for run in repeats for point in run[256] if point[0] == 8192)]
    (_, speed_2048, memory_2048), *_ = (point for point in grid[2048] if point[0] == 8192)
    quoted = [
        f"is {speed:.1f}× faster with {memory:.1f}× less peak memory at N = 256, D = 8192",
        f"({min(every_speed):.1f}–{max(every_speed):.1f}×\nover five runs)",
        f"and {speed_2048:.1f}× faster with {memory_2048:.1f}× less memory at N = 2048, D = 8192",
    ]
    for source in (ROOT / "README.md", DOCS / "index.rst"):
        text = " ".join(source.read_text().split())
        for sentence in quoted:
            assert " ".join(sentence.split()) in text, f"{source.name} does not say {sentence!r}"


def test_examples_shows_the_three_digits_figures(built):
    shown = [src for kind, src in built["examples"].order if kind == "img" and "lejepa" not in src]
    assert [pathlib.PurePath(src).name for src in shown] == list(DIGITS_FIGURES)
    for name in DIGITS_FIGURES:
        assert (DOCS / "_static" / "digits" / name).read_bytes().startswith(b"\x89PNG")


def test_the_digits_table_and_figures_are_those_of_the_committed_run():
    """The Examples page's probe table and loss figures are what the committed run of the digits job saved."""
    pytest.importorskip("sklearn")
    import importlib.util

    spec = importlib.util.spec_from_file_location("digits_job", ROOT / "examples" / "digits_barlow_twins.py")
    digits = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(digits)
    saved = json.loads((DOCS / "_static" / "digits" / "results.json").read_text())
    defaults = {key: str(value) for key, value in vars(digits.parse_args([])).items()}
    run = saved["args"]
    assert {**run, "no_progress": "False"} == defaults, "not the README's command (the defaults)"
    markdown = digits.results_table(saved["accuracy"])
    expected = [[cell.strip() for cell in line.strip("|").split("|")] for line in markdown.splitlines()]
    expected = [expected[0], *expected[2:]]  # without the markdown separator row
    page = (DOCS / "examples.rst").read_text()
    (table,) = [rows for rows in _list_tables(page) if rows and rows[0][0] == "features"]
    assert table == expected
    losses = saved["losses"]
    assert f"({losses[0]:.1f} at the first step, {losses[-1]:.1f} at the last)" in page
    assert f"over the {len(losses)} pretraining steps" in page


# ------------------------------------------------------------------------------------------------ diagrams


def _load(path: pathlib.Path):
    """The Python file at ``path`` (a script of docs/), imported as a module."""
    spec = importlib.util.spec_from_file_location(path.stem, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


DIAGRAMS = {"feature_parallel": "feature_grid.svg", "algorithms": "gram_identity.svg"}


def _svg_texts(svg: str) -> list[str]:
    return [html.unescape(text) for text in re.findall(r"<text\b[^>]*>([^<]*)</text>", svg)]


def test_the_diagrams_are_those_the_script_draws(tmp_path):
    """``python docs/diagrams.py`` draws the committed SVGs: byte for byte with the matplotlib that drew them,
    the same texts with another."""
    pytest.importorskip("matplotlib")
    diagrams = _load(DOCS / "diagrams.py")
    written = {path.name: path.read_text() for path in diagrams.draw(tmp_path)}
    assert sorted(written) == sorted(DIAGRAMS.values())
    for name, svg in written.items():
        committed = (DOCS / "_static" / "diagrams" / name).read_text()
        assert _svg_texts(svg) == _svg_texts(committed), f"{name}: run python docs/diagrams.py"
        (version,) = re.findall(r"Matplotlib v([\w.]+)", committed)
        if version == importlib.metadata.version("matplotlib"):
            assert svg == committed, f"{name}: run python docs/diagrams.py"


@pytest.mark.parametrize(("page", "diagram"), sorted(DIAGRAMS.items()))
def test_the_pages_show_their_diagrams(built, page, diagram):
    assert f"_images/{diagram}" in [src for kind, src in built[page].order if kind == "img"]


# ------------------------------------------------------------------------------------------ the family page


def _extension(name: str):
    """The Sphinx extension ``docs/_ext/<name>.py``, imported (the test skips where docutils, which comes with
    Sphinx, is not installed)."""
    pytest.importorskip("docutils", reason="the docs' extensions need docutils (the docs extra)")
    return _load(DOCS / "_ext" / f"{name}.py")


def _family_table_rows() -> list[str]:
    """The losses with a row of their own in the family tables, read off the registry as the extension does (a
    loss of several views with the options of a two-view loss is that loss's multi-view form, on its row)."""
    from redundancy._frame import ViewSequence
    from redundancy._registry import FAMILY

    two_view_options = [m.loss.options for m in FAMILY if not isinstance(m.loss.inputs, ViewSequence)]
    return [
        m.name
        for m in FAMILY
        if not (isinstance(m.loss.inputs, ViewSequence) and m.loss.options in two_view_options)
    ]


def test_the_family_tables_have_a_row_for_every_loss_of_the_registry(built):
    from redundancy._frame import ViewSequence
    from redundancy._registry import FAMILY

    family_table = _extension("family_table")
    rows = family_table.rows()
    assert [row.name for row in rows] == _family_table_rows()
    # The other losses of several views are multi-view forms, on the rows of their two-view losses.
    forms = {m.name for m in FAMILY if isinstance(m.loss.inputs, ViewSequence)} - set(_family_table_rows())
    assert {row.multiview.__name__ for row in rows if row.multiview} == forms
    missing = [row.name for row in rows if row.name not in family_table.SOURCES]
    assert not missing, f"add the paper and code of {missing} to SOURCES in docs/_ext/family_table.py"
    tables = [cells for kind, cells in built["family"].order if kind == "table"]
    assert tables[0] == "loss | paper | defaults, and where they come from"
    assert (
        tables[1]
        == "loss | function, terms, Module | several views | global batch | feature_group | Triton | fullgraph"
    )
    for row in rows:
        assert row.function.__name__ in built["family"].text
        assert family_table.SOURCES[row.name].title in built["family"].text


def test_every_loss_has_its_section_with_formula_example_and_cost():
    page = (DOCS / "family.rst").read_text()
    for row in _extension("family_table").rows():
        label = f".. _family-{row.name}:"
        assert label in page, f"family.rst has no section {label}"
        section = page.split(label, 1)[1].split("\n.. _family-", 1)[0]
        assert ".. math::" in section, f"{row.name}: no formula"
        assert f">>> from redundancy import {row.name}" in section or f"import {row.name}" in section, row.name
        assert "\nCost: " in section, f"{row.name}: no cost"


def _example_inputs(member) -> tuple:
    from redundancy._frame import ViewSequence

    n, d = 12, 6
    if isinstance(member.loss.inputs, ViewSequence):
        return (torch.randn(3, n, d, dtype=torch.float64, requires_grad=True),)
    views = tuple(torch.randn(n, d, dtype=torch.float64, requires_grad=True) for _ in member.loss.inputs.names)
    extra = {"permutation": torch.randperm(n), "alpha": 0.3}
    return views + tuple(extra[name] for name in getattr(member.loss.inputs, "extra", ()))


@pytest.mark.parametrize("name", _family_table_rows())
def test_what_the_family_table_says_of_a_loss_holds(name):
    """Each claim of the "features" table, checked on the loss itself: its options, and a full-graph compile of
    the function (and of its multi-view form) with its backward."""
    import inspect

    from redundancy._registry import FAMILY

    (row,) = [row for row in _extension("family_table").rows() if row.name == name]
    parameters = inspect.signature(row.function).parameters
    assert row.feature_group == ("feature_group" in parameters)
    assert row.triton == ("backend" in parameters and "triton" in str(parameters["backend"].annotation))
    assert row.global_batch == (parameters["distributed"].default == "global")
    for member in FAMILY:
        if member.function in (row.function, row.multiview):
            torch._dynamo.reset()
            inputs = _example_inputs(member)
            # Directions drawn at random would differ between the two calls: the same ones are given to both.
            options = {"directions": torch.randn(6, 16)} if "directions" in member.loss.option_names else {}
            compiled = torch.compile(member.function, fullgraph=True, backend="aot_eager")
            loss = compiled(*inputs, **options)
            loss.backward()
            assert torch.allclose(loss, member.function(*inputs, **options), rtol=1e-10), member.name


# --------------------------------------------------------------------------------------------- changelog


def test_the_changelog_page_renders_the_markdown(built):
    page = built["changelog"]
    assert not page.literal_blocks, "the changelog is shown as a code block"
    changelog = (ROOT / "CHANGELOG.md").read_text()
    bold = re.compile(r"\*\*[^*\s][^*]*[^*\s]\*\*")
    assert bold.search(changelog) and not bold.search(page.text), "raw Markdown bold on the changelog page"
    assert "](http" in changelog and "](http" not in page.text, "raw Markdown links on the changelog page"
    for heading in re.findall(r"^#{2,3} (.+)$", changelog, re.M):
        assert heading.strip("[]") in page.text, heading


def test_the_changelog_directive_reads_what_keep_a_changelog_uses():
    changelog = _extension("changelog")
    text = (
        "# Title\n\nIntro with [a link](https://x.org).\n\n## [Unreleased]\n\n### Added\n\n"
        "- **Bold `code` inside.** Then `code`\n  on two lines.\n- Second.\n\n```bash\npip install .\n```\n"
    )
    markdown = changelog.Block(text)
    (section,) = markdown.sections()
    assert section.astext().startswith("Unreleased")
    (added,) = [node for node in section.children if node.tagname == "section"]
    bullets, code = added.children[1:]
    assert [item.astext() for item in bullets.children] == ["Bold code inside. Then code on two lines.", "Second."]
    assert bullets.children[0][0][0].tagname == "strong" and bullets.children[0][0][0][1].tagname == "literal"
    assert code.tagname == "literal_block" and code.astext() == "pip install ." and code["language"] == "bash"
    (link,) = [node for node in markdown.preamble()[0].children if node.tagname == "reference"]
    assert link["refuri"] == "https://x.org" and not markdown.warnings
    unsupported = changelog.Block("## A\n\n| a | b |\n1. one\n* star\n- item\n  - nested\n")
    unsupported.sections()
    assert [what for _, what in unsupported.warnings] == [
        "a table",
        "a numbered list",
        "a '*' or '+' bullet (use '-')",
        "a nested list",
    ]


# ------------------------------------------------------------------------------------------------ README


def _readme_python_blocks() -> list[tuple[int, str]]:
    """``(line, source)`` of every ```python block of the README."""
    text = (ROOT / "README.md").read_text()
    return [
        (text[: match.start()].count("\n") + 2, match.group(1))
        for match in re.finditer(r"^```python\n(.*?)^```", text, re.M | re.S)
    ]


def _unbound_names(source: str) -> set[str]:
    """Names a block reads without binding or importing them (builtins aside)."""
    import builtins

    tree = ast.parse(source)
    bound = {name.id for name in ast.walk(tree) if isinstance(name, ast.Name) and isinstance(name.ctx, ast.Store)}
    for node in ast.walk(tree):
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            bound |= {(alias.asname or alias.name).split(".")[0] for alias in node.names}
    read = {name.id for name in ast.walk(tree) if isinstance(name, ast.Name) and isinstance(name.ctx, ast.Load)}
    return read - bound - set(dir(builtins))


@pytest.mark.parametrize(("line", "source"), _readme_python_blocks(), ids=lambda value: str(value)[:12])
def test_readme_snippets_run_as_written_or_say_what_they_assume(line, source):
    """A block runs as pasted into a new interpreter, or opens with ``# assumes:``, naming every name it does not
    define (it is then compiled, not run)."""
    if source.startswith("# assumes:"):
        assumption = " ".join(row for row in source.splitlines() if row.startswith("#"))
        compile(source, f"README.md:{line}", "exec")
        undefined = {name for name in _unbound_names(source) if not re.search(rf"\b{name}\b", assumption)}
        assert not undefined, f"README.md:{line} does not say what {sorted(undefined)} are"
        return
    exec(compile(source, f"README.md:{line}", "exec"), {})


def test_the_readme_lists_every_loss_of_the_registry():
    from redundancy._registry import FAMILY

    readme = (ROOT / "README.md").read_text()
    missing = [member.name for member in FAMILY if f"`{member.name}`" not in readme]
    assert not missing, f"the README's family table lacks {missing}"
