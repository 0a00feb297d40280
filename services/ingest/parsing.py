"""Turns uploaded files into plain text cut along the document's own structure (headings, pages).

Every section is a contiguous slice of ``ParsedDocument.text`` so that citations can point at exact
character ranges of the text the user is shown.
"""

from __future__ import annotations

import csv
import io
import re
import warnings
import zipfile
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import PurePosixPath

import docx
import openpyxl
import pptx
import pypdf
from bs4 import BeautifulSoup, NavigableString, Tag, XMLParsedAsHTMLWarning
from bs4.dammit import EncodingDetector
from bs4.element import PageElement, PreformattedString
from docx.document import Document as DocxDocument
from docx.table import _Cell, _Row
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


@dataclass(frozen=True)
class ParseLimits:
    """Bounds on what a small file may make the parsers do; hostile files are small and expand."""

    # DOCX, PPTX and XLSX are zip archives: the sum of their members' unpacked sizes.
    max_unzipped_bytes: int = 256 * 1024 * 1024
    # Unpacked over packed size of one member. Office XML packs 5-20 times; zip bombs about 1000.
    max_compression_ratio: float = 100.0
    # Cells read from a workbook, counting the empty ones before the last cell of each row.
    max_spreadsheet_cells: int = 5_000_000


DEFAULT_LIMITS = ParseLimits()


def parse(filename: str, content: bytes, limits: ParseLimits = DEFAULT_LIMITS) -> ParsedDocument:
    """Extracts title, text and sections; the parser is chosen by the file extension.

    Every failure caused by the file is a ``CorruptDocument`` or ``UnsupportedFormat`` naming it.
    """
    suffix = PurePosixPath(filename).suffix.lower()
    parser = _PARSERS.get(suffix)
    if parser is None:
        raise UnsupportedFormat(filename, tuple(sorted(_PARSERS)))
    if not content:
        raise CorruptDocument(filename, "the file is empty (0 bytes)")
    doc = parser(filename, content, limits)
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
        # The name comes from the file: an unknown codec, one that is not for text, or one that fails in
        # its own way (idna raises a bare UnicodeError, a NUL in the name a ValueError).
        except (LookupError, ValueError) as fallback_exc:
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
    # The lines are a table's rows; they become separate paragraphs, so that chunks break between rows.
    table: bool = False


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
        text = ("\n\n" if draft.table else "\n").join(line for line in lines if line.strip()).strip()
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

_ATX_OPENING = re.compile(r" {0,3}(#{1,6})(?=[ \t]|$)")
_FENCE = re.compile(r"^ {0,3}(`{3,}|~{3,})")


def _atx_heading(line: str) -> tuple[int, str] | None:
    """Level and text of an ATX heading line ("## Text ##"), or None for other lines and empty headings.

    Plain string operations: a regular expression for the optional closing run of "#" backtracks
    quadratically on a long line of spaces.
    """
    opening = _ATX_OPENING.match(line)
    if opening is None:
        return None
    text = line[opening.end() :].strip()
    unclosed = text.rstrip("#")
    if unclosed != text and (not unclosed or unclosed[-1].isspace()):
        text = unclosed.rstrip()
    return (len(opening.group(1)), text) if text else None


def _parse_markdown(filename: str, content: bytes, limits: ParseLimits) -> ParsedDocument:
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
            atx = _atx_heading(line.rstrip("\n"))
            if atx is not None:
                headings.append((offset, *atx))
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


#: Classes DocBook's HTML output (the PostgreSQL manual, many Linux and vendor manuals) gives its
#: "Prev / Up / Home / Next" bars.
_NAVIGATION_CLASSES = {"navheader", "navfooter"}


def _is_navigation(tag: Tag) -> bool:
    """Site navigation: it repeats on every page and answers nothing. In the PostgreSQL manual it made 9% of
    all chunks (navigation alone) and was embedded with each page."""
    return (
        tag.name == "nav"
        or str(tag.get("role", "")).lower() == "navigation"
        or not _NAVIGATION_CLASSES.isdisjoint(tag.get_attribute_list("class"))
    )


