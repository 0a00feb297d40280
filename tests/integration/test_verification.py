"""CitationVerifier with the real all-MiniLM-L6-v2 embedder, on a labelled dev set from sample/corpus.

The dev set is where the weights and threshold in services/generation/verification.py come from; the
figures it must keep are asserted below so a change to the formula cannot quietly make it worse.
"""

from __future__ import annotations

import re

import pytest

from copilot.common.v1 import common_pb2
from copilot.embedding import MiniLmEmbedder
from services.generation.verification import SUPPORT_THRESHOLD, CitationVerifier
from tests.conftest import SAMPLE_CORPUS


def section(path: str, heading: str) -> str:
    """The body of one Markdown section of a sample document, up to the next heading."""
    text = (SAMPLE_CORPUS / path).read_text(encoding="utf-8")
    match = re.search(rf"^#+ {re.escape(heading)}\n(.*?)(?=^#|\Z)", text, re.MULTILINE | re.DOTALL)
    assert match, f"{path} has no section {heading!r}"
    return match.group(1).strip()


VACATION = ("everyone/vacation-policy.md", "Annual vacation allowance")
CARRY_OVER = ("everyone/vacation-policy.md", "Carry-over")
ABROAD = ("everyone/remote-work-policy.md", "Working from abroad")
EQUIPMENT = ("everyone/remote-work-policy.md", "Equipment and allowances")
FAILOVER = ("engineering/database-failover.md", "When to use this runbook")
WINDOWS = ("engineering/deploy-process.md", "Deploy windows")
CANARY = ("engineering/deploy-process.md", "Canary and rollback")
BUDGET = ("finance/q3-2026-budget-memo.md", "Budget by line")
SIGNING = ("legal/nda-policy.md", "Who may sign")
TERMS = ("legal/nda-policy.md", "Standard terms")

# (sentence as a model would write it, the section it cites, whether that section supports it).
# The unsupported ones are the failures seen in practice: a wrong figure, a claim from elsewhere in the
# same document, a claim about another topic, and a contradiction of the source.
DEV_SET: list[tuple[str, tuple[str, str], bool]] = [
    ("Full-time employees get 25 days of paid vacation each year [1].", VACATION, True),
    ("Part-time staff accrue vacation in proportion to their contracted hours [1].", VACATION, True),
    ("New hires can take vacation as soon as they have accrued it. [1]", VACATION, True),
    ("Full-time employees get 30 days of paid vacation each year [1].", VACATION, False),
    ("Unused vacation days are paid out at the end of the year [1].", VACATION, False),
    ("You can carry over up to 5 unused days, which expire on 31 March [1].", CARRY_OVER, True),
    ("Days above the carry-over limit are forfeited on 1 January [1].", CARRY_OVER, True),
    ("You can carry over up to 10 unused days into the next year [1].", CARRY_OVER, False),
    ("Employees may work from another country for up to 20 working days a year [1].", ABROAD, True),
    ("Requests to work abroad go through Workday 15 business days before departure [1].", ABROAD, True),
    ("Employees may work from abroad for up to 60 working days a year [1].", ABROAD, False),
    ("Employees may take company robots abroad for customer demos [1].", ABROAD, False),
    ("New employees can claim a 750 USD home office stipend [1].", EQUIPMENT, True),
    ("The internet allowance is 50 USD per month [1].", EQUIPMENT, True),
    ("The company pays for a home gym membership [1].", EQUIPMENT, False),
    ("The orders-db cluster has an RPO of 5 seconds and an RTO of 10 minutes [1].", FAILOVER, True),
    ("The runbook applies when the OrdersDbPrimaryDown alert fires [1].", FAILOVER, True),
    ("The orders-db cluster runs on MySQL 8 in the eu-central-1 region [1].", FAILOVER, False),
    ("Failover drills are held every week by the security team [1].", FAILOVER, False),
    (
        "Production deploys are allowed Monday to Thursday from 09:00 to 16:00 Pacific time [1].",
        WINDOWS,
        True,
    ),
    ("The holiday code freeze runs from 18 December 2026 to 4 January 2027 [1].", WINDOWS, True),
    ("Production deploys are allowed from 06:00 to 22:00 every day [1].", WINDOWS, False),
    ("A canary gets 5% of production traffic for 30 minutes [1].", CANARY, True),
    ("Argo Rollouts rolls back a canary whose error rate exceeds 1% [1].", CANARY, True),
    ("Every deploy needs written approval from the VP of Engineering [1].", CANARY, False),
    ("The Q3 2026 travel budget is 412,000 USD [1].", BUDGET, True),
    ("Cloud infrastructure is budgeted at 1.35 million USD [1].", BUDGET, True),
    ("The Q3 2026 travel budget is 500,000 USD [1].", BUDGET, False),
    ("Hiring is frozen except for 12 approved roles [1].", BUDGET, False),
    (
        "Only the General Counsel, Deputy General Counsel or a Vice President may sign an NDA [1].",
        SIGNING,
        True,
    ),
    ("Engineers may send the NDA template but not sign it [1].", SIGNING, True),
    ("Any employee can approve changes to the NDA template [1].", SIGNING, False),
    ("NDA confidentiality lasts 3 years from the last disclosure [1].", TERMS, True),
    ("NDAs are governed by California law [1].", TERMS, True),
    ("Vacation requests are approved by HR within a week [1].", TERMS, False),
    ("Non-solicitation clauses may last up to 5 years [1].", TERMS, False),
]


