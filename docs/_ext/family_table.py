"""The tables of the family page, generated from the registry (``redundancy._registry.FAMILY``).

``.. family-table:: sources`` lists each loss with its paper, the code its defaults come from and those defaults;
``.. family-table:: features`` its function, ``terms`` form, Module and multi-view form, and what it supports. A
loss added to the registry gets its rows without any table edited; what the registry cannot say (the paper, the
official code) is in :data:`SOURCES` below, and a loss missing there is a build warning (an error under ``-W``).

What a row says is read off the loss's declaration: its defaults are those of its options dataclass (the options
that only choose how to compute aside); it is global under ``torch.distributed`` when its ``distributed`` option
defaults to ``"global"``; it takes ``feature_group`` and ``backend`` when it has those options; its multi-view form
is the registry entry with the same options whose input is a sequence of views. Every loss of the frame compiles
with ``torch.compile(fullgraph=True)``, except a call with ``feature_group``, which runs eagerly
(``redundancy._frame.eager_on_a_grid``); ``tests/test_docs.py`` compiles each row's function to check it.
"""

import dataclasses
from typing import Any
from typing import NamedTuple

from docutils import nodes
from docutils.statemachine import StringList
from sphinx.application import Sphinx
from sphinx.util import logging
from sphinx.util.docutils import SphinxDirective

LOGGER = logging.getLogger(__name__)

#: Options that choose how a loss is computed, not what it is: left out of the defaults column.
MACHINERY = ("algorithm", "backend", "strategy", "distributed", "gradient_convention", "group", "feature_group")


class Source(NamedTuple):
    """Where a loss comes from: its paper and the code whose defaults it keeps."""

    title: str  # short name of the loss, the row's first cell
    paper: str  # "Authors, Title, venue year"
    paper_url: str
    code: str  # "owner/repository file" of the official code, or a sentence where there is none
    code_url: str | None