def _hidden_from_readers(tag: Tag) -> bool:
    # aria-hidden is left out: it hides decoration from screen readers, and sighted readers still see it.
    return tag.has_attr("hidden") or bool(_HIDDEN_STYLE.search(str(tag.get("style", ""))))


def _strings(tag: Tag, skip: Callable[[Tag], bool]) -> Iterator[str]:
    """The text strings under ``tag`` in document order, leaving out the elements ``skip`` names.

    Here and in the walker below an explicit stack stands in for recursion: pages may nest elements far
    deeper than Python's recursion limit.
    """
    pending: list[PageElement] = list(reversed(tag.contents))
    while pending:
        node = pending.pop()
        if isinstance(node, Tag):
            if not skip(node):
                pending.extend(reversed(node.contents))
        # Comments, doctypes and CDATA are PreformattedString subclasses: markup, not content.
        elif isinstance(node, NavigableString) and not isinstance(node, PreformattedString):
            yield str(node)


def _content_strings(tag: Tag) -> Iterator[str]:
    """Every string of ``tag`` that a browser could render, hidden or not; markup tags are skipped."""
    return _strings(tag, lambda element: element.name in _DROPPED_TAGS)


def _visible_strings(tag: Tag) -> Iterator[str]:
    return _strings(tag, _is_hidden)


def _hidden_text_chars(root: Tag) -> int:
    """Characters of text inside elements hidden from readers, counting nested hidden elements once."""
    total = 0
    pending = [root]
    while pending:
        for child in pending.pop().children:
            if not isinstance(child, Tag) or child.name in _DROPPED_TAGS:
                continue
            if _hidden_from_readers(child):
                total += len(_collapse("".join(_content_strings(child))))
            else:
                pending.append(child)
    return total


#: The depth a table's caption takes in a heading path: below every heading (h1-h6 are 1-6).
_CAPTION_LEVEL = 7


@dataclass(frozen=True)
class _End:
    """Marks where a block element's content ends in the walk."""

    tag: Tag


#: How far up a heading's scope is looked for; a heading wrapped deeper than this names the rest of the page.
_MAX_HEADING_WRAPPERS = 6


def _has_text(node: PageElement) -> bool:
    if isinstance(node, Tag):
        # Lazy: stops at the first word instead of reading the whole subtree.
        return node.name not in _DROPPED_TAGS and any(text.strip() for text in _content_strings(node))
    return (
        isinstance(node, NavigableString) and not isinstance(node, PreformattedString) and bool(node.strip())
    )


def _heading_scope(heading: Tag) -> Tag | None:
    """The smallest element holding the heading and something after it: the heading names what follows
    up to that element's end. A DocBook note's "Note" heading so ends with the note, while a section's
    heading (wrapped alone in title divs) runs to the end of its section."""
    node: Tag = heading
    for _ in range(_MAX_HEADING_WRAPPERS):
        if node.parent is None:
            break
        if any(_has_text(sibling) for sibling in node.next_siblings):
            return node.parent
        node = node.parent
    return None


def _caption(table: Tag) -> str:
    caption = table.find("caption")
    if isinstance(caption, Tag):
        return _collapse("".join(_visible_strings(caption)))
    # DocBook writes its table titles outside the table, and their text again in this attribute.
    return _collapse(str(table.get("summary", "")))