def passage(section_text: str) -> common_pb2.Passage:
    return common_pb2.Passage(chunk_id="c", document_id="d", title="t", text=section_text)


@pytest.fixture(scope="module")
def verifier() -> CitationVerifier:
    return CitationVerifier(MiniLmEmbedder())


def test_dev_set_precision_and_recall_of_unsupported(verifier: CitationVerifier) -> None:
    flagged = []
    for sentence, (path, heading), supported in DEV_SET:
        (check,) = verifier.verify(sentence, [passage(section(path, heading))])
        assert check.cited == [1]
        flagged.append((check.verdict == "unsupported", not supported, check.support, sentence))
    true_positives = sum(1 for hit, truth, _, _ in flagged if hit and truth)
    precision = true_positives / sum(1 for hit, *_ in flagged if hit)
    recall = true_positives / sum(1 for _, truth, *_ in flagged if truth)
    # 15/16 and 15/15 when the weights were picked; see the module docstring.
    assert precision >= 0.9, flagged
    assert recall >= 0.9, flagged


def test_every_sentence_gets_a_verdict(verifier: CitationVerifier) -> None:
    sources = [passage(section(*BUDGET)), passage(section(*CARRY_OVER))]
    answer = (
        "The Q3 2026 travel budget is 412,000 USD. [1] Up to 5 unused vacation days carry over [2]. "
        "Ask your manager for details. The budget was approved by the board [3]."
    )

    checks = verifier.verify(answer, sources)

    assert [(c.cited, c.verdict) for c in checks] == [
        ([1], "supported"),
        ([2], "supported"),
        ([], "uncited"),
        ([3], "invalid"),
    ]
    assert checks[0].text == "The Q3 2026 travel budget is 412,000 USD. [1]"
    assert checks[0].support >= SUPPORT_THRESHOLD
    assert checks[2].support == 0.0


def test_a_sentence_is_supported_by_the_best_of_its_sources(verifier: CitationVerifier) -> None:
    sources = [passage(section(*TERMS)), passage(section(*BUDGET))]

    (check,) = verifier.verify("The Q3 2026 travel budget is 412,000 USD [1][2].", sources)

    assert check.verdict == "supported"
    assert check.cited == [1, 2]


def test_a_wrong_figure_is_unsupported(verifier: CitationVerifier) -> None:
    (check,) = verifier.verify("The Q3 2026 travel budget is 999,000 USD [1].", [passage(section(*BUDGET))])

    assert check.verdict == "unsupported"


