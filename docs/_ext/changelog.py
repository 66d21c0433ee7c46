"""``CHANGELOG.md`` rendered as a page: the Markdown that the changelog uses, turned into docutils nodes.

``.. markdown-changelog:: ../CHANGELOG.md`` reads the file at build time (so the page is never out of date and
the changelog has one source), and understands what a Keep-a-Changelog file holds: ``##`` and ``###`` headings
(the file's ``#`` title is the page's own), paragraphs, ``-`` bullet lists whose items continue on indented lines,
fenced code blocks, and inline ``**bold**``, ```code``` and ``[text](url)`` (a heading's ``[Unreleased]`` shows as
its text). Building nodes rather than reStructuredText leaves nothing to escape. Anything else (a table, a numbered
list, a nested list, an ``*`` bullet, a link reference) is a build warning naming its line, so that a change of the
changelog that the page would show wrongly fails the ``-W`` build instead. The docs extra needs no Markdown parser.
"""

import pathlib
import re

from docutils import nodes
from sphinx.application import Sphinx
from sphinx.util import logging
from sphinx.util.docutils import SphinxDirective

LOGGER = logging.getLogger(__name__)

_INLINE = re.compile(
    r"(?P<code>(?P<ticks>`+)(?P<code_text>.+?)(?P=ticks))"
    r"|\*\*(?P<bold>.+?)\*\*"
    r"|\[(?P<link_text>[^\]]+)\]\((?P<url>[^)\s]+)\)"
)
_UNSUPPORTED = (
    (re.compile(r"^\s*\|"), "a table"),
    (re.compile(r"^\s*\d+[.)] "), "a numbered list"),
    (re.compile(r"^\s*[*+] "), "a '*' or '+' bullet (use '-')"),
    (re.compile(r"^\s{2,}- "), "a nested list"),
    (re.compile(r"^\[[^\]]+\]:\s"), "a link reference definition"),
)


def inline(text: str) -> list[nodes.Node]:
    """The inline nodes of one paragraph's text (its lines joined): code spans, bold, links and plain text."""
    result: list[nodes.Node] = []
    position = 0
    for match in _INLINE.finditer(text):
        if match.start() > position:
            result.append(nodes.Text(text[position : match.start()]))
        if match.group("code") is not None:
            code = match.group("code_text")
            if code.startswith(" ") and code.endswith(" ") and code.strip():
                code = code[1:-1]
            result.append(nodes.literal(code, code))
        elif match.group("bold") is not None:
            result.append(nodes.strong("", "", *inline(match.group("bold"))))
        else:
            reference = nodes.reference("", "", *inline(match.group("link_text")), refuri=match.group("url"))
            result.append(reference)
        position = match.end()
    if position < len(text):
        result.append(nodes.Text(text[position:]))
    return result


def _paragraph(lines: list[str]) -> nodes.paragraph:
    return nodes.paragraph("", "", *inline(" ".join(line.strip() for line in lines)))


def _heading_text(text: str) -> str:
    """``[Unreleased]`` or ``[1.0.0] - 2026-01-01`` as shown: the brackets of a version link dropped."""
    return re.sub(r"^\[([^\]]+)\]", r"\1", text.strip())


class Block:
    """The blocks of a Markdown file, read line by line; ``warnings`` holds ``(line, what)`` it cannot show."""

    def __init__(self, text: str) -> None:
        self.lines = text.splitlines()
        self.warnings: list[tuple[int, str]] = []

    def sections(self) -> list[nodes.section]:
        """The ``##`` sections, each with its ``###`` subsections; what precedes the first ``##`` is the
        preamble, returned by :meth:`preamble`."""
        top: list[nodes.section] = []
        self._preamble: list[nodes.Node] = []
        current: nodes.Element | None = None
        level2: nodes.section | None = None
        buffer: list[tuple[int, str]] = []

        def flush() -> None:
            target = current if current is not None else None
            blocks = self._blocks(buffer)
            if target is None:
                self._preamble.extend(blocks)
            else:
                target.extend(blocks)
            buffer.clear()

        in_fence = False
        for number, line in enumerate(self.lines, start=1):
            if line.startswith("```"):
                in_fence = not in_fence
            heading = None if in_fence else re.match(r"^(#{1,6}) (.*)$", line)
            if heading is None:
                buffer.append((number, line))
                continue
            flush()
            level, title = len(heading.group(1)), _heading_text(heading.group(2))
            if level == 1:
                current = None  # the page's title: the rst file has it
                continue
            section = nodes.section("", nodes.title("", "", *inline(title)), ids=[nodes.make_id(f"changelog {title}")])
            section["names"].append(nodes.fully_normalize_name(title))
            if level == 2:
                top.append(section)
                level2 = section
            elif level == 3 and level2 is not None:
                level2.append(section)
            else:
                self.warnings.append((number, f"a level-{level} heading"))
                continue
            current = section
        flush()
        return top

    def preamble(self) -> list[nodes.Node]:
        return self._preamble

    def _blocks(self, numbered: list[tuple[int, str]]) -> list[nodes.Node]:
        """Paragraphs, bullet lists and code blocks of the lines between two headings."""
        blocks: list[nodes.Node] = []
        paragraph: list[str] = []
        bullets: nodes.bullet_list | None = None
        item: list[str] | None = None
        fence: list[str] | None = None
        language = ""

        def end_item() -> None:
            nonlocal item
            if item is not None and bullets is not None:
                bullets.append(nodes.list_item("", _paragraph(item)))
            item = None

        def end_paragraph() -> None:
            if paragraph:
                blocks.append(_paragraph(paragraph))
                paragraph.clear()

        for number, line in numbered:
            if fence is not None:
                if line.startswith("```"):
                    code = "\n".join(fence)
                    block = nodes.literal_block(code, code)
                    if language:
                        block["language"] = language
                    blocks.append(block)
                    fence = None
                else:
                    fence.append(line)
                continue
            if line.startswith("```"):
                end_item()
                end_paragraph()
                bullets = None
                fence, language = [], line[3:].strip()
                continue
            for pattern, what in _UNSUPPORTED:
                if pattern.match(line):
                    self.warnings.append((number, what))
            if not line.strip():
                end_item()
                end_paragraph()
                if bullets is not None and item is None:
                    pass  # a blank line between items keeps the list
                continue
            if line.startswith("- "):
                end_paragraph()
                end_item()
                if bullets is None:
                    bullets = nodes.bullet_list(bullet="-")
                    blocks.append(bullets)
                item = [line[2:]]
            elif line.startswith("  ") and item is not None:
                item.append(line)
            else:
                end_item()
                bullets = None
                paragraph.append(line)
        end_item()
        end_paragraph()
        if fence is not None:
            self.warnings.append((numbered[-1][0] if numbered else 0, "an unclosed code block"))
        return blocks


class MarkdownChangelog(SphinxDirective):
    """``.. markdown-changelog:: PATH``: the Markdown file at PATH (relative to this page) as sections."""

    required_arguments = 1

    def run(self) -> list[nodes.Node]:
        path = pathlib.Path(self.env.doc2path(self.env.docname)).parent / self.arguments[0]
        self.env.note_dependency(str(path.resolve()))
        markdown = Block(path.read_text(encoding="utf-8"))
        sections = markdown.sections()
        for number, what in markdown.warnings:
            LOGGER.warning(
                "%s:%d: %s, which the changelog page cannot show", path.name, number, what, location=self.get_location()
            )
        return [*markdown.preamble(), *sections]


def setup(app: Sphinx) -> dict:
    app.add_directive("markdown-changelog", MarkdownChangelog)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