class _HtmlWalker:
    def __init__(self) -> None:
        self.drafts: list[_Draft] = [_Draft((), 0)]
        self.first_h1: str | None = None
        self._inline: list[str] = []
        self._stack: list[tuple[int, str]] = []
        # Where the heading path goes back to when an element ends, by the element's id().
        self._restore_depth: dict[int, int] = {}

    def _add_line(self, line: str) -> None:
        if line.strip():
            self.drafts[-1].lines.append(line)
            self.drafts[-1].has_body = True

    def _flush(self) -> None:
        self._add_line(_collapse("".join(self._inline)))
        self._inline.clear()

    def _enter(self, scope: Tag | None, level: int, name: str) -> tuple[str, ...]:
        if scope is not None:
            self._restore_depth.setdefault(id(scope), len(self._stack))
        return _push_heading(self._stack, level, name)

    def _leave(self, tag: Tag) -> None:
        self._flush()
        depth = self._restore_depth.pop(id(tag), None)
        if depth is not None and depth < len(self._stack):
            del self._stack[depth:]
            self.drafts.append(_Draft(tuple(name for _, name in self._stack), 0))

    def walk(self, root: Tag) -> None:
        pending: list[PageElement | _End] = list(reversed(root.contents))
        while pending:
            node = pending.pop()
            if isinstance(node, _End):
                self._leave(node.tag)
            elif isinstance(node, Tag):
                if not _is_hidden(node) and not _is_navigation(node):
                    pending.extend(self._visit(node))
            elif isinstance(node, NavigableString) and not isinstance(node, PreformattedString):
                self._inline.append(str(node))

    def _visit(self, tag: Tag) -> list[PageElement | _End]:
        """Handles ``tag`` and returns what is left to walk under it, last first."""
        name = tag.name
        if name in _HEADING_TAGS:
            self._flush()
            heading = _collapse("".join(_visible_strings(tag)))
            if heading:
                if name == "h1" and self.first_h1 is None:
                    self.first_h1 = heading
                path = self._enter(_heading_scope(tag), _HEADING_TAGS[name], heading)
                self.drafts.append(_Draft(path, 0, [heading]))
            return []
        if name == "table":
            self._flush()
            # A table is its own section, named by its caption, so that the chunks of a long one each say
            # what the rows are (and a reader's citation says which table).
            caption = _caption(tag)
            if caption:
                path = self._enter(tag, _CAPTION_LEVEL, caption)
                self.drafts.append(_Draft(path, 0, table=True))
            return [_End(tag), *reversed(tag.contents)]
        if name == "tr":
            self._flush()
            cells = [
                _collapse("".join(_visible_strings(cell)))
                for cell in tag.find_all(["td", "th"], recursive=False)
                if not _is_hidden(cell)
            ]
            self._add_line("\t".join(cells))
            return []
        if name == "pre":
            self._flush()
            self._add_line("".join(_visible_strings(tag)).strip("\n"))
            return []
        if name in _BLOCK_TAGS:
            self._flush()
            return [_End(tag), *reversed(tag.contents)]
        return list(reversed(tag.contents))

    def finish(self) -> list[_Draft]:
        self._flush()
        return self.drafts


def _parse_html(filename: str, content: bytes, limits: ParseLimits) -> ParsedDocument:
    declared = EncodingDetector.find_declared_encoding(content, is_html=True)
    # libxml2 rather than html.parser: Python 3.11's html.parser takes quadratic time on unterminated
    # constructs ("<a<a<a...", "<!--<!--..."), minutes for a few hundred kilobytes.
    with warnings.catch_warnings():
        # XHTML (an XML declaration before <html>, as DocBook writes it) is HTML to a reader; the advice
        # to parse it as XML would print once per such page on the operator's terminal.
        warnings.simplefilter("ignore", XMLParsedAsHTMLWarning)
        soup = BeautifulSoup(_decode(filename, content, declared), "lxml")
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


def _parse_pdf(filename: str, content: bytes, limits: ParseLimits) -> ParsedDocument:
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


# --- Office zip archives (DOCX, PPTX, XLSX) -------------------------------------------------------

# Tiny members (empty parts, a few bytes) reach high ratios without harm.
_RATIO_CHECKED_FROM_BYTES = 1024 * 1024