#: The paper and the official code of each loss, by the name of its function.
SOURCES: dict[str, Source] = {
    "barlow_twins_loss": Source(
        "Barlow Twins",
        "Zbontar et al., Barlow Twins, ICML 2021",
        "https://arxiv.org/abs/2103.03230",
        "facebookresearch/barlowtwins main.py",
        "https://github.com/facebookresearch/barlowtwins/blob/main/main.py",
    ),
    "vicreg_loss": Source(
        "VICReg",
        "Bardes, Ponce & LeCun, VICReg, ICLR 2022",
        "https://arxiv.org/abs/2105.04906",
        "facebookresearch/vicreg main_vicreg.py",
        "https://github.com/facebookresearch/vicreg/blob/main/main_vicreg.py",
    ),
    "vicreg_variance_loss": Source(
        "VICReg variance term",
        "Bardes, Ponce & LeCun, VICReg, ICLR 2022",
        "https://arxiv.org/abs/2105.04906",
        "facebookresearch/vicreg main_vicreg.py",
        "https://github.com/facebookresearch/vicreg/blob/main/main_vicreg.py",
    ),
    "vicreg_covariance_loss": Source(
        "VICReg covariance term",
        "Bardes, Ponce & LeCun, VICReg, ICLR 2022",
        "https://arxiv.org/abs/2105.04906",
        "facebookresearch/vicreg main_vicreg.py",
        "https://github.com/facebookresearch/vicreg/blob/main/main_vicreg.py",
    ),
    "cca_ssg_loss": Source(
        "CCA-SSG",
        "Zhang et al., From Canonical Correlation Analysis to Self-supervised Graph Neural Networks, NeurIPS 2021",
        "https://arxiv.org/abs/2106.12484",
        "hengruizhang98/CCA-SSG",
        "https://github.com/hengruizhang98/CCA-SSG",
    ),
    "decov_loss": Source(
        "DeCov",
        "Cogswell et al., Reducing Overfitting in Deep Networks by Decorrelating Representations, ICLR 2016",
        "https://arxiv.org/abs/1511.06068",
        "the paper's formula (covariance divided by N)",
        None,
    ),
    "total_coding_rate": Source(
        "Total coding rate",
        "Ma et al., Lossy Data Coding and Compression, TPAMI 2007; EMP-SSL, Tong et al., 2023",
        "https://doi.org/10.1109/TPAMI.2007.1085",
        "tsb0601/EMP-SSL (its ε)",
        "https://github.com/tsb0601/EMP-SSL",
    ),
    "mixed_barlow_twins_regularizer": Source(
        "Mixed Barlow Twins",
        "Bandara, De Melo & Patel, Guarding Barlow Twins Against Overfitting with Mixed Samples, 2023",
        "https://arxiv.org/abs/2312.02151",
        "wgcban/mix-bt main.py",
        "https://github.com/wgcban/mix-bt/blob/main/main.py",
    ),
    "spectral_contrastive_loss": Source(
        "Spectral contrastive",
        "HaoChen et al., Provable Guarantees for Self-Supervised Deep Learning with Spectral Contrastive Loss, "
        "NeurIPS 2021",
        "https://arxiv.org/abs/2106.04156",
        "jhaochenz96/spectral_contrastive_learning models/spectral.py",
        "https://github.com/jhaochenz96/spectral_contrastive_learning/blob/main/models/spectral.py",
    ),
    "sigreg_loss": Source(
        "SIGReg",
        "Balestriero & LeCun, LeJEPA: Provable and Scalable Self-Supervised Learning Without the Heuristics, 2025",
        "https://arxiv.org/abs/2511.08544",
        "rbalestr-lab/lejepa MINIMAL.md",
        "https://github.com/rbalestr-lab/lejepa/blob/main/MINIMAL.md",
    ),
    "lejepa_loss": Source(
        "LeJEPA",
        "Balestriero & LeCun, LeJEPA: Provable and Scalable Self-Supervised Learning Without the Heuristics, 2025",
        "https://arxiv.org/abs/2511.08544",
        "rbalestr-lab/lejepa MINIMAL.md",
        "https://github.com/rbalestr-lab/lejepa/blob/main/MINIMAL.md",
    ),
    "mmcr_loss": Source(
        "MMCR",
        "Yerxa et al., Learning Efficient Coding of Natural Images with Maximum Manifold Capacity Representations, "
        "NeurIPS 2023",
        "https://arxiv.org/abs/2303.03307",
        "ThomasYerxa/mmcr mmcr/imagenet/loss_mmcr.py",
        "https://github.com/ThomasYerxa/mmcr/blob/main/mmcr/imagenet/loss_mmcr.py",
    ),
}


@dataclasses.dataclass
class Row:
    """One loss of the family as the tables show it (a two-view loss and its multi-view form share a row)."""

    function: Any
    terms: Any
    module: Any
    options: type
    multiview: Any = None
    multiview_terms: Any = None
    multiview_module: Any = None

    @property
    def name(self) -> str:
        return self.function.__name__

    @property
    def fields(self) -> dict[str, dataclasses.Field]:
        return {field.name: field for field in dataclasses.fields(self.options)}

    @property
    def defaults(self) -> dict[str, Any]:
        """The options that change the value, with their defaults."""
        return {name: field.default for name, field in self.fields.items() if name not in MACHINERY}

    @property
    def global_batch(self) -> bool:
        field = self.fields.get("distributed")
        return field is not None and field.default == "global"

    @property
    def feature_group(self) -> bool:
        return "feature_group" in self.fields

    @property
    def triton(self) -> bool:
        return "backend" in self.fields


def rows() -> list[Row]:
    """The family's losses in registry order, each multi-view form on the row of its two-view loss."""
    from redundancy._frame import ViewSequence
    from redundancy._registry import FAMILY

    found: list[Row] = []
    for member in FAMILY:
        options = member.loss.options
        if isinstance(member.loss.inputs, ViewSequence):
            two_view = [row for row in found if row.options is options and row.multiview is None]
            if two_view:
                two_view[0].multiview = member.function
                two_view[0].multiview_terms = member.terms
                two_view[0].multiview_module = member.module
                continue
        found.append(Row(member.function, member.terms, member.module, options))
    return found