def all_sections() -> list[tuple[str, str]]:
    return list(dict.fromkeys(source for _, source, _ in DEV_SET))


def test_a_wrong_citation_names_the_given_source_that_does_support_the_sentence(
    verifier: CitationVerifier,
) -> None:
    """Every supported dev-set sentence cited to the wrong section, with all ten sections given: the check
    should name the right one. The false sentences, cited to their own section, should be supported by
    none: those are invented claims, not citation errors."""
    sections = all_sections()
    sources = [passage(section(*s)) for s in sections]
    found, wrongly_repointed, outcomes = 0, 0, []
    true_claims = [(sentence, source) for sentence, source, supported in DEV_SET if supported]
    false_claims = [(sentence, source) for sentence, source, supported in DEV_SET if not supported]
    for sentence, source in true_claims:
        right = sections.index(source) + 1
        wrong = (right + 4) % len(sections) + 1  # another document's section
        (check,) = verifier.verify(sentence.replace("[1]", f"[{wrong}]"), sources)
        assert check.cited == [wrong]
        found += check.supported_by[:1] == [right]
        outcomes.append((sentence, check.verdict, check.supported_by))
    for sentence, source in false_claims:
        own = sections.index(source) + 1
        (check,) = verifier.verify(sentence.replace("[1]", f"[{own}]"), sources)
        wrongly_repointed += bool(check.supported_by)
        outcomes.append((sentence, check.verdict, check.supported_by))
    # 20 of 21: the one true sentence the verifier already misses ("...when the OrdersDbPrimaryDown alert
    # fires", support 0.60). None of the 16 false ones: "Unused vacation days are paid out" was pointed at
    # the carry-over section, which says they are *not* paid out, until contradictions scored half.
    assert found / len(true_claims) >= 0.9, outcomes
    assert wrongly_repointed == 0, outcomes


def test_only_a_sentence_in_doubt_is_scored_against_the_sources_it_does_not_cite(
    verifier: CitationVerifier,
) -> None:
    sources = [passage(section(*VACATION)), passage(section(*CARRY_OVER)), passage(section(*WINDOWS))]
    answer = (
        "Full-time employees get 25 days of paid vacation each year [1]. "
        "You can carry over up to 5 unused days, which expire on 31 March [1]. "
        "Production deploys are allowed Monday to Thursday from 09:00 to 16:00 Pacific time. "
        "Employees may take company robots abroad for customer demos [2]."
    )

    checks = verifier.verify(answer, sources)

    assert [(c.verdict, c.supported_by) for c in checks] == [
        ("supported", []),
        ("unsupported", [2]),  # cites the allowance, the carry-over section says it
        ("uncited", [3]),
        ("unsupported", []),  # no source says it
    ]


SHUTDOWN = ("everyone/vacation-policy.md", "Company shutdown")
TIME_OFF = ("everyone/vacation-policy.md", "Requesting time off")
TEMPLATE = ("legal/nda-policy.md", "Which template to use")
RECORDS = ("legal/nda-policy.md", "Record keeping")
SECURITY = ("everyone/remote-work-policy.md", "Security rules")
AFTER_FAILOVER = ("engineering/database-failover.md", "After the failover")
DEPARTMENT_HEADS = ("finance/q3-2026-budget-memo.md", "What department heads must do")
HEADCOUNT = ("finance/q3-2026-budget-memo.md", "Headcount")
# Sections of the HTML documents, as text (section() reads Markdown).
SUBMITTING = (
    "Submit every expense in Expensify within 30 days of the purchase. Claims submitted later than 90 days "
    "are rejected. An itemised receipt is required for any expense over 25 USD. Approved expenses are "
    "reimbursed in the next bi-weekly payroll run. Your manager approves your expenses. Managers cannot "
    "approve their own expenses or those of anyone they report to."
)
MEALS = (
    "Meals, domestic travel: 75 USD per day. Alcohol is not reimbursed. Meals, international travel: "
    "100 USD per day. Alcohol is not reimbursed."
)
GIFTS = (
    "Customer meals and events are limited to 150 USD per attendee and need the name and company of every "
    "guest on the claim. Gifts to customers must stay under 100 USD per person per year; gifts to "
    "government officials are not allowed."
)
CARDS = (
    "Employees who travel more than 4 times a year can apply for an Acme corporate card. The monthly card "
    "limit is 10,000 USD. Personal purchases on the corporate card are not allowed, and unreceipted card "
    "charges older than 60 days are deducted from pay."
)
PAGING = (
    "If the primary does not acknowledge a page in time, PagerDuty escalates to the secondary, and after "
    "another 10 minutes to the engineering manager on duty."
)
SWAPS = (
    "Swaps must be entered in PagerDuty at least 48 hours in advance and agreed with the person taking "
    "your shift. New engineers shadow two rotations before they join the schedule."
)
FLIGHTS = (
    "Book flights through Navan at least 14 days before departure when possible. Economy class is the "
    "standard for flights under 6 hours; premium economy is allowed for flights of 6 hours or longer. "
    "Business class needs approval from your Vice President."
)