def _check_archive(filename: str, content: bytes, limits: ParseLimits, kind: str) -> None:
    """Refuses archives that would unpack to far more than they weigh, before any member is read.

    The sizes checked are the ones the archive declares; they are safe to trust because Python's
    zipfile, which every Office parser here reads through, never returns more than a member declares.
    """
    try:
        with zipfile.ZipFile(io.BytesIO(content)) as archive:
            members = archive.infolist()
    except Exception as exc:
        # Not a zip at all, or a damaged one: BadZipFile, but also OSError or ValueError on odd offsets.
        raise CorruptDocument(filename, f"it is not a readable {kind} ({type(exc).__name__}: {exc})") from exc
    unpacked = sum(member.file_size for member in members)
    if unpacked > limits.max_unzipped_bytes:
        raise CorruptDocument(
            filename,
            f"it would unpack to {unpacked:,} bytes, over the {limits.max_unzipped_bytes:,}-byte limit; "
            "refusing what looks like a zip bomb",
        )
    for member in members:
        ratio = member.file_size / max(member.compress_size, 1)
        if member.file_size > _RATIO_CHECKED_FROM_BYTES and ratio > limits.max_compression_ratio:
            raise CorruptDocument(
                filename,
                f"its part {member.filename!r} unpacks {ratio:,.0f} times larger than it is packed "
                f"({member.compress_size:,} to {member.file_size:,} bytes; the limit is "
                f"{limits.max_compression_ratio:,.0f}); refusing what looks like a zip bomb",
            )


# --- DOCX -----------------------------------------------------------------------------------------

_HEADING_STYLE = re.compile(r"Heading ([1-9])$")


def _heading_level(paragraph: Paragraph) -> int | None:
    """Title style sits above Heading 1; None for body paragraphs."""
    style_name = paragraph.style.name if paragraph.style is not None else ""
    if style_name == "Title":
        return 0
    match = _HEADING_STYLE.match(style_name or "")
    return int(match.group(1)) if match else None


def _row_texts(row: _Row) -> list[str]:
    """One entry per cell as stored in the row.

    ``row.cells`` repeats a merged cell once per grid column it spans, which a crafted gridSpan turns
    into billions of cells; the cells themselves hold each merged text once.
    """
    return [_Cell(tc, row.table).text.strip() for tc in row._tr.tc_lst]


def _docx_drafts(document: DocxDocument) -> tuple[list[_Draft], str | None, str | None]:
    """Sections of a Word document, its Title-styled text and its first heading."""
    drafts = [_Draft((), 0)]
    stack: list[tuple[int, str]] = []
    title_style: str | None = None
    first_heading: str | None = None
    for block in document.iter_inner_content():
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
                line = "\t".join(_row_texts(row))
                if line.strip():
                    drafts[-1].lines.append(line)
                    drafts[-1].has_body = True
    return drafts, title_style, first_heading


def _parse_docx(filename: str, content: bytes, limits: ParseLimits) -> ParsedDocument:
    kind = "Word document"
    _check_archive(filename, content, limits, kind)
    try:
        document = docx.Document(io.BytesIO(content))
        drafts, title_style, first_heading = _docx_drafts(document)
        core_title = document.core_properties.title or ""
    except Exception as exc:
        # Bad zips, missing parts and broken XML surface as unrelated exception types, some of them only
        # once a paragraph's style or a table's cells are read.
        raise CorruptDocument(filename, f"it is not a readable {kind} ({type(exc).__name__}: {exc})") from exc
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


def _parse_pptx(filename: str, content: bytes, limits: ParseLimits) -> ParsedDocument:
    kind = "PowerPoint file"
    _check_archive(filename, content, limits, kind)
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
        raise CorruptDocument(filename, f"it is not a readable {kind} ({type(exc).__name__}: {exc})") from exc
    first_title = slides[0][0] if slides else ""
    return _assemble(first_title or _stem(filename), "pptx", drafts)


# --- Spreadsheets ---------------------------------------------------------------------------------


def _row_line(cells: Iterable[object]) -> str:
    values = ["" if value is None else str(value).strip() for value in cells]
    # Formatted but empty columns would otherwise trail every row with tabs.
    return "\t".join(values).rstrip("\t")


_SNIFFED_CHARS = 1024


