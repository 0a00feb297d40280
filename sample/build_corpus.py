"""Writes the binary sample documents (PDF, DOCX) from text kept here, so their content can be reviewed.

The Markdown and HTML samples are plain files next to them. Output is byte-for-byte reproducible, so
rebuilding does not churn version control. Run: ``.venv/bin/python sample/build_corpus.py``.
"""

from __future__ import annotations

import io
import zipfile
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from xml.sax.saxutils import escape

import docx
from reportlab import rl_config
from reportlab.lib import colors
from reportlab.lib.pagesizes import LETTER
from reportlab.lib.styles import getSampleStyleSheet
from reportlab.platypus import PageBreak, Paragraph, SimpleDocTemplate, Table, TableStyle
from reportlab.platypus.flowables import Flowable

CORPUS = Path(__file__).resolve().parent / "corpus"
AUTHOR = "Acme Robotics"
FIXED_TIME = datetime(2026, 6, 1, tzinfo=UTC)


@dataclass(frozen=True)
class Heading:
    text: str
    level: int = 1


@dataclass(frozen=True)
class Para:
    text: str


@dataclass(frozen=True)
class Item:
    text: str


@dataclass(frozen=True)
class Rows:
    rows: tuple[tuple[str, ...], ...]


@dataclass(frozen=True)
class NewPage:
    pass


Block = Heading | Para | Item | Rows | NewPage


@dataclass(frozen=True)
class Doc:
    path: str
    title: str
    blocks: tuple[Block, ...]


APPROVAL_LIMITS = Doc(
    "finance/approval-limits.pdf",
    "Spending Approval Limits",
    (
        Para(
            "Memo from Dana Whitfield, Chief Financial Officer, to all budget owners. Date: 16 June 2026. "
            "Effective 1 July 2026, these limits replace the limits of March 2024."
        ),
        Heading("Approval limits per purchase"),
        Rows(
            (
                ("Amount (USD)", "Who approves"),
                ("Up to 5,000", "Team manager"),
                ("5,000 to 50,000", "Department director"),
                ("50,000 to 250,000", "Vice President and finance business partner"),
                ("250,000 to 1,000,000", "Chief Financial Officer"),
                ("Above 1,000,000", "Chief Executive Officer and the board audit committee"),
            )
        ),
        Para(
            "Limits apply to the total value of a contract over its whole term, not to the annual amount. "
            "A three-year software subscription of 40,000 USD a year therefore needs Vice President "
            "approval, because its total value is 120,000 USD."
        ),
        Heading("Purchase orders"),
        Para(
            "A purchase order in NetSuite is required for every purchase above 10,000 USD before the "
            "supplier starts work. Invoices without a purchase order number are returned to the supplier "
            "unpaid."
        ),
        NewPage(),
        Heading("Exceptions"),
        Para(
            "Emergency spending: outside business hours the on-call director may approve up to 25,000 USD "
            "to restore service or protect safety. The spend must be ratified by the normal approver within "
            "2 business days."
        ),
        Para(
            "Splitting a purchase into smaller orders to stay under a limit is a policy violation and is "
            "reported to the audit committee."
        ),
        Para(
            "Approvers may not approve spending that benefits themselves, or spending requested by their "
            "own manager."
        ),
        Heading("Delegation"),
        Para(
            "Approvers who are away for more than 3 business days delegate their limit in NetSuite to a "
            "named deputy at the same level or above. Delegation to a lower level is not allowed."
        ),
        Para("Questions about these limits go to the Finance Controller, Ravi Gupta."),
    ),
)

VENDOR_TERMS = Doc(
    "finance/vendor-payment-terms.docx",
    "Vendor Onboarding and Payment Terms",
    (
        Para("Owner: Accounts Payable, Finance Operations. Effective 1 April 2026."),
        Heading("Onboarding a new vendor"),
        Para(
            "Before the first order, every vendor must be onboarded in NetSuite by Accounts Payable. "
            "Onboarding takes about 5 business days and needs:"
        ),
        Item("a completed W-9 form for US vendors, or a W-8BEN-E form for foreign vendors;"),
        Item(
            "bank details confirmed by a call-back to a phone number taken from an independent source, "
            "never from the email that sent the details;"
        ),
        Item("a sanctions and denied-party screening, repeated every 12 months;"),
        Item("a signed Acme supplier code of conduct."),
        Heading("Payment terms"),
        Para(
            "Standard payment terms are net 45 days from the invoice date. Small suppliers with annual "
            "revenue below 2 million USD are paid net 15. When a supplier offers an early-payment discount "
            "of 2% for payment within 10 days (2/10 net 45), Accounts Payable always takes it."
        ),
        Rows(
            (
                ("Vendor category", "Standard terms", "Approver for exceptions"),
                ("Components and raw materials", "Net 45", "Director of Supply Chain"),
                ("Contract manufacturers", "Net 60", "Chief Financial Officer"),
                ("Software and cloud", "Net 30", "Finance Controller"),
                ("Small suppliers", "Net 15", "Not needed"),
            )
        ),
        Heading("Payment runs"),
        Para(
            "Payments are released in two runs a week, every Tuesday and Friday. Invoices approved by 12:00 "
            "Pacific time on the day before a run are included. Urgent payments outside a run need the "
            "Finance Controller's approval and cost a 35 USD wire fee charged to the requesting department."
        ),
        Heading("Changes to bank details"),
        Para(
            "A change of vendor bank details is frozen for 48 hours and confirmed by call-back before any "
            "payment goes to the new account. Report suspicious change requests in the #security-help "
            "channel."
        ),
    ),
)