# (sentence, its source, whether the source supports it): sentences that turn their source's negation
# around, and faithful sentences that keep it (some in other words). The first 38 were written while the
# rule was chosen; the last 20 (from the HTML documents) afterwards, and scored once: 9 of 10 each.
NEGATION_SET: list[tuple[str, tuple[str, str] | str, bool]] = [
    ("Unused vacation days are paid out at the end of the year [1].", CARRY_OVER, False),
    ("Carried-over days are paid out when they expire on 31 March [1].", CARRY_OVER, False),
    ("Shutdown days count against your vacation allowance [1].", SHUTDOWN, False),
    (
        "Warehouse staff in the Fremont plant can take vacation during the inventory week [1].",
        TIME_OFF,
        False,
    ),
    ("Sales representatives and engineers may sign the NDA template [1].", SIGNING, False),
    ("Residuals clauses are accepted in our NDAs [1].", TERMS, False),
    ("Robot control source code may be shared under an NDA alone [1].", TEMPLATE, False),
    ("NDAs that are not stored in Ironclad still count as signed [1].", RECORDS, False),
    ("Company robots and prototypes may be taken abroad [1].", ABROAD, False),
    ("Working from countries under US export sanctions is allowed [1].", ABROAD, False),
    ("Printing confidential documents at home is permitted [1].", SECURITY, False),
    ("Using public Wi-Fi without the VPN is fine [1].", SECURITY, False),
    ("You may start a manual failover during the nightly backup window [1].", FAILOVER, False),
    ("Unused travel budget rolls over into Q4 [1].", DEPARTMENT_HEADS, False),
    ("Production deploys are allowed on Fridays [1].", WINDOWS, False),
    ("The old primary should be started as a second leader [1].", AFTER_FAILOVER, False),
    ("Backfills for departures do not need CFO approval [1].", HEADCOUNT, False),
    ("Employees cannot work from another country [1].", ABROAD, False),
    ("Carried-over vacation days are not paid out [1].", CARRY_OVER, True),
    ("Carried-over days expire on 31 March [1].", CARRY_OVER, True),
    ("Shutdown days do not count against your vacation allowance [1].", SHUTDOWN, True),
    ("Fremont warehouse staff cannot take vacation during the annual inventory week [1].", TIME_OFF, True),
    ("Sales representatives may send the NDA template but may not sign it [1].", SIGNING, True),
    ("Residuals clauses are not accepted [1].", TERMS, True),
    ("Never share robot control source code under an NDA alone [1].", TEMPLATE, True),
    ("NDAs missing from Ironclad are treated as not signed [1].", RECORDS, True),
    ("Company robots and prototypes must not be taken abroad [1].", ABROAD, True),
    ("You may not work from countries under US export sanctions [1].", ABROAD, True),
    ("Printing confidential documents at home is not permitted [1].", SECURITY, True),
    ("Never use public Wi-Fi without the GlobalProtect VPN [1].", SECURITY, True),
    (
        "Do not start a manual failover in the nightly backup window unless the primary is unreachable [1].",
        FAILOVER,
        True,
    ),
    ("Unused travel budget does not roll over into Q4 [1].", DEPARTMENT_HEADS, True),
    ("There are no production deploys on Fridays or weekends [1].", WINDOWS, True),
    ("Never start the old primary as a second leader [1].", AFTER_FAILOVER, True),
    ("Backfills for departures need CFO approval [1].", HEADCOUNT, True),
    ("Production deploys are not allowed on Fridays [1].", WINDOWS, True),
    ("Unused travel budget is lost at the end of Q3 rather than moved to Q4 [1].", DEPARTMENT_HEADS, True),
    ("Shutdown days are paid [1].", SHUTDOWN, True),
    ("Managers can approve their own expenses [1].", SUBMITTING, False),
    ("Alcohol with meals is reimbursed [1].", MEALS, False),
    ("Gifts to government officials are allowed [1].", GIFTS, False),
    ("Personal purchases on the corporate card are allowed [1].", CARDS, False),
    ("Claims submitted later than 90 days are not rejected [1].", SUBMITTING, False),
    ("An itemised receipt is not required for expenses over 25 USD [1].", SUBMITTING, False),
    ("New engineers do not shadow any rotations before joining the schedule [1].", SWAPS, False),
    ("Business class does not need approval [1].", FLIGHTS, False),
    ("If the primary does not acknowledge a page, PagerDuty does not escalate [1].", PAGING, False),
    ("Unreceipted card charges are never deducted from pay [1].", CARDS, False),
    ("Managers cannot approve their own expenses [1].", SUBMITTING, True),
    ("Alcohol is not reimbursed on domestic or international travel [1].", MEALS, True),
    ("You are not allowed to give gifts to government officials [1].", GIFTS, True),
    ("The corporate card must not be used for personal purchases [1].", CARDS, True),
    ("Claims submitted more than 90 days late are rejected [1].", SUBMITTING, True),
    ("Expenses over 25 USD need an itemised receipt [1].", SUBMITTING, True),
    ("New engineers shadow two rotations before they join the schedule [1].", SWAPS, True),
    ("Business class is not allowed without approval from your Vice President [1].", FLIGHTS, True),
    (
        "If the primary does not acknowledge a page in time, PagerDuty escalates to the secondary [1].",
        PAGING,
        True,
    ),
    ("Managers may not approve expenses of anyone they report to [1].", SUBMITTING, True),
]


