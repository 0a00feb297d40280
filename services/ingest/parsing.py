"""Turns uploaded files into plain text cut along the document's own structure (headings, pages).

Every section is a contiguous slice of ``ParsedDocument.text`` so that citations can point at exact
character ranges of the text the user is shown.
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import PurePosixPath

import docx
import openpyxl
import pptx
import pypdf
from bs4 import BeautifulSoup, NavigableString, Tag
from bs4.dammit import EncodingDetector
from bs4.element import PreformattedString
from docx.text.paragraph import Paragraph
from pptx.shapes.autoshape import Shape
from pptx.shapes.base import BaseShape
from pptx.shapes.graphfrm import GraphicFrame
from pptx.shapes.group import GroupShape

from services.ingest.errors import CorruptDocument, UnsupportedFormat


@dataclass(frozen=True)
class Section:
    text: str
    heading_path: tuple[str, ...]
    page: int  # 1-based for paged formats, 0 when unknown
    char_start: int  # offset of ``text`` in ParsedDocument.text


@dataclass(frozen=True)
class ParsedDocument:
    title: str
    doc_type: str
    sections: tuple[Section, ...]
    text: str
    # Characters of text the file hides from readers (HTML hidden elements, hidden sheets) that were left out
    # of ``text``; hidden text in a business document is a common carrier for planted instructions.
    hidden_text_dropped: int = 0


def parse(filename: str, content: bytes) -> ParsedDocument:
    """Extracts title, text and sections; the parser is chosen by the file extension."""
    suffix = PurePosixPath(filename).suffix.lower()
    parser = _PARSERS.get(suffix)
    if parser is None:
        raise UnsupportedFormat(filename, tuple(sorted(_PARSERS)))
    if not content:
        raise CorruptDocument(filename, "the file is empty (0 bytes)")
    doc = parser(filename, content)
    if not doc.text.strip():
        raise CorruptDocument(filename, "the document contains no extractable text")
    return doc


def _stem(filename: str) -> str:
    return PurePosixPath(filename).stem


def _decode(filename: str, content: bytes, fallback_encoding: str | None = None) -> str:
    if b"\x00" in content:
        # UTF-16 files are full of NUL bytes too, hence the hint.
        raise CorruptDocument(filename, "it contains NUL bytes (binary data or UTF-16); save it as UTF-8")
    try:
        text = content.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        if fallback_encoding is None:
            raise CorruptDocument(
                filename,
                f"it is not valid UTF-8 text (byte 0x{content[exc.start]:02x} at offset {exc.start}); "
                "save it as UTF-8",
            ) from exc
        try:
            text = content.decode(fallback_encoding)
        except (LookupError, UnicodeDecodeError) as fallback_exc:
            raise CorruptDocument(
                filename, f"it is neither UTF-8 nor the declared encoding {fallback_encoding!r}"
            ) from fallback_exc
    return text.replace("\r\n", "\n").replace("\r", "\n")


@dataclass
class _Draft:
    """A section being collected; ``lines`` holds the heading line (if any) followed by body lines."""

    heading_path: tuple[str, ...]
    page: int
    lines: list[str] = field(default_factory=list)
    has_body: bool = False


def _assemble(
    title: str, doc_type: str, drafts: list[_Draft], hidden_text_dropped: int = 0
) -> ParsedDocument:
    """Joins drafted sections into one text, folding heading-only sections into the next one.

    A heading with nothing under it would otherwise become a chunk that answers no question.
    """
    sections: list[Section] = []
    parts: list[str] = []
    offset = 0
    pending: list[str] = []
    for index, draft in enumerate(drafts):
        lines = pending + draft.lines
        if not draft.has_body and index < len(drafts) - 1:
            pending = lines
            continue
        pending = []
        text = "\n".join(line for line in lines if line.strip()).strip()
        if not text:
            continue
        if parts:
            offset += 2
        sections.append(Section(text, draft.heading_path, draft.page, offset))
        parts.append(text)
        offset += len(text)
    return ParsedDocument(title, doc_type, tuple(sections), "\n\n".join(parts), hidden_text_dropped)


def _push_heading(stack: list[tuple[int, str]], level: int, heading: str) -> tuple[str, ...]:
    while stack and stack[-1][0] >= level:
        stack.pop()
    stack.append((level, heading))
    return tuple(name for _, name in stack)


# --- Markdown -------------------------------------------------------------------------------------

_ATX_HEADING = re.compile(r"^ {0,3}(#{1,6})(?:[ \t]+(.*?))?(?:[ \t]+#+)?[ \t]*$")
_FENCE = re.compile(r"^ {0,3}(`{3,}|~{3,})")


def _parse_markdown(filename: str, content: bytes) -> ParsedDocument:
    # The Markdown source itself is the document text, so offsets also point into the file.
    text = _decode(filename, content)
    headings: list[tuple[int, int, str]] = []  # (offset, level, heading)
    fence: str | None = None
    offset = 0
    for line in text.splitlines(keepends=True):
        fence_match = _FENCE.match(line)
        if fence_match:
            marker = fence_match.group(1)
            if fence is None:
                fence = marker
            elif marker[0] == fence[0] and len(marker) >= len(fence):
                fence = None
        elif fence is None:
            heading_match = _ATX_HEADING.match(line.rstrip("\n"))
            if heading_match and heading_match.group(2):
                headings.append((offset, len(heading_match.group(1)), heading_match.group(2).strip()))
        offset += len(line)

    bounds = [0] + [start for start, _, _ in headings] + [len(text)]
    paths: list[tuple[str, ...]] = [()]
    stack: list[tuple[int, str]] = []
    for _, level, heading in headings:
        paths.append(_push_heading(stack, level, heading))

    sections: list[Section] = []
    pending_start: int | None = None
    for index, path in enumerate(paths):
        start, end = bounds[index], bounds[index + 1]
        segment = text[start:end]
        heading_only = index > 0 and not segment.partition("\n")[2].strip()
        if heading_only and index < len(paths) - 1:
            # A heading with nothing under it would become a chunk that answers no question.
            pending_start = start if pending_start is None else pending_start
            continue
        if pending_start is not None:
            start, pending_start = pending_start, None
            segment = text[start:end]
        stripped = segment.strip()
        if stripped:
            char_start = start + len(segment) - len(segment.lstrip())
            sections.append(Section(stripped, path, 0, char_start))

    h1 = next((heading for _, level, heading in headings if level == 1), None)
    return ParsedDocument(h1 or _stem(filename), "markdown", tuple(sections), text)


# --- HTML -----------------------------------------------------------------------------------------

_HEADING_TAGS = {"h1": 1, "h2": 2, "h3": 3, "h4": 4, "h5": 5, "h6": 6}
_DROPPED_TAGS = {
    "script",
    "style",
    "noscript",
    "template",
    "head",
    "title",
    "iframe",
    "object",
    "svg",
    "canvas",
    "button",
    "select",
    "input",
    "textarea",
}
_BLOCK_TAGS = {
    "address",
    "article",
    "aside",
    "blockquote",
    "br",
    "caption",
    "dd",
    "div",
    "dl",
    "dt",
    "figcaption",
    "figure",
    "footer",
    "form",
    "header",
    "hr",
    "li",
    "main",
    "nav",
    "ol",
    "p",
    "section",
    "table",
    "tbody",
    "tfoot",
    "thead",
    "ul",
}
_HIDDEN_STYLE = re.compile(r"display\s*:\s*none|visibility\s*:\s*hidden", re.IGNORECASE)


def _collapse(text: str) -> str:
    return " ".join(text.split())


def _is_hidden(tag: Tag) -> bool:
    return (
        tag.name in _DROPPED_TAGS
        or tag.has_attr("hidden")
        or str(tag.get("aria-hidden", "")).lower() == "true"
        or bool(_HIDDEN_STYLE.search(str(tag.get("style", ""))))
    )


def _hidden_from_readers(tag: Tag) -> bool:
    # aria-hidden is left out: it hides decoration from screen readers, and sighted readers still see it.
    return tag.has_attr("hidden") or bool(_HIDDEN_STYLE.search(str(tag.get("style", ""))))


def _content_strings(tag: Tag) -> Iterator[str]:
    """Every string of ``tag`` that a browser could render, hidden or not; markup tags are skipped."""
    for child in tag.children:
        if isinstance(child, NavigableString) and not isinstance(child, PreformattedString):
            yield str(child)
        elif isinstance(child, Tag) and child.name not in _DROPPED_TAGS:
            yield from _content_strings(child)


def _hidden_text_chars(node: Tag) -> int:
    """Characters of text inside elements hidden from readers, counting nested hidden elements once."""
    total = 0
    for child in node.children:
        if not isinstance(child, Tag) or child.name in _DROPPED_TAGS:
            continue
        if _hidden_from_readers(child):
            total += len(_collapse("".join(_content_strings(child))))
        else:
            total += _hidden_text_chars(child)
    return total


def _visible_strings(tag: Tag) -> Iterator[str]:
    for child in tag.children:
        # Comments, doctypes and CDATA are PreformattedString subclasses: markup, not content.
        if isinstance(child, NavigableString) and not isinstance(child, PreformattedString):
            yield str(child)
        elif isinstance(child, Tag) and not _is_hidden(child):
            yield from _visible_strings(child)


class _HtmlWalker:
    def __init__(self) -> None:
        self.drafts: list[_Draft] = [_Draft((), 0)]
        self.first_h1: str | None = None
        self._inline: list[str] = []
        self._stack: list[tuple[int, str]] = []

    def _add_line(self, line: str) -> None:
        if line.strip():
            self.drafts[-1].lines.append(line)
            self.drafts[-1].has_body = True

    def _flush(self) -> None:
        self._add_line(_collapse("".join(self._inline)))
        self._inline.clear()

    def walk(self, node: Tag) -> None:
        for child in node.children:
            if isinstance(child, NavigableString):
                if not isinstance(child, PreformattedString):
                    self._inline.append(str(child))
            elif isinstance(child, Tag) and not _is_hidden(child):
                self._visit(child)

    def _visit(self, tag: Tag) -> None:
        name = tag.name
        if name in _HEADING_TAGS:
            self._flush()
            heading = _collapse("".join(_visible_strings(tag)))
            if heading:
                if name == "h1" and self.first_h1 is None:
                    self.first_h1 = heading
                path = _push_heading(self._stack, _HEADING_TAGS[name], heading)
                self.drafts.append(_Draft(path, 0, [heading]))
        elif name == "tr":
            self._flush()
            cells = [
                _collapse("".join(_visible_strings(cell)))
                for cell in tag.find_all(["td", "th"], recursive=False)
                if not _is_hidden(cell)
            ]
            self._add_line("\t".join(cells))
        elif name == "pre":
            self._flush()
            self._add_line("".join(_visible_strings(tag)).strip("\n"))
        elif name in _BLOCK_TAGS:
            self._flush()
            self.walk(tag)
            self._flush()
        else:
            self.walk(tag)

    def finish(self) -> list[_Draft]:
        self._flush()
        return self.drafts


def _parse_html(filename: str, content: bytes) -> ParsedDocument:
    declared = EncodingDetector.find_declared_encoding(content, is_html=True)
    soup = BeautifulSoup(_decode(filename, content, declared), "html.parser")
    root = soup.body or soup
    walker = _HtmlWalker()
    walker.walk(root)
    drafts = walker.finish()
    title_tag = soup.find("title")
    title = _collapse(title_tag.get_text()) if isinstance(title_tag, Tag) else ""
    return _assemble(title or walker.first_h1 or _stem(filename), "html", drafts, _hidden_text_chars(root))


# --- PDF ------------------------------------------------------------------------------------------

# Producers put placeholders into the title field when the author set none.
_PLACEHOLDER_TITLES = {"untitled", "untitled document", "anonymous"}


def _parse_pdf(filename: str, content: bytes) -> ParsedDocument:
    try:
        reader = pypdf.PdfReader(io.BytesIO(content))
        # An empty user password only restricts printing or editing; the text is still readable.
        locked = reader.is_encrypted and not reader.decrypt("")
        pages = [] if locked else [page.extract_text() or "" for page in reader.pages]
        metadata_title = "" if locked or reader.metadata is None else reader.metadata.title or ""
    except Exception as exc:
        # pypdf raises many exception types on malformed files; all mean the same thing here.
        raise CorruptDocument(filename, f"it is not a readable PDF ({type(exc).__name__}: {exc})") from exc
    if locked:
        raise CorruptDocument(filename, "the PDF is password-protected; upload an unprotected copy")

    drafts = []
    for number, page_text in enumerate(pages, start=1):
        lines = page_text.replace("\r\n", "\n").replace("\r", "\n").split("\n")
        drafts.append(_Draft((), number, lines, has_body=True))
    title = metadata_title.strip()
    if title.lower() in _PLACEHOLDER_TITLES:
        title = ""
    if not title:
        title = next((line.strip() for text in pages for line in text.splitlines() if line.strip()), "")
    return _assemble(title or _stem(filename), "pdf", drafts)


# --- DOCX -----------------------------------------------------------------------------------------

_HEADING_STYLE = re.compile(r"Heading ([1-9])$")


def _heading_level(paragraph: Paragraph) -> int | None:
    """Title style sits above Heading 1; None for body paragraphs."""
    style_name = paragraph.style.name if paragraph.style is not None else ""
    if style_name == "Title":
        return 0
    match = _HEADING_STYLE.match(style_name or "")
    return int(match.group(1)) if match else None


def _parse_docx(filename: str, content: bytes) -> ParsedDocument:
    try:
        document = docx.Document(io.BytesIO(content))
        blocks = list(document.iter_inner_content())
        core_title = document.core_properties.title or ""
    except Exception as exc:
        # Bad zips, missing parts and broken XML surface as unrelated exception types.
        raise CorruptDocument(
            filename, f"it is not a readable Word document ({type(exc).__name__}: {exc})"
        ) from exc

    drafts = [_Draft((), 0)]
    stack: list[tuple[int, str]] = []
    title_style: str | None = None
    first_heading: str | None = None
    for block in blocks:
        if isinstance(block, Paragraph):
            text = block.text.strip()
            level = _heading_level(block)
            if level is not None and text:
                title_style = title_style or (text if level == 0 else None)
                first_heading = first_heading or text
                drafts.append(_Draft(_push_heading(stack, level, text), 0, [text]))
            elif text:
                drafts[-1].lines.append(text)
                drafts[-1].has_body = True
        else:
            for row in block.rows:
                line = "\t".join(cell.text.strip() for cell in row.cells)
                if line.strip():
                    drafts[-1].lines.append(line)
                    drafts[-1].has_body = True
    title = title_style or core_title.strip() or first_heading or _stem(filename)
    return _assemble(title, "docx", drafts)


# --- PPTX -----------------------------------------------------------------------------------------


def _shape_lines(shapes: Iterable[BaseShape]) -> Iterator[str]:
    for shape in shapes:
        if isinstance(shape, GroupShape):
            yield from _shape_lines(shape.shapes)
        elif isinstance(shape, GraphicFrame) and shape.has_table:
            for row in shape.table.rows:
                yield "\t".join(cell.text.strip() for cell in row.cells)
        elif isinstance(shape, Shape) and shape.has_text_frame:
            # python-pptx renders a soft line break inside a paragraph as a vertical tab.
            yield from (paragraph.text.replace("\v", "\n") for paragraph in shape.text_frame.paragraphs)


def _parse_pptx(filename: str, content: bytes) -> ParsedDocument:
    try:
        slides = [
            (_collapse(slide.shapes.title.text) if slide.shapes.title is not None else "", slide)
            for slide in pptx.Presentation(io.BytesIO(content)).slides
        ]
        drafts = [
            _Draft((title,) if title else (), number, list(_shape_lines(slide.shapes)), has_body=True)
            for number, (title, slide) in enumerate(slides, start=1)
        ]
    except Exception as exc:
        # Bad zips, missing parts and broken XML surface as unrelated exception types.
        raise CorruptDocument(
            filename, f"it is not a readable PowerPoint file ({type(exc).__name__}: {exc})"
        ) from exc
    first_title = slides[0][0] if slides else ""
    return _assemble(first_title or _stem(filename), "pptx", drafts)


# --- Spreadsheets ---------------------------------------------------------------------------------


def _row_line(cells: Iterable[object]) -> str:
    values = ["" if value is None else str(value).strip() for value in cells]
    # Formatted but empty columns would otherwise trail every row with tabs.
    return "\t".join(values).rstrip("\t")


def _parse_csv(filename: str, content: bytes) -> ParsedDocument:
    text = _decode(filename, content)
    try:
        # Spreadsheets exported with a European locale separate fields with semicolons.
        dialect: type[csv.Dialect] | csv.Dialect = csv.Sniffer().sniff(text[:4096], delimiters=",;\t")
    except csv.Error:
        dialect = csv.excel
    try:
        lines = [_row_line(row) for row in csv.reader(io.StringIO(text), dialect)]
    except csv.Error as exc:
        raise CorruptDocument(filename, f"it is not readable CSV ({exc})") from exc
    return _assemble(_stem(filename), "csv", [_Draft((), 0, lines, has_body=True)])


def _parse_xlsx(filename: str, content: bytes) -> ParsedDocument:
    drafts: list[_Draft] = []
    hidden = 0
    try:
        # data_only reads the values Excel last computed instead of the formulas behind them.
        workbook = openpyxl.load_workbook(io.BytesIO(content), read_only=True, data_only=True)
        try:
            title = (workbook.properties.title or "").strip()
            for sheet in workbook.worksheets:
                lines = [_row_line(row) for row in sheet.iter_rows(values_only=True)]
                if sheet.sheet_state == "visible":
                    drafts.append(_Draft((sheet.title,), 0, lines, has_body=True))
                else:
                    hidden += sum(len(_collapse(line)) for line in lines)
        finally:
            workbook.close()
    except Exception as exc:
        # Bad zips, missing parts and broken XML surface as unrelated exception types.
        raise CorruptDocument(
            filename, f"it is not a readable Excel workbook ({type(exc).__name__}: {exc})"
        ) from exc
    return _assemble(title or _stem(filename), "xlsx", drafts, hidden)


# --- Plain text -----------------------------------------------------------------------------------


def _parse_text(filename: str, content: bytes) -> ParsedDocument:
    text = _decode(filename, content)
    stripped = text.strip()
    start = len(text) - len(text.lstrip())
    sections = (Section(stripped, (), 0, start),) if stripped else ()
    return ParsedDocument(_stem(filename), "text", sections, text)


_PARSERS: dict[str, Callable[[str, bytes], ParsedDocument]] = {
    ".md": _parse_markdown,
    ".markdown": _parse_markdown,
    ".html": _parse_html,
    ".htm": _parse_html,
    ".pdf": _parse_pdf,
    ".docx": _parse_docx,
    ".pptx": _parse_pptx,
    ".csv": _parse_csv,
    ".xlsx": _parse_xlsx,
    ".txt": _parse_text,
}
