"""Cuts parsed documents into embedding-sized chunks that keep sentences whole and never span sections."""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

from llama_index.core.node_parser import SentenceSplitter

from services.ingest.parsing import ParsedDocument


@dataclass(frozen=True)
class Chunk:
    index: int
    text: str
    heading_path: tuple[str, ...]
    page: int
    char_start: int  # offset in ParsedDocument.text
    char_end: int  # one past the last character


@lru_cache(maxsize=8)
def _splitter(max_tokens: int, overlap_tokens: int) -> SentenceSplitter:
    return SentenceSplitter(
        chunk_size=max_tokens,
        chunk_overlap=overlap_tokens,
        # Markdown and the extracted formats separate paragraphs with one blank line.
        paragraph_separator="\n\n",
    )


def chunk(doc: ParsedDocument, max_tokens: int = 200, overlap_tokens: int = 30) -> list[Chunk]:
    """Splits each section on its own; each chunk's text is exactly ``doc.text[char_start:char_end]``.

    ``max_tokens`` is counted with the splitter's tokenizer (tiktoken cl100k). English prose needs up to
    about 1.2 word-pieces per such token, so the default of 200 stays under the 256 word-pieces the
    embedding model reads. Overlap is made of whole sentences or paragraphs that fit in
    ``overlap_tokens``, so paragraphs longer than that are not repeated.
    """
    splitter = _splitter(max_tokens, overlap_tokens)
    chunks: list[Chunk] = []
    for section in doc.sections:
        # Chunks start in order but may overlap, or even start where the previous one did (when all of it
        # fits in the overlap), so search from the previous start to place repeated text correctly.
        cursor = 0
        for piece in splitter.split_text(section.text):
            if not piece.strip():
                continue
            found = section.text.find(piece, cursor)
            if found < 0:
                raise ValueError(f"chunk {len(chunks)} of {doc.title!r} is not a slice of its section")
            cursor = found
            start = section.char_start + found
            chunks.append(
                Chunk(len(chunks), piece, section.heading_path, section.page, start, start + len(piece))
            )
    return chunks