def test_a_sentence_that_turns_its_sources_negation_around_is_unsupported(verifier: CitationVerifier) -> None:
    """Before contradictions scored half, 1 of the 28 contradictions here was unsupported; now 23 are,
    and 28 of the 30 faithful sentences stay supported (a negation said in other words, "missing from"
    or "without approval", is the rest)."""
    caught, kept, outcomes = _negation_outcomes(verifier, NEGATION_SET)
    assert caught >= 0.8, outcomes
    assert kept >= 0.9, outcomes


OTHER_LEAVE = ("everyone/vacation-policy.md", "Other leave")
FULLY_REMOTE = ("everyone/remote-work-policy.md", "Fully remote roles")
# Sentences that say the opposite of their source with a word of opposite meaning, and faithful ones that
# use one. The first 20 were written before the rule for such words, the last 12 after it, each part scored
# on it once; without the rule 1 of the 16 contradictions is unsupported (0 of the first 10). One change
# followed the first part's scoring: "non-" is read as a prefix of its word, not as a negation of its
# clause (the volunteering line's "non-profit" had kept "unpaid" from contradicting its "paid").
OPPOSITE_WORD_SET: list[tuple[str, tuple[str, str] | str, bool]] = [
    ("Claims submitted later than 90 days are accepted [1].", SUBMITTING, False),
    ("An itemised receipt is optional for expenses over 25 USD [1].", SUBMITTING, False),
    ("Premium economy is forbidden for flights of 6 hours or longer [1].", FLIGHTS, False),
    (
        "Production deploys are prohibited Monday to Thursday between 09:00 and 16:00 Pacific time [1].",
        WINDOWS,
        False,
    ),
    ("Shutdown days are unpaid [1].", SHUTDOWN, False),
    ("Sick leave is 10 unpaid days per year, separate from vacation [1].", OTHER_LEAVE, False),
    ("A doctor's note is optional after 5 consecutive sick days [1].", OTHER_LEAVE, False),
    ("Parental leave is 16 weeks, unpaid, for all parents [1].", OTHER_LEAVE, False),
    ("Volunteering with a non-profit gives 2 unpaid days per year [1].", OTHER_LEAVE, False),
    ("A company laptop is the only device prohibited from accessing Acme systems [1].", EQUIPMENT, False),
    ("Residuals clauses are rejected [1].", TERMS, True),
    ("Personal purchases on the corporate card are disallowed [1].", CARDS, True),
    ("Printing confidential documents at home is prohibited [1].", SECURITY, True),
    ("Gifts to government officials are forbidden [1].", GIFTS, True),
    ("Carried-over days expire on 31 March and are unpaid [1].", CARRY_OVER, True),
    ("Claims submitted later than 90 days are not accepted [1].", SUBMITTING, True),
    ("Working from countries under US export sanctions is prohibited [1].", ABROAD, True),
    ("Shutdown days are paid and do not count against your vacation allowance [1].", SHUTDOWN, True),
    ("Sick leave is 10 paid days per year, separate from vacation [1].", OTHER_LEAVE, True),
    ("An itemised receipt is mandatory for any expense over 25 USD [1].", SUBMITTING, True),
    # The second part.
    ("Travel for the quarterly planning week is unpaid [1].", FULLY_REMOTE, False),
    ("A doctor's note is not required after 5 consecutive sick days [1].", OTHER_LEAVE, False),
    ("Personal purchases on the corporate card are permitted [1].", CARDS, False),
    ("Gifts to government officials are not prohibited [1].", GIFTS, False),
    ("Printing confidential documents at home is allowed [1].", SECURITY, False),
    ("Bereavement leave is 5 unpaid days for an immediate family member [1].", OTHER_LEAVE, False),
    ("A doctor's note is mandatory after 5 consecutive sick days [1].", OTHER_LEAVE, True),
    ("A company laptop is the only device permitted to access Acme systems [1].", EQUIPMENT, True),
    ("The internet allowance of 50 USD per month is paid with your salary [1].", EQUIPMENT, True),
    ("Shutdown days are not unpaid [1].", SHUTDOWN, True),
    ("Residuals clauses are declined [1].", TERMS, True),
    ("Claims submitted later than 90 days are refused [1].", SUBMITTING, True),
]


