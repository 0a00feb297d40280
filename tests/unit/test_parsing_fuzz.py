"""Fuzzing every parser: whatever the bytes, parsing ends quickly in a document or in the ingest's own error.

Two kinds of input per format: random bytes, and mutations of a valid seed file. Office files are zip
archives, so their mutations are made to the XML inside and the archive is packed again; mutating the
packed bytes would only ever exercise zipfile's CRC check.
"""

from __future__ import annotations

import io
import re
import zipfile
from datetime import timedelta

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from reportlab.pdfgen import canvas

from services.ingest.errors import IngestError
from services.ingest.parsing import parse
from tests.unit.test_parsing import (
    MARKDOWN,
    assert_sections_are_slices,
    make_docx,
    make_pptx,
    make_xlsx,
)

FUZZ = settings(
    max_examples=200,
    # Generous: the point is "never hangs", and this machine is shared.
    deadline=timedelta(seconds=2),
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


def parses_or_refuses(filename: str, content: bytes) -> None:
    """The property: a ParsedDocument whose sections are slices of its text, or an IngestError."""
    try:
        doc = parse(filename, content)
    except IngestError as exc:
        assert filename in str(exc)
        return
    assert doc.text.strip()
    assert_sections_are_slices(doc)


# --- Mutations ------------------------------------------------------------------------------------

# Pieces that mean something to one of the parsers: markup, entities, encodings, numbers, NULs.
TOKENS = [
    b"<",
    b">",
    b"/>",
    b"</",
    b"<!--",
    b"-->",
    b"<![CDATA[",
    b"]]>",
    b"&",
    b"&#0;",
    b"&#x110000;",
    b"&amp;",
    b'"',
    b"'",
    b"\x00",
    b"\xff\xfe",
    b"\xef\xbb\xbf",
    b"\r",
    b"\n\n",
    b"\t",
    b"#",
    b"# ",
    b"```",
    b"<h1>",
    b"<tr><td>",
    b"<pre>",
    b'<div hidden style="display:none">',
    b'<meta charset="idna">',
    b'<meta charset="utf-16">',
    b'<?xml version="1.0" encoding="latin-1"?>',
    b"<!DOCTYPE x [<!ENTITY a 'aaaaaaaaaa'><!ENTITY b '&a;&a;&a;&a;&a;'>]>",
    b"&b;",
    b"obj",
    b"endobj",
    b"stream\n",
    b"endstream",
    b"xref",
    b"trailer",
    b"/Length 999999",
    b"/Filter /FlateDecode",
    b" R ",
]
NUMBERS = [b"0", b"-1", b"1048576", b"2147483648", b"99999999999999999999", b"1e308", b"NaN"]


@st.composite
def mutated(draw: st.DrawFn, seed: bytes) -> bytes:
    """``seed`` after a few random edits: flips, cuts, inserted tokens, copied spans, changed numbers."""
    data = bytearray(seed)
    for _ in range(draw(st.integers(1, 6))):
        where = draw(st.integers(0, len(data)))
        edit = draw(st.sampled_from(["flip", "cut", "token", "bytes", "copy", "number", "truncate"]))
        if edit == "flip" and where < len(data):
            data[where] = draw(st.integers(0, 255))
        elif edit == "cut":
            del data[where : where + draw(st.integers(1, 64))]
        elif edit == "token":
            data[where:where] = draw(st.sampled_from(TOKENS)) * draw(st.integers(1, 3))
        elif edit == "bytes":
            data[where:where] = draw(st.binary(min_size=1, max_size=16))
        elif edit == "copy":
            span = bytes(data[where : where + draw(st.integers(1, 256))])
            data[draw(st.integers(0, len(data))) : 0] = span * draw(st.integers(1, 4))
        elif edit == "number":
            number = re.compile(rb"\d+").search(bytes(data), where)
            if number:
                data[number.start() : number.end()] = draw(st.sampled_from(NUMBERS))
        elif edit == "truncate":
            del data[where:]
    return bytes(data)


@st.composite
def mutated_archive(draw: st.DrawFn, seed: bytes) -> bytes:
    """``seed`` (a zip) with one member's bytes mutated, packed again."""
    with zipfile.ZipFile(io.BytesIO(seed)) as archive:
        members = [(info.filename, archive.read(info)) for info in archive.infolist()]
    # The main parts are the XML ones; media and thumbnails are never parsed.
    xml = [index for index, (name, _) in enumerate(members) if name.endswith((".xml", ".rels"))]
    target = draw(st.sampled_from(xml))
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for index, (name, data) in enumerate(members):
            archive.writestr(name, draw(mutated(data)) if index == target else data)
    return buffer.getvalue()


# --- Text formats ---------------------------------------------------------------------------------

HTML = (
    b"<!doctype html><html><head><meta charset='utf-8'><title>Travel</title></head><body>"
    b"<h1>Travel policy</h1><p>Book trains <b>under</b> four hours.</p><!-- note -->"
    b"<table><tr><th>Role</th><td>Limit</td></tr><tr><td>Manager</td><td>5,000</td></tr></table>"
    b"<pre>code\n  block</pre><div style='display:none'>hidden</div><h2>Hotels</h2><ul><li>One</li></ul>"
    b"<script>var x = '<p>';</script></body></html>"
)
CSV = b'Team;Q3 USD;Owner\nFinance;412000;Dana\n"Legal; and more";95000;"Carol ""C"""\n'
TEXT = "Plain notes.\n\nÜnïcode, tabs\tand\r\nline ends.\n".encode()

# Markup-shaped text finds more than uniform random text: unbalanced tags, odd nesting, entities.
markupish = st.lists(
    st.one_of(st.sampled_from([t.decode("latin-1") for t in TOKENS]), st.text(max_size=12)), max_size=60
).map("".join)


@FUZZ
@given(st.binary(max_size=2048), st.sampled_from([".md", ".html", ".txt", ".csv"]))
def test_text_parsers_survive_random_bytes(content: bytes, suffix: str) -> None:
    parses_or_refuses(f"random{suffix}", content)


@FUZZ
@given(markupish, st.sampled_from([".md", ".html", ".txt", ".csv"]))
def test_text_parsers_survive_markup_soup(text: str, suffix: str) -> None:
    parses_or_refuses(f"soup{suffix}", text.encode())


@FUZZ
@given(st.data())
def test_markdown_survives_mutation(data: st.DataObject) -> None:
    parses_or_refuses("mutated.md", data.draw(mutated(MARKDOWN.encode())))


@FUZZ
@given(st.data())
def test_html_survives_mutation(data: st.DataObject) -> None:
    parses_or_refuses("mutated.html", data.draw(mutated(HTML)))


@FUZZ
@given(st.data())
def test_csv_and_text_survive_mutation(data: st.DataObject) -> None:
    parses_or_refuses("mutated.csv", data.draw(mutated(CSV)))
    parses_or_refuses("mutated.txt", data.draw(mutated(TEXT)))


# --- PDF ------------------------------------------------------------------------------------------


def uncompressed_pdf() -> bytes:
    """Mutations then land in readable objects and content streams rather than in deflate data."""
    buffer = io.BytesIO()
    pdf = canvas.Canvas(buffer, invariant=True, pageCompression=0)
    pdf.setTitle("Spending approval limits")
    for lines in [["Spending approval limits", "Managers approve up to 5,000 USD."], ["Page two."]]:
        for row, line in enumerate(lines):
            pdf.drawString(72, 720 - 16 * row, line)
        pdf.showPage()
    pdf.save()
    return buffer.getvalue()


PDF = uncompressed_pdf()


@FUZZ
@given(st.binary(max_size=2048))
def test_pdf_survives_random_bytes(content: bytes) -> None:
    parses_or_refuses("random.pdf", b"%PDF-1.4\n" + content)


@FUZZ
@given(st.data())
def test_pdf_survives_mutation(data: st.DataObject) -> None:
    parses_or_refuses("mutated.pdf", data.draw(mutated(PDF)))


# --- Office zip formats ---------------------------------------------------------------------------

OFFICE = {".docx": make_docx("Payment Terms"), ".pptx": make_pptx(), ".xlsx": make_xlsx("Budget")}


@FUZZ
@given(st.binary(max_size=2048), st.sampled_from(sorted(OFFICE)))
def test_office_parsers_survive_random_bytes(content: bytes, suffix: str) -> None:
    parses_or_refuses(f"random{suffix}", b"PK\x03\x04" + content)


@FUZZ
@given(st.data())
def test_docx_survives_mutated_parts(data: st.DataObject) -> None:
    parses_or_refuses("mutated.docx", data.draw(mutated_archive(OFFICE[".docx"])))


@FUZZ
@given(st.data())
def test_pptx_survives_mutated_parts(data: st.DataObject) -> None:
    parses_or_refuses("mutated.pptx", data.draw(mutated_archive(OFFICE[".pptx"])))


@FUZZ
@given(st.data())
def test_xlsx_survives_mutated_parts(data: st.DataObject) -> None:
    parses_or_refuses("mutated.xlsx", data.draw(mutated_archive(OFFICE[".xlsx"])))
