from __future__ import annotations

from pathlib import Path

import pytest
from llama_index.core.utils import get_tokenizer

from services.ingest.chunking import Chunk, chunk
from services.ingest.parsing import ParsedDocument, Section, parse

CORPUS = Path(__file__).resolve().parents[2] / "sample" / "corpus"
SAMPLES = sorted(path for path in CORPUS.rglob("*") if path.is_file() and path.suffix != ".yaml")
# SentenceSplitter's default tokenizer, so the bound is checked in the unit the splitter enforces.
count_tokens = get_tokenizer()


def long_document() -> ParsedDocument:
    intro = "Intro\nShort opening section."
    body = "\n\n".join(
        " ".join(f"Rule {p}.{s} says that item {p * 10 + s} costs {100 + s} USD per unit." for s in range(6))
        for p in range(12)
    )
    body = "Pricing\n" + body
    text = f"{intro}\n\n{body}"
    return ParsedDocument(
        "Price list",
        "markdown",
        (Section(intro, ("Intro",), 0, 0), Section(body, ("Pricing",), 3, len(intro) + 2)),
        text,
    )


def assert_well_formed(doc: ParsedDocument, chunks: list[Chunk], max_tokens: int) -> None:
    assert [c.index for c in chunks] == list(range(len(chunks)))
    for c in chunks:
        assert c.text.strip() == c.text != ""
        assert doc.text[c.char_start : c.char_end] == c.text
        assert len(count_tokens(c.text)) <= max_tokens
        owners = [
            s
            for s in doc.sections
            if s.char_start <= c.char_start and c.char_end <= s.char_start + len(s.text)
        ]
        assert len(owners) == 1, "a chunk must lie inside exactly one section"
        assert (c.heading_path, c.page) == (owners[0].heading_path, owners[0].page)


@pytest.mark.parametrize(("max_tokens", "overlap"), [(200, 30), (40, 8)])
def test_long_section_is_split_within_bound(max_tokens: int, overlap: int) -> None:
    doc = long_document()
    chunks = chunk(doc, max_tokens, overlap)

    assert_well_formed(doc, chunks, max_tokens)
    assert chunks[0].text == "Intro\nShort opening section."
    pricing = [c for c in chunks if c.heading_path == ("Pricing",)]
    assert len(pricing) > 2
    assert all(c.page == 3 for c in pricing)


def test_consecutive_chunks_overlap_by_whole_sentences() -> None:
    # The splitter overlaps whole units (paragraphs, sentences) that fit in the overlap budget.
    text = " ".join(f"Item {i} costs {i + 100} USD." for i in range(80))
    doc = ParsedDocument("Prices", "text", (Section(text, (), 0, 0),), text)
    chunks = chunk(doc, 60, 20)

    assert_well_formed(doc, chunks, 60)
    assert len(chunks) > 3
    for previous, current in zip(chunks, chunks[1:], strict=False):
        assert previous.char_start < current.char_start < previous.char_end
        assert current.text.startswith("Item ") and previous.text.endswith(" USD.")


def test_sentences_are_kept_whole() -> None:
    doc = long_document()

    for c in chunk(doc, 60, 10)[1:]:
        assert c.text.startswith(("Rule", "Pricing"))
        assert c.text.endswith("per unit.")


def test_chunking_is_deterministic() -> None:
    doc = long_document()

    assert chunk(doc, 50, 10) == chunk(doc, 50, 10)


def test_text_is_not_prefixed_with_headings() -> None:
    doc = long_document()

    assert all(c.text.startswith(("Intro", "Pricing", "Rule")) for c in chunk(doc))


def test_whitespace_sections_make_no_chunks() -> None:
    doc = ParsedDocument(
        "t", "text", (Section("   ", (), 0, 0), Section("Real text.", ("A",), 0, 5)), "   \n\nReal text."
    )

    assert [(c.index, c.text, c.char_start, c.char_end) for c in chunk(doc)] == [(0, "Real text.", 5, 15)]


@pytest.mark.parametrize("path", SAMPLES, ids=lambda path: path.name)
@pytest.mark.parametrize(("max_tokens", "overlap"), [(200, 30), (48, 10)])
def test_sample_corpus_chunks_are_well_formed(path: Path, max_tokens: int, overlap: int) -> None:
    doc = parse(path.name, path.read_bytes())
    chunks = chunk(doc, max_tokens, overlap)

    assert chunks
    assert_well_formed(doc, chunks, max_tokens)
    # Together the chunks cover every non-blank character of every section.
    covered: set[int] = set()
    for c in chunks:
        covered.update(range(c.char_start, c.char_end))
    for s in doc.sections:
        section_chars = range(s.char_start, s.char_start + len(s.text))
        assert all(i in covered for i in section_chars if not doc.text[i].isspace())


def test_a_long_captioned_html_table_is_chunked_between_rows() -> None:
    rows = "".join(
        f"<tr><td>func_{n} ( value text ) → text</td><td>Returns value {n} after the rule. It is stable.</td>"
        "<td>No</td></tr>"
        for n in range(40)
    )
    page = f"<h1>Functions</h1><p>Intro.</p><table summary='Text Functions'>{rows}</table>".encode()
    doc = parse("functions.html", page)

    chunks = chunk(doc)

    assert_well_formed(doc, chunks, 200)
    table = [c for c in chunks if c.heading_path == ("Functions", "Text Functions")]
    assert len(table) > 3
    row = "func_{0} ( value text ) → text\tReturns value {0} after the rule. It is stable.\tNo"
    row_texts = {row.format(n) for n in range(40)}
    for c in table:
        # Whole rows only: the sentence splitter used to cut them at their inner full stops.
        assert set(c.text.split("\n\n")) <= row_texts