def _negation_outcomes(
    verifier: CitationVerifier, rows: list[tuple[str, tuple[str, str] | str, bool]]
) -> tuple[float, float, list[tuple[str, str, float]]]:
    """The shares of contradictions found unsupported and of faithful sentences kept supported; verdicts."""
    caught, kept, outcomes = 0, 0, []
    for sentence, source, supported in rows:
        text = source if isinstance(source, str) else section(*source)
        (check,) = verifier.verify(sentence, [passage(text)])
        outcomes.append((sentence, check.verdict, round(check.support, 3)))
        if supported:
            kept += check.verdict == "supported"
        else:
            caught += check.verdict == "unsupported"
    contradictions = sum(1 for *_, supported in rows if not supported)
    return caught / contradictions, kept / (len(rows) - contradictions), outcomes


def test_a_sentence_that_says_the_opposite_in_other_words_is_unsupported(verifier: CitationVerifier) -> None:
    """16 of the 16 contradictions here are unsupported and 15 of the 16 faithful sentences supported
    ("declined" for "not accepted" scores 0.675 as it did before the rule: too few of its words are in the
    source)."""
    caught, kept, outcomes = _negation_outcomes(verifier, OPPOSITE_WORD_SET)
    assert caught >= 0.9, outcomes
    assert kept >= 0.9, outcomes
