import pytest

from services.generation.verification import (
    content_words,
    contradicts,
    lexical_overlap,
    number_match,
    split_sentences,
    strip_markers,
)


@pytest.mark.parametrize(
    ("text", "sentences"),
    [
        (
            "Visitors park in zone C [1]. Bikes go north [2].",
            ["Visitors park in zone C [1].", "Bikes go north [2]."],
        ),
        # A marker right after the full stop belongs to the sentence it follows.
        (
            "Visitors park in zone C. [1] Bikes go north. [2]",
            ["Visitors park in zone C. [1]", "Bikes go north. [2]"],
        ),
        ("It is 412,000 USD. [1][2] Ask finance.", ["It is 412,000 USD. [1][2]", "Ask finance."]),
        ("Accrual is 2.08 days a month, per v4.2 [1].", ["Accrual is 2.08 days a month, per v4.2 [1]."]),
        ("Is it paid? Yes [1]! Really.", ["Is it paid?", "Yes [1]!", "Really."]),
        ("- First item [1]\n- Second item [2]", ["- First item [1]", "- Second item [2]"]),
        ("No full stop at the end [1]", ["No full stop at the end [1]"]),
        ("Done [1, 2].\n\n  ", ["Done [1, 2]."]),
        ("", []),
    ],
)
def test_split_sentences_keeps_markers_with_their_sentence(text: str, sentences: list[str]) -> None:
    assert split_sentences(text) == sentences


def test_strip_markers_leaves_the_claim() -> None:
    assert strip_markers("Visitors park in zone C [1]. [2, 3]") == "Visitors park in zone C."


def test_content_words_drop_stop_words_and_meet_across_inflections() -> None:
    assert content_words("The NDAs are governed by law") == content_words("NDA governing laws")
    assert "the" not in content_words("the budget")


def test_lexical_overlap_is_the_share_of_the_sentence_found_in_the_passage() -> None:
    assert lexical_overlap("travel budget rises", "The travel budget is flat.") == pytest.approx(2 / 3)
    assert lexical_overlap("the of and", "anything") == 0.0


def test_number_match_is_the_share_of_figures_found_in_the_passage() -> None:
    passage = "The Q3 2026 travel budget is 412,000 USD."
    assert number_match("Travel gets 412,000 USD in 2026.", passage) == 1.0
    assert number_match("Travel gets 500,000 USD in 2026.", passage) == 0.5
    assert number_match("Travel is capped.", passage) == 1.0


@pytest.mark.parametrize(
    ("sentence", "passage", "contradiction"),
    [
        # A word of opposite meaning stands for its counterpart negated.
        ("Late claims are accepted.", "Late claims are rejected.", True),
        ("Late claims are not accepted.", "Late claims are rejected.", False),
        ("A receipt is optional.", "A receipt is required.", True),
        ("A receipt is mandatory.", "A receipt is required.", False),
        ("Gifts are forbidden.", "Gifts are not allowed.", False),
        ("Gifts are not prohibited.", "Gifts are not allowed.", True),
        ("Printing at home is allowed.", "Printing at home is not permitted.", True),
        # "un" and "non-" deny their root when the other text uses the root and not the word itself.
        ("Shutdown days are unpaid.", "Shutdown days are paid.", True),
        ("Carried-over days are unpaid.", "Carried-over days are not paid out.", False),
        ("Shutdown days are not unpaid.", "Shutdown days are paid.", False),
        ("The deposit is non-refundable.", "The deposit is refundable.", True),
        ("A non-profit gives 2 paid days.", "Volunteering with a non-profit: 2 paid days.", False),
        ("Unused days are paid out.", "Unused days are paid out.", False),
        ("Travel is paid unless it is unbooked.", "Travel costs less than 100 USD and is paid.", False),
    ],
)
def test_contradicts_reads_opposite_words_as_negations(
    sentence: str, passage: str, contradiction: bool
) -> None:
    assert contradicts(sentence, passage) is contradiction