def _value(value: Any) -> str:
    if isinstance(value, str):
        return f'"{value}"'
    if isinstance(value, float) and value != 0 and abs(value) < 1e-3:
        mantissa, exponent = f"{value:.0e}".split("e")
        return f"{mantissa}e{int(exponent)}"
    return repr(value)


def _names(*objects: Any) -> str:
    """Cross-references to the functions and classes given (``None`` left out), one per line."""
    references = [
        f":class:`~redundancy.{obj.__name__}`" if isinstance(obj, type) else f":func:`~redundancy.{obj.__name__}`"
        for obj in objects
        if obj is not None
    ]
    return "\n| ".join(references)


def _list_table(header: list[str], body: list[list[str]], widths: list[int]) -> list[str]:
    lines = [".. list-table::", "   :header-rows: 1", f"   :widths: {' '.join(map(str, widths))}", ""]
    for row in [header, *body]:
        for column, cell in enumerate(row):
            cell_lines = cell.split("\n")
            lines.append(("   * - " if column == 0 else "     - ") + cell_lines[0])
            lines.extend("       " + line for line in cell_lines[1:])
    return lines


def sources_table(found: list[Row]) -> list[str]:
    """Each loss, its paper, the code of its defaults and the defaults, as rst."""
    body = []
    for row in found:
        source = SOURCES[row.name]
        code = f"`{source.code} <{source.code_url}>`__" if source.code_url else source.code
        defaults = ", ".join(f"``{name}={_value(value)}``" for name, value in row.defaults.items())
        body.append(
            [
                f":ref:`{source.title} <family-{row.name}>`",
                f"`{source.paper} <{source.paper_url}>`__",
                f"{defaults or '(no options)'}\n\nfrom {code}",
            ]
        )
    return _list_table(["loss", "paper", "defaults, and where they come from"], body, [16, 42, 42])


def features_table(found: list[Row]) -> list[str]:
    """Each loss, its names, and what it supports, as rst (short cells: the table fits a 1280 px page)."""
    yes, no = "yes", "—"
    body = []
    for row in found:
        source = SOURCES[row.name]
        multiview = f":func:`yes <redundancy.{row.multiview.__name__}>`" if row.multiview else no
        body.append(
            [
                f":ref:`{source.title} <family-{row.name}>`",
                "| " + _names(row.function, row.terms, row.module),
                multiview,
                yes if row.global_batch else "per rank",
                yes if row.feature_group else no,
                yes if row.triton else no,
                yes,  # a call with feature_group runs eagerly: the page says so under the table
            ]
        )
    header = [
        "loss",
        "function, terms, Module",
        "several views",
        "global batch",
        "feature_group",
        "Triton",
        "fullgraph",
    ]
    return _list_table(header, body, [16, 34, 10, 10, 10, 10, 10])


class FamilyTable(SphinxDirective):
    """``.. family-table:: sources`` or ``.. family-table:: features``."""

    required_arguments = 1

    def run(self) -> list[nodes.Node]:
        kind = self.arguments[0]
        if kind not in ("sources", "features"):
            raise self.error(f"family-table takes 'sources' or 'features', got {kind!r}")
        found = rows()
        missing = [row.name for row in found if row.name not in SOURCES]
        if missing:
            LOGGER.warning(
                "the family table has no paper or code for %s: add it to SOURCES in docs/_ext/family_table.py",
                ", ".join(missing),
                location=self.get_location(),
            )
            found = [row for row in found if row.name in SOURCES]
        lines = sources_table(found) if kind == "sources" else features_table(found)
        container = nodes.container()
        self.state.nested_parse(StringList(lines, source="family-table"), self.content_offset, container)
        return container.children


def setup(app: Sphinx) -> dict:
    app.add_directive("family-table", FamilyTable)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