CONTRACT_REVIEW = Doc(
    "legal/contract-review-process.docx",
    "Contract Review Process",
    (
        Para("Owner: Legal, led by General Counsel Miguel Santos. Effective 1 February 2026."),
        Heading("Submitting a contract"),
        Para(
            "Submit every contract for review through the Legal intake form in Ironclad. Attach the latest "
            "draft in Word format, the counterparty name, the total contract value and the date you need a "
            "signature. Requests sent by email or chat are not tracked and will not be reviewed."
        ),
        Heading("Review times"),
        Rows(
            (
                ("Contract type", "Reviewer", "Turnaround"),
                ("Customer agreement under 100,000 USD", "Commercial counsel", "5 business days"),
                ("Customer agreement from 100,000 USD", "Senior commercial counsel", "10 business days"),
                ("Supplier or purchasing agreement", "Commercial counsel", "5 business days"),
                ("Data processing agreement", "Privacy counsel", "7 business days"),
                ("Rush review of any type", "Assigned by Legal", "2 business days, with VP approval"),
            )
        ),
        Heading("Negotiation positions"),
        Heading("Liability", 2),
        Para(
            "Acme's standard limitation of liability is 12 months of fees paid under the contract. "
            "Unlimited liability or uncapped indemnities are never accepted without written approval from "
            "the General Counsel."
        ),
        Heading("Payment and renewal", 2),
        Para(
            "Customer contracts use payment terms of net 30. Auto-renewal clauses must give Acme at least "
            "60 days' notice to cancel."
        ),
        Heading("Signature authority"),
        Para(
            "Only the Chief Executive Officer, the Chief Financial Officer and the General Counsel may sign "
            "contracts above 250,000 USD. Contracts are signed through DocuSign from Ironclad so that the "
            "signed copy is stored automatically."
        ),
    ),
)


def render_pdf(doc: Doc) -> bytes:
    rl_config.invariant = True  # fixed creation date and document id, hence reproducible bytes
    styles = getSampleStyleSheet()
    story: list[Flowable] = [Paragraph(escape(doc.title), styles["Title"])]
    for block in doc.blocks:
        if isinstance(block, Heading):
            story.append(Paragraph(escape(block.text), styles[f"Heading{block.level}"]))
        elif isinstance(block, Para):
            story.append(Paragraph(escape(block.text), styles["BodyText"]))
        elif isinstance(block, Item):
            story.append(Paragraph(escape(block.text), styles["BodyText"], bulletText="•"))
        elif isinstance(block, Rows):
            table = Table([list(row) for row in block.rows], hAlign="LEFT")
            table.setStyle(TableStyle([("GRID", (0, 0), (-1, -1), 0.5, colors.grey)]))
            story.append(table)
        else:
            story.append(PageBreak())
    buffer = io.BytesIO()
    SimpleDocTemplate(buffer, pagesize=LETTER, title=doc.title, author=AUTHOR).build(story)
    return buffer.getvalue()


def _reproducible_zip(data: bytes) -> bytes:
    """python-docx stamps zip entries with the current time; pin them so rebuilds are identical."""
    out = io.BytesIO()
    with zipfile.ZipFile(io.BytesIO(data)) as source, zipfile.ZipFile(out, "w") as target:
        for info in source.infolist():
            pinned = zipfile.ZipInfo(info.filename, date_time=(2026, 6, 1, 0, 0, 0))
            pinned.compress_type = zipfile.ZIP_DEFLATED
            target.writestr(pinned, source.read(info))
    return out.getvalue()


def render_docx(doc: Doc) -> bytes:
    document = docx.Document()
    properties = document.core_properties
    properties.title = doc.title
    properties.author = AUTHOR
    properties.last_modified_by = AUTHOR
    properties.created = FIXED_TIME
    properties.modified = FIXED_TIME
    document.add_heading(doc.title, level=0)
    for block in doc.blocks:
        if isinstance(block, Heading):
            document.add_heading(block.text, level=block.level)
        elif isinstance(block, Para):
            document.add_paragraph(block.text)
        elif isinstance(block, Item):
            document.add_paragraph(block.text, style="List Bullet")
        elif isinstance(block, Rows):
            table = document.add_table(rows=len(block.rows), cols=len(block.rows[0]))
            table.style = "Table Grid"
            for row, values in zip(table.rows, block.rows, strict=True):
                for cell, value in zip(row.cells, values, strict=True):
                    cell.text = value
        else:
            document.add_page_break()
    buffer = io.BytesIO()
    document.save(buffer)
    return _reproducible_zip(buffer.getvalue())


def main() -> None:
    for doc, render in (
        (APPROVAL_LIMITS, render_pdf),
        (VENDOR_TERMS, render_docx),
        (CONTRACT_REVIEW, render_docx),
    ):
        target = CORPUS / doc.path
        target.write_bytes(render(doc))
        print(f"wrote {target.relative_to(CORPUS.parent)}")


if __name__ == "__main__":
    main()
