"""The toxicity lexicon sees through obfuscation without flagging words that merely contain a bad one, and
the packaged classifier scores exactly as its own library does."""

from __future__ import annotations

import pytest

from copilot.events.v1 import events_pb2
from services.monitor.detectors import Severity, Tier, ToxicityClassifierDetector, ToxicityDetector
from services.monitor.toxicity import ProfanityClassifier, ToxicityLexicon, mask_term


@pytest.fixture(scope="module")
def lexicon() -> ToxicityLexicon:
    return ToxicityLexicon.load()


@pytest.fixture(scope="module")
def classifier() -> ProfanityClassifier:
    return ProfanityClassifier()


@pytest.mark.parametrize(
    ("text", "shown", "term"),
    [
        ("this is shit", "shit", "shit"),
        ("THIS IS SHIT!", "SHIT!", "shit"),
        ("sh1t happens", "sh1t", "shit"),
        ("what a $hit show", "$hit", "shit"),
        ("you @ss", "@ss", "ass"),
        ("total a55hole", "a55hole", "asshole"),
        ("f u c k this", "f u c k", "fuck"),
        ("f.u.c.k", "f.u.c.k", "fuck"),
        ("a_s_s", "a_s_s", "ass"),
        ("fuuuuuuck", "fuuuuuuck", "fuck"),
        ("f**k it", "f**k", None),
        ("ＦＵＣＫ", "ＦＵＣＫ", "fuck"),  # full-width letters
        ("fu\u200bck", "fu\u200bck", "fuck"),  # zero-width space inside
        ("ѕhit", "ѕhit", "shit"),  # Cyrillic dze for the s
        ("you motha fucker", "motha fucker", "motha fucker"),
        ("go kill yourself", "go kill yourself", "go kill yourself"),
    ],
)
def test_lexicon_sees_through_obfuscation(
    lexicon: ToxicityLexicon, text: str, shown: str, term: str | None
) -> None:
    [hit] = lexicon.find(text)
    assert text[hit.start : hit.end] == shown
    if term is not None:
        assert hit.term == term


@pytest.mark.parametrize(
    "text",
    [
        "Scunthorpe and Penistone are towns; the assessment covers the cockpit class.",
        "Dickens wrote about Essex and Middlesex; see the analysis of the shiitake harvest.",
        "Tap the knob, screw the lid and pass the sack of nuts.",  # ambiguous words are left out of the list
        "The cryptographic nonce is refreshed when the cluster is drained.",
        "Mr Wang and Peter sent the 2026 Q3 budget: 412,000 USD.",
        "a b c are letters, and so is x.",
        "Use the **bold** syntax or a # heading.",
    ],
)
def test_lexicon_leaves_clean_text_alone(lexicon: ToxicityLexicon, text: str) -> None:
    assert lexicon.find(text) == []


def test_lexicon_prefers_the_longest_entry(lexicon: ToxicityLexicon) -> None:
    [hit] = lexicon.find("I will kill you tomorrow")
    assert (hit.term, hit.category) == ("i will kill you", "threat")


def test_mask_term_keeps_the_first_letter() -> None:
    assert mask_term("shit!") == "s***!"
    assert mask_term("f u c k") == "f * * *"


def _event(
    answer: str = "Economy class is the rule [1].", question: str = "Which class?"
) -> events_pb2.InteractionEvent:
    return events_pb2.InteractionEvent(event_id="evt-1", question=question, answer=answer)


def test_detector_grades_by_kind_and_by_who_said_it(lexicon: ToxicityLexicon) -> None:
    detector = ToxicityDetector(lexicon)
    [answer_slur] = detector.inspect(_event(answer="Only a retard would book that."))
    assert (answer_slur.severity, answer_slur.reason) == (Severity.HIGH, "slur in the answer")
    assert answer_slur.evidence == ("r***** (mental disability)",)
    [question_slur] = detector.inspect(_event(question="Why is this retard bot so slow?"))
    assert (question_slur.severity, question_slur.reason) == (Severity.MEDIUM, "slur in the question")
    [mild] = detector.inspect(_event(answer="That policy is shit [1]."))
    assert (mild.severity, mild.reason) == (Severity.LOW, "profanity in the answer")
    [threat] = detector.inspect(_event(answer="Go kill yourself."))
    assert (threat.severity, threat.reason) == (Severity.HIGH, "threat in the answer")
    assert detector.inspect(_event()) == []


def test_detector_spans_index_the_original_text(lexicon: ToxicityLexicon) -> None:
    answer = "Ｔｈｉｓ is f\u200bu\u200bc\u200bk\u200bing useless."
    [finding] = ToxicityDetector(lexicon).inspect(_event(answer=answer))
    [span] = finding.spans
    assert span.field == "answer"
    assert answer[span.start : span.end] == "f\u200bu\u200bc\u200bk\u200bing"


def test_classifier_matches_scikit_learns_own_probabilities(classifier: ProfanityClassifier) -> None:
    texts = [
        "The travel budget for Q3 is 412,000 USD [1].",
        "you are a fucking idiot",
        "go to hell you stupid moron",
        "Hotel stays are reimbursed up to 200 EUR per night.",
        "",
    ]
    fast = classifier.probabilities(texts)
    reference = classifier.probabilities_reference(texts)
    assert fast == pytest.approx(reference, abs=1e-9)
    assert fast[1] > 0.9 and fast[2] > 0.9
    assert fast[0] < 0.2 and fast[3] < 0.2


def test_classifier_detector_is_sampled_and_flags_offensive_answers(classifier: ProfanityClassifier) -> None:
    detector = ToxicityClassifierDetector(classifier, sample_rate=0.1, threshold=0.8)
    assert detector.tier is Tier.SAMPLED
    [finding] = detector.inspect(_event(answer="You stupid idiot, read the damn policy."))
    assert finding.severity is Severity.MEDIUM
    assert finding.reason.startswith("offensive language in the answer (classifier ")
    assert detector.inspect(_event()) == []