def _parse_csv(filename: str, content: bytes, limits: ParseLimits) -> ParsedDocument:
    text = _decode(filename, content)
    try:
        # Spreadsheets exported with a European locale separate fields with semicolons. The sample is
        # short because the sniffer's quote detection takes quadratic time on lines full of quotes.
        dialect: type[csv.Dialect] | csv.Dialect = csv.Sniffer().sniff(
            text[:_SNIFFED_CHARS], delimiters=",;\t"
        )
    except csv.Error:
        dialect = csv.excel
    try:
        lines = [_row_line(row) for row in csv.reader(io.StringIO(text), dialect)]
    except csv.Error as exc:
        raise CorruptDocument(filename, f"it is not readable CSV ({exc})") from exc
    return _assemble(_stem(filename), "csv", [_Draft((), 0, lines, has_body=True)])


_EXCEL_MAX_ROWS = 1_048_576


def _parse_xlsx(filename: str, content: bytes, limits: ParseLimits) -> ParsedDocument:
    kind = "Excel workbook"
    _check_archive(filename, content, limits, kind)
    drafts: list[_Draft] = []
    hidden = 0
    cells_left = limits.max_spreadsheet_cells
    try:
        # data_only reads the values Excel last computed instead of the formulas behind them.
        workbook = openpyxl.load_workbook(io.BytesIO(content), read_only=True, data_only=True)
        try:
            title = (workbook.properties.title or "").strip()
            for sheet in workbook.worksheets:
                # With its declared dimensions a sheet pads every row to the widest and fills in every
                # missing row: one cell at XFD1048576 would make seventeen billion empty ones.
                sheet.reset_dimensions()
                lines = []
                for number, row in enumerate(sheet.iter_rows(values_only=True), start=1):
                    # Row numbers come from the file unchecked, and each missing row is filled in.
                    if number > _EXCEL_MAX_ROWS:
                        raise CorruptDocument(
                            filename,
                            f"sheet {sheet.title!r} has more rows than Excel allows ({_EXCEL_MAX_ROWS:,})",
                        )
                    cells_left -= len(row) or 1
                    if cells_left < 0:
                        raise CorruptDocument(
                            filename,
                            f"it has more than {limits.max_spreadsheet_cells:,} cells, "
                            "the limit for one workbook",
                        )
                    if row:
                        lines.append(_row_line(row))
                if sheet.sheet_state == "visible":
                    drafts.append(_Draft((sheet.title,), 0, lines, has_body=True))
                else:
                    hidden += sum(len(_collapse(line)) for line in lines)
        finally:
            workbook.close()
    except CorruptDocument:
        raise
    except Exception as exc:
        # Bad zips, missing parts and broken XML surface as unrelated exception types.
        raise CorruptDocument(filename, f"it is not a readable {kind} ({type(exc).__name__}: {exc})") from exc
    return _assemble(title or _stem(filename), "xlsx", drafts, hidden)


# --- Plain text -----------------------------------------------------------------------------------


def _parse_text(filename: str, content: bytes, limits: ParseLimits) -> ParsedDocument:
    text = _decode(filename, content)
    stripped = text.strip()
    start = len(text) - len(text.lstrip())
    sections = (Section(stripped, (), 0, start),) if stripped else ()
    return ParsedDocument(_stem(filename), "text", sections, text)


_PARSERS: dict[str, Callable[[str, bytes, ParseLimits], ParsedDocument]] = {
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

#: Raised when what a parser extracts changes, so that an upgrade re-ingests the documents it reads and no
#: others: ingest puts it in each content hash. A parser not named here is at revision 0.
#: _parse_html 1: a captioned table is its own section, cut between rows; a heading ends with its element.
_EXTRACTION_REVISIONS: dict[Callable[[str, bytes, ParseLimits], ParsedDocument], int] = {_parse_html: 1}


def extraction_revision(filename: str) -> int:
    parser = _PARSERS.get(PurePosixPath(filename).suffix.lower())
    return _EXTRACTION_REVISIONS.get(parser, 0) if parser else 0
